//! Console sign-in for humans: a password hash and a wrapped TOTP secret on the human's row,
//! the last TOTP step accepted (a code works once), their tenant's second-factor rule, failed
//! sign-ins and their lockout, and console sessions (only the session token's hash is
//! stored). Humans may be unscoped, so every query here spans tenants, as the admin token
//! lookup does.

use crate::rows::parse_id;
use crate::sql::{Freshness, Row, Scope, sql};
use crate::*;
use portcullis_core::audit::AuditKind;

/// What sign-in needs of a human.
#[derive(Clone)]
pub struct SignIn {
    pub admin: Admin,
    /// The argon2id PHC string, if a password is set.
    pub password_hash: Option<String>,
    /// The TOTP secret wrapped by the key provider (`master id`, base64 blob), if enrolled.
    pub totp: Option<(String, String)>,
    pub totp_last_step: Option<i64>,
    pub login_failures: i64,
    pub login_locked_until: Option<UnixMillis>,
    /// The console second-factor rule of the human's tenant; `None` for a human scoped to no
    /// tenant (or to one that is gone).
    pub tenant_console_totp: Option<ConsoleTotp>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("admin", &self.admin.name)
            .field("password", &self.password_hash.is_some())
            .field("totp", &self.totp.is_some())
            .field("tenant_console_totp", &self.tenant_console_totp)
            .finish_non_exhaustive()
    }
}

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub admin_id: AdminId,
    pub created_at: UnixMillis,
    pub last_seen_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// A human's row with their tenant's console second-factor rule; the caller adds `WHERE`.
const SIGN_IN: &str = "SELECT a.*, t.console_totp AS tenant_console_totp FROM admins a \
     LEFT JOIN tenants t ON t.id = a.tenant_id AND t.deleted_at IS NULL";

fn sign_in(row: &Row) -> StoreResult<SignIn> {
    let totp = match (row.opt_text("totp_master")?, row.opt_text("totp_wrapped")?) {
        (Some(master), Some(wrapped)) => Some((master, wrapped)),
        _ => None,
    };
    Ok(SignIn {
        admin: crate::rows::admin(row)?,
        password_hash: row.opt_text("password_hash")?,
        totp,
        totp_last_step: row.opt_int("totp_last_step")?,
        login_failures: row.int("login_failures")?,
        login_locked_until: row.opt_int("login_locked_until")?,
        tenant_console_totp: row
            .opt_text("tenant_console_totp")?
            .map(|text| crate::rows::console_totp(&text))
            .transpose()?,
    })
}

fn session(row: &Row) -> StoreResult<ConsoleSession> {
    Ok(ConsoleSession {
        admin_id: parse_id(row.text("admin_id")?)?,
        created_at: row.int("created_at")?,
        last_seen_at: row.int("last_seen_at")?,
        expires_at: row.int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

impl Store {
    /// A human's sign-in facts, by name.
    pub async fn sign_in_of(&self, name: &str) -> StoreResult<SignIn> {
        let q = sql(format!("{SIGN_IN} WHERE a.name = $1")).text(name);
        let row = self
            .read_opt(Scope::AllTenants, &q, Freshness::Latest)
            .await?
            .ok_or(StoreError::NotFound)?;
        sign_in(&row)
    }

    pub async fn sign_in_by_id(&self, id: &AdminId) -> StoreResult<SignIn> {
        let q = sql(format!("{SIGN_IN} WHERE a.id = $1")).text(id.as_str());
        let row = self
            .read_opt(Scope::AllTenants, &q, Freshness::Latest)
            .await?
            .ok_or(StoreError::NotFound)?;
        sign_in(&row)
    }

    /// Set a human's password (its argon2id hash), audited; failures are cleared.
    pub async fn set_password_hash(
        &self,
        admin: &Admin,
        hash: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let q = sql(
            "UPDATE admins SET password_hash = $1, login_failures = 0, login_locked_until = NULL \
                     WHERE id = $2 AND revoked_at IS NULL",
        )
        .text(hash)
        .text(admin.id.as_str());
        if tx.execute(&q).await? != 1 {
            return Err(StoreError::NotFound);
        }
        // Every console session of the human ends with the old password.
        credential_changed(tx, admin, actor, "password_set", now).await
    }

    /// Enroll a human's TOTP secret (wrapped by the key provider), audited; the step counter
    /// starts again.
    pub async fn set_totp(
        &self,
        admin: &Admin,
        master_id: &str,
        wrapped: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let q = sql(
            "UPDATE admins SET totp_master = $1, totp_wrapped = $2, totp_last_step = NULL \
                     WHERE id = $3 AND revoked_at IS NULL",
        )
        .text(master_id)
        .text(wrapped)
        .text(admin.id.as_str());
        if tx.execute(&q).await? != 1 {
            return Err(StoreError::NotFound);
        }
        credential_changed(tx, admin, actor, "totp_enrolled", now).await
    }

    /// Spend a TOTP step: `true` only if it is later than every step accepted before (a code
    /// is good once, also across replicas).
    pub async fn spend_totp_step(&self, admin: &AdminId, step: i64) -> StoreResult<bool> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let spent = tx
            .execute(
                &sql("UPDATE admins SET totp_last_step = $1 \
                      WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)")
                .int(step)
                .text(admin.as_str()),
            )
            .await?;
        tx.commit().await?;
        Ok(spent == 1)
    }

    /// Count a failed sign-in; at `threshold` failures the human is locked out until
    /// `now + lockout_ms` (and the count starts again). Audited. Returns whether this failure
    /// locked them out.
    pub async fn record_sign_in_failure(
        &self,
        admin: &Admin,
        reason: &str,
        threshold: i64,
        lockout_ms: i64,
        ip: &str,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        tx.execute(
            &sql("UPDATE admins SET login_failures = login_failures + 1 WHERE id = $1")
                .text(admin.id.as_str()),
        )
        .await?;
        let locked = tx
            .execute(
                &sql(
                    "UPDATE admins SET login_failures = 0, login_locked_until = $2 \
                      WHERE id = $1 AND login_failures >= $3",
                )
                .text(admin.id.as_str())
                .int(now + lockout_ms)
                .int(threshold),
            )
            .await?
            == 1;
        let draft = AuditDraft::new(
            audit_chain(admin),
            format!("ip:{ip}"),
            AuditKind::AuthFailed,
        )
        .resource("console".to_owned())
        .detail(serde_json::json!({ "admin": admin.name, "reason": reason, "locked_out": locked }));
        tx.append(draft, now).await?;
        if locked {
            let draft =
                AuditDraft::new(audit_chain(admin), format!("ip:{ip}"), AuditKind::LockedOut)
                    .resource("console".to_owned())
                    .detail(serde_json::json!({ "admin": admin.name, "lockout_ms": lockout_ms }));
            tx.append(draft, now).await?;
        }
        tx.commit().await?;
        Ok(locked)
    }

    /// Start a console session (sign-in succeeded), audited; failures are cleared.
    pub async fn create_console_session(
        &self,
        admin: &Admin,
        token_hash: &str,
        expires_at: UnixMillis,
        ip: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        tx.execute(
            &sql("UPDATE admins SET login_failures = 0, login_locked_until = NULL WHERE id = $1")
                .text(admin.id.as_str()),
        )
        .await?;
        tx.execute(
            &sql("INSERT INTO console_sessions (token_hash, admin_id, created_at, last_seen_at, expires_at) \
                  VALUES ($1, $2, $3, $3, $4)")
            .text(token_hash)
            .text(admin.id.as_str())
            .int(now)
            .int(expires_at),
        )
        .await?;
        let draft = AuditDraft::new(
            audit_chain(admin),
            format!("admin:{}", admin.name),
            AuditKind::SignedIn,
        )
        .resource("console".to_owned())
        .detail(serde_json::json!({ "ip": ip, "expires_at": expires_at }));
        tx.audited((), draft, now).await.map(drop)
    }

    /// A live session by its token hash: not revoked, not past its absolute end, and seen
    /// within `idle_ms`. Its last use moves to `now`.
    pub async fn console_session(
        &self,
        token_hash: &str,
        idle_ms: i64,
        now: UnixMillis,
    ) -> StoreResult<ConsoleSession> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let touched = tx
            .execute(
                &sql(
                    "UPDATE console_sessions SET last_seen_at = $2 WHERE token_hash = $1 \
                      AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at + $3 > $2",
                )
                .text(token_hash)
                .int(now)
                .int(idle_ms),
            )
            .await?;
        if touched != 1 {
            return Err(StoreError::NotFound);
        }
        let found = session(
            &tx.one(&sql("SELECT * FROM console_sessions WHERE token_hash = $1").text(token_hash))
                .await?,
        )?;
        tx.commit().await?;
        Ok(found)
    }

    /// End a session (sign out), audited.
    pub async fn end_console_session(
        &self,
        admin: &Admin,
        token_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        tx.execute(
            &sql("UPDATE console_sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL")
                .text(token_hash)
                .int(now),
        )
        .await?;
        let draft = AuditDraft::new(
            audit_chain(admin),
            format!("admin:{}", admin.name),
            AuditKind::SignedOut,
        )
        .resource("console".to_owned());
        tx.audited((), draft, now).await.map(drop)
    }
}

/// Where a human's sign-in events are audited: their tenant's trail, or the system trail for
/// an unscoped human.
fn audit_chain(admin: &Admin) -> TenantId {
    admin.tenant.clone().unwrap_or_else(TenantId::system)
}

/// A sign-in credential changed: every console session of the human ends, and the change is
/// audited (`what`, never the value), in the caller's transaction, which this commits.
async fn credential_changed(
    mut tx: crate::tx::Tx,
    admin: &Admin,
    actor: &str,
    what: &str,
    now: UnixMillis,
) -> StoreResult<()> {
    tx.execute(
        &sql("UPDATE console_sessions SET revoked_at = $2 WHERE admin_id = $1 AND revoked_at IS NULL")
            .text(admin.id.as_str())
            .int(now),
    )
    .await?;
    let draft = AuditDraft::new(audit_chain(admin), actor, AuditKind::AdminChanged)
        .resource(format!("admin:{}", admin.name))
        .detail(serde_json::json!({ what: true }));
    tx.audited((), draft, now).await.map(drop)
}
