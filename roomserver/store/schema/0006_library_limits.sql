-- Ingestion limits and fairness (issue 12).

-- How many times a node died (its lease lapsed) while this job was extracting: past
-- INGEST_MAX_EXTRACT_CRASHES the job fails (`extraction_crashed`) instead of being handed
-- to the next node.
ALTER TABLE ingestion_jobs ADD COLUMN extract_crashes integer NOT NULL DEFAULT 0;

-- Round-robin claiming: the owner whose job was claimed least recently goes first, so one
-- user's hundred uploads do not starve another user's one.
CREATE TABLE ingest_turns (
    owner_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_claimed_at timestamptz NOT NULL
);

-- Per-user quotas count live documents and open jobs by owner.
CREATE INDEX documents_owner_live ON documents (owner_id) INCLUDE (size_bytes) WHERE deleted_at IS NULL;

-- Blobs no live document references are deleted: finding the documents of a CID.
CREATE INDEX documents_blob ON documents (blob_cid);
