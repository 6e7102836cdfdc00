//! Portcullis persistence: one [`Store`] over the embedded SQLite backend or PostgreSQL (for
//! several replicas), chosen by the database URL.
//!
//! INVARIANT: every multi-row invariant lives inside one store method and one transaction: a
//! mutation and the audit event that records it commit together, or neither does. Callers
//! never hold a transaction. Every tenant-owned query filters by tenant, so an id from another
//! tenant is simply "not found"; on PostgreSQL, row-level security enforces the same again in
//! the database.

mod accounts;
mod approvals;
mod audit;
mod connections;
mod group_commit;
mod models;
mod postgres;
mod principals;
mod pseudonyms;
mod records;
mod review;
mod rows;
mod secrets;
mod shares;
mod sql;
mod sqlite;
mod sqlite_writer;
mod trust;
mod tx;
mod votes;
mod webhooks;

pub use accounts::{ConsoleSession, SignIn};
pub use models::{ModelRouteRecord, ModelUsage, ModelUsageTotal};
pub use postgres::{AccessChanges, PgStore};
pub use pseudonyms::{MapKey, SealedMap};
pub use records::*;
pub use review::{AccessFacts, ReviewedAgent, ReviewedConnection, ReviewedGrant};
pub use secrets::{NewSecretVersion, Rewrapped, SealedBlobs, SealedSecret, SecretMeta, TenantKey};
pub use shares::ShareLink;
pub use sqlite::SqliteStore;
pub use webhooks::{
    AttemptRecord, AttemptResult, ClaimedDelivery, Delivery, DeliveryAttempt, DeliveryState,
    InboundEvent, InboundScheme, InboundSource, NewMessage, WebhookEndpoint,
};

use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent, Checkpoint};
use portcullis_core::id::*;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(Conflict),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(
        "unsupported database url scheme `{0}` (expected sqlite://…, postgres://… or postgresql://…)"
    )]
    UnsupportedUrl(String),
    #[error("the database schema is newer than this binary")]
    SchemaTooNew,
    #[error("the database schema is behind this binary: run `portcullis migrate`")]
    SchemaBehind,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error")]
    Backend(#[source] sqlx::Error),
}

/// Why a change was refused: the state it needs is not the state the store holds. Callers
/// match on the variant, never on the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A unique key (a name, a hash) is taken.
    #[error("already exists")]
    AlreadyExists,
    /// The receipt's nonce was consumed before.
    #[error("receipt already used")]
    ReceiptUsed,
    /// The approval is not approved and live (executed, superseded, its connection revoked).
    #[error("approval is not redeemable")]
    NotRedeemable,
    /// The approval cannot be decided or voted on in its current state.
    #[error("approval is {}", .0.as_str())]
    Status(ApprovalStatus),
    /// Decided (or superseded) by someone else since it was read.
    #[error("approval is no longer pending")]
    NoLongerPending,
    /// Votes landed since the voter read them: read again and retry.
    #[error("votes changed")]
    VotesChanged,
    #[error("already voted")]
    AlreadyVoted,
    /// One item of a batch cannot join it (named in the message).
    #[error("{0}")]
    BatchItem(String),
    #[error("this is the last unscoped admin; create another before revoking it")]
    LastRootAdmin,
    /// The audit chain's head moved under a held lock (never expected; the append is refused
    /// rather than forking the chain).
    #[error("the audit chain moved during an append")]
    ChainMoved,
    /// The tenant key or the secret changed since it was read (a rotation or another
    /// version): read again and retry.
    #[error("the vault changed during the update")]
    VaultChanged,
    /// The webhook endpoint is disabled: enable it first.
    #[error("the webhook endpoint is disabled; enable it first")]
    EndpointDisabled,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error.to_string())
            }
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                Self::Conflict(Conflict::AlreadyExists)
            }
            sqlx::Error::Database(ref db) if postgres::is_connection_problem(&**db) => {
                Self::Unavailable(error.to_string())
            }
            other => Self::Backend(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A migration error as a store error: a database that has migrations this binary does not
/// know is newer than the binary; anything else means the migration could not run.
pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(_) => StoreError::SchemaTooNew,
        other => StoreError::Unavailable(format!("migrations failed: {other}")),
    }
}

/// When repeated authentication failures lock an address out.
#[derive(Debug, Clone, Copy)]
pub struct LockoutRule {
    pub threshold: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
}

/// A token bucket: `burst` requests at once, refilled at `per_ms` requests per millisecond.
#[derive(Debug, Clone, Copy)]
pub struct RateRule {
    pub per_ms: f64,
    pub burst: f64,
}

/// The answer of the shared rate limiter to a request for several tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLease {
    /// This many tokens (at least one) were taken from the bucket.
    Granted(u32),
    /// Refused; `first_refusal` marks the first refusal of an episode (the one to audit).
    Limited {
        retry_after_ms: i64,
        first_refusal: bool,
    },
}

/// The per-request facts shared through the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCheck {
    /// 0 or a past time: not locked out.
    pub locked_until: UnixMillis,
    pub access_generation: i64,
}

/// Counters shared by all replicas through the database.
pub struct SharedCounters<'a>(&'a PgStore);

impl SharedCounters<'_> {
    /// What every request checks first, in one query: until when `ip` is locked out, and the
    /// access generation (bumped by every committed change to agents, tokens, connections,
    /// grants or tools on any replica).
    pub async fn request_check(&self, ip: &str) -> StoreResult<RequestCheck> {
        self.0.request_check(ip).await
    }

    /// Count one failed authentication; `true` when this failure starts a lockout.
    pub async fn record_auth_failure(
        &self,
        ip: &str,
        now: UnixMillis,
        rule: &LockoutRule,
    ) -> StoreResult<bool> {
        self.0.record_auth_failure(ip, now, rule).await
    }

    /// Take up to `want` requests from a token's bucket at once (a lease the caller spends
    /// from memory); at least one, or refused.
    pub async fn take_rate_tokens(
        &self,
        token: &TokenId,
        now: UnixMillis,
        rule: &RateRule,
        want: u32,
    ) -> StoreResult<RateLease> {
        self.0
            .take_rate_tokens(token.as_str(), now, rule, want)
            .await
    }
}

/// Pool and durability settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite: connections for reads (writes always go through one connection).
    pub max_read_connections: u32,
    /// PostgreSQL: the size of the connection pool, per process.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_read_connections: 8,
            max_connections: 16,
        }
    }
}

/// Bring the schema at `admin_url` up to this binary's migrations; idempotent, and safe to
/// run from several processes at once.
///
/// On PostgreSQL this connects as the schema owner (`Store::open` never migrates there: the
/// gateway runs as the unprivileged `portcullis_app`, which the first migration creates). On
/// SQLite it creates the file if needed, as `Store::open` does anyway.
pub async fn migrate(admin_url: &str) -> StoreResult<()> {
    if postgres::is_postgres_url(admin_url) {
        PgStore::migrate(admin_url).await
    } else if admin_url.starts_with("sqlite:") {
        SqliteStore::open(admin_url, &StoreOptions::default())
            .await
            .map(drop)
    } else {
        Err(unsupported_url(admin_url))
    }
}

/// Names only the scheme: the rest of a database URL may hold a password.
fn unsupported_url(url: &str) -> StoreError {
    StoreError::UnsupportedUrl(
        url.split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take(16)
            .collect(),
    )
}

/// Where [`Store::append_audit`] reports each appended event's tenant (see
/// [`Store::on_append`]).
pub(crate) type AppendHook =
    std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<TenantId>>>;

/// The store. An enum, not a trait: there are exactly two backends. Each query is written
/// once (`principals`, `connections`, `approvals`, `trust`, `audit`) and runs on either
/// through [`tx::Tx`]; only what truly differs — opening, transaction start and tenant
/// scoping, chain-head locking, shared counters, the change feed — lives in `sqlite` and
/// `postgres`.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Open the database named by `url`.
    ///
    /// SQLite (`sqlite://…`): created if needed and migrated. PostgreSQL (`postgres://…` or
    /// `postgresql://…`): never migrated here; refused with [`StoreError::SchemaBehind`] or
    /// [`StoreError::SchemaTooNew`] unless its schema is exactly this binary's, and refused if
    /// the role it connects as bypasses row-level security.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        if postgres::is_postgres_url(url) {
            Ok(Self::Postgres(PgStore::open(url, options).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::open(url, options).await?))
        } else {
            Err(unsupported_url(url))
        }
    }

    pub async fn health(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.health().await,
            Store::Postgres(s) => s.health().await,
        }
    }

    /// Whether other processes may change this store (several replicas on PostgreSQL): their
    /// changes arrive through [`Store::access_changes`], not through this process.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Lockout and rate-limit counters shared by every replica (PostgreSQL). `None` for
    /// SQLite: its one process keeps them in memory.
    pub fn shared_counters(&self) -> Option<SharedCounters<'_>> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(s) => Some(SharedCounters(s)),
        }
    }

    /// A feed of committed access changes from every replica; `None` for SQLite, whose only
    /// writer is this process.
    pub async fn access_changes(&self) -> StoreResult<Option<AccessChanges>> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(s) => s.access_changes().await.map(Some),
        }
    }
}
