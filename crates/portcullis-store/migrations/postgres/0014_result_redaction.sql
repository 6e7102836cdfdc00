-- What a connection's tool results hide from agents (the same as the SQLite migration of the
-- same name). `result_pii`: personal data passes (`off`, the default: agents are often
-- connected to a CRM or mailbox to work with it), is masked (`mask`: `[EMAIL]`) or
-- pseudonymised per session (`pseudonymise`: `[EMAIL_1]`). `result_secrets`: credentials are
-- masked (`mask`, the default: keys never reach an agent) or passed (`off`, an admin's
-- explicit choice). The access trigger on `connections` already announces every change.
ALTER TABLE connections ADD COLUMN result_pii TEXT NOT NULL DEFAULT 'off'
    CHECK (result_pii IN ('off', 'mask', 'pseudonymise'));
ALTER TABLE connections ADD COLUMN result_secrets TEXT NOT NULL DEFAULT 'mask'
    CHECK (result_secrets IN ('mask', 'off'));
