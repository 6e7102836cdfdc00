-- The vault: each tenant's key-encryption keys (wrapped by the key provider's master key) and
-- its secrets (envelope-encrypted: a data key per secret version, wrapped by the tenant key).
-- Blobs are base64 text. Nothing here is readable without the key provider.

-- A deleted tenant: its keys are destroyed, so its secrets can never be read again; every
-- lookup treats it as gone. Its audit trail stays.
ALTER TABLE tenants ADD COLUMN deleted_at INTEGER;

CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL CHECK (version > 0),
    -- Which master key of the provider wrapped it (a key-file id or an HSM key label).
    master_id   TEXT NOT NULL,
    wrapped     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE secrets (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    name               TEXT NOT NULL,
    -- Random per secret: bound, with the tenant and the version, into the ciphertext.
    id                 TEXT NOT NULL UNIQUE,
    version            INTEGER NOT NULL CHECK (version > 0),
    kek_version        INTEGER NOT NULL,
    wrapped_dek        TEXT NOT NULL,
    ciphertext         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_used_at       INTEGER,
    rotate_every_days  INTEGER,
    created_by         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id, kek_version) REFERENCES tenant_keys(tenant_id, version)
);

-- A short-lived session token names the agent token it was exchanged for: revoking or
-- expiring that parent ends the session on its next request.
ALTER TABLE agent_tokens ADD COLUMN parent_id TEXT REFERENCES agent_tokens(id);

-- The hosts a tenant's outbound requests may reach (a JSON array of exact hosts and
-- `*.domain` patterns); NULL: any public host. Only ever narrows the operator's policy.
ALTER TABLE tenants ADD COLUMN egress_hosts TEXT;

-- An OAuth connection whose refresh token the provider no longer accepts: its held actions
-- show `needs_reconnection` (and cannot run) until a new refresh token is stored and the
-- broker mints again.
ALTER TABLE connections ADD COLUMN needs_reconnection_at INTEGER;
