-- The platform's whole data model. UUID keys, timestamptz everywhere.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    wallet_address  text NOT NULL UNIQUE,
    username        text UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    display_name    text CHECK (length(display_name) <= 64),
    avatar_url      text,
    bio             text CHECK (length(bio) <= 1000),
    reputation      integer NOT NULL DEFAULT 0,
    xp              bigint NOT NULL DEFAULT 0 CHECK (xp >= 0),
    level           integer NOT NULL DEFAULT 1 CHECK (level >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz
);

CREATE TABLE user_levels (
    level       integer PRIMARY KEY CHECK (level >= 1),
    min_xp      bigint NOT NULL UNIQUE,
    title       text NOT NULL
);
INSERT INTO user_levels (level, min_xp, title) VALUES
    (1, 0, 'Newcomer'), (2, 100, 'Learner'), (3, 300, 'Scholar'),
    (4, 700, 'Researcher'), (5, 1500, 'Mentor'), (6, 3000, 'Sage');

CREATE TABLE study_rooms (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description             text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    topic                   text,
    tags                    text[] NOT NULL DEFAULT '{}',
    room_type               text NOT NULL CHECK (room_type IN ('public', 'private', 'token_gated', 'nft_gated')),
    owner_id                uuid NOT NULL REFERENCES users (id),
    access_token_mint       text,
    access_nft_collection   text,
    min_token_amount        numeric(38, 9),
    max_participants        integer NOT NULL DEFAULT 50 CHECK (max_participants BETWEEN 2 AND 10000),
    is_active               boolean NOT NULL DEFAULT true,
    room_nft_mint           text UNIQUE,
    metadata_uri            text,
    last_seq                bigint NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    closed_at               timestamptz,
    CHECK (room_type <> 'token_gated' OR (access_token_mint IS NOT NULL AND min_token_amount > 0)),
    CHECK (room_type <> 'nft_gated' OR access_nft_collection IS NOT NULL)
);
CREATE INDEX study_rooms_list ON study_rooms (is_active, created_at DESC, id DESC);
CREATE INDEX study_rooms_owner ON study_rooms (owner_id);
CREATE INDEX study_rooms_name_trgm ON study_rooms USING gin (name gin_trgm_ops);

CREATE TABLE room_participants (
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'moderator', 'member')),
    is_member       boolean NOT NULL DEFAULT true,
    is_banned       boolean NOT NULL DEFAULT false,
    ban_reason      text,
    banned_by       uuid REFERENCES users (id),
    joined_at       timestamptz NOT NULL DEFAULT now(),
    last_active_at  timestamptz NOT NULL DEFAULT now(),
    left_at         timestamptz,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_participants_user ON room_participants (user_id) WHERE is_member;

CREATE TABLE room_invitations (
    room_id     uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    invited_by  uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

-- The per-room ordered log every durable realtime event is written to; recovery reads it.
CREATE TABLE room_events (
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    event_type      text NOT NULL,
    actor_id        uuid REFERENCES users (id),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);

CREATE TABLE chat_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    sender_id       uuid REFERENCES users (id),
    message_type    text NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'document_share', 'highlight', 'system', 'tutor')),
    content         text NOT NULL CHECK (length(content) <= 8000),
    metadata        jsonb NOT NULL DEFAULT '{}',
    reply_to        uuid REFERENCES chat_messages (id),
    reactions       jsonb NOT NULL DEFAULT '{}',
    is_pinned       boolean NOT NULL DEFAULT false,
    is_deleted      boolean NOT NULL DEFAULT false,
    deleted_by      uuid REFERENCES users (id),
    client_msg_id   text CHECK (length(client_msg_id) <= 128),
    created_at      timestamptz NOT NULL DEFAULT now(),
    edited_at       timestamptz,
    deleted_at      timestamptz,
    UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX chat_messages_idempotency ON chat_messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE message_reactions (
    message_id  uuid NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji       text NOT NULL CHECK (length(emoji) BETWEEN 1 AND 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);

CREATE TABLE documents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id        uuid NOT NULL REFERENCES users (id),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    filename        text NOT NULL,
    content_type    text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
    content_hash    text NOT NULL,
    blob_cid        text NOT NULL,
    page_count      integer,
    is_public       boolean NOT NULL DEFAULT false,
    tags            text[] NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed', 'deleted')),
    download_count  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE UNIQUE INDEX documents_dedup ON documents (owner_id, content_hash) WHERE deleted_at IS NULL;
CREATE INDEX documents_tags ON documents USING gin (tags);
CREATE INDEX documents_recent ON documents (created_at DESC, id DESC);

CREATE TABLE document_chunks (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id     uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    chunk_index     integer NOT NULL,
    text            text NOT NULL,
    page_start      integer NOT NULL,
    page_end        integer NOT NULL CHECK (page_end >= page_start),
    char_start      integer NOT NULL,
    char_end        integer NOT NULL,
    token_count     integer NOT NULL,
    embedding       vector(384),
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX document_chunks_embedding ON document_chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX document_chunks_tsv ON document_chunks USING gin (tsv);

CREATE TABLE document_permissions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    room_id     uuid REFERENCES study_rooms (id) ON DELETE CASCADE,
    permission  text NOT NULL DEFAULT 'read' CHECK (permission IN ('read', 'write', 'admin')),
    granted_by  uuid NOT NULL REFERENCES users (id),
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (room_id IS NULL))
);
CREATE UNIQUE INDEX document_permissions_user ON document_permissions (document_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX document_permissions_room ON document_permissions (document_id, room_id) WHERE room_id IS NOT NULL;

CREATE TABLE ingestion_jobs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id     uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'extracting', 'embedding', 'ready', 'failed')),
    progress        real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX ingestion_jobs_open ON ingestion_jobs (created_at) WHERE status NOT IN ('ready', 'failed');

CREATE TABLE highlights (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id     uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    room_id         uuid REFERENCES study_rooms (id) ON DELETE SET NULL,
    user_id         uuid NOT NULL REFERENCES users (id),
    text            text NOT NULL CHECK (length(text) BETWEEN 1 AND 5000),
    context_before  text NOT NULL DEFAULT '',
    context_after   text NOT NULL DEFAULT '',
    page            integer,
    position        jsonb NOT NULL DEFAULT '{}',
    color           text,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX highlights_document ON highlights (document_id, created_at);

CREATE TABLE nft_highlights (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    highlight_id    uuid NOT NULL UNIQUE REFERENCES highlights (id),
    mint_address    text NOT NULL UNIQUE,
    owner_wallet    text NOT NULL,
    collection_mint text,
    metadata_uri    text NOT NULL,
    metadata_cid    text NOT NULL,
    tx_signature    text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz
);

CREATE TABLE achievements (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    xp_reward   integer NOT NULL DEFAULT 0,
    icon        text
);
INSERT INTO achievements (code, name, description, xp_reward) VALUES
    ('first_message', 'First words', 'Sent a first chat message', 10),
    ('first_room', 'Host', 'Created a first study room', 20),
    ('first_highlight', 'Highlighter', 'Highlighted a first passage', 15),
    ('first_upload', 'Librarian', 'Uploaded a first document', 25),
    ('curious_mind', 'Curious mind', 'Asked the tutor ten questions', 50);

CREATE TABLE user_achievements (
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    achievement_id  uuid NOT NULL REFERENCES achievements (id),
    room_id         uuid REFERENCES study_rooms (id) ON DELETE SET NULL,
    earned_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, achievement_id)
);

CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}',
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_unread ON notifications (user_id, created_at DESC) WHERE read_at IS NULL;

CREATE TABLE notification_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token       text NOT NULL UNIQUE,
    platform    text NOT NULL CHECK (platform IN ('web', 'ios', 'android')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE siws_nonces (
    nonce       text PRIMARY KEY,
    address     text,
    domain      text NOT NULL,
    uri         text NOT NULL,
    chain_id    text NOT NULL,
    statement   text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz
);
CREATE INDEX siws_nonces_expiry ON siws_nonces (expires_at);

CREATE TABLE sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    ip              text,
    user_agent      text
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    data        jsonb NOT NULL DEFAULT '{}',
    ip          text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, created_at);
