-- The Socratic tutor: threads of turns per room, per-room tutor options, token usage per day.

-- A room's tutor options; a room without a row uses the defaults.
CREATE TABLE tutor_room_settings (
    room_id         uuid PRIMARY KEY REFERENCES study_rooms (id) ON DELETE CASCADE,
    include_public  boolean NOT NULL DEFAULT false,   -- also retrieve from public documents
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tutor_threads (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    started_by      uuid NOT NULL REFERENCES users (id),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    turn_count      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tutor_threads_room ON tutor_threads (room_id, updated_at DESC, id DESC);

-- One question and its answer. `answer` is NULL while streaming; `status` says how it ended.
CREATE TABLE tutor_turns (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id       uuid NOT NULL REFERENCES tutor_threads (id) ON DELETE CASCADE,
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id),
    question        text NOT NULL CHECK (length(question) BETWEEN 1 AND 8000),
    answer          text,
    mode            text NOT NULL CHECK (mode IN ('claude', 'offline')),
    status          text NOT NULL DEFAULT 'streaming'
                    CHECK (status IN ('streaming', 'done', 'cancelled', 'failed')),
    sources         jsonb NOT NULL DEFAULT '[]',
    state           jsonb NOT NULL DEFAULT '{}',       -- the offline flow's step
    message_id      uuid,                              -- the stored chat message of the answer
    message_seq     bigint,
    input_tokens    integer NOT NULL DEFAULT 0,
    output_tokens   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX tutor_turns_thread ON tutor_turns (thread_id, created_at, id);

CREATE TABLE tutor_usage (
    day             date NOT NULL,
    room_id         uuid NOT NULL REFERENCES study_rooms (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    questions       integer NOT NULL DEFAULT 0,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, room_id, user_id)
);
CREATE INDEX tutor_usage_user ON tutor_usage (user_id, day);
