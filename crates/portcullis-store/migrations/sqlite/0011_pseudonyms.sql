-- Pseudonym maps of agent sessions (which label stands for which value), sealed under the
-- tenant's vault key: never readable from the database alone. A map lives until
-- `expires_at` (its lifetime, not extended by use); one written under a tenant key that has
-- since been rotated away cannot be opened and counts as gone. `version` orders concurrent
-- writers (a write names the version it read).
CREATE TABLE pseudonym_maps (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    agent_id     TEXT NOT NULL,
    session      TEXT NOT NULL,
    kek_version  INTEGER NOT NULL,
    wrapped_dek  TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, session)
);
CREATE INDEX pseudonym_maps_expiry ON pseudonym_maps (tenant_id, expires_at);
