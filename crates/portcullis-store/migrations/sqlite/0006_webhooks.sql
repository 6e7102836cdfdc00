-- Webhooks. Outbound: a tenant's endpoints, the messages made from its audit trail and
-- checkpoints (the trail is the outbox: a cursor per tenant moves in the same transaction
-- that enqueues the messages, so a crash loses nothing and two replicas never enqueue twice),
-- one delivery per message and endpoint (a durable queue claimed with a lease), and every
-- attempt. Inbound: the sources whose signed events a tenant accepts, and what was accepted.
-- Signing and verification secrets live in the vault, never here.

CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    url              TEXT NOT NULL,
    description      TEXT NOT NULL,
    events           TEXT NOT NULL,
    -- The endpoint hears of audit entries after `start_seq` and checkpoints past `start_size`.
    start_seq        INTEGER NOT NULL,
    start_size       INTEGER NOT NULL,
    -- Rotation grace: until then the previous secret signs too.
    previous_until   INTEGER,
    failing_since    INTEGER,
    created_at       INTEGER NOT NULL,
    created_by       TEXT NOT NULL,
    disabled_at      INTEGER,
    disabled_reason  TEXT,
    deleted_at       INTEGER
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_cursors (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants(id),
    audit_seq        INTEGER NOT NULL,
    checkpoint_size  INTEGER NOT NULL
);

CREATE TABLE webhook_messages (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    message_id       TEXT NOT NULL REFERENCES webhook_messages(id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'success', 'failed', 'blocked')),
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    status       INTEGER,
    latency_ms   INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbound_sources (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    name            TEXT NOT NULL,
    scheme          TEXT NOT NULL CHECK (scheme IN ('github', 'standard')),
    tolerance_secs  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    revoked_at      INTEGER
);
-- A name is reused once its source is revoked.
CREATE UNIQUE INDEX inbound_sources_live ON inbound_sources (tenant_id, name) WHERE revoked_at IS NULL;

CREATE TABLE inbound_events (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    source_id    TEXT NOT NULL REFERENCES inbound_sources(id),
    seq          INTEGER NOT NULL,
    delivery     TEXT NOT NULL,
    event        TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    body         TEXT NOT NULL,
    -- What the signature covers, hashed: a GitHub-style signature covers the body only, so
    -- the same body under a fresh delivery id is a replay too.
    digest       TEXT NOT NULL,
    PRIMARY KEY (source_id, seq),
    UNIQUE (source_id, delivery),
    UNIQUE (source_id, digest)
);
