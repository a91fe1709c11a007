-- The document library: page texts (highlight validation, re-chunking), job leases, lookups.

-- The clean text of each page as ingestion extracted it; chunk offsets refer to these pages
-- joined by a blank line. Deleted with the document's chunks.
CREATE TABLE document_pages (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page_number integer NOT NULL CHECK (page_number >= 1),
    text        text NOT NULL,
    PRIMARY KEY (document_id, page_number)
);

-- A running job holds a lease that its worker renews; a job whose lease lapsed (its server
-- died) is claimed again. `error_message` is the human-readable side of `reason` (a code).
ALTER TABLE ingestion_jobs
    ADD COLUMN lease_until   timestamptz,
    ADD COLUMN error_message text,
    ADD COLUMN chunk_count   integer;
CREATE INDEX ingestion_jobs_document ON ingestion_jobs (document_id, created_at DESC);

CREATE INDEX document_permissions_room_lookup ON document_permissions (room_id, document_id)
    WHERE room_id IS NOT NULL;
CREATE INDEX document_permissions_user_lookup ON document_permissions (user_id, document_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX documents_owner_recent ON documents (owner_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
