"""Observability: the Metrics object, log formats and their id contextvars, and URL redaction for everything printed or logged."""
