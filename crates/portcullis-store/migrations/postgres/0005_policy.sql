-- Policy: tool profiles, suspension (the kill switch) and agent owners, versioned per-tenant
-- policies, approval extras and votes, the spend ledger, guardrails, and the session index
-- that session evidence reads. The same tables as SQLite's 0002_policy.sql, with row-level
-- tenant security, least privilege and change notifications as in 0001, 0002 and 0004.

ALTER TABLE tools ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';

ALTER TABLE tenants ADD COLUMN suspended_at BIGINT;
ALTER TABLE agents ADD COLUMN suspended_at BIGINT;
-- The human the agent acts for: they may not approve their own agent's requests.
ALTER TABLE agents ADD COLUMN owner TEXT;

-- Append-only: a policy change is a new version; old versions stay as they were.
CREATE TABLE policy_versions (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     BIGINT NOT NULL CHECK (version >= 1),
    cedar       TEXT NOT NULL,
    settings    TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

ALTER TABLE approvals ADD COLUMN point_rules TEXT NOT NULL DEFAULT '{}';
ALTER TABLE approvals ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}';
ALTER TABLE approvals ADD COLUMN cost_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN before_state TEXT;
ALTER TABLE approvals ADD COLUMN batch TEXT;

-- Append-only: one vote per voter and approval, never changed.
CREATE TABLE approval_votes (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    approval_id TEXT NOT NULL REFERENCES approvals(id),
    voter       TEXT NOT NULL,
    vote        TEXT NOT NULL CHECK (vote IN ('approve', 'deny')),
    reason      TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (approval_id, voter)
);

CREATE TABLE guardrails (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('approve_each', 'auto_with_notice', 'auto')),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX guardrails_active_name ON guardrails (tenant_id, name) WHERE revoked_at IS NULL;

-- Append-only: what ran and what it declared it cost.
CREATE TABLE ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    time          BIGINT NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    guardrail_id  TEXT REFERENCES guardrails(id),
    approval_id   TEXT REFERENCES approvals(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    tool          TEXT NOT NULL,
    cost_cents    BIGINT NOT NULL CHECK (cost_cents >= 0),
    action_hash   TEXT NOT NULL
);
CREATE INDEX ledger_time ON ledger (tenant_id, time);
CREATE INDEX ledger_guardrail ON ledger (tenant_id, guardrail_id, time) WHERE guardrail_id IS NOT NULL;

CREATE INDEX audit_events_session ON audit_events (tenant_id, session) WHERE session IS NOT NULL;

CREATE TRIGGER policy_versions_no_update BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('policy versions are append-only');
CREATE TRIGGER policy_versions_no_truncate BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('policy versions are append-only');
CREATE TRIGGER approval_votes_no_update BEFORE UPDATE OR DELETE ON approval_votes
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('approval votes are append-only');
CREATE TRIGGER approval_votes_no_truncate BEFORE TRUNCATE ON approval_votes
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('approval votes are append-only');
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('the ledger is append-only');
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_refuse_rewrite('the ledger is append-only');

-- Row-level tenant security, exactly as on the tables of 0001.
DO $$
DECLARE
    tenant_table TEXT;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY[
        'policy_versions', 'approval_votes', 'guardrails', 'ledger'
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

-- Least privilege: guardrails are updated (mode, spec, revocation) but never deleted; policy
-- versions, votes and the ledger can only grow.
GRANT SELECT, INSERT, UPDATE ON guardrails TO portcullis_app;
GRANT SELECT, INSERT ON policy_versions, approval_votes, ledger TO portcullis_app;

-- Suspension, policies and guardrails decide access too: a change on one replica bumps the
-- access generation and notifies every other replica, as for the tables of 0002.
CREATE TRIGGER tenants_notify_access AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER policy_versions_notify_access AFTER INSERT ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER guardrails_notify_access AFTER INSERT OR UPDATE OR DELETE ON guardrails
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
