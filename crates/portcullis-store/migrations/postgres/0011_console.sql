-- People (the same as the SQLite migration of the same name): two read-only roles (auditor:
-- everything including the audit trail; viewer: everything but the audit trail), console
-- sign-in for humans (an argon2id password hash and a TOTP secret wrapped by the key
-- provider's master key, the last accepted TOTP step so no code works twice, failures and a
-- lockout), and console sessions (only the session token's hash is stored; the CSRF token
-- is derived from the session token).

ALTER TABLE admins DROP CONSTRAINT admins_role_check;
ALTER TABLE admins ADD CONSTRAINT admins_role_check
    CHECK (role IN ('admin', 'approver', 'auditor', 'viewer'));

ALTER TABLE admins ADD COLUMN password_hash TEXT;
ALTER TABLE admins ADD COLUMN totp_wrapped TEXT;
ALTER TABLE admins ADD COLUMN totp_master TEXT;
ALTER TABLE admins ADD COLUMN totp_last_step BIGINT;
ALTER TABLE admins ADD COLUMN login_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admins ADD COLUMN login_locked_until BIGINT;

-- Humans may be unscoped (no tenant): sessions are looked up by token hash before any tenant
-- is known, like admins themselves.
CREATE TABLE console_sessions (
    token_hash    TEXT PRIMARY KEY,
    admin_id      TEXT NOT NULL REFERENCES admins(id),
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX console_sessions_admin ON console_sessions (admin_id);
GRANT SELECT, INSERT, UPDATE ON console_sessions TO portcullis_app;

-- Signed share links: a bearer URL for one artifact of one tenant (its audit export, or one
-- approval's evidence). Only the token's SHA-256 is stored; a link expires (or not, by
-- choice) and can be revoked.
CREATE TABLE share_links (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    artifact    TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    downloads   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX share_links_tenant ON share_links (tenant_id, created_at);
ALTER TABLE share_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE share_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON share_links
    USING (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('portcullis.tenant', true)
           OR current_setting('portcullis.all_tenants', true) = 'on');
GRANT SELECT, INSERT, UPDATE ON share_links TO portcullis_app;
