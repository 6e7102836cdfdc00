-- The gate: tenants, principals, connections, tools, approvals and the audit chain.
-- Times are Unix milliseconds. Every tenant-owned table carries tenant_id.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE admins (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver')),
    tenant_id   TEXT REFERENCES tenants(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    UNIQUE (tenant_id, name)
);

CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    token_hash  TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX agent_tokens_agent ON agent_tokens (tenant_id, agent_id);

CREATE TABLE connections (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    transport   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE UNIQUE INDEX connections_active_name ON connections (tenant_id, name) WHERE revoked_at IS NULL;

CREATE TABLE grants (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    tool          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
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
    updated_at    INTEGER NOT NULL,
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
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_by      TEXT,
    decided_at      INTEGER,
    decision_reason TEXT,
    receipt         TEXT
);
CREATE INDEX approvals_lookup ON approvals (tenant_id, agent_id, action_hash, status);
CREATE INDEX approvals_status ON approvals (tenant_id, status, created_at);

CREATE TABLE receipt_nonces (
    nonce       TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    receipt_id  TEXT NOT NULL,
    consumed_at INTEGER NOT NULL
);

CREATE TABLE audit_events (
    tenant_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    time        INTEGER NOT NULL,
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
) WITHOUT ROWID;
CREATE INDEX audit_events_time ON audit_events (tenant_id, time);

CREATE TABLE audit_checkpoints (
    tenant_id   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    head_hash   TEXT NOT NULL,
    time        INTEGER NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Append-only: the database itself refuses to rewrite history.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
