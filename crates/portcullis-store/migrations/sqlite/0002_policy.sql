-- Policy: tool profiles, suspension (the kill switch) and agent owners, versioned per-tenant
-- policies, approval extras and votes, the spend ledger, guardrails, and the session index
-- that session evidence reads. Times are Unix milliseconds; JSON is stored as text.

ALTER TABLE tools ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';

ALTER TABLE tenants ADD COLUMN suspended_at INTEGER;
ALTER TABLE agents ADD COLUMN suspended_at INTEGER;
-- The human the agent acts for: they may not approve their own agent's requests.
ALTER TABLE agents ADD COLUMN owner TEXT;

-- Append-only: a policy change is a new version; old versions stay as they were.
CREATE TABLE policy_versions (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    cedar       TEXT NOT NULL,
    settings    TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

ALTER TABLE approvals ADD COLUMN point_rules TEXT NOT NULL DEFAULT '{}';
ALTER TABLE approvals ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}';
ALTER TABLE approvals ADD COLUMN cost_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN before_state TEXT;
ALTER TABLE approvals ADD COLUMN batch TEXT;

-- Append-only: one vote per voter and approval, never changed.
CREATE TABLE approval_votes (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    approval_id TEXT NOT NULL REFERENCES approvals(id),
    voter       TEXT NOT NULL,
    vote        TEXT NOT NULL CHECK (vote IN ('approve', 'deny')),
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (approval_id, voter)
);

CREATE TABLE guardrails (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('approve_each', 'auto_with_notice', 'auto')),
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE UNIQUE INDEX guardrails_active_name ON guardrails (tenant_id, name) WHERE revoked_at IS NULL;

-- Append-only: what ran and what it declared it cost.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    time          INTEGER NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    guardrail_id  TEXT REFERENCES guardrails(id),
    approval_id   TEXT REFERENCES approvals(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    tool          TEXT NOT NULL,
    cost_cents    INTEGER NOT NULL CHECK (cost_cents >= 0),
    action_hash   TEXT NOT NULL
);
CREATE INDEX ledger_time ON ledger (tenant_id, time);
CREATE INDEX ledger_guardrail ON ledger (tenant_id, guardrail_id, time) WHERE guardrail_id IS NOT NULL;

CREATE INDEX audit_events_session ON audit_events (tenant_id, session) WHERE session IS NOT NULL;

CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are append-only'); END;
CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are append-only'); END;
CREATE TRIGGER approval_votes_no_update BEFORE UPDATE ON approval_votes
BEGIN SELECT RAISE(ABORT, 'approval votes are append-only'); END;
CREATE TRIGGER approval_votes_no_delete BEFORE DELETE ON approval_votes
BEGIN SELECT RAISE(ABORT, 'approval votes are append-only'); END;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
