"""Documents: upload, sniffing, extraction, chunking, embeddings, ingestion, search, highlights."""
