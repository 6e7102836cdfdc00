//! The embedded backend: one SQLite file in WAL mode with `synchronous = FULL`, so an audit
//! event that was acknowledged survives a crash or power loss.
//!
//! Writes go through a pool of exactly one connection. SQLite allows one writer at a time
//! anyway; funnelling writes through one connection makes each transaction's "read the chain
//! head, append after it" step race-free without retry loops, and reads use their own pool.

use crate::rows::{self as parse, json, parse_id};
use crate::votes::{self, BatchRequest, Decision, VoteRequest};
use crate::*;
use portcullis_core::audit::{AuditKind, GENESIS_HASH};
use portcullis_core::effect::EffectClass;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};
use portcullis_core::profile::ToolProfile;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    appends: crate::group_commit::GroupCommit,
}

type Tx<'a> = Transaction<'a, Sqlite>;
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(crate::migrate_error)?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_read_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        let writer = write.clone();
        let appends = crate::group_commit::GroupCommit::spawn(move |drafts| {
            Self::commit_group(writer.clone(), drafts)
        });
        Ok(Self {
            write,
            read,
            appends,
        })
    }

    pub async fn health(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Tx<'static>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Append the audit event of what `tx` did and commit both: the tail of every audited
    /// change.
    async fn audited<T>(
        mut tx: Tx<'_>,
        value: T,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(T, AuditEvent)> {
        let event = Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok((value, event))
    }

    /// One statement that writes a single tenant-owned row (none written: not found), the row
    /// as it now stands (`read`), and the audit event, in one transaction.
    async fn change_and_read<T>(
        &self,
        change: SqliteQuery<'_>,
        read: SqliteQuery<'_>,
        parse: impl FnOnce(&SqliteRow) -> StoreResult<T>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(T, AuditEvent)> {
        let mut tx = self.begin().await?;
        if change.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let value = parse(&read.fetch_one(&mut *tx).await?)?;
        Self::audited(tx, value, draft, now).await
    }

    /// Append to the chain inside the caller's transaction.
    async fn append_in(
        tx: &mut sqlx::SqliteConnection,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        let head: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(draft.tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (seq, prev) = head.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
        let event = draft.seal(seq, now, &prev);
        let d = &event.draft;
        sqlx::query(
            "INSERT INTO audit_events (tenant_id, seq, time, actor, session, kind, resource, decision, receipt_id, args_hash, detail, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
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

    async fn commit_group(
        write: SqlitePool,
        drafts: Vec<(AuditDraft, UnixMillis)>,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
        let mut events = Vec::with_capacity(drafts.len());
        for (draft, now) in drafts {
            events.push(Self::append_in(&mut tx, draft, now).await?);
        }
        tx.commit().await?;
        Ok(events)
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
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
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
        let row = sqlx::query("SELECT * FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_one(&self.read)
            .await?;
        parse::tenant(&row)
    }

    fn tenant_query(id: &TenantId) -> SqliteQuery<'_> {
        sqlx::query("SELECT * FROM tenants WHERE id = ?").bind(id.as_str())
    }

    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Tenant> {
        parse::tenant(&Self::tenant_query(id).fetch_one(&self.read).await?)
    }

    pub async fn set_tenant_suspended(
        &self,
        tenant: &TenantId,
        suspended: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Tenant, AuditEvent)> {
        let change = sqlx::query(
            "UPDATE tenants SET suspended_at = CASE WHEN ?1 IS NULL THEN NULL ELSE COALESCE(suspended_at, ?1) END WHERE id = ?2",
        )
        .bind(suspended.then_some(now))
        .bind(tenant.as_str());
        self.change_and_read(
            change,
            Self::tenant_query(tenant),
            parse::tenant,
            draft,
            now,
        )
        .await
    }

    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY created_at")
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::tenant)
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
        let mut tx = self.begin().await?;
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
        let rows = sqlx::query(crate::queries::LIST_ADMINS)
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::admin)
    }

    pub async fn admin_by_name(&self, name: &str) -> StoreResult<Admin> {
        let row = sqlx::query("SELECT * FROM admins WHERE name = $1")
            .bind(name)
            .fetch_one(&self.read)
            .await?;
        parse::admin(&row)
    }

    /// One change to a human's credential (`change` binds the id as `$1`), read back and
    /// audited; a revoked (or unknown) identity is not found.
    async fn change_admin(
        &self,
        id: &AdminId,
        change: SqliteQuery<'_>,
        guard_last_root: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let mut tx = self.begin().await?;
        if guard_last_root {
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

    pub async fn admin_by_token_hash(&self, hash: &str) -> StoreResult<Admin> {
        let row = sqlx::query("SELECT * FROM admins WHERE token_hash = ?")
            .bind(hash)
            .fetch_one(&self.read)
            .await?;
        parse::admin(&row)
    }

    pub async fn count_admins(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM admins")
            .fetch_one(&self.read)
            .await?)
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
        let mut tx = self.begin().await?;
        Self::require_tenant(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO agents (id, tenant_id, name, created_at) VALUES (?, ?, ?, ?)")
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

    async fn require_tenant(tx: &mut Tx<'_>, tenant: &TenantId) -> StoreResult<()> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = ?")
            .bind(tenant.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        found.map(|_| ()).ok_or(StoreError::NotFound)
    }

    pub async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query("SELECT * FROM agents WHERE tenant_id = ? ORDER BY created_at")
            .bind(tenant.as_str())
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::agent)
    }

    fn agent_query<'q>(tenant: &'q TenantId, agent: &'q AgentId) -> SqliteQuery<'q> {
        sqlx::query("SELECT * FROM agents WHERE tenant_id = ? AND id = ?")
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
            "UPDATE agents SET suspended_at = CASE WHEN ?1 IS NULL THEN NULL ELSE COALESCE(suspended_at, ?1) END WHERE tenant_id = ?2 AND id = ?3",
        )
        .bind(suspended.then_some(now))
        .bind(tenant.as_str())
        .bind(agent.as_str());
        let read = Self::agent_query(tenant, agent);
        self.change_and_read(change, read, parse::agent, draft, now)
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
        let change = sqlx::query("UPDATE agents SET owner = ? WHERE tenant_id = ? AND id = ?")
            .bind(owner)
            .bind(tenant.as_str())
            .bind(agent.as_str());
        let read = Self::agent_query(tenant, agent);
        self.change_and_read(change, read, parse::agent, draft, now)
            .await
    }

    pub async fn revoke_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE agents SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::AgentRevoked)
            .resource(format!("agent:{agent}"));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.begin().await?;
        let agent_ok: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM agents WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
        )
        .bind(new.tenant.as_str())
        .bind(new.agent.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if agent_ok.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("INSERT INTO agent_tokens (id, tenant_id, agent_id, token_hash, scope, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
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
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE agent_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(token.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::TokenRevoked)
            .resource(format!("token:{token}"));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn agent_token_by_hash(&self, hash: &str) -> StoreResult<AgentAuth> {
        let sql = format!("{}?", parse::AGENT_AUTH_SELECT);
        let row = sqlx::query(&sql).bind(hash).fetch_one(&self.read).await?;
        parse::agent_auth(&row)
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
        let mut tx = self.begin().await?;
        Self::require_tenant(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO connections (id, tenant_id, name, transport, created_at) VALUES (?, ?, ?, ?, ?)")
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
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE connections SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConnectionRevoked)
            .resource(format!("connection:{id}"));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<Connection> {
        let row = sqlx::query("SELECT * FROM connections WHERE tenant_id = ? AND id = ?")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&self.read)
            .await?;
        parse::connection(&row)
    }

    pub async fn list_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        let rows = sqlx::query("SELECT * FROM connections WHERE tenant_id = ? ORDER BY created_at")
            .bind(tenant.as_str())
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::connection)
    }

    pub async fn all_active_connections(&self) -> StoreResult<Vec<Connection>> {
        let rows =
            sqlx::query("SELECT * FROM connections WHERE revoked_at IS NULL ORDER BY created_at")
                .fetch_all(&self.read)
                .await?;
        parse::all(rows, parse::connection)
    }

    async fn require_agent_and_connection(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        agent: &AgentId,
        connection: &ConnectionId,
    ) -> StoreResult<()> {
        let ok: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM agents a, connections c WHERE a.tenant_id = ?1 AND a.id = ?2 AND c.tenant_id = ?1 AND c.id = ?3",
        )
        .bind(tenant.as_str())
        .bind(agent.as_str())
        .bind(connection.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        ok.map(|_| ()).ok_or(StoreError::NotFound)
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
        let mut tx = self.begin().await?;
        Self::require_agent_and_connection(&mut tx, tenant, agent, connection).await?;
        sqlx::query("INSERT OR IGNORE INTO grants (tenant_id, agent_id, connection_id, tool, created_at) VALUES (?, ?, ?, ?, ?)")
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
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM grants WHERE tenant_id = ? AND agent_id = ? AND connection_id = ? AND tool = ?")
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(connection.as_str())
            .bind(tool)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::GrantRemoved)
            .resource(format!("tool:{connection}/{tool}"))
            .detail(serde_json::json!({ "agent": agent }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn grants_for_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT agent_id, connection_id, tool FROM grants WHERE tenant_id = ? AND agent_id = ?",
        )
        .bind(tenant.as_str())
        .bind(agent.as_str())
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::grant)
    }

    pub async fn sync_tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        discovered: &[DiscoveredTool],
        now: UnixMillis,
    ) -> StoreResult<Vec<ToolRecord>> {
        let mut tx = self.begin().await?;
        for tool in discovered {
            let name = &tool.definition.name;
            let existing: Option<(String, String)> =
                sqlx::query_as("SELECT pinned_hash, current_hash FROM tools WHERE tenant_id = ? AND connection_id = ? AND name = ?")
                    .bind(tenant.as_str())
                    .bind(connection.as_str())
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO tools (tenant_id, connection_id, name, definition, pinned_hash, current_hash, effect, effect_source, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(tenant.as_str())
                    .bind(connection.as_str())
                    .bind(name)
                    .bind(json(&tool.definition))
                    .bind(&tool.hash)
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
                    sqlx::query("UPDATE tools SET definition = ?, current_hash = ?, updated_at = ? WHERE tenant_id = ? AND connection_id = ? AND name = ?")
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
        tx.commit().await?;
        self.tools(tenant, connection).await
    }

    pub async fn tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> StoreResult<Vec<ToolRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tools WHERE tenant_id = ? AND connection_id = ? ORDER BY name",
        )
        .bind(tenant.as_str())
        .bind(connection.as_str())
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::tool)
    }

    fn tool_query<'q>(
        tenant: &'q TenantId,
        connection: &'q ConnectionId,
        name: &'q str,
    ) -> SqliteQuery<'q> {
        sqlx::query("SELECT * FROM tools WHERE tenant_id = ? AND connection_id = ? AND name = ?")
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name)
    }

    pub async fn tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
    ) -> StoreResult<ToolRecord> {
        let query = Self::tool_query(tenant, connection, name);
        parse::tool(&query.fetch_one(&self.read).await?)
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
        let change = sqlx::query("UPDATE tools SET profile = ?, updated_at = ? WHERE tenant_id = ? AND connection_id = ? AND name = ?")
            .bind(json(profile))
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name);
        let read = Self::tool_query(tenant, connection, name);
        self.change_and_read(change, read, parse::tool, draft, now)
            .await
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
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE tools SET effect = ?, effect_source = 'operator', updated_at = ? WHERE tenant_id = ? AND connection_id = ? AND name = ?")
            .bind(effect.as_str())
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ToolClassified)
            .resource(format!("tool:{connection}/{name}"))
            .detail(serde_json::json!({ "effect": effect, "source": "operator" }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        self.tool(tenant, connection, name).await
    }

    pub async fn accept_tool_definition(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ToolRecord> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE tools SET pinned_hash = current_hash, updated_at = ? WHERE tenant_id = ? AND connection_id = ? AND name = ?")
            .bind(now)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let hash: String = sqlx::query_scalar(
            "SELECT pinned_hash FROM tools WHERE tenant_id = ? AND connection_id = ? AND name = ?",
        )
        .bind(tenant.as_str())
        .bind(connection.as_str())
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ToolDefinitionAccepted)
            .resource(format!("tool:{connection}/{name}"))
            .detail(serde_json::json!({ "definition_hash": hash }));
        Self::append_in(&mut tx, draft, now).await?;
        tx.commit().await?;
        self.tool(tenant, connection, name).await
    }

    // ---- approvals

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
        let mut tx = self.begin().await?;
        let revert_of = new.revert_of.as_ref().map(ApprovalId::as_str);
        sqlx::query(crate::queries::SUPERSEDE_EXPIRED_LIVE)
            .bind(new.tenant.as_str())
            .bind(new.agent.as_str())
            .bind(&new.action_hash)
            .bind(revert_of)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
        let approval = Self::approval_in(&mut tx, &new.tenant, &new.id, now).await?;
        let (approval, event) = Self::audited(tx, approval, audit, now).await?;
        Ok(HoldOutcome::Created(approval, event))
    }

    /// One approval, read inside a write transaction (which, with one writer, also keeps it
    /// from changing until commit).
    async fn approval_in(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        id: &ApprovalId,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        let sql = format!(
            "{} WHERE a.tenant_id = ? AND a.id = ?",
            parse::APPROVAL_SELECT
        );
        let row = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
        parse::approval(&row, now)
    }

    /// Close a pending approval.
    async fn decide_in(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        id: &ApprovalId,
        decision: &Decision,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, receipt = ?, batch = COALESCE(?, batch) \
             WHERE tenant_id = ? AND id = ? AND status = 'pending' AND superseded_at IS NULL",
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
        let row = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(action_hash)
            .bind(now)
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| parse::approval(&r, now)).transpose()
    }

    pub async fn find_approval(
        &self,
        tenant: Option<&TenantId>,
        id: &ApprovalId,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        let sql = format!(
            "{} WHERE (?1 IS NULL OR a.tenant_id = ?1) AND a.id = ?2",
            parse::APPROVAL_SELECT
        );
        let row = sqlx::query(&sql)
            .bind(tenant.map(TenantId::as_str))
            .bind(id.as_str())
            .fetch_one(&self.read)
            .await?;
        parse::approval(&row, now)
    }

    pub async fn list_approvals(&self, filter: &ApprovalFilter) -> StoreResult<Vec<Approval>> {
        // The effective status is derived from the stored status, the expiry and the
        // connection, in SQL so a status filter pages correctly.
        let status_sql = parse::effective_status_condition(filter.status, "?3");
        let sql = format!(
            "{} WHERE (?1 IS NULL OR a.tenant_id = ?1) AND ({status_sql}) AND ?3 IS NOT NULL ORDER BY a.created_at DESC LIMIT ?2",
            parse::APPROVAL_SELECT
        );
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let rows = sqlx::query(&sql)
            .bind(filter.tenant.as_ref().map(TenantId::as_str))
            .bind(limit)
            .bind(filter.now)
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, |row| parse::approval(row, filter.now))
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
        let mut tx = self.begin().await?;
        let current = Self::approval_in(&mut tx, tenant, id, now).await?;
        votes::require_pending(&current)?;
        let decision = Decision::from_verdict(verdict, approver);
        Self::decide_in(&mut tx, tenant, id, &decision, now).await?;
        let approval = Self::approval_in(&mut tx, tenant, id, now).await?;
        Self::audited(tx, approval, audit, now).await
    }

    fn votes_query<'q>(tenant: &'q TenantId, approval: &'q ApprovalId) -> SqliteQuery<'q> {
        sqlx::query(
            "SELECT * FROM approval_votes WHERE tenant_id = ? AND approval_id = ? ORDER BY created_at, voter",
        )
        .bind(tenant.as_str())
        .bind(approval.as_str())
    }

    pub async fn votes(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
    ) -> StoreResult<Vec<VoteRecord>> {
        let rows = Self::votes_query(tenant, approval)
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::vote)
    }

    async fn insert_vote_in(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        approval: &ApprovalId,
        voter: &str,
        vote: Vote,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO approval_votes (tenant_id, approval_id, voter, vote, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)")
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
        // INVARIANT: the one writer connection serialises votes, so what `plan_vote` sees
        // stays true until commit.
        let mut tx = self.begin().await?;
        let current = Self::approval_in(&mut tx, tenant, id, now).await?;
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
        let approval = Self::approval_in(&mut tx, tenant, id, now).await?;
        Self::audited(tx, approval, draft, now).await
    }

    pub(crate) async fn approve_batch(
        &self,
        request: BatchRequest<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Vec<Approval>, AuditEvent)> {
        let tenant = request.tenant;
        let items = votes::distinct_items(request.items)?;
        let mut tx = self.begin().await?;
        for id in &items {
            let current = Self::approval_in(&mut tx, tenant, id, now).await;
            let n_votes: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM approval_votes WHERE tenant_id = ? AND approval_id = ?",
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
            approvals.push(Self::approval_in(&mut tx, tenant, id, now).await?);
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
        let mut tx = self.begin().await?;
        let inserted = sqlx::query("INSERT OR IGNORE INTO receipt_nonces (nonce, tenant_id, receipt_id, consumed_at) VALUES (?, ?, ?, ?)")
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
        let mut tx = self.begin().await?;
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
        let rows = sqlx::query(&sql)
            .bind(redeemed_before)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        parse::all(rows, |row| parse::approval(row, now))
    }

    // ---- policies

    fn current_policy_query(tenant: &TenantId) -> SqliteQuery<'_> {
        sqlx::query(
            "SELECT * FROM policy_versions WHERE tenant_id = ? ORDER BY version DESC LIMIT 1",
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
        // The next version is computed inside the (single-writer) transaction, so two puts
        // cannot take the same number. No tenant row: nothing inserted, not found.
        let change = sqlx::query(
            "INSERT INTO policy_versions (tenant_id, version, cedar, settings, hash, created_by, created_at) \
             SELECT id, (SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions WHERE tenant_id = ?1), ?2, ?3, ?4, ?5, ?6 \
             FROM tenants WHERE id = ?1",
        )
        .bind(tenant.as_str())
        .bind(cedar)
        .bind(json(settings))
        .bind(hash)
        .bind(created_by)
        .bind(now);
        let read = Self::current_policy_query(tenant);
        self.change_and_read(change, read, parse::policy_version, draft, now)
            .await
    }

    pub async fn current_policy(&self, tenant: &TenantId) -> StoreResult<Option<PolicyVersion>> {
        let row = Self::current_policy_query(tenant)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| parse::policy_version(&r)).transpose()
    }

    pub async fn policy_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PolicyVersion>> {
        let rows =
            sqlx::query("SELECT * FROM policy_versions WHERE tenant_id = ? ORDER BY version DESC")
                .bind(tenant.as_str())
                .fetch_all(&self.read)
                .await?;
        parse::all(rows, parse::policy_version)
    }

    // ---- guardrails

    fn guardrail_query<'q>(tenant: &'q TenantId, id: &'q GuardrailId) -> SqliteQuery<'q> {
        sqlx::query("SELECT * FROM guardrails WHERE tenant_id = ? AND id = ?")
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
        let change = sqlx::query(
            "INSERT INTO guardrails (id, tenant_id, name, spec, mode, created_by, created_at, updated_at) \
             SELECT ?1, id, ?3, ?4, ?5, ?6, ?7, ?7 FROM tenants WHERE id = ?2",
        )
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(name)
        .bind(json(spec))
        .bind(mode.as_str())
        .bind(created_by)
        .bind(now);
        let read = Self::guardrail_query(tenant, &id);
        self.change_and_read(change, read, parse::guardrail, draft, now)
            .await
    }

    /// One change to an active guardrail, read back and audited.
    async fn change_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        change: SqliteQuery<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let read = Self::guardrail_query(tenant, id);
        self.change_and_read(change, read, parse::guardrail, draft, now)
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
        let change = sqlx::query("UPDATE guardrails SET mode = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
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
        let change = sqlx::query("UPDATE guardrails SET spec = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
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
        let change = sqlx::query("UPDATE guardrails SET revoked_at = ?1, updated_at = ?1 WHERE tenant_id = ?2 AND id = ?3 AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.as_str())
            .bind(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    pub async fn guardrails(&self, tenant: &TenantId) -> StoreResult<Vec<Guardrail>> {
        let rows = sqlx::query(
            "SELECT * FROM guardrails WHERE tenant_id = ? AND revoked_at IS NULL ORDER BY created_at, name",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::guardrail)
    }

    pub async fn guardrail(&self, tenant: &TenantId, id: &GuardrailId) -> StoreResult<Guardrail> {
        parse::guardrail(
            &Self::guardrail_query(tenant, id)
                .fetch_one(&self.read)
                .await?,
        )
    }

    // ---- spend ledger

    pub async fn charge(
        &self,
        charge: &Charge,
        limit: Option<&ChargeLimit>,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let tenant = charge.tenant.as_str();
        // INVARIANT: the one writer connection serialises charges, so the budget counted here
        // is still the budget when this charge commits.
        let mut tx = self.begin().await?;
        if let Some(guardrail) = &charge.guardrail {
            let active: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM guardrails WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(guardrail.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            active.ok_or(StoreError::NotFound)?;
            if let Some(limit) = limit {
                let (count, cents): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(SUM(cost_cents), 0) FROM ledger WHERE tenant_id = ? AND guardrail_id = ? AND time >= ?",
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
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE EXISTS (SELECT 1 FROM agents WHERE tenant_id = ?1 AND id = ?3) \
             AND EXISTS (SELECT 1 FROM connections WHERE tenant_id = ?1 AND id = ?6) \
             AND (?5 IS NULL OR EXISTS (SELECT 1 FROM approvals WHERE tenant_id = ?1 AND id = ?5))",
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
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(cost_cents), 0) FROM ledger WHERE tenant_id = ?1 AND time >= ?2 \
             AND (?3 IS NULL OR agent_id = ?3) AND (?4 IS NULL OR guardrail_id = ?4)",
        )
        .bind(tenant.as_str())
        .bind(since)
        .bind(agent.map(AgentId::as_str))
        .bind(guardrail.map(GuardrailId::as_str))
        .fetch_one(&self.read)
        .await?)
    }

    pub async fn ledger_entries(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM ledger WHERE tenant_id = ? AND time >= ? AND time < ? ORDER BY id",
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::ledger_entry)
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
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant_id = ?1 AND kind = ?2 AND decision = 'allow' \
             AND (session = ?3 OR (actor = ?4 AND time >= ?5)) ORDER BY seq DESC LIMIT ?6",
        )
        .bind(tenant.as_str())
        .bind(AuditKind::ToolCall.as_str())
        .bind(session)
        .bind(actor)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::audit_event)
    }

    pub async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::audit_event)
    }

    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        after: Option<(TenantId, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (after_tenant, after_seq) =
            after.map_or((String::new(), 0), |(t, s)| (t.to_string(), s));
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR time >= ?2) AND (?3 IS NULL OR time < ?3) \
             AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR kind = ?5) AND (tenant_id, seq) > (?6, ?7) \
             ORDER BY tenant_id, seq LIMIT ?8",
        )
        .bind(filter.tenant.as_ref().map(TenantId::as_str))
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.actor)
        .bind(&filter.kind)
        .bind(after_tenant)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        parse::all(rows, parse::audit_event)
    }

    pub async fn audit_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT tenant_id FROM audit_events ORDER BY tenant_id")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter().map(parse_id).collect()
    }

    pub async fn audit_head(&self, tenant: &TenantId) -> StoreResult<(i64, String)> {
        let head: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .fetch_optional(&self.write)
        .await?;
        Ok(head.unwrap_or((0, GENESIS_HASH.to_owned())))
    }

    pub async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        let b = &checkpoint.body;
        sqlx::query("INSERT OR IGNORE INTO audit_checkpoints (tenant_id, size, head_hash, time, signature) VALUES (?, ?, ?, ?, ?)")
            .bind(b.tenant.as_str())
            .bind(b.size)
            .bind(&b.head_hash)
            .bind(b.time)
            .bind(&checkpoint.signature)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn checkpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT * FROM audit_checkpoints WHERE tenant_id = ? ORDER BY size")
            .bind(tenant.as_str())
            .fetch_all(&self.read)
            .await?;
        parse::all(rows, parse::checkpoint)
    }
}
