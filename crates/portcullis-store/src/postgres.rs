//! The PostgreSQL backend: several stateless replicas sharing one database.
//!
//! Tenant isolation is enforced twice. Every query filters by tenant, as on SQLite; and every
//! method runs in one transaction that first sets, transaction-locally, the tenant it works on
//! (`portcullis.tenant`) or, for the few lookups that legitimately span tenants,
//! `portcullis.all_tenants = 'on'`. Row-level security on every tenant table admits only rows
//! matching that setting, so a query that forgets its tenant filter still sees one tenant, and
//! one that forgets its scope sees nothing. The gateway connects as `portcullis_app`, which
//! owns nothing and bypasses nothing; `open` refuses a role that would bypass the policies.
//!
//! Concurrency across processes, at READ COMMITTED: an append locks its chain's row in
//! `audit_heads` until commit, so each tenant's chain stays linear; a redemption inserts the
//! nonce (primary key: a concurrent second insert waits, then does nothing) and flips the
//! approval with a conditional update in the same transaction; a decision locks its approval.
//! Every transaction locks at most one chain head, and always last, so they cannot deadlock.
//!
//! The schema is migrated only by `portcullis migrate` ([`PgStore::migrate`]), as the owner.

use crate::rows::{self as parse, json, parse_id};
use crate::votes::{self, BatchRequest, Decision, VoteRequest};
use crate::*;
use portcullis_core::audit::{AuditKind, GENESIS_HASH};
use portcullis_core::effect::EffectClass;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};
use portcullis_core::profile::ToolProfile;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, PgRow,
};
use sqlx::{ConnectOptions, Connection as _, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    appends: crate::group_commit::GroupCommit,
    /// Lockout and rate-limit counters: their own small pool whose commits do not wait for
    /// the WAL flush (`synchronous_commit = off`). A crash may forget the last milliseconds
    /// of counting; it cannot lose an audit event, which never goes through this pool.
    counters: PgPool,
}

/// Notifications that something access decisions depend on changed (on any replica).
pub struct AccessChanges {
    listener: sqlx::postgres::PgListener,
}

impl AccessChanges {
    /// Wait for the next change. `Ok(true)`: a change was committed. `Ok(false)`: the
    /// listening connection was lost and re-established, so changes may have been missed.
    pub async fn next(&mut self) -> StoreResult<bool> {
        Ok(self.listener.try_recv().await?.is_some())
    }
}

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

type Tx = Transaction<'static, Postgres>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Which rows a transaction may see and write: what row-level security checks every row
/// against.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// Only this tenant's rows (`portcullis.tenant`).
    Tenant(&'a TenantId),
    /// Every tenant's rows (`portcullis.all_tenants = 'on'`): only for lookups that happen
    /// before a tenant is known, or for operators that span tenants.
    AllTenants,
}

impl<'a> Scope<'a> {
    fn of(tenant: Option<&'a TenantId>) -> Self {
        tenant.map_or(Self::AllTenants, Self::Tenant)
    }
}

pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// SQLSTATE classes that mean "the server cannot serve us right now" rather than "this
/// statement is wrong": connection exception, insufficient resources, operator intervention
/// (shutdown, cancel), system error.
pub(crate) fn is_connection_problem(error: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    error
        .try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|e| matches!(e.code().get(..2), Some("08" | "53" | "57" | "58")))
}

fn connect_options(url: &str) -> StoreResult<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map(|options| options.application_name("portcullis"))
        .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL url: {e}")))
}

/// Where a connection goes, for error messages: host, port, database and user, never the
/// password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{} as `{}`",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default(),
        options.get_username()
    )
}

fn cannot_connect(target: &str, error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: {error}"))
}

/// SQLite treats a negative limit as "no limit"; so does PostgreSQL with `LIMIT NULL`.
fn limit(limit: i64) -> Option<i64> {
    (limit >= 0).then_some(limit)
}

/// Compare the migrations a database records with the ones this binary ships.
fn schema_verdict(applied: &[(i64, bool, Vec<u8>)]) -> StoreResult<()> {
    let known: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    if applied
        .iter()
        .any(|(version, ..)| !known.iter().any(|m| m.version == *version))
    {
        return Err(StoreError::SchemaTooNew);
    }
    for migration in known {
        match applied.iter().find(|(v, ..)| *v == migration.version) {
            None | Some((_, false, _)) => return Err(StoreError::SchemaBehind),
            Some((_, true, checksum)) if checksum[..] != migration.checksum[..] => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} in the database differs from this binary's",
                    migration.version
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl PgStore {
    /// Connect as the application role and check the schema; never migrates.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let connect = connect_options(url)?;
        // One plain connection first: it fails at once when the server is unreachable (a
        // pool would retry until its acquire timeout), and it runs the start-up checks.
        let mut probe = connect
            .connect()
            .await
            .map_err(|e| cannot_connect(&describe(&connect), e))?;
        let checked = Self::check_schema_and_role(&mut probe).await;
        let _ = probe.close().await;
        checked?;
        let counters = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(connect.clone().options([("synchronous_commit", "off")]));
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(connect);
        let writer = pool.clone();
        let appends = crate::group_commit::GroupCommit::spawn(move |drafts| {
            Self::commit_group(writer.clone(), drafts)
        });
        Ok(Self {
            pool,
            appends,
            counters,
        })
    }

    /// Listen for committed changes to agents, tokens, connections, grants and tools.
    pub async fn access_changes(&self) -> StoreResult<AccessChanges> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen("portcullis_access").await?;
        Ok(AccessChanges { listener })
    }

    async fn check_schema_and_role(conn: &mut PgConnection) -> StoreResult<()> {
        let applied: Vec<(i64, bool, Vec<u8>)> = match sqlx::query_as(
            "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await
        {
            Ok(rows) => rows,
            // undefined_table: never migrated.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                return Err(StoreError::SchemaBehind);
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot read the schema version: {e}"
                )));
            }
        };
        schema_verdict(&applied)?;
        let (role, bypasses, owns): (String, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, r.rolsuper OR r.rolbypassrls, pg_has_role(current_user, c.relowner, 'USAGE') \
             FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'audit_events'::regclass",
        )
        .fetch_one(&mut *conn)
        .await?;
        // INVARIANT: the store never runs as a role that row-level security does not bind.
        if bypasses {
            return Err(StoreError::Unavailable(format!(
                "the database role `{role}` bypasses row-level security; connect as `portcullis_app`"
            )));
        }
        if owns {
            tracing::warn!(
                role,
                "the gateway's database role owns the schema, so it could switch off row-level security and the append-only triggers; connect as `portcullis_app`"
            );
        }
        Ok(())
    }

    /// Apply this binary's migrations as the schema owner. Idempotent; safe to run from
    /// several processes at once.
    pub async fn migrate(admin_url: &str) -> StoreResult<()> {
        let connect = connect_options(admin_url)?;
        let mut conn = connect
            .connect()
            .await
            .map_err(|e| cannot_connect(&describe(&connect), e))?;
        // sqlx's migrator serialises concurrent runs itself: before creating its table it takes
        // a session-level `pg_advisory_lock` keyed by the database name, and it applies each
        // migration in a transaction together with its bookkeeping row. A run that fails keeps
        // the lock until its connection closes, which happens right here.
        let outcome = MIGRATOR.run(&mut conn).await.map_err(migrate_error);
        let _ = conn.close().await;
        outcome
    }

    pub async fn health(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn request_check(&self, ip: &str) -> StoreResult<crate::RequestCheck> {
        let (locked_until, access_generation): (Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT locked_until FROM auth_failures WHERE ip = $1), \
                    (SELECT generation FROM access_generation WHERE id = 1)",
        )
        .bind(ip)
        .fetch_one(&self.counters)
        .await?;
        Ok(crate::RequestCheck {
            locked_until: locked_until.unwrap_or(0),
            access_generation,
        })
    }

    pub async fn record_auth_failure(
        &self,
        ip: &str,
        now: UnixMillis,
        rule: &crate::LockoutRule,
    ) -> StoreResult<bool> {
        // One atomic statement: a new window when the old one passed, one more failure, and a
        // lockout (reported once, by the failure that starts it) at the threshold.
        let (locked_until, failures): (i64, i32) = sqlx::query_as(
            "INSERT INTO auth_failures AS f (ip, window_start, failures, locked_until) VALUES ($1, $2, 1, 0) \
             ON CONFLICT (ip) DO UPDATE SET \
               window_start = CASE WHEN $2 - f.window_start > $3 THEN $2 ELSE f.window_start END, \
               failures = CASE WHEN $2 - f.window_start > $3 THEN 1 ELSE f.failures + 1 END \
             RETURNING locked_until, failures",
        )
        .bind(ip)
        .bind(now)
        .bind(rule.window_ms)
        .fetch_one(&self.counters)
        .await?;
        if i64::from(failures) >= i64::from(rule.threshold) && locked_until <= now {
            let started = sqlx::query(
                "UPDATE auth_failures SET locked_until = $2, failures = 0, window_start = $3 WHERE ip = $1 AND locked_until <= $3",
            )
            .bind(ip)
            .bind(now + rule.lockout_ms)
            .bind(now)
            .execute(&self.counters)
            .await?;
            return Ok(started.rows_affected() == 1);
        }
        Ok(false)
    }

    pub async fn take_rate_token(
        &self,
        token: &str,
        now: UnixMillis,
        rule: &crate::RateRule,
    ) -> StoreResult<crate::RateDecision> {
        let (allowed, first_refusal, tokens): (bool, bool, f64) = sqlx::query_as(
            "WITH prev AS (SELECT limited FROM rate_buckets WHERE token_id = $1) \
             INSERT INTO rate_buckets AS b (token_id, tokens, updated_at, limited, allowed) VALUES ($1, $4 - 1, $2, false, true) \
             ON CONFLICT (token_id) DO UPDATE SET \
               tokens = CASE WHEN LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) >= 1 \
                             THEN LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) - 1 \
                             ELSE LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) END, \
               allowed = LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) >= 1, \
               limited = LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) < 1, \
               updated_at = GREATEST($2, b.updated_at) \
             RETURNING allowed, (NOT allowed AND NOT COALESCE((SELECT limited FROM prev), false)), tokens",
        )
        .bind(token)
        .bind(now)
        .bind(rule.per_ms)
        .bind(rule.burst)
        .fetch_one(&self.counters)
        .await?;
        Ok(if allowed {
            crate::RateDecision::Allowed
        } else {
            crate::RateDecision::Limited {
                retry_after_ms: ((1.0 - tokens) / rule.per_ms).ceil() as i64,
                first_refusal,
            }
        })
    }

    /// A transaction whose rows row-level security limits to `scope`. The setting is
    /// transaction-local: it ends with the transaction, so a pooled connection never carries
    /// one request's tenant into the next.
    async fn begin(&self, scope: Scope<'_>) -> StoreResult<Tx> {
        let mut tx = self.pool.begin().await?;
        let (setting, value) = match scope {
            Scope::Tenant(tenant) => ("portcullis.tenant", tenant.as_str()),
            Scope::AllTenants => ("portcullis.all_tenants", "on"),
        };
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(setting)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn fetch_all(&self, scope: Scope<'_>, query: PgQuery<'_>) -> StoreResult<Vec<PgRow>> {
        let mut tx = self.begin(scope).await?;
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn fetch_optional(
        &self,
        scope: Scope<'_>,
        query: PgQuery<'_>,
    ) -> StoreResult<Option<PgRow>> {
        let mut tx = self.begin(scope).await?;
        let row = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn fetch_one(&self, scope: Scope<'_>, query: PgQuery<'_>) -> StoreResult<PgRow> {
        self.fetch_optional(scope, query)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Append the audit event of what `tx` did (its chain head locked last) and commit both:
    /// the tail of every audited change.
    async fn audited<T>(
        mut tx: Tx,
        value: T,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(T, AuditEvent)> {
        let event = Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok((value, event))
    }

    /// One statement that writes a single row of `tenant` (none written: not found), the row
    /// as it now stands (`read`), and the audit event, in one transaction.
    async fn change_and_read<T>(
        &self,
        tenant: &TenantId,
        change: PgQuery<'_>,
        read: PgQuery<'_>,
        parse: impl FnOnce(&PgRow) -> StoreResult<T>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(T, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if change.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let value = parse(&read.fetch_one(&mut *tx).await?)?;
        Self::audited(tx, value, draft, now).await
    }

    /// Append to the chain inside the caller's transaction, whose scope must admit the
    /// draft's tenant.
    async fn append_in(tx: &mut Tx, draft: AuditDraft, now: UnixMillis) -> StoreResult<AuditEvent> {
        // INVARIANT: the head row stays locked until the transaction ends, so appends to one
        // chain from any number of processes take turns and each builds on the last.
        sqlx::query(
            "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(draft.tenant.as_str())
        .bind(GENESIS_HASH)
        .execute(&mut **tx)
        .await?;
        let (head, prev): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE")
                .bind(draft.tenant.as_str())
                .fetch_one(&mut **tx)
                .await?;
        let event = draft.seal(head + 1, now, &prev);
        let d = &event.draft;
        sqlx::query(
            "INSERT INTO audit_events (tenant_id, seq, time, actor, session, kind, resource, decision, receipt_id, args_hash, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(d.tenant.as_str())
        .bind(event.seq)
        .bind(event.time)
        .bind(&d.actor)
        .bind(&d.session)
        .bind(d.kind.as_str())
        .bind(&d.resource)
        .bind(&d.decision)
        .bind(&d.receipt_id)
        .bind(&d.args_hash)
        .bind(json(&d.detail))
        .bind(&event.prev_hash)
        .bind(&event.hash)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1")
            .bind(d.tenant.as_str())
            .bind(event.seq)
            .bind(&event.hash)
            .execute(&mut **tx)
            .await?;
        Ok(event)
    }

    /// Append one event durably; concurrent appends share a commit (see `group_commit`).
    pub async fn append_audit(
        &self,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        self.appends.append(draft, now).await
    }

    /// Append a group in one transaction. Chains are locked in tenant order (and each other
    /// transaction locks at most one head), so concurrent groups on several replicas cannot
    /// deadlock; each tenant's drafts keep their order.
    async fn commit_group(
        pool: PgPool,
        drafts: Vec<(AuditDraft, UnixMillis)>,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut order: Vec<usize> = (0..drafts.len()).collect();
        order.sort_by(|a, b| drafts[*a].0.tenant.cmp(&drafts[*b].0.tenant));
        let mut tx = pool.begin().await?;
        let mut events: Vec<Option<AuditEvent>> = vec![None; drafts.len()];
        let mut scoped: Option<TenantId> = None;
        for index in order {
            let (draft, now) = drafts[index].clone();
            if scoped.as_ref() != Some(&draft.tenant) {
                sqlx::query("SELECT set_config('portcullis.tenant', $1, true)")
                    .bind(draft.tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
                scoped = Some(draft.tenant.clone());
            }
            events[index] = Some(Self::append_in(&mut tx, draft, now).await?);
        }
        tx.commit().await?;
        Ok(events
            .into_iter()
            .map(|e| e.expect("every draft appended"))
            .collect())
    }

    // ---- tenants and principals

    pub async fn create_tenant(
        &self,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: TenantId::generate(),
            name: name.to_owned(),
            created_at: now,
            suspended_at: None,
        };
        // Scoped to the new tenant alone: the unique name is enforced by its index, which
        // sees every tenant regardless of row-level security.
        let mut tx = self.begin(Scope::Tenant(&tenant.id)).await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.as_str())
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let draft = AuditDraft::new(tenant.id.clone(), actor, AuditKind::TenantCreated)
            .resource(format!("tenant:{}", tenant.id))
            .detail(serde_json::json!({ "name": name }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Tenant> {
        let query = sqlx::query("SELECT * FROM tenants WHERE name = $1").bind(name);
        parse::tenant(&self.fetch_one(Scope::AllTenants, query).await?)
    }

    fn tenant_query(id: &TenantId) -> PgQuery<'_> {
        sqlx::query("SELECT * FROM tenants WHERE id = $1").bind(id.as_str())
    }

    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Tenant> {
        let query = Self::tenant_query(id);
        parse::tenant(&self.fetch_one(Scope::Tenant(id), query).await?)
    }

    pub async fn set_tenant_suspended(
        &self,
        tenant: &TenantId,
        suspended: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Tenant, AuditEvent)> {
        let change = sqlx::query(
            "UPDATE tenants SET suspended_at = CASE WHEN $1::bigint IS NULL THEN NULL ELSE COALESCE(suspended_at, $1) END WHERE id = $2",
        )
        .bind(suspended.then_some(now))
        .bind(tenant.as_str());
        let read = Self::tenant_query(tenant);
        self.change_and_read(tenant, change, read, parse::tenant, draft, now)
            .await
    }

    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let query = sqlx::query("SELECT * FROM tenants ORDER BY created_at");
        parse::all(
            self.fetch_all(Scope::AllTenants, query).await?,
            parse::tenant,
        )
    }

    pub async fn create_admin(
        &self,
        new: NewAdmin<'_>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Admin> {
        let admin = Admin {
            id: AdminId::generate(),
            name: new.name.to_owned(),
            role: new.role,
            tenant: new.tenant.cloned(),
            created_at: now,
            created_by: Some(new.created_by.to_owned()),
            expires_at: new.expires_at,
            rotated_at: None,
            revoked_at: None,
        };
        // A tenant's admin is written within that tenant; an unscoped one (and its event on
        // the system chain) spans tenants.
        let mut tx = self.begin(Scope::of(new.tenant)).await?;
        sqlx::query(crate::queries::INSERT_ADMIN)
            .bind(admin.id.as_str())
            .bind(new.name)
            .bind(new.role.as_str())
            .bind(new.tenant.map(TenantId::as_str))
            .bind(new.token_hash)
            .bind(now)
            .bind(new.created_by)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?;
        let chain = admin.tenant.clone().unwrap_or_else(TenantId::system);
        let draft = AuditDraft::new(chain, actor, AuditKind::AdminCreated)
            .resource(format!("admin:{}", admin.id))
            .detail(serde_json::json!({ "name": new.name, "role": new.role, "expires_at": new.expires_at }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(admin)
    }

    pub async fn list_admins(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<Admin>> {
        let query = sqlx::query(crate::queries::LIST_ADMINS).bind(tenant.map(TenantId::as_str));
        parse::all(
            self.fetch_all(Scope::of(tenant), query).await?,
            parse::admin,
        )
    }

    /// Spans tenants: names are unique across the installation.
    pub async fn admin_by_name(&self, name: &str) -> StoreResult<Admin> {
        let query = sqlx::query("SELECT * FROM admins WHERE name = $1").bind(name);
        parse::admin(&self.fetch_one(Scope::AllTenants, query).await?)
    }

    /// One change to a human's credential (`change` binds the id as `$1`), read back and
    /// audited; a revoked (or unknown) identity is not found. Spans tenants: an unscoped
    /// human's events go to the system chain.
    async fn change_admin(
        &self,
        id: &AdminId,
        change: PgQuery<'_>,
        guard_last_root: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        if guard_last_root {
            // Serialise every change that could remove the last unscoped admin.
            sqlx::query(
                "SELECT id FROM admins WHERE tenant_id IS NULL AND role = 'admin' FOR UPDATE",
            )
            .fetch_all(&mut *tx)
            .await?;
            let current = parse::admin(
                &sqlx::query("SELECT * FROM admins WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            let others: i64 = sqlx::query_scalar(crate::queries::OTHER_ACTIVE_ROOT_ADMINS)
                .bind(now)
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if current.tenant.is_none() && current.role == AdminRole::Admin && others == 0 {
                return Err(StoreError::Conflict(
                    "this is the last unscoped admin; create another before revoking it".into(),
                ));
            }
        }
        if change.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let admin = parse::admin(
            &sqlx::query("SELECT * FROM admins WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?,
        )?;
        Self::audited(tx, admin, draft, now).await
    }

    pub async fn revoke_admin(
        &self,
        id: &AdminId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sqlx::query(crate::queries::REVOKE_ADMIN)
            .bind(id.as_str())
            .bind(now);
        self.change_admin(id, change, true, draft, now).await
    }

    pub async fn rotate_admin(
        &self,
        id: &AdminId,
        token_hash: &str,
        expires_at: Option<UnixMillis>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sqlx::query(crate::queries::ROTATE_ADMIN)
            .bind(id.as_str())
            .bind(token_hash)
            .bind(now)
            .bind(expires_at);
        self.change_admin(id, change, false, draft, now).await
    }

    pub async fn set_admin_expiry(
        &self,
        id: &AdminId,
        expires_at: Option<UnixMillis>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sqlx::query(crate::queries::SET_ADMIN_EXPIRY)
            .bind(id.as_str())
            .bind(expires_at);
        // An expiry in the past ends the credential like a revocation.
        let ends = expires_at.is_some_and(|t| t <= now);
        self.change_admin(id, change, ends, draft, now).await
    }

    /// Spans tenants: the hash is all that is known before authentication.
    pub async fn admin_by_token_hash(&self, hash: &str) -> StoreResult<Admin> {
        let query = sqlx::query("SELECT * FROM admins WHERE token_hash = $1").bind(hash);
        parse::admin(&self.fetch_one(Scope::AllTenants, query).await?)
    }

    pub async fn count_admins(&self) -> StoreResult<i64> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(count)
    }

    pub async fn create_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Agent> {
        let agent = Agent {
            id: AgentId::generate(),
            tenant: tenant.clone(),
            name: name.to_owned(),
            created_at: now,
            revoked_at: None,
            owner: None,
            suspended_at: None,
        };
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO agents (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(agent.id.as_str())
            .bind(tenant.as_str())
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::AgentCreated)
            .resource(format!("agent:{}", agent.id))
            .detail(serde_json::json!({ "name": name }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(agent)
    }

    async fn require_tenant(tx: &mut Tx, tenant: &TenantId) -> StoreResult<()> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        found.map(|_| ()).ok_or(StoreError::NotFound)
    }

    pub async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<Agent>> {
        let query = sqlx::query("SELECT * FROM agents WHERE tenant_id = $1 ORDER BY created_at")
            .bind(tenant.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::agent,
        )
    }

    /// Run one `UPDATE`/`DELETE` of a single tenant-owned row and record it; no row is
    /// "not found".
    async fn change_one(
        &self,
        tenant: &TenantId,
        change: PgQuery<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if change.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }

    fn agent_query<'q>(tenant: &'q TenantId, agent: &'q AgentId) -> PgQuery<'q> {
        sqlx::query("SELECT * FROM agents WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(agent.as_str())
    }

    pub async fn set_agent_suspended(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        suspended: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Agent, AuditEvent)> {
        let change = sqlx::query(
            "UPDATE agents SET suspended_at = CASE WHEN $1::bigint IS NULL THEN NULL ELSE COALESCE(suspended_at, $1) END WHERE tenant_id = $2 AND id = $3",
        )
        .bind(suspended.then_some(now))
        .bind(tenant.as_str())
        .bind(agent.as_str());
        let read = Self::agent_query(tenant, agent);
        self.change_and_read(tenant, change, read, parse::agent, draft, now)
            .await
    }

    pub async fn set_agent_owner(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        owner: Option<&str>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Agent, AuditEvent)> {
        let change = sqlx::query("UPDATE agents SET owner = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(owner)
            .bind(tenant.as_str())
            .bind(agent.as_str());
        let read = Self::agent_query(tenant, agent);
        self.change_and_read(tenant, change, read, parse::agent, draft, now)
            .await
    }

    pub async fn revoke_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sqlx::query("UPDATE agents SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(agent.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::AgentRevoked)
            .resource(format!("agent:{agent}"));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn create_token(
        &self,
        new: NewToken<'_>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<AgentToken> {
        let token = AgentToken {
            id: TokenId::generate(),
            tenant: new.tenant.clone(),
            agent: new.agent.clone(),
            scope: new.scope.to_vec(),
            expires_at: new.expires_at,
            created_at: now,
            revoked_at: None,
        };
        let mut tx = self.begin(Scope::Tenant(new.tenant)).await?;
        let agent_ok: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM agents WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(new.tenant.as_str())
        .bind(new.agent.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if agent_ok.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("INSERT INTO agent_tokens (id, tenant_id, agent_id, token_hash, scope, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(token.id.as_str())
            .bind(new.tenant.as_str())
            .bind(new.agent.as_str())
            .bind(new.token_hash)
            .bind(json(&token.scope))
            .bind(new.expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let draft = AuditDraft::new(new.tenant.clone(), actor, AuditKind::TokenCreated)
            .resource(format!("token:{}", token.id))
            .detail(serde_json::json!({ "agent": new.agent, "scope": token.scope, "expires_at": new.expires_at }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(token)
    }

    pub async fn revoke_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sqlx::query("UPDATE agent_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(token.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::TokenRevoked)
            .resource(format!("token:{token}"));
        self.change_one(tenant, change, draft, now).await
    }

    /// Spans tenants: the hash is all that is known before authentication.
    pub async fn agent_token_by_hash(&self, hash: &str) -> StoreResult<AgentAuth> {
        let sql = format!("{}$1", parse::AGENT_AUTH_SELECT);
        let query = sqlx::query(&sql).bind(hash);
        parse::agent_auth(&self.fetch_one(Scope::AllTenants, query).await?)
    }

    // ---- connections, grants, tools

    pub async fn create_connection(
        &self,
        tenant: &TenantId,
        name: &str,
        transport: &serde_json::Value,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Connection> {
        let connection = Connection {
            id: ConnectionId::generate(),
            tenant: tenant.clone(),
            name: name.to_owned(),
            transport: transport.clone(),
            created_at: now,
            revoked_at: None,
        };
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO connections (id, tenant_id, name, transport, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(connection.id.as_str())
            .bind(tenant.as_str())
            .bind(name)
            .bind(json(transport))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // The audit records the transport's kind only: commands and URLs may embed secrets.
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConnectionCreated)
            .resource(format!("connection:{}", connection.id))
            .detail(serde_json::json!({ "name": name, "kind": transport.get("kind") }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(connection)
    }

    pub async fn revoke_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sqlx::query("UPDATE connections SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConnectionRevoked)
            .resource(format!("connection:{id}"));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<Connection> {
        let query = sqlx::query("SELECT * FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str());
        parse::connection(&self.fetch_one(Scope::Tenant(tenant), query).await?)
    }

    pub async fn list_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        let query =
            sqlx::query("SELECT * FROM connections WHERE tenant_id = $1 ORDER BY created_at")
                .bind(tenant.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::connection,
        )
    }

    /// Spans tenants: the supervisor starts every tenant's upstreams.
    pub async fn all_active_connections(&self) -> StoreResult<Vec<Connection>> {
        let query =
            sqlx::query("SELECT * FROM connections WHERE revoked_at IS NULL ORDER BY created_at");
        parse::all(
            self.fetch_all(Scope::AllTenants, query).await?,
            parse::connection,
        )
    }

    pub async fn grant(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        connection: &ConnectionId,
        tool: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let ok: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM agents a, connections c WHERE a.tenant_id = $1 AND a.id = $2 AND c.tenant_id = $1 AND c.id = $3",
        )
        .bind(tenant.as_str())
        .bind(agent.as_str())
        .bind(connection.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        ok.ok_or(StoreError::NotFound)?;
        sqlx::query("INSERT INTO grants (tenant_id, agent_id, connection_id, tool, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(connection.as_str())
            .bind(tool)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::GrantAdded)
            .resource(format!("tool:{connection}/{tool}"))
            .detail(serde_json::json!({ "agent": agent }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_grant(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        connection: &ConnectionId,
        tool: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sqlx::query("DELETE FROM grants WHERE tenant_id = $1 AND agent_id = $2 AND connection_id = $3 AND tool = $4")
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(connection.as_str())
            .bind(tool);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::GrantRemoved)
            .resource(format!("tool:{connection}/{tool}"))
            .detail(serde_json::json!({ "agent": agent }));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn grants_for_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> StoreResult<Vec<Grant>> {
        let query = sqlx::query(
            "SELECT agent_id, connection_id, tool FROM grants WHERE tenant_id = $1 AND agent_id = $2",
        )
        .bind(tenant.as_str())
        .bind(agent.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::grant,
        )
    }

    pub async fn sync_tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        discovered: &[DiscoveredTool],
        now: UnixMillis,
    ) -> StoreResult<Vec<ToolRecord>> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // Replicas may sync the same connection at once; its row lock makes them take turns,
        // so the second sees the first's tools instead of colliding on their keys.
        sqlx::query("SELECT 1 FROM connections WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .execute(&mut *tx)
            .await?;
        for tool in discovered {
            let name = &tool.definition.name;
            let existing: Option<(String, String)> = sqlx::query_as(
                "SELECT pinned_hash, current_hash FROM tools WHERE tenant_id = $1 AND connection_id = $2 AND name = $3",
            )
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO tools (tenant_id, connection_id, name, definition, pinned_hash, current_hash, effect, effect_source, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
                    )
                    .bind(tenant.as_str())
                    .bind(connection.as_str())
                    .bind(name)
                    .bind(json(&tool.definition))
                    .bind(&tool.hash)
                    .bind(tool.seed_effect.as_str())
                    .bind(tool.seed_source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let draft = AuditDraft::new(tenant.clone(), "system", AuditKind::ToolClassified)
                        .resource(format!("tool:{connection}/{name}"))
                        .detail(serde_json::json!({ "effect": tool.seed_effect, "source": tool.seed_source, "definition_hash": tool.hash }));
                    Self::append_in(&mut tx, draft, now).await?;
                }
                Some((_, current)) if current == tool.hash => {}
                Some((pinned, _)) => {
                    sqlx::query("UPDATE tools SET definition = $1, current_hash = $2, updated_at = $3 WHERE tenant_id = $4 AND connection_id = $5 AND name = $6")
                        .bind(json(&tool.definition))
                        .bind(&tool.hash)
                        .bind(now)
                        .bind(tenant.as_str())
                        .bind(connection.as_str())
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    if pinned != tool.hash {
                        let draft = AuditDraft::new(
                            tenant.clone(),
                            "system",
                            AuditKind::ToolDefinitionChanged,
                        )
                        .resource(format!("tool:{connection}/{name}"))
                        .detail(
                            serde_json::json!({ "pinned_hash": pinned, "current_hash": tool.hash }),
                        );
                        Self::append_in(&mut tx, draft, now).await?;
                    }
                }
            }
        }
        let tools = parse::all(
            Self::tools_query(tenant, connection)
                .fetch_all(&mut *tx)
                .await?,
            parse::tool,
        )?;
        tx.commit().await?;
        Ok(tools)
    }

    fn tools_query<'q>(tenant: &'q TenantId, connection: &'q ConnectionId) -> PgQuery<'q> {
        sqlx::query("SELECT * FROM tools WHERE tenant_id = $1 AND connection_id = $2 ORDER BY name")
            .bind(tenant.as_str())
            .bind(connection.as_str())
    }

    fn tool_query<'q>(
        tenant: &'q TenantId,
        connection: &'q ConnectionId,
        name: &'q str,
    ) -> PgQuery<'q> {
        sqlx::query("SELECT * FROM tools WHERE tenant_id = $1 AND connection_id = $2 AND name = $3")
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name)
    }

    pub async fn tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> StoreResult<Vec<ToolRecord>> {
        let query = Self::tools_query(tenant, connection);
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::tool,
        )
    }

    pub async fn tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
    ) -> StoreResult<ToolRecord> {
        let query = Self::tool_query(tenant, connection, name);
        parse::tool(&self.fetch_one(Scope::Tenant(tenant), query).await?)
    }

    /// Update one tool, record it, and return it as it now stands.
    async fn change_tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        change: PgQuery<'_>,
        draft: impl FnOnce(&ToolRecord) -> AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if change.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let tool = parse::tool(
            &Self::tool_query(tenant, connection, name)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        Self::append_in(&mut tx, draft(&tool), now).await?;
        tx.commit().await?;
        Ok(tool)
    }

    pub async fn classify_tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        effect: EffectClass,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        let change = sqlx::query("UPDATE tools SET effect = $1, effect_source = 'operator', updated_at = $2 WHERE tenant_id = $3 AND connection_id = $4 AND name = $5")
            .bind(effect.as_str())
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name);
        let draft = |_: &ToolRecord| {
            AuditDraft::new(tenant.clone(), actor, AuditKind::ToolClassified)
                .resource(format!("tool:{connection}/{name}"))
                .detail(serde_json::json!({ "effect": effect, "source": "operator" }))
        };
        self.change_tool(tenant, connection, name, change, draft, now)
            .await
    }

    pub async fn set_tool_profile(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        profile: &ToolProfile,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(ToolRecord, AuditEvent)> {
        let change = sqlx::query("UPDATE tools SET profile = $1, updated_at = $2 WHERE tenant_id = $3 AND connection_id = $4 AND name = $5")
            .bind(json(profile))
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name);
        let read = Self::tool_query(tenant, connection, name);
        self.change_and_read(tenant, change, read, parse::tool, draft, now)
            .await
    }

    pub async fn accept_tool_definition(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        let change = sqlx::query("UPDATE tools SET pinned_hash = current_hash, updated_at = $1 WHERE tenant_id = $2 AND connection_id = $3 AND name = $4")
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name);
        let draft = |tool: &ToolRecord| {
            AuditDraft::new(tenant.clone(), actor, AuditKind::ToolDefinitionAccepted)
                .resource(format!("tool:{connection}/{name}"))
                .detail(serde_json::json!({ "definition_hash": tool.pinned_hash }))
        };
        self.change_tool(tenant, connection, name, change, draft, now)
            .await
    }

    // ---- approvals

    async fn approval_in(
        tx: &mut Tx,
        tenant: &TenantId,
        id: &ApprovalId,
        lock: &str,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        let sql = format!(
            "{} WHERE a.tenant_id = $1 AND a.id = $2 {lock}",
            parse::APPROVAL_SELECT
        );
        let row = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
        parse::approval(&row, now)
    }

    pub async fn create_approval(
        &self,
        new: NewApproval,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        self.create_approval_with(new, ApprovalExtras::default(), audit, now)
            .await
    }

    pub async fn create_approval_with(
        &self,
        new: NewApproval,
        extras: ApprovalExtras,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        let mut tx = self.begin(Scope::Tenant(&new.tenant)).await?;
        let revert_of = new.revert_of.as_ref().map(ApprovalId::as_str);
        sqlx::query(crate::queries::SUPERSEDE_EXPIRED_LIVE)
            .bind(new.tenant.as_str())
            .bind(new.agent.as_str())
            .bind(&new.action_hash)
            .bind(revert_of)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // INVARIANT: one live request per action across replicas. A concurrent identical
        // insert waits on the unique index for the first transaction: if it commits, this
        // insert does nothing and the read below (a new snapshot at READ COMMITTED) finds it.
        let inserted = sqlx::query(crate::queries::INSERT_APPROVAL)
            .bind(new.id.as_str())
            .bind(new.tenant.as_str())
            .bind(new.agent.as_str())
            .bind(&new.session)
            .bind(new.action.connection.as_str())
            .bind(&new.action.tool)
            .bind(new.effect.as_str())
            .bind(json(&new.action))
            .bind(&new.action_hash)
            .bind(&new.summary)
            .bind(json(&new.reasons))
            .bind(now)
            .bind(new.expires_at)
            .bind(json(&extras.rules))
            .bind(json(&extras.evidence))
            .bind(extras.cost_cents)
            .bind(extras.before_state.as_ref().map(json))
            .bind(revert_of)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            let sql = format!(
                "{}{}",
                parse::APPROVAL_SELECT,
                crate::queries::LIVE_CONFLICT
            );
            let row = sqlx::query(&sql)
                .bind(new.tenant.as_str())
                .bind(new.agent.as_str())
                .bind(&new.action_hash)
                .bind(revert_of)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Conflict("the approval could not be stored".into()))?;
            let existing = parse::approval(&row, now)?;
            tx.commit().await?;
            return Ok(HoldOutcome::Joined(existing));
        }
        let approval = Self::approval_in(&mut tx, &new.tenant, &new.id, "", now).await?;
        let (approval, event) = Self::audited(tx, approval, audit, now).await?;
        Ok(HoldOutcome::Created(approval, event))
    }

    pub async fn live_approval_for(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        action_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<Approval>> {
        let sql = format!(
            "{}{}",
            parse::APPROVAL_SELECT,
            crate::queries::LIVE_FOR_ACTION
        );
        let query = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(action_hash)
            .bind(now);
        let row = self.fetch_optional(Scope::Tenant(tenant), query).await?;
        row.map(|r| parse::approval(&r, now)).transpose()
    }

    /// Spans tenants when `tenant` is `None` (unscoped admins).
    pub async fn find_approval(
        &self,
        tenant: Option<&TenantId>,
        id: &ApprovalId,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        let sql = format!(
            "{} WHERE ($1::text IS NULL OR a.tenant_id = $1) AND a.id = $2",
            parse::APPROVAL_SELECT
        );
        let query = sqlx::query(&sql)
            .bind(tenant.map(TenantId::as_str))
            .bind(id.as_str());
        parse::approval(&self.fetch_one(Scope::of(tenant), query).await?, now)
    }

    /// Spans tenants when the filter names none (unscoped admins).
    pub async fn list_approvals(&self, filter: &ApprovalFilter) -> StoreResult<Vec<Approval>> {
        let status_sql = parse::effective_status_condition(filter.status, "$3");
        let sql = format!(
            "{} WHERE ($1::text IS NULL OR a.tenant_id = $1) AND ({status_sql}) AND $3::bigint IS NOT NULL ORDER BY a.created_at DESC LIMIT $2",
            parse::APPROVAL_SELECT
        );
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let query = sqlx::query(&sql)
            .bind(filter.tenant.as_ref().map(TenantId::as_str))
            .bind(limit)
            .bind(filter.now);
        let rows = self
            .fetch_all(Scope::of(filter.tenant.as_ref()), query)
            .await?;
        parse::all(rows, |row| parse::approval(row, filter.now))
    }

    /// Close a pending approval.
    async fn decide_in(
        tx: &mut Tx,
        tenant: &TenantId,
        id: &ApprovalId,
        decision: &Decision,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_reason = $4, receipt = $5, batch = COALESCE($6, batch) \
             WHERE tenant_id = $7 AND id = $8 AND status = 'pending' AND superseded_at IS NULL",
        )
        .bind(decision.status)
        .bind(&decision.decided_by)
        .bind(now)
        .bind(&decision.reason)
        .bind(&decision.receipt)
        .bind(&decision.batch)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("approval is no longer pending".into()));
        }
        Ok(())
    }

    pub async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
        verdict: Verdict,
        approver: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // Locked until commit: two approvers deciding at once on two replicas take turns, and
        // the second sees the first's decision.
        let current = Self::approval_in(&mut tx, tenant, id, "FOR UPDATE OF a", now).await?;
        votes::require_pending(&current)?;
        let decision = Decision::from_verdict(verdict, approver);
        Self::decide_in(&mut tx, tenant, id, &decision, now).await?;
        let approval = Self::approval_in(&mut tx, tenant, id, "", now).await?;
        Self::audited(tx, approval, audit, now).await
    }

    fn votes_query<'q>(tenant: &'q TenantId, approval: &'q ApprovalId) -> PgQuery<'q> {
        sqlx::query(
            "SELECT * FROM approval_votes WHERE tenant_id = $1 AND approval_id = $2 ORDER BY created_at, voter",
        )
        .bind(tenant.as_str())
        .bind(approval.as_str())
    }

    pub async fn votes(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
    ) -> StoreResult<Vec<VoteRecord>> {
        let query = Self::votes_query(tenant, approval);
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::vote,
        )
    }

    async fn insert_vote_in(
        tx: &mut Tx,
        tenant: &TenantId,
        approval: &ApprovalId,
        voter: &str,
        vote: Vote,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO approval_votes (tenant_id, approval_id, voter, vote, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(tenant.as_str())
            .bind(approval.as_str())
            .bind(voter)
            .bind(vote.as_str())
            .bind(reason)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn cast_vote(
        &self,
        request: VoteRequest<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        let (tenant, id) = (request.tenant, request.approval);
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: the approval stays locked until commit, so votes on it from any replica
        // take turns and each sees every vote before it.
        let current = Self::approval_in(&mut tx, tenant, id, "FOR UPDATE OF a", now).await?;
        let votes = parse::all(
            Self::votes_query(tenant, id).fetch_all(&mut *tx).await?,
            parse::vote,
        )?;
        let decision = votes::plan_vote(&current, &votes, &request)?;
        let reason = request.reason.as_deref();
        Self::insert_vote_in(
            &mut tx,
            tenant,
            id,
            request.voter,
            request.vote,
            reason,
            now,
        )
        .await?;
        if let Some(decision) = decision {
            Self::decide_in(&mut tx, tenant, id, &decision, now).await?;
        }
        let approval = Self::approval_in(&mut tx, tenant, id, "", now).await?;
        Self::audited(tx, approval, draft, now).await
    }

    pub(crate) async fn approve_batch(
        &self,
        request: BatchRequest<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Vec<Approval>, AuditEvent)> {
        let tenant = request.tenant;
        // Sorted: concurrent batches lock their approvals in one order.
        let items = votes::distinct_items(request.items)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        for id in &items {
            let current = Self::approval_in(&mut tx, tenant, id, "FOR UPDATE OF a", now).await;
            let n_votes: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM approval_votes WHERE tenant_id = $1 AND approval_id = $2",
            )
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            votes::check_batch_item(id, current, n_votes)?;
        }
        let decision = votes::batch_decision(&request);
        for id in &items {
            Self::insert_vote_in(&mut tx, tenant, id, request.voter, Vote::Approve, None, now)
                .await?;
            Self::decide_in(&mut tx, tenant, id, &decision, now).await?;
        }
        let mut approvals = Vec::with_capacity(items.len());
        for id in request.items {
            approvals.push(Self::approval_in(&mut tx, tenant, id, "", now).await?);
        }
        Self::audited(tx, approvals, draft, now).await
    }

    pub async fn redeem_receipt(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        receipt: &ReceiptId,
        nonce: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: exactly once across processes. A concurrent insert of the same nonce
        // waits for the first transaction: if it commits, this one inserts nothing and stops
        // here; if it rolls back, this one proceeds. Nonces are never deleted.
        let inserted = sqlx::query("INSERT INTO receipt_nonces (nonce, tenant_id, receipt_id, consumed_at) VALUES ($1, $2, $3, $4) ON CONFLICT (nonce) DO NOTHING")
            .bind(nonce)
            .bind(tenant.as_str())
            .bind(receipt.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict("receipt already used".into()));
        }
        let done = sqlx::query(crate::queries::MARK_EXECUTED)
            .bind(tenant.as_str())
            .bind(approval.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("approval is not redeemable".into()));
        }
        let event = Self::append_in(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(event)
    }

    pub async fn record_outcome(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        outcome: ExecutionOutcome,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<Option<AuditEvent>> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let done = sqlx::query(crate::queries::RECORD_OUTCOME)
            .bind(tenant.as_str())
            .bind(approval.as_str())
            .bind(outcome.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let event = Self::append_in(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    /// Spans tenants: the sweep that reports crashed executions looks at every tenant.
    pub async fn unfinished_executions(
        &self,
        redeemed_before: UnixMillis,
        limit: i64,
        now: UnixMillis,
    ) -> StoreResult<Vec<Approval>> {
        let sql = format!(
            "{}{}",
            parse::APPROVAL_SELECT,
            crate::queries::UNFINISHED_EXECUTIONS
        );
        let query = sqlx::query(&sql).bind(redeemed_before).bind(limit);
        parse::all(self.fetch_all(Scope::AllTenants, query).await?, |row| {
            parse::approval(row, now)
        })
    }

    // ---- policies

    fn current_policy_query(tenant: &TenantId) -> PgQuery<'_> {
        sqlx::query(
            "SELECT * FROM policy_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant.as_str())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_policy(
        &self,
        tenant: &TenantId,
        cedar: &str,
        settings: &serde_json::Value,
        hash: &str,
        created_by: &str,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(PolicyVersion, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: puts for one tenant take turns on its row (NO KEY UPDATE: inserts that
        // merely reference the tenant are not blocked), and the next statement's snapshot
        // starts after the lock, so it sees the previous put's version.
        let locked: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        locked.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO policy_versions (tenant_id, version, cedar, settings, hash, created_by, created_at) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 FROM policy_versions WHERE tenant_id = $1",
        )
        .bind(tenant.as_str())
        .bind(cedar)
        .bind(json(settings))
        .bind(hash)
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let version = parse::policy_version(
            &Self::current_policy_query(tenant)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        Self::audited(tx, version, draft, now).await
    }

    pub async fn current_policy(&self, tenant: &TenantId) -> StoreResult<Option<PolicyVersion>> {
        let query = Self::current_policy_query(tenant);
        let row = self.fetch_optional(Scope::Tenant(tenant), query).await?;
        row.map(|r| parse::policy_version(&r)).transpose()
    }

    pub async fn policy_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PolicyVersion>> {
        let query =
            sqlx::query("SELECT * FROM policy_versions WHERE tenant_id = $1 ORDER BY version DESC")
                .bind(tenant.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::policy_version,
        )
    }

    // ---- guardrails

    fn guardrail_query<'q>(tenant: &'q TenantId, id: &'q GuardrailId) -> PgQuery<'q> {
        sqlx::query("SELECT * FROM guardrails WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_guardrail(
        &self,
        tenant: &TenantId,
        name: &str,
        spec: &GuardrailSpec,
        mode: GuardrailMode,
        created_by: &str,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let id = GuardrailId::generate();
        // No tenant row: nothing inserted, not found.
        let change = sqlx::query(
            "INSERT INTO guardrails (id, tenant_id, name, spec, mode, created_by, created_at, updated_at) \
             SELECT $1, id, $3, $4, $5, $6, $7, $7 FROM tenants WHERE id = $2",
        )
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(name)
        .bind(json(spec))
        .bind(mode.as_str())
        .bind(created_by)
        .bind(now);
        let read = Self::guardrail_query(tenant, &id);
        self.change_and_read(tenant, change, read, parse::guardrail, draft, now)
            .await
    }

    /// One change to an active guardrail, read back and audited.
    async fn change_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        change: PgQuery<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let read = Self::guardrail_query(tenant, id);
        self.change_and_read(tenant, change, read, parse::guardrail, draft, now)
            .await
    }

    pub async fn set_guardrail_mode(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        mode: GuardrailMode,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let change = sqlx::query("UPDATE guardrails SET mode = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL")
            .bind(mode.as_str())
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    pub async fn set_guardrail_spec(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        spec: &GuardrailSpec,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let change = sqlx::query("UPDATE guardrails SET spec = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL")
            .bind(json(spec))
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    pub async fn revoke_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let change = sqlx::query("UPDATE guardrails SET revoked_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    pub async fn guardrails(&self, tenant: &TenantId) -> StoreResult<Vec<Guardrail>> {
        let query = sqlx::query(
            "SELECT * FROM guardrails WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, name",
        )
        .bind(tenant.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::guardrail,
        )
    }

    pub async fn guardrail(&self, tenant: &TenantId, id: &GuardrailId) -> StoreResult<Guardrail> {
        let query = Self::guardrail_query(tenant, id);
        parse::guardrail(&self.fetch_one(Scope::Tenant(tenant), query).await?)
    }

    // ---- spend ledger

    pub async fn charge(
        &self,
        charge: &Charge,
        limit: Option<&ChargeLimit>,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let tenant = charge.tenant.as_str();
        let mut tx = self.begin(Scope::Tenant(&charge.tenant)).await?;
        if let Some(guardrail) = &charge.guardrail {
            // INVARIANT: charges against one guardrail take turns on its row until commit,
            // from any replica, so the budget counted below (by a statement whose snapshot
            // starts after the lock) is still the budget when this charge commits. NO KEY
            // UPDATE: the ledger's foreign key only needs KEY SHARE, so unlimited charges
            // are not blocked.
            let active: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM guardrails WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL FOR NO KEY UPDATE",
            )
            .bind(tenant)
            .bind(guardrail.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            active.ok_or(StoreError::NotFound)?;
            if let Some(limit) = limit {
                let (count, cents): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(SUM(cost_cents), 0)::bigint FROM ledger WHERE tenant_id = $1 AND guardrail_id = $2 AND time >= $3",
                )
                .bind(tenant)
                .bind(guardrail.as_str())
                .bind(limit.since)
                .fetch_one(&mut *tx)
                .await?;
                if !limit.admits(count, cents, charge.cost_cents) {
                    return Ok(false);
                }
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (tenant_id, time, agent_id, guardrail_id, approval_id, connection_id, tool, cost_cents, action_hash) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
             WHERE EXISTS (SELECT 1 FROM agents WHERE tenant_id = $1 AND id = $3) \
             AND EXISTS (SELECT 1 FROM connections WHERE tenant_id = $1 AND id = $6) \
             AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM approvals WHERE tenant_id = $1 AND id = $5))",
        )
        .bind(tenant)
        .bind(now)
        .bind(charge.agent.as_str())
        .bind(charge.guardrail.as_ref().map(GuardrailId::as_str))
        .bind(charge.approval.as_ref().map(ApprovalId::as_str))
        .bind(charge.connection.as_str())
        .bind(&charge.tool)
        .bind(charge.cost_cents)
        .bind(&charge.action_hash)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn spend_since(
        &self,
        tenant: &TenantId,
        since: UnixMillis,
        agent: Option<&AgentId>,
        guardrail: Option<&GuardrailId>,
    ) -> StoreResult<(i64, i64)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let spent = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(cost_cents), 0)::bigint FROM ledger WHERE tenant_id = $1 AND time >= $2 \
             AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR guardrail_id = $4)",
        )
        .bind(tenant.as_str())
        .bind(since)
        .bind(agent.map(AgentId::as_str))
        .bind(guardrail.map(GuardrailId::as_str))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(spent)
    }

    pub async fn ledger_entries(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let query = sqlx::query(
            "SELECT * FROM ledger WHERE tenant_id = $1 AND time >= $2 AND time < $3 ORDER BY id",
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to);
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::ledger_entry,
        )
    }

    // ---- audit

    pub async fn session_calls(
        &self,
        tenant: &TenantId,
        session: Option<&str>,
        actor: &str,
        since: UnixMillis,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let query = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant_id = $1 AND kind = $2 AND decision = 'allow' \
             AND (session = $3 OR (actor = $4 AND time >= $5)) ORDER BY seq DESC LIMIT $6",
        )
        .bind(tenant.as_str())
        .bind(AuditKind::ToolCall.as_str())
        .bind(session)
        .bind(actor)
        .bind(since)
        .bind(self::limit(limit));
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::audit_event,
        )
    }

    pub async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let query = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(self::limit(limit));
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::audit_event,
        )
    }

    /// Spans tenants when the filter names none.
    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        after: Option<(TenantId, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (after_tenant, after_seq) =
            after.map_or((String::new(), 0), |(t, s)| (t.to_string(), s));
        let query = sqlx::query(
            "SELECT * FROM audit_events WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::bigint IS NULL OR time >= $2) AND ($3::bigint IS NULL OR time < $3) \
             AND ($4::text IS NULL OR actor = $4) AND ($5::text IS NULL OR kind = $5) AND (tenant_id, seq) > ($6, $7) \
             ORDER BY tenant_id, seq LIMIT $8",
        )
        .bind(filter.tenant.as_ref().map(TenantId::as_str))
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.actor)
        .bind(&filter.kind)
        .bind(after_tenant)
        .bind(after_seq)
        .bind(self::limit(limit));
        parse::all(
            self.fetch_all(Scope::of(filter.tenant.as_ref()), query)
                .await?,
            parse::audit_event,
        )
    }

    /// Spans tenants. A chain has a head row exactly when it has events (both are written in
    /// one transaction), and the heads are one row per chain instead of a scan of every event.
    pub async fn audit_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT tenant_id FROM audit_heads WHERE seq > 0 ORDER BY tenant_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(parse_id).collect()
    }

    pub async fn audit_head(&self, tenant: &TenantId) -> StoreResult<(i64, String)> {
        let query = sqlx::query(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant.as_str());
        let head = self.fetch_optional(Scope::Tenant(tenant), query).await?;
        Ok(head.map_or((0, GENESIS_HASH.to_owned()), |row| {
            use sqlx::Row;
            (row.get("seq"), row.get("hash"))
        }))
    }

    pub async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        let b = &checkpoint.body;
        let mut tx = self.begin(Scope::Tenant(&b.tenant)).await?;
        sqlx::query("INSERT INTO audit_checkpoints (tenant_id, size, head_hash, time, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(b.tenant.as_str())
            .bind(b.size)
            .bind(&b.head_hash)
            .bind(b.time)
            .bind(&checkpoint.signature)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn checkpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Checkpoint>> {
        let query =
            sqlx::query("SELECT * FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY size")
                .bind(tenant.as_str());
        parse::all(
            self.fetch_all(Scope::Tenant(tenant), query).await?,
            parse::checkpoint,
        )
    }
}
