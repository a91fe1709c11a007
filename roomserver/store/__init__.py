"""Postgres (pool, embedded server, migrations) and content-addressed blobs."""
