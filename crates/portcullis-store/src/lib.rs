//! Portcullis persistence: one [`Store`] over the embedded SQLite backend or PostgreSQL (for
//! several replicas), chosen by the database URL.
//!
//! INVARIANT: every multi-row invariant lives inside one store method and one transaction: a
//! mutation and the audit event that records it commit together, or neither does. Callers
//! never hold a transaction. Every tenant-owned query filters by tenant, so an id from another
//! tenant is simply "not found"; on PostgreSQL, row-level security enforces the same again in
//! the database.

mod group_commit;
mod postgres;
mod queries;
mod records;
mod rows;
mod sqlite;
mod votes;

pub use postgres::{AccessChanges, PgStore};
pub use records::*;
pub use sqlite::SqliteStore;

use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent, Checkpoint};
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};
use portcullis_core::id::*;
use portcullis_core::profile::ToolProfile;
use portcullis_core::receipt::SignedReceipt;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
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

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error.to_string())
            }
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                Self::Conflict("already exists".into())
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

/// The answer of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    Allowed,
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

    /// Take one request from a token's bucket.
    pub async fn take_rate_token(
        &self,
        token: &TokenId,
        now: UnixMillis,
        rule: &RateRule,
    ) -> StoreResult<RateDecision> {
        self.0.take_rate_token(token.as_str(), now, rule).await
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

/// The store. An enum, not a trait: there are exactly two backends and a missing method
/// must be a compile error.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            Store::Sqlite($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
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
        dispatch!(self, s => s.health().await)
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

    // ---- tenants and principals

    pub async fn create_tenant(
        &self,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Tenant> {
        dispatch!(self, s => s.create_tenant(name, actor, now).await)
    }
    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Tenant> {
        dispatch!(self, s => s.tenant_by_name(name).await)
    }
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Tenant> {
        dispatch!(self, s => s.tenant(id).await)
    }
    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        dispatch!(self, s => s.list_tenants().await)
    }
    pub async fn create_admin(
        &self,
        new: NewAdmin<'_>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Admin> {
        dispatch!(self, s => s.create_admin(new, actor, now).await)
    }
    pub async fn admin_by_token_hash(&self, hash: &str) -> StoreResult<Admin> {
        dispatch!(self, s => s.admin_by_token_hash(hash).await)
    }
    /// Humans of one tenant, or (`None`) of every tenant and the unscoped ones.
    pub async fn list_admins(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<Admin>> {
        dispatch!(self, s => s.list_admins(tenant).await)
    }
    pub async fn admin_by_name(&self, name: &str) -> StoreResult<Admin> {
        dispatch!(self, s => s.admin_by_name(name).await)
    }
    /// Revoke a human's credential (refused on their next request), with its audit event.
    /// The last usable unscoped admin cannot be revoked (a conflict).
    pub async fn revoke_admin(
        &self,
        id: &AdminId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        dispatch!(self, s => s.revoke_admin(id, draft, now).await)
    }
    /// Replace a human's token (the old one stops working at once) and set its expiry.
    pub async fn rotate_admin(
        &self,
        id: &AdminId,
        token_hash: &str,
        expires_at: Option<UnixMillis>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        dispatch!(self, s => s.rotate_admin(id, token_hash, expires_at, draft, now).await)
    }
    /// Set (or clear) when a human's credential expires.
    pub async fn set_admin_expiry(
        &self,
        id: &AdminId,
        expires_at: Option<UnixMillis>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        dispatch!(self, s => s.set_admin_expiry(id, expires_at, draft, now).await)
    }
    pub async fn count_admins(&self) -> StoreResult<i64> {
        dispatch!(self, s => s.count_admins().await)
    }
    pub async fn create_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Agent> {
        dispatch!(self, s => s.create_agent(tenant, name, actor, now).await)
    }
    pub async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<Agent>> {
        dispatch!(self, s => s.list_agents(tenant).await)
    }
    pub async fn revoke_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.revoke_agent(tenant, agent, actor, now).await)
    }
    pub async fn create_token(
        &self,
        new: NewToken<'_>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<AgentToken> {
        dispatch!(self, s => s.create_token(new, actor, now).await)
    }
    pub async fn revoke_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.revoke_token(tenant, token, actor, now).await)
    }
    /// Look up an agent token by its hash. Revocation and expiry are reported, not filtered,
    /// so the caller can audit why it refused.
    pub async fn agent_token_by_hash(&self, hash: &str) -> StoreResult<AgentAuth> {
        dispatch!(self, s => s.agent_token_by_hash(hash).await)
    }
    /// Turn a tenant's kill switch on or off, with its audit event. Suspending a suspended
    /// tenant keeps the original time.
    pub async fn set_tenant_suspended(
        &self,
        tenant: &TenantId,
        suspended: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Tenant, AuditEvent)> {
        dispatch!(self, s => s.set_tenant_suspended(tenant, suspended, draft, now).await)
    }
    /// Turn an agent's kill switch on or off, with its audit event. Suspending a suspended
    /// agent keeps the original time.
    pub async fn set_agent_suspended(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        suspended: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Agent, AuditEvent)> {
        dispatch!(self, s => s.set_agent_suspended(tenant, agent, suspended, draft, now).await)
    }
    /// Set (or clear) the human an agent acts for, with its audit event.
    pub async fn set_agent_owner(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        owner: Option<&str>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Agent, AuditEvent)> {
        dispatch!(self, s => s.set_agent_owner(tenant, agent, owner, draft, now).await)
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
        dispatch!(self, s => s.create_connection(tenant, name, transport, actor, now).await)
    }
    pub async fn revoke_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.revoke_connection(tenant, id, actor, now).await)
    }
    pub async fn connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<Connection> {
        dispatch!(self, s => s.connection(tenant, id).await)
    }
    pub async fn list_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        dispatch!(self, s => s.list_connections(tenant).await)
    }
    /// Every active connection of every tenant (for the supervisor at start-up).
    pub async fn all_active_connections(&self) -> StoreResult<Vec<Connection>> {
        dispatch!(self, s => s.all_active_connections().await)
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
        dispatch!(self, s => s.grant(tenant, agent, connection, tool, actor, now).await)
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
        dispatch!(self, s => s.revoke_grant(tenant, agent, connection, tool, actor, now).await)
    }
    pub async fn grants_for_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> StoreResult<Vec<Grant>> {
        dispatch!(self, s => s.grants_for_agent(tenant, agent).await)
    }
    /// Record what an upstream serves now. New tools are pinned and classified from their
    /// annotations; a changed definition is recorded (and audited) but not accepted.
    pub async fn sync_tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        discovered: &[DiscoveredTool],
        now: UnixMillis,
    ) -> StoreResult<Vec<ToolRecord>> {
        dispatch!(self, s => s.sync_tools(tenant, connection, discovered, now).await)
    }
    pub async fn tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> StoreResult<Vec<ToolRecord>> {
        dispatch!(self, s => s.tools(tenant, connection).await)
    }
    pub async fn tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
    ) -> StoreResult<ToolRecord> {
        dispatch!(self, s => s.tool(tenant, connection, name).await)
    }
    pub async fn classify_tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        effect: portcullis_core::effect::EffectClass,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        dispatch!(self, s => s.classify_tool(tenant, connection, name, effect, actor, now).await)
    }
    /// Replace what an operator declared about a tool, with its audit event. `sync_tools`
    /// never changes a profile.
    pub async fn set_tool_profile(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        tool: &str,
        profile: &ToolProfile,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(ToolRecord, AuditEvent)> {
        dispatch!(self, s => s.set_tool_profile(tenant, connection, tool, profile, draft, now).await)
    }
    pub async fn accept_tool_definition(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        dispatch!(self, s => s.accept_tool_definition(tenant, connection, name, actor, now).await)
    }

    // ---- approvals

    /// Store a held action as a pending approval, together with its `hold` audit event.
    pub async fn create_approval(
        &self,
        new: NewApproval,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        dispatch!(self, s => s.create_approval(new, audit, now).await)
    }
    /// [`Store::create_approval`] with what the hold found beyond the action: the rules in
    /// force, the evidence, the declared cost and the target's state before the call.
    ///
    /// INVARIANT (enforced by unique indexes): at most one pending-or-approved request per
    /// (tenant, agent, action hash), and at most one live or executed revert per original.
    /// When one exists, nothing is written and it is returned as [`HoldOutcome::Joined`];
    /// an expired one is superseded first, so it never blocks a new request.
    pub async fn create_approval_with(
        &self,
        new: NewApproval,
        extras: ApprovalExtras,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        dispatch!(self, s => s.create_approval_with(new, extras, audit, now).await)
    }
    /// The request that decides an identical call by this agent now: approved first (a retry
    /// executes it), then pending, then an unexpired denial (a denial stands until its request
    /// would have expired, so an agent cannot wear approvers down by repeating a call).
    pub async fn live_approval_for(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        action_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<Approval>> {
        dispatch!(self, s => s.live_approval_for(tenant, agent, action_hash, now).await)
    }
    /// One approval by id, within `tenant` (or any tenant when `None`, for unscoped admins).
    pub async fn find_approval(
        &self,
        tenant: Option<&TenantId>,
        id: &ApprovalId,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        dispatch!(self, s => s.find_approval(tenant, id, now).await)
    }
    pub async fn list_approvals(&self, filter: &ApprovalFilter) -> StoreResult<Vec<Approval>> {
        dispatch!(self, s => s.list_approvals(filter).await)
    }
    /// Approve (with a signed receipt) or deny a pending, unexpired approval, with its audit
    /// event. A second decision is a conflict.
    pub async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
        verdict: Verdict,
        approver: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        dispatch!(self, s => s.decide_approval(tenant, id, verdict, approver, audit, now).await)
    }
    /// The votes cast on an approval, oldest first (empty for another tenant's approval).
    pub async fn votes(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
    ) -> StoreResult<Vec<VoteRecord>> {
        dispatch!(self, s => s.votes(tenant, approval).await)
    }
    /// Cast one vote on a pending, unexpired approval, with its audit event, in one
    /// transaction with the approval locked.
    ///
    /// A deny vote denies the approval. An approve vote must name the approve-voters its
    /// caller saw (`expected_prior_approvers`, any order): if they changed meanwhile the vote
    /// is refused with `Conflict("votes changed")` and the caller re-reads and retries. With
    /// `receipt_if_final` the vote completes the approval: approved, by the receipt's
    /// approver, with that receipt. A voter votes once (`Conflict("already voted")`); a
    /// decided or expired approval is `Conflict("approval is <status>")`. A refused vote
    /// writes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn cast_vote(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        voter: &str,
        vote: Vote,
        reason: Option<String>,
        expected_prior_approvers: &[String],
        receipt_if_final: Option<SignedReceipt>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        let request = votes::VoteRequest {
            tenant,
            approval,
            voter,
            vote,
            reason,
            expected_prior_approvers,
            receipt_if_final,
        };
        dispatch!(self, s => s.cast_vote(request, draft, now).await)
    }
    /// Approve several approvals at once with one receipt and one audit event. Every item
    /// must be in the tenant, pending, unexpired and without votes, else nothing is written
    /// and the conflict names the item. Each gets `voter`'s approve vote and `batch`.
    /// Returned in the order of `items`.
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_batch(
        &self,
        tenant: &TenantId,
        items: &[ApprovalId],
        voter: &str,
        batch: &serde_json::Value,
        receipt: SignedReceipt,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Vec<Approval>, AuditEvent)> {
        let request = votes::BatchRequest {
            tenant,
            items,
            voter,
            batch,
            receipt,
        };
        dispatch!(self, s => s.approve_batch(request, draft, now).await)
    }
    /// Consume a receipt's nonce, mark its approval executed (recording when) and append the
    /// `execute` audit event, all in one transaction. A nonce already consumed, or an approval
    /// that is no longer live (superseded, its connection revoked), is a conflict and changes
    /// nothing.
    pub async fn redeem_receipt(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        receipt: &ReceiptId,
        nonce: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        dispatch!(self, s => s.redeem_receipt(tenant, approval, receipt, nonce, audit, now).await)
    }

    /// Record what an executed approval's upstream call produced, with its audit event. A
    /// real outcome replaces `unknown`; nothing replaces a real outcome (then nothing is
    /// written and the answer is `None`).
    pub async fn record_outcome(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        outcome: ExecutionOutcome,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<Option<AuditEvent>> {
        dispatch!(self, s => s.record_outcome(tenant, approval, outcome, audit, now).await)
    }
    /// Executed approvals, in every tenant, whose receipt was redeemed before
    /// `redeemed_before` and whose outcome was never recorded. Oldest first, at most `limit`.
    pub async fn unfinished_executions(
        &self,
        redeemed_before: UnixMillis,
        limit: i64,
        now: UnixMillis,
    ) -> StoreResult<Vec<Approval>> {
        dispatch!(self, s => s.unfinished_executions(redeemed_before, limit, now).await)
    }

    // ---- policies

    /// Store a new version of a tenant's policy (the previous newest + 1), with its audit
    /// event. Versions are append-only.
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
        dispatch!(self, s => s.put_policy(tenant, cedar, settings, hash, created_by, draft, now).await)
    }
    /// The newest version of a tenant's policy; `None` before the first.
    pub async fn current_policy(&self, tenant: &TenantId) -> StoreResult<Option<PolicyVersion>> {
        dispatch!(self, s => s.current_policy(tenant).await)
    }
    /// Every version of a tenant's policy, newest first.
    pub async fn policy_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PolicyVersion>> {
        dispatch!(self, s => s.policy_versions(tenant).await)
    }

    // ---- guardrails

    /// A new guardrail; a second active one with the same name in the tenant is a conflict.
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
        dispatch!(self, s => s.create_guardrail(tenant, name, spec, mode, created_by, draft, now).await)
    }
    /// Move an active guardrail on the trust ladder.
    pub async fn set_guardrail_mode(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        mode: GuardrailMode,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        dispatch!(self, s => s.set_guardrail_mode(tenant, id, mode, draft, now).await)
    }
    /// Replace what an active guardrail covers.
    pub async fn set_guardrail_spec(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        spec: &GuardrailSpec,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        dispatch!(self, s => s.set_guardrail_spec(tenant, id, spec, draft, now).await)
    }
    /// Revoke an active guardrail; it then covers nothing and frees its name.
    pub async fn revoke_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        dispatch!(self, s => s.revoke_guardrail(tenant, id, draft, now).await)
    }
    /// The tenant's active guardrails, oldest first.
    pub async fn guardrails(&self, tenant: &TenantId) -> StoreResult<Vec<Guardrail>> {
        dispatch!(self, s => s.guardrails(tenant).await)
    }
    /// One guardrail of the tenant, revoked ones included (check `revoked_at`).
    pub async fn guardrail(&self, tenant: &TenantId, id: &GuardrailId) -> StoreResult<Guardrail> {
        dispatch!(self, s => s.guardrail(tenant, id).await)
    }

    // ---- spend ledger

    /// Record one run in the ledger. With a `limit` and a guardrail, the run must fit the
    /// guardrail's budget since `limit.since`: if it does not, nothing is written and the
    /// answer is `false`. Exact under concurrency (on PostgreSQL the guardrail's row is
    /// locked while counting). The agent, connection, approval and guardrail must belong to
    /// the tenant, and the guardrail must be active, else not found.
    pub async fn charge(
        &self,
        charge: &Charge,
        limit: Option<&ChargeLimit>,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        dispatch!(self, s => s.charge(charge, limit, now).await)
    }
    /// (runs, cents) recorded for a tenant since `since`, optionally for one agent and/or
    /// one guardrail.
    pub async fn spend_since(
        &self,
        tenant: &TenantId,
        since: UnixMillis,
        agent: Option<&AgentId>,
        guardrail: Option<&GuardrailId>,
    ) -> StoreResult<(i64, i64)> {
        dispatch!(self, s => s.spend_since(tenant, since, agent, guardrail).await)
    }
    /// A tenant's ledger entries with `from <= time < to`, in the order they were recorded.
    pub async fn ledger_entries(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<LedgerEntry>> {
        dispatch!(self, s => s.ledger_entries(tenant, from, to).await)
    }

    // ---- audit

    /// The allowed calls (`tool_call` events with decision `allow`) that count as a call's
    /// history: every one recorded under `session` (an MCP session, whatever its age), and
    /// every one `actor` made at or after `since` in any session. Newest first, at most
    /// `limit`.
    pub async fn session_calls(
        &self,
        tenant: &TenantId,
        session: Option<&str>,
        actor: &str,
        since: UnixMillis,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        dispatch!(self, s => s.session_calls(tenant, session, actor, since, limit).await)
    }

    /// Append one event to its tenant's chain, durably.
    pub async fn append_audit(
        &self,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        dispatch!(self, s => s.append_audit(draft, now).await)
    }
    /// Events of one tenant with `seq > after`, in order, at most `limit`.
    pub async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        dispatch!(self, s => s.audit_page(tenant, after, limit).await)
    }
    /// Events matching a filter, after a (tenant, seq) cursor, at most `limit`.
    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        after: Option<(TenantId, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        dispatch!(self, s => s.audit_query(filter, after, limit).await)
    }
    /// Every tenant id that has audit events (including the system chain).
    pub async fn audit_tenants(&self) -> StoreResult<Vec<TenantId>> {
        dispatch!(self, s => s.audit_tenants().await)
    }
    /// Current (size, head hash) of a tenant's chain.
    pub async fn audit_head(&self, tenant: &TenantId) -> StoreResult<(i64, String)> {
        dispatch!(self, s => s.audit_head(tenant).await)
    }
    pub async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        dispatch!(self, s => s.insert_checkpoint(checkpoint).await)
    }
    pub async fn checkpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Checkpoint>> {
        dispatch!(self, s => s.checkpoints(tenant).await)
    }
}
