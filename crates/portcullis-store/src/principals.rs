//! Tenants, the humans who administer and approve, agents and their tokens — each query
//! written once for both backends.

use crate::rows::{self as parse, json};
use crate::sql::{Freshness, Lock, Scope, sql};
use crate::tx::{Tx, all};
use crate::*;
use portcullis_core::audit::AuditKind;

/// `UPDATE … SET suspended_at`: switch a kill switch on (keeping the original time) or off.
/// `$1` now (NULL: off).
const SUSPEND: &str = "suspended_at = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN NULL ELSE COALESCE(suspended_at, $1) END";

impl Store {
    // ---- tenants

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
            egress_hosts: Vec::new(),
            console_totp: ConsoleTotp::default(),
        };
        // Scoped to the new tenant alone: the unique name is enforced by its index, which
        // sees every tenant regardless of row-level security.
        let mut tx = self.begin(Scope::Tenant(&tenant.id)).await?;
        tx.execute(
            &sql("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .text(tenant.id.as_str())
                .text(name)
                .int(now),
        )
        .await?;
        let draft = AuditDraft::new(tenant.id.clone(), actor, AuditKind::TenantCreated)
            .resource(format!("tenant:{}", tenant.id))
            .detail(serde_json::json!({ "name": name }));
        Ok(tx.audited(tenant, draft, now).await?.0)
    }

    /// Spans tenants: the name is all that is known.
    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Tenant> {
        let q = sql("SELECT * FROM tenants WHERE name = $1 AND deleted_at IS NULL").text(name);
        parse::tenant(&self.read_one(Scope::AllTenants, &q).await?)
    }

    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Tenant> {
        let q = sql("SELECT * FROM tenants WHERE id = $1 AND deleted_at IS NULL").text(id.as_str());
        parse::tenant(&self.read_one(Scope::Tenant(id), &q).await?)
    }

    /// Spans tenants.
    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let q = sql("SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY created_at");
        all(
            self.read_all(Scope::AllTenants, &q, Freshness::Any).await?,
            parse::tenant,
        )
    }

    /// Every tenant id ever created, deleted ones included (their audit trails remain).
    pub async fn all_tenant_ids(&self) -> StoreResult<Vec<TenantId>> {
        let q = sql("SELECT id FROM tenants ORDER BY id");
        self.read_all(Scope::AllTenants, &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| crate::rows::parse_id(row.text("id")?))
            .collect()
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
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change = sql(format!("UPDATE tenants SET {SUSPEND} WHERE id = $2"))
            .opt_int(suspended.then_some(now))
            .text(tenant.as_str());
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let read = sql("SELECT * FROM tenants WHERE id = $1").text(tenant.as_str());
        let tenant = parse::tenant(&tx.one(&read).await?)?;
        tx.audited(tenant, draft, now).await
    }

    /// Set whether the tenant's humans need a TOTP code to sign in to the console, with its
    /// audit event in the same transaction.
    pub async fn set_tenant_console_totp(
        &self,
        tenant: &TenantId,
        rule: ConsoleTotp,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Tenant, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change =
            sql("UPDATE tenants SET console_totp = $1 WHERE id = $2 AND deleted_at IS NULL")
                .text(rule.as_str())
                .text(tenant.as_str());
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let read = sql("SELECT * FROM tenants WHERE id = $1").text(tenant.as_str());
        let tenant = parse::tenant(&tx.one(&read).await?)?;
        tx.audited(tenant, draft, now).await
    }

    /// Replace the hosts the tenant's outbound requests may reach (empty: any public host),
    /// audited.
    pub async fn set_egress_hosts(
        &self,
        tenant: &TenantId,
        hosts: &[String],
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let stored = (!hosts.is_empty()).then(|| json(&hosts));
        let change =
            sql("UPDATE tenants SET egress_hosts = $1 WHERE id = $2 AND deleted_at IS NULL")
                .opt_text(stored)
                .text(tenant.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConfigChanged)
            .resource(format!("tenant:{tenant}"))
            .detail(serde_json::json!({ "egress_hosts": hosts }));
        self.change_one(tenant, change, draft, now).await
    }

    /// Fails with "not found" unless the tenant exists.
    pub(crate) async fn require_tenant(tx: &mut Tx, tenant: &TenantId) -> StoreResult<()> {
        let q =
            sql("SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL").text(tenant.as_str());
        if tx.exists(&q).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// One `UPDATE`/`DELETE` of a single tenant-owned row and its audit event; no row is
    /// "not found".
    pub(crate) async fn change_one(
        &self,
        tenant: &TenantId,
        change: crate::sql::Sql<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audited((), draft, now).await.map(drop)
    }

    // ---- humans

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
            rotated_by: None,
            revoked_at: None,
        };
        // A tenant's human is written within that tenant; an unscoped one (and its event on
        // the system chain) spans tenants.
        let mut tx = self.begin(Scope::of(new.tenant)).await?;
        tx.execute(
            &sql("INSERT INTO admins (id, name, role, tenant_id, token_hash, created_at, created_by, expires_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .text(admin.id.as_str())
            .text(new.name)
            .text(new.role.as_str())
            .opt_text(new.tenant.map(TenantId::as_str))
            .text(new.token_hash)
            .int(now)
            .text(new.created_by)
            .opt_int(new.expires_at),
        )
        .await?;
        let chain = admin.tenant.clone().unwrap_or_else(TenantId::system);
        let draft = AuditDraft::new(chain, actor, AuditKind::AdminCreated)
            .resource(format!("admin:{}", admin.id))
            .detail(serde_json::json!({ "name": new.name, "role": new.role, "expires_at": new.expires_at }));
        Ok(tx.audited(admin, draft, now).await?.0)
    }

    /// Spans tenants: the hash is all that is known before authentication.
    pub async fn admin_by_token_hash(&self, hash: &str) -> StoreResult<Admin> {
        let q = sql("SELECT * FROM admins WHERE token_hash = $1").text(hash);
        parse::admin(&self.read_one(Scope::AllTenants, &q).await?)
    }

    /// Spans tenants: names are unique across the installation.
    pub async fn admin_by_name(&self, name: &str) -> StoreResult<Admin> {
        let q = sql("SELECT * FROM admins WHERE name = $1").text(name);
        parse::admin(&self.read_one(Scope::AllTenants, &q).await?)
    }

    /// Humans of one tenant, or (`None`) of every tenant and the unscoped ones.
    pub async fn list_admins(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<Admin>> {
        let q = sql(
            "SELECT * FROM admins WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, name",
        )
        .opt_text(tenant.map(TenantId::as_str));
        all(
            self.read_all(Scope::of(tenant), &q, Freshness::Any).await?,
            parse::admin,
        )
    }

    pub async fn count_admins(&self) -> StoreResult<i64> {
        let q = sql("SELECT COUNT(*) FROM admins");
        self.read_one(Scope::AllTenants, &q).await?.first_int()
    }

    /// One change to a human's credential (`change` names the human as `$1`), read back and
    /// audited; a revoked (or unknown) identity is not found. With `guard_last_root`, the
    /// change is refused when it is made to the last usable unscoped admin.
    async fn change_admin(
        &self,
        id: &AdminId,
        change: crate::sql::Sql<'_>,
        guard_last_root: bool,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        // Spans tenants: an unscoped human's events go to the system chain.
        let mut tx = self.begin(Scope::AllTenants).await?;
        let read = sql("SELECT * FROM admins WHERE id = $1").text(id.as_str());
        if guard_last_root {
            // Every change that could remove the last unscoped admin takes its turn.
            let lock = format!(
                "SELECT id FROM admins WHERE tenant_id IS NULL AND role = 'admin'{}",
                tx.lock(Lock::Update)
            );
            tx.all(&sql(lock)).await?;
            let current = parse::admin(&tx.one(&read).await?)?;
            let others = tx
                .one(
                    &sql("SELECT COUNT(*) FROM admins WHERE tenant_id IS NULL AND role = 'admin' \
                          AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) AND id <> $2")
                    .int(now)
                    .text(id.as_str()),
                )
                .await?
                .first_int()?;
            if current.tenant.is_none() && current.role == AdminRole::Admin && others == 0 {
                return Err(StoreError::Conflict(Conflict::LastRootAdmin));
            }
        }
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let admin = parse::admin(&tx.one(&read).await?)?;
        tx.audited(admin, draft, now).await
    }

    /// Revoke a human's credential (refused on their next request), with its audit event.
    /// The last usable unscoped admin cannot be revoked (a conflict).
    pub async fn revoke_admin(
        &self,
        id: &AdminId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sql("UPDATE admins SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .text(id.as_str())
            .int(now);
        self.change_admin(id, change, true, draft, now).await
    }

    /// Replace a human's token (the old one stops working at once), recording who did it,
    /// and set its expiry (an expiry on the last usable unscoped admin is refused).
    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_admin(
        &self,
        id: &AdminId,
        token_hash: &str,
        expires_at: Option<UnixMillis>,
        rotated_by: &str,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sql(
            "UPDATE admins SET token_hash = $2, rotated_at = $3, expires_at = $4, rotated_by = $5 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .text(id.as_str())
        .text(token_hash)
        .int(now)
        .opt_int(expires_at)
        .text(rotated_by);
        self.change_admin(id, change, expires_at.is_some(), draft, now)
            .await
    }

    /// Set (or clear) when a human's credential expires; an expiry already past ends it like
    /// a revocation. Any expiry on the last usable unscoped admin is refused: it would lock
    /// everyone out when it came.
    pub async fn set_admin_expiry(
        &self,
        id: &AdminId,
        expires_at: Option<UnixMillis>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Admin, AuditEvent)> {
        let change = sql("UPDATE admins SET expires_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .text(id.as_str())
            .opt_int(expires_at);
        self.change_admin(id, change, expires_at.is_some(), draft, now)
            .await
    }

    // ---- agents and tokens

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
        tx.execute(
            &sql("INSERT INTO agents (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)")
                .text(agent.id.as_str())
                .text(tenant.as_str())
                .text(name)
                .int(now),
        )
        .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::AgentCreated)
            .resource(format!("agent:{}", agent.id))
            .detail(serde_json::json!({ "name": name }));
        Ok(tx.audited(agent, draft, now).await?.0)
    }

    pub async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<Agent>> {
        let q = sql("SELECT * FROM agents WHERE tenant_id = $1 ORDER BY created_at")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::agent,
        )
    }

    /// One change to an agent (`change` names it as `$2` in tenant `$3`), read back and
    /// audited.
    async fn change_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        change: crate::sql::Sql<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Agent, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let read = sql("SELECT * FROM agents WHERE tenant_id = $1 AND id = $2")
            .text(tenant.as_str())
            .text(agent.as_str());
        let agent = parse::agent(&tx.one(&read).await?)?;
        tx.audited(agent, draft, now).await
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
        let change = sql(format!(
            "UPDATE agents SET {SUSPEND} WHERE id = $2 AND tenant_id = $3"
        ))
        .opt_int(suspended.then_some(now))
        .text(agent.as_str())
        .text(tenant.as_str());
        self.change_agent(tenant, agent, change, draft, now).await
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
        let change = sql("UPDATE agents SET owner = $1 WHERE id = $2 AND tenant_id = $3")
            .opt_text(owner)
            .text(agent.as_str())
            .text(tenant.as_str());
        self.change_agent(tenant, agent, change, draft, now).await
    }

    pub async fn revoke_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("UPDATE agents SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .int(now)
            .text(tenant.as_str())
            .text(agent.as_str());
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
            parent: None,
        };
        let mut tx = self.begin(Scope::Tenant(new.tenant)).await?;
        let live_agent =
            sql("SELECT 1 FROM agents WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
                .text(new.tenant.as_str())
                .text(new.agent.as_str());
        if !tx.exists(&live_agent).await? {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            &sql("INSERT INTO agent_tokens (id, tenant_id, agent_id, token_hash, scope, expires_at, created_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .text(token.id.as_str())
            .text(new.tenant.as_str())
            .text(new.agent.as_str())
            .text(new.token_hash)
            .text(json(&token.scope))
            .int(new.expires_at)
            .int(now),
        )
        .await?;
        let draft = AuditDraft::new(new.tenant.clone(), actor, AuditKind::TokenCreated)
            .resource(format!("token:{}", token.id))
            .detail(serde_json::json!({ "agent": new.agent, "scope": token.scope, "expires_at": new.expires_at }));
        Ok(tx.audited(token, draft, now).await?.0)
    }

    /// A short-lived session token exchanged for the live agent token `parent` (same tenant
    /// and agent; the caller bounds scope and lifetime). Audited as a token creation that
    /// names its parent.
    pub async fn create_session_token(
        &self,
        parent: &TokenId,
        new: NewToken<'_>,
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
            parent: Some(parent.clone()),
        };
        let mut tx = self.begin(Scope::Tenant(new.tenant)).await?;
        // The parent must be this agent's own live, long-lived token.
        let live_parent = sql(
            "SELECT 1 FROM agent_tokens WHERE tenant_id = $1 AND id = $2 AND agent_id = $3 \
             AND revoked_at IS NULL AND parent_id IS NULL AND expires_at > $4",
        )
        .text(new.tenant.as_str())
        .text(parent.as_str())
        .text(new.agent.as_str())
        .int(now);
        if !tx.exists(&live_parent).await? {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            &sql("INSERT INTO agent_tokens (id, tenant_id, agent_id, token_hash, scope, expires_at, created_at, parent_id) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .text(token.id.as_str())
            .text(new.tenant.as_str())
            .text(new.agent.as_str())
            .text(new.token_hash)
            .text(json(&token.scope))
            .int(new.expires_at)
            .int(now)
            .text(parent.as_str()),
        )
        .await?;
        let draft = AuditDraft::new(
            new.tenant.clone(),
            format!("agent:{}", new.agent),
            AuditKind::TokenCreated,
        )
        .resource(format!("token:{}", token.id))
        .detail(serde_json::json!({
            "agent": new.agent,
            "session_of": parent,
            "scope": token.scope,
            "expires_at": new.expires_at,
        }));
        Ok(tx.audited(token, draft, now).await?.0)
    }

    pub async fn revoke_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("UPDATE agent_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .int(now)
            .text(tenant.as_str())
            .text(token.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::TokenRevoked)
            .resource(format!("token:{token}"));
        self.change_one(tenant, change, draft, now).await
    }

    /// A tenant's agent tokens (never their hashes): the live ones first, then the rest,
    /// newest first within each — the long-lived ones an admin minted, not the short-lived
    /// sessions exchanged for them. Read from the primary, so a token just revoked shows so.
    pub async fn list_tokens(
        &self,
        tenant: &TenantId,
        now: UnixMillis,
        limit: i64,
    ) -> StoreResult<Vec<AgentToken>> {
        let q = sql(
            "SELECT * FROM agent_tokens WHERE tenant_id = $1 AND parent_id IS NULL \
             ORDER BY CASE WHEN revoked_at IS NULL AND expires_at > $2 THEN 0 ELSE 1 END, \
             created_at DESC, id DESC LIMIT $3",
        )
        .text(tenant.as_str())
        .int(now)
        .int(limit);
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            parse::agent_token,
        )
    }

    /// Look up an agent token by its hash. Revocation and expiry are reported, not filtered,
    /// so the caller can audit why it refused. Spans tenants: the hash is all that is known
    /// before authentication.
    pub async fn agent_token_by_hash(&self, hash: &str) -> StoreResult<AgentAuth> {
        let q = sql(parse::AGENT_AUTH_SELECT).text(hash);
        parse::agent_auth(&self.read_one(Scope::AllTenants, &q).await?)
    }
}
