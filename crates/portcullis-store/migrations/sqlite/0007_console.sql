-- People: two read-only roles (auditor: everything including the audit trail; viewer:
-- everything but the audit trail), console sign-in for humans (an argon2id password hash and
-- a TOTP secret wrapped by the key provider's master key, the last accepted TOTP step so no
-- code works twice, failures and a lockout), and console sessions (only the session token's
-- hash is stored; the CSRF token is derived from the session token).

CREATE TABLE admins_roles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'auditor', 'viewer')),
    tenant_id   TEXT REFERENCES tenants(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    created_by  TEXT,
    expires_at  INTEGER,
    rotated_at  INTEGER,
    rotated_by  TEXT
);
INSERT INTO admins_roles (id, name, role, tenant_id, token_hash, created_at, revoked_at, created_by,
                          expires_at, rotated_at, rotated_by)
    SELECT id, name, role, tenant_id, token_hash, created_at, revoked_at, created_by, expires_at,
           rotated_at, rotated_by FROM admins;
DROP TABLE admins;
ALTER TABLE admins_roles RENAME TO admins;

ALTER TABLE admins ADD COLUMN password_hash TEXT;
ALTER TABLE admins ADD COLUMN totp_wrapped TEXT;
ALTER TABLE admins ADD COLUMN totp_master TEXT;
ALTER TABLE admins ADD COLUMN totp_last_step INTEGER;
ALTER TABLE admins ADD COLUMN login_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admins ADD COLUMN login_locked_until INTEGER;

CREATE TABLE console_sessions (
    token_hash    TEXT PRIMARY KEY,
    admin_id      TEXT NOT NULL REFERENCES admins(id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX console_sessions_admin ON console_sessions (admin_id);

-- Signed share links: a bearer URL for one artifact of one tenant (its audit export, or one
-- approval's evidence). Only the token's SHA-256 is stored; a link expires (or not, by
-- choice) and can be revoked.
CREATE TABLE share_links (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    artifact    TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    downloads   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX share_links_tenant ON share_links (tenant_id, created_at);
