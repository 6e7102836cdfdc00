-- Pseudonym maps of agent sessions, sealed under the tenant's vault key (the same as the
-- SQLite migration of the same name; see there).
CREATE TABLE pseudonym_maps (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    agent_id     TEXT NOT NULL,
    session      TEXT NOT NULL,
    kek_version  BIGINT NOT NULL,
    wrapped_dek  TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, session)
);
CREATE INDEX pseudonym_maps_expiry ON pseudonym_maps (tenant_id, expires_at);
ALTER TABLE pseudonym_maps ENABLE ROW LEVEL SECURITY;
ALTER TABLE pseudonym_maps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pseudonym_maps
    USING (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on');
GRANT SELECT, INSERT, UPDATE, DELETE ON pseudonym_maps TO portcullis_app;
