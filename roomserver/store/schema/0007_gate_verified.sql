-- When a gated room member's holdings were last verified on chain (join, REST read, sweep);
-- NULL: never (memberships from before this migration, and ungated rooms).
ALTER TABLE room_participants ADD COLUMN gate_verified_at timestamptz;
