-- The vault: each tenant's key-encryption keys (wrapped by the key provider's master key) and
-- its secrets (envelope-encrypted: a data key per secret version, wrapped by the tenant key).
-- Blobs are base64 text. The same as the SQLite migration of the same name.

ALTER TABLE tenants ADD COLUMN deleted_at BIGINT;

CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     BIGINT NOT NULL CHECK (version > 0),
    master_id   TEXT NOT NULL,
    wrapped     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE secrets (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    name               TEXT NOT NULL,
    id                 TEXT NOT NULL UNIQUE,
    version            BIGINT NOT NULL CHECK (version > 0),
    kek_version        BIGINT NOT NULL,
    wrapped_dek        TEXT NOT NULL,
    ciphertext         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    last_used_at       BIGINT,
    rotate_every_days  BIGINT,
    created_by         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id, kek_version) REFERENCES tenant_keys(tenant_id, version)
);

DO $$
DECLARE
    tenant_table TEXT;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['tenant_keys', 'secrets'] LOOP
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

-- Keys are destroyed (deleted) on rotation and tenant deletion; secrets are replaced and
-- deleted.
GRANT SELECT, INSERT, DELETE ON tenant_keys TO portcullis_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON secrets TO portcullis_app;
-- A master-key rotation rewraps tenant keys in place.
GRANT UPDATE ON tenant_keys TO portcullis_app;

-- A short-lived session token names the agent token it was exchanged for: revoking or
-- expiring that parent ends the session on its next request.
ALTER TABLE agent_tokens ADD COLUMN parent_id TEXT REFERENCES agent_tokens(id);

-- The hosts a tenant's outbound requests may reach (a JSON array of exact hosts and
-- `*.domain` patterns); NULL: any public host. Only ever narrows the operator's policy.
ALTER TABLE tenants ADD COLUMN egress_hosts TEXT;

-- An OAuth connection whose refresh token the provider no longer accepts: its held actions
-- show `needs_reconnection` (and cannot run) until a new refresh token is stored and the
-- broker mints again.
ALTER TABLE connections ADD COLUMN needs_reconnection_at BIGINT;

-- A secret or tenant key changed on one replica: the others drop their cached sealed blobs
-- on their next request (the access generation), as for the tables of 0002 and 0005.
CREATE TRIGGER secrets_notify_access AFTER INSERT OR UPDATE OR DELETE ON secrets
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER tenant_keys_notify_access AFTER INSERT OR UPDATE OR DELETE ON tenant_keys
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
