-- The gate on PostgreSQL: the same tables as the SQLite schema, plus `audit_heads` (one locked
-- row per chain, so appends from several replicas stay linear), row-level tenant security and a
-- least-privileged application role. Times are Unix milliseconds. Every tenant-owned table
-- carries tenant_id.
--
-- Runs as the database owner (`portcullis migrate`). The gateway itself connects as
-- `portcullis_app`, which owns nothing and so can neither alter these rules nor bypass them.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE admins (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver')),
    tenant_id   TEXT REFERENCES tenants(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    UNIQUE (tenant_id, name)
);

CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    token_hash  TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX agent_tokens_agent ON agent_tokens (tenant_id, agent_id);

CREATE TABLE connections (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    transport   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX connections_active_name ON connections (tenant_id, name) WHERE revoked_at IS NULL;

CREATE TABLE grants (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    tool          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (agent_id, connection_id, tool)
);

CREATE TABLE tools (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    name          TEXT NOT NULL,
    definition    TEXT NOT NULL,
    pinned_hash   TEXT NOT NULL,
    current_hash  TEXT NOT NULL,
    effect        TEXT NOT NULL,
    effect_source TEXT NOT NULL CHECK (effect_source IN ('annotations', 'operator')),
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, name)
);

CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    session         TEXT,
    connection_id   TEXT NOT NULL REFERENCES connections(id),
    tool            TEXT NOT NULL,
    effect          TEXT NOT NULL,
    action          TEXT NOT NULL,
    action_hash     TEXT NOT NULL,
    summary         TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'executed')),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT,
    receipt         TEXT
);
CREATE INDEX approvals_lookup ON approvals (tenant_id, agent_id, action_hash, status);
CREATE INDEX approvals_status ON approvals (tenant_id, status, created_at);

-- INVARIANT: a nonce, once inserted, is never updated or deleted (no privilege, and a
-- trigger below), so a receipt stays consumed across restarts and replicas.
CREATE TABLE receipt_nonces (
    nonce       TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    receipt_id  TEXT NOT NULL,
    consumed_at BIGINT NOT NULL
);

CREATE TABLE audit_events (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    time        BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    session     TEXT,
    kind        TEXT NOT NULL,
    resource    TEXT,
    decision    TEXT,
    receipt_id  TEXT,
    args_hash   TEXT,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_time ON audit_events (tenant_id, time);

-- The head of each chain. An append locks its tenant's row (`SELECT … FOR UPDATE`) in the
-- transaction that inserts the event, so appends from any number of processes serialise per
-- tenant and never fork the chain; the (tenant_id, seq) key above refuses a fork regardless.
CREATE TABLE audit_heads (
    tenant_id   TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL CHECK (seq >= 0),
    hash        TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    tenant_id   TEXT NOT NULL,
    size        BIGINT NOT NULL,
    head_hash   TEXT NOT NULL,
    time        BIGINT NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Append-only: the database itself refuses to rewrite history, for every role including the
-- owner (only a superuser disabling triggers gets past this, and `verify` still detects it).
CREATE FUNCTION portcullis_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('audit events are append-only');
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('audit events are append-only');
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('audit checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('audit checkpoints are append-only');
CREATE TRIGGER receipt_nonces_no_update BEFORE UPDATE OR DELETE ON receipt_nonces
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('consumed receipt nonces are append-only');
CREATE TRIGGER receipt_nonces_no_truncate BEFORE TRUNCATE ON receipt_nonces
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('consumed receipt nonces are append-only');

-- Row-level tenant security. Every store transaction first sets, transaction-locally, either
-- `portcullis.tenant` (the one tenant it works on) or `portcullis.all_tenants = 'on'` (the few
-- lookups that legitimately span tenants). A query that sets neither sees and writes nothing.
-- FORCE applies the policies to the table owner too; only superusers and BYPASSRLS roles skip
-- them, and the store refuses to run as either.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on')
    WITH CHECK (id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on');

DO $$
DECLARE
    tenant_table TEXT;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY[
        'admins', 'agents', 'agent_tokens', 'connections', 'grants', 'tools', 'approvals',
        'receipt_nonces', 'audit_events', 'audit_heads', 'audit_checkpoints'
    ] LOOP
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

-- The application role: may log in, owns nothing, bypasses nothing. Roles are cluster-wide,
-- so migrations of several databases may race to create it; the loser just proceeds.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        BEGIN
            CREATE ROLE portcullis_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'portcullis_app'
               AND (rolsuper OR rolbypassrls OR rolcreaterole)) THEN
        RAISE EXCEPTION 'role portcullis_app must not be a superuser, bypass row-level security or create roles';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO portcullis_app', current_schema());
END
$$;

-- Least privilege: nothing is ever deleted except grants, and the audit trail and consumed
-- nonces can only grow.
GRANT SELECT, INSERT, UPDATE ON tenants, admins, agents, agent_tokens, connections, tools, approvals
    TO portcullis_app;
GRANT SELECT, INSERT, DELETE ON grants TO portcullis_app;
GRANT SELECT, INSERT ON receipt_nonces, audit_events, audit_checkpoints TO portcullis_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO portcullis_app;
-- So the gateway can tell at start-up whether the schema matches the binary.
GRANT SELECT ON _sqlx_migrations TO portcullis_app;
