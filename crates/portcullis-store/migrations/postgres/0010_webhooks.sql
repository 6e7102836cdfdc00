-- Webhooks (the same as the SQLite migration of the same name). Outbound: a tenant's endpoints, the messages made from its audit trail and
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
    start_seq        BIGINT NOT NULL,
    start_size       BIGINT NOT NULL,
    -- Rotation grace: until then the previous secret signs too.
    previous_until   BIGINT,
    failing_since    BIGINT,
    created_at       BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    disabled_at      BIGINT,
    disabled_reason  TEXT,
    deleted_at       BIGINT
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_cursors (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants(id),
    audit_seq        BIGINT NOT NULL,
    checkpoint_size  BIGINT NOT NULL
);

CREATE TABLE webhook_messages (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    message_id       TEXT NOT NULL REFERENCES webhook_messages(id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'success', 'failed', 'blocked')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    status       BIGINT,
    latency_ms   BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbound_sources (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    name            TEXT NOT NULL,
    scheme          TEXT NOT NULL CHECK (scheme IN ('github', 'standard')),
    tolerance_secs  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    revoked_at      BIGINT
);
-- A name is reused once its source is revoked.
CREATE UNIQUE INDEX inbound_sources_live ON inbound_sources (tenant_id, name) WHERE revoked_at IS NULL;

CREATE TABLE inbound_events (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    source_id    TEXT NOT NULL REFERENCES inbound_sources(id),
    seq          BIGINT NOT NULL,
    delivery     TEXT NOT NULL,
    event        TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    body         TEXT NOT NULL,
    -- What the signature covers, hashed: a GitHub-style signature covers the body only, so
    -- the same body under a fresh delivery id is a replay too.
    digest       TEXT NOT NULL,
    PRIMARY KEY (source_id, seq),
    UNIQUE (source_id, delivery),
    UNIQUE (source_id, digest)
);

DO $$
DECLARE
    tenant_table TEXT;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['webhook_endpoints', 'webhook_cursors', 'webhook_messages',
                                        'webhook_deliveries', 'webhook_attempts', 'inbound_sources',
                                        'inbound_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = current_setting(''portcullis.tenant'', true) '
            '       OR current_setting(''portcullis.all_tenants'', true) = ''on'') '
            'WITH CHECK (tenant_id = current_setting(''portcullis.tenant'', true) '
            '       OR current_setting(''portcullis.all_tenants'', true) = ''on'')',
            tenant_table);
    END LOOP;
END
$$;

-- Messages and attempts are records: never changed. Endpoints, cursors and deliveries move;
-- a deleted tenant's rows are deleted with it.
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_cursors, webhook_deliveries,
    inbound_sources TO portcullis_app;
GRANT SELECT, INSERT, DELETE ON webhook_messages, webhook_attempts, inbound_events TO portcullis_app;
