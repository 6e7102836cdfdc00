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

use crate::sql::Scope;
use crate::*;
use portcullis_core::audit::GENESIS_HASH;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection as _, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The chain heads this process last wrote (a hint; see [`append_in`]).
    pub(crate) heads: std::sync::Arc<Heads>,
    pub(crate) appends: crate::group_commit::GroupCommit,
    /// Lockout and rate-limit counters: their own small pool whose commits do not wait for
    /// the WAL flush (`synchronous_commit = off`). A crash may forget the last milliseconds
    /// of counting; it cannot lose an audit event, which never goes through this pool.
    counters: PgPool,
    pub(crate) append_hook: crate::AppendHook,
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
        let heads = std::sync::Arc::new(Heads::default());
        let writer_heads = heads.clone();
        let appends = crate::group_commit::GroupCommit::spawn(move |drafts| {
            Self::commit_group(writer.clone(), writer_heads.clone(), drafts)
        });
        Ok(Self {
            pool,
            heads,
            appends,
            append_hook: crate::AppendHook::default(),
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

    /// Take up to `want` tokens from a token's shared bucket in one atomic statement: as many
    /// whole tokens as it holds, at most `want`. None: refused, the first refusal of an episode
    /// marked (the one to audit).
    pub async fn take_rate_tokens(
        &self,
        token: &str,
        now: UnixMillis,
        rule: &crate::RateRule,
        want: u32,
    ) -> StoreResult<crate::RateLease> {
        // `available` is the bucket refilled to `now`, capped at the burst.
        let (granted, first_refusal, tokens): (f64, bool, f64) = sqlx::query_as(
            "WITH prev AS (SELECT limited FROM rate_buckets WHERE token_id = $1) \
             INSERT INTO rate_buckets AS b (token_id, tokens, updated_at, limited, allowed, granted) \
               VALUES ($1, $4 - LEAST($5, FLOOR($4)), $2, $4 < 1, $4 >= 1, LEAST($5, FLOOR($4))) \
             ON CONFLICT (token_id) DO UPDATE SET \
               granted = LEAST($5, FLOOR(LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3))), \
               tokens = LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) \
                        - LEAST($5, FLOOR(LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3))), \
               allowed = LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) >= 1, \
               limited = LEAST($4, b.tokens + GREATEST($2 - b.updated_at, 0) * $3) < 1, \
               updated_at = GREATEST($2, b.updated_at) \
             RETURNING granted, (NOT allowed AND NOT COALESCE((SELECT limited FROM prev), false)), tokens",
        )
        .bind(token)
        .bind(now)
        .bind(rule.per_ms)
        .bind(rule.burst)
        .bind(f64::from(want.max(1)))
        .fetch_one(&self.counters)
        .await?;
        Ok(if granted >= 1.0 {
            crate::RateLease::Granted(granted as u32)
        } else {
            crate::RateLease::Limited {
                retry_after_ms: ((1.0 - tokens) / rule.per_ms).ceil() as i64,
                first_refusal,
            }
        })
    }

    /// A transaction whose rows row-level security limits to `scope`. The setting is
    /// transaction-local: it ends with the transaction, so a pooled connection never carries
    /// one request's tenant into the next.
    pub(crate) async fn begin(&self, scope: Scope<'_>) -> StoreResult<Tx> {
        begin_scoped(&self.pool, scope).await
    }

    /// Append a group in one transaction. Chains are locked in tenant order (and each other
    /// transaction locks at most one head), so concurrent groups on several replicas cannot
    /// deadlock; each tenant's drafts keep their order.
    async fn commit_group(
        pool: PgPool,
        heads: std::sync::Arc<Heads>,
        drafts: Vec<(AuditDraft, UnixMillis)>,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut order: Vec<usize> = (0..drafts.len()).collect();
        order.sort_by(|a, b| drafts[*a].0.tenant.cmp(&drafts[*b].0.tenant));
        let Some(first) = order.first().map(|i| drafts[*i].0.tenant.clone()) else {
            return Ok(Vec::new());
        };
        let mut tx = begin_scoped(&pool, Scope::Tenant(&first)).await?;
        let mut events: Vec<Option<AuditEvent>> = vec![None; drafts.len()];
        let mut scoped: Option<TenantId> = Some(first);
        for index in order {
            let (draft, now) = drafts[index].clone();
            if scoped.as_ref() != Some(&draft.tenant) {
                sqlx::query("SELECT set_config('portcullis.tenant', $1, true)")
                    .bind(draft.tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
                scoped = Some(draft.tenant.clone());
            }
            events[index] = Some(append_in(&mut tx, &heads, draft, now).await?);
        }
        tx.commit().await?;
        Ok(events
            .into_iter()
            .map(|e| e.expect("every draft appended"))
            .collect())
    }
}

/// A transaction whose rows row-level security limits to `scope`. The setting is
/// transaction-local: it ends with the transaction, so a pooled connection never carries one
/// request's tenant into the next.
async fn begin_scoped(pool: &PgPool, scope: Scope<'_>) -> StoreResult<Tx> {
    let (setting, value) = match scope {
        Scope::Tenant(tenant) => ("portcullis.tenant", tenant.as_str()),
        Scope::AllTenants => ("portcullis.all_tenants", "on"),
    };
    // One round trip: `BEGIN` and the setting travel as one simple query. The value is a typed
    // id or `on` (letters, digits, `_`), so it can be written into the statement; anything
    // else takes the bound-parameter path below.
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Ok(pool
            .begin_with(format!(
                "BEGIN; SELECT set_config('{setting}', '{value}', true)"
            ))
            .await?);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(setting)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Append to the chain inside the caller's transaction, whose scope must admit the draft's
/// tenant.
///
/// One round trip when `heads` knows the chain's head: the event's insert and the head's
/// update are one statement that only writes when the head is still the one remembered. Else
/// (first append of this process, or another replica or transaction appended since) the head
/// row is created if missing and locked in one upsert, and the same statement follows.
pub(crate) async fn append_in(
    tx: &mut Tx,
    heads: &Heads,
    draft: AuditDraft,
    now: UnixMillis,
) -> StoreResult<AuditEvent> {
    let tenant = draft.tenant.clone();
    if let Some((seq, prev)) = heads.get(&tenant) {
        let event = draft.clone().seal(seq + 1, now, &prev);
        if insert_after(tx, &event).await? {
            heads.remember(&tenant, event.seq, &event.hash);
            return Ok(event);
        }
    }
    // INVARIANT: the head row stays locked until the transaction ends, so appends to one
    // chain from any number of processes take turns and each builds on the last.
    let (seq, prev): (i64, String) = sqlx::query_as(
        "INSERT INTO audit_heads AS h (tenant_id, seq, hash) VALUES ($1, 0, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET seq = h.seq RETURNING seq, hash",
    )
    .bind(tenant.as_str())
    .bind(GENESIS_HASH)
    .fetch_one(&mut **tx)
    .await?;
    let event = draft.seal(seq + 1, now, &prev);
    if !insert_after(tx, &event).await? {
        // Cannot happen while the head row is locked; refuse rather than fork the chain.
        heads.forget(&tenant);
        return Err(StoreError::Conflict(crate::Conflict::ChainMoved));
    }
    heads.remember(&tenant, event.seq, &event.hash);
    Ok(event)
}

/// Insert `event` and move its chain's head to it, only if the head is the event's
/// predecessor. `false`: the head is elsewhere, and nothing was written.
async fn insert_after(tx: &mut Tx, event: &AuditEvent) -> StoreResult<bool> {
    let written = crate::sql::insert_event_after_head(event)
        .postgres()
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(written == 1)
}

/// The chain heads this process last wrote, per tenant: a hint that saves the locking read.
/// A stale hint costs one statement that writes nothing; it is never trusted without the
/// database agreeing. Entries written in a transaction that rolls back are stale too.
#[derive(Default)]
pub(crate) struct Heads(std::sync::Mutex<std::collections::HashMap<TenantId, (i64, String)>>);

/// Tenants whose heads are remembered at most (a full table starts over).
const MAX_HEADS: usize = 4096;

impl Heads {
    fn get(&self, tenant: &TenantId) -> Option<(i64, String)> {
        self.0.lock().expect("lock poisoned").get(tenant).cloned()
    }

    fn remember(&self, tenant: &TenantId, seq: i64, hash: &str) {
        let mut map = self.0.lock().expect("lock poisoned");
        if map.len() >= MAX_HEADS && !map.contains_key(tenant) {
            map.clear();
        }
        map.insert(tenant.clone(), (seq, hash.to_owned()));
    }

    fn forget(&self, tenant: &TenantId) {
        self.0.lock().expect("lock poisoned").remove(tenant);
    }
}
