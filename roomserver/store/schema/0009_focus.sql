-- Focus timers (issue 15 part 1). A room has at most one running timer; its phase is computed
-- from (anchor, paused_at, plan) by roomserver.focus.clock, never ticked. `announced` is the
-- segment up to which phase boundaries have been announced and credited: a node claims a
-- boundary with a conditional UPDATE on it, so exactly one node emits each one.
ALTER TABLE study_rooms ADD COLUMN focus_open boolean NOT NULL DEFAULT false;

CREATE TABLE focus_sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id         uuid NOT NULL REFERENCES study_rooms(id) ON DELETE CASCADE,
    started_by      uuid REFERENCES users(id) ON DELETE SET NULL,
    work_seconds    integer NOT NULL CHECK (work_seconds > 0),
    break_seconds   integer NOT NULL CHECK (break_seconds >= 0),
    cycles          integer NOT NULL CHECK (cycles > 0),
    started_at      timestamptz NOT NULL,
    anchor          timestamptz NOT NULL,
    paused_at       timestamptz,
    announced       integer NOT NULL DEFAULT 0,
    ended_at        timestamptz,
    end_reason      text CHECK (end_reason IN ('finished', 'stopped'))
);
CREATE UNIQUE INDEX focus_sessions_one_running ON focus_sessions (room_id) WHERE ended_at IS NULL;
CREATE INDEX focus_sessions_room_started ON focus_sessions (room_id, started_at DESC);

-- Minutes credited to a member present when a work phase completed: once per (session, cycle, user).
CREATE TABLE focus_minutes (
    session_id      uuid NOT NULL REFERENCES focus_sessions(id) ON DELETE CASCADE,
    cycle           integer NOT NULL,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id         uuid NOT NULL REFERENCES study_rooms(id) ON DELETE CASCADE,
    minutes         numeric(8, 2) NOT NULL,
    completed_at    timestamptz NOT NULL,
    PRIMARY KEY (session_id, cycle, user_id)
);
CREATE INDEX focus_minutes_user ON focus_minutes (user_id, completed_at);
