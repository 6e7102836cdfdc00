-- The console's second factor per tenant (the same as the SQLite migration of the same
-- name): `required` (every human of the tenant signs in with a TOTP code; the default, for
-- the tenants already here as for new ones) or `optional` (a human of the tenant without an
-- enrolled second factor may sign in with the password alone; one who has enrolled is
-- always asked for a code).
ALTER TABLE tenants ADD COLUMN console_totp TEXT NOT NULL DEFAULT 'required'
    CHECK (console_totp IN ('required', 'optional'));
