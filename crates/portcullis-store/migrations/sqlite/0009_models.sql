-- Model routes: per tenant, a named route to one model provider (its wire format, base URL,
-- model allow list, the vault secret holding its key, the retention posture, the redaction
-- mode, a server-side system prompt). `spec` is the route as JSON; keys are never in it,
-- only the name of the vault secret that holds one.
CREATE TABLE model_routes (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- The tenant's provider policy for model routes: `{"allow": [...] | null, "block": [...]}`;
-- NULL is "no policy" (every provider allowed).
ALTER TABLE tenants ADD COLUMN model_providers TEXT;

-- The credits ledger of model routes: one row per request that reached a provider, with
-- its token counts (never a prompt or a completion). `byo`: the key was the tenant's own;
-- `zero_retention`: the request left with the no-retention settings.
CREATE TABLE model_usage (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    time            INTEGER NOT NULL,
    agent_id        TEXT NOT NULL,
    route           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    status          INTEGER NOT NULL,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    credits         INTEGER NOT NULL,
    byo             INTEGER NOT NULL,
    zero_retention  INTEGER NOT NULL
);
CREATE INDEX model_usage_tenant ON model_usage (tenant_id, time);
CREATE TRIGGER model_usage_no_update BEFORE UPDATE ON model_usage
BEGIN SELECT RAISE(ABORT, 'the model usage ledger is append-only'); END;
CREATE TRIGGER model_usage_no_delete BEFORE DELETE ON model_usage
BEGIN SELECT RAISE(ABORT, 'the model usage ledger is append-only'); END;
