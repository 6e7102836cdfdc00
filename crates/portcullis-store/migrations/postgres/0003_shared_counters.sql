-- Lockout and rate-limit counters shared by every replica, so a client cannot multiply its
-- budget by spreading requests. Keyed by IP address and by token id (globally unique); they
-- hold no tenant data, so row-level security does not apply.
CREATE TABLE auth_failures (
    ip            TEXT PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    failures      INTEGER NOT NULL,
    locked_until  BIGINT NOT NULL
);

CREATE TABLE rate_buckets (
    token_id    TEXT PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- Whether the last request was refused: only the first refusal of an episode is audited.
    limited     BOOLEAN NOT NULL,
    allowed     BOOLEAN NOT NULL
);

GRANT SELECT, INSERT, UPDATE ON auth_failures, rate_buckets TO portcullis_app;
