-- Model routes, the tenant's provider policy and the credits ledger of model requests (the
-- same as the SQLite migration of the same name; see there).
CREATE TABLE model_routes (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE model_routes ENABLE ROW LEVEL SECURITY;
ALTER TABLE model_routes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON model_routes
    USING (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on');
GRANT SELECT, INSERT, UPDATE, DELETE ON model_routes TO portcullis_app;

ALTER TABLE tenants ADD COLUMN model_providers TEXT;

CREATE TABLE model_usage (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    time            BIGINT NOT NULL,
    agent_id        TEXT NOT NULL,
    route           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    status          BIGINT NOT NULL,
    input_tokens    BIGINT NOT NULL,
    output_tokens   BIGINT NOT NULL,
    credits         BIGINT NOT NULL,
    byo             BIGINT NOT NULL,
    zero_retention  BIGINT NOT NULL
);
CREATE INDEX model_usage_tenant ON model_usage (tenant_id, time);
ALTER TABLE model_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE model_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON model_usage
    USING (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on');
GRANT SELECT, INSERT ON model_usage TO portcullis_app;
-- Append-only, like the spend ledger's history: a credit once counted stays counted.
CREATE TRIGGER model_usage_no_update BEFORE UPDATE OR DELETE ON model_usage
    FOR EACH ROW EXECUTE FUNCTION portcullis_refuse_rewrite('the model usage ledger is append-only');
