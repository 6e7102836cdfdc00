//! Connections, grants and the tools each upstream serves (pinned, classified, profiled) —
//! each query written once for both backends.

use crate::rows::{self as parse, json};
use crate::sql::{Freshness, Lock, Scope, Sql, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::audit::AuditKind;
use portcullis_core::effect::EffectClass;
use portcullis_core::profile::ToolProfile;

fn tools_query<'q>(tenant: &'q TenantId, connection: &'q ConnectionId) -> Sql<'q> {
    sql("SELECT * FROM tools WHERE tenant_id = $1 AND connection_id = $2 ORDER BY name")
        .text(tenant.as_str())
        .text(connection.as_str())
}

fn tool_query<'q>(tenant: &'q TenantId, connection: &'q ConnectionId, name: &'q str) -> Sql<'q> {
    sql("SELECT * FROM tools WHERE tenant_id = $1 AND connection_id = $2 AND name = $3")
        .text(tenant.as_str())
        .text(connection.as_str())
        .text(name)
}

impl Store {
    pub async fn create_connection(
        &self,
        tenant: &TenantId,
        name: &str,
        transport: &serde_json::Value,
        redaction: ResultRedaction,
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
            redaction,
        };
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        tx.execute(
            &sql("INSERT INTO connections (id, tenant_id, name, transport, created_at, result_pii, result_secrets) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .text(connection.id.as_str())
                .text(tenant.as_str())
                .text(name)
                .text(json(transport))
                .int(now)
                .text(redaction.pii.as_str())
                .text(redaction.secrets.as_str()),
        )
        .await?;
        // The audit records the transport's kind only: arguments and URLs may embed secrets.
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConnectionCreated)
            .resource(format!("connection:{}", connection.id))
            .detail(serde_json::json!({
                "name": name,
                "kind": transport.get("kind"),
                "redaction": redaction,
            }));
        Ok(tx.audited(connection, draft, now).await?.0)
    }

    /// Set how the connection's tool results are redacted, with its audit event
    /// (`config_changed`) in the same transaction. Applies from the next call on.
    pub async fn set_connection_redaction(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        redaction: ResultRedaction,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<Connection> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change = sql(
            "UPDATE connections SET result_pii = $1, result_secrets = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .text(redaction.pii.as_str())
        .text(redaction.secrets.as_str())
        .text(tenant.as_str())
        .text(id.as_str());
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let read = sql("SELECT * FROM connections WHERE tenant_id = $1 AND id = $2")
            .text(tenant.as_str())
            .text(id.as_str());
        let connection = parse::connection(&tx.one(&read).await?)?;
        Ok(tx.audited(connection, draft, now).await?.0)
    }

    pub async fn revoke_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("UPDATE connections SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .int(now)
            .text(tenant.as_str())
            .text(id.as_str());
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConnectionRevoked)
            .resource(format!("connection:{id}"));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<Connection> {
        let q = sql("SELECT * FROM connections WHERE tenant_id = $1 AND id = $2")
            .text(tenant.as_str())
            .text(id.as_str());
        parse::connection(&self.read_one(Scope::Tenant(tenant), &q).await?)
    }

    pub async fn list_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        let q = sql("SELECT * FROM connections WHERE tenant_id = $1 ORDER BY created_at")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::connection,
        )
    }

    /// Every connection of every tenant, revoked ones too (sealing plain environments).
    pub async fn all_connections(&self) -> StoreResult<Vec<Connection>> {
        let q = sql("SELECT * FROM connections ORDER BY created_at");
        all(
            self.read_all(Scope::AllTenants, &q, Freshness::Latest)
                .await?,
            parse::connection,
        )
    }

    /// Replace a connection's stored transport (only to seal its plain values into the vault:
    /// what it reaches stays the same, so nothing is audited beyond the secrets' own events).
    pub async fn replace_transport(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        transport: &serde_json::Value,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let changed = tx
            .execute(
                &sql("UPDATE connections SET transport = $1 WHERE tenant_id = $2 AND id = $3")
                    .text(json(transport))
                    .text(tenant.as_str())
                    .text(id.as_str()),
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await
    }

    /// Mark (or, with `None`, clear) that the connection needs reconnecting: its OAuth grant
    /// was refused. Audited when it is set. Its held actions show `needs_reconnection`.
    pub async fn set_needs_reconnection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let changed = match reason {
            Some(_) => sql("UPDATE connections SET needs_reconnection_at = $3 WHERE tenant_id = $1 AND id = $2 AND needs_reconnection_at IS NULL")
                .text(tenant.as_str())
                .text(id.as_str())
                .int(now),
            None => sql("UPDATE connections SET needs_reconnection_at = NULL WHERE tenant_id = $1 AND id = $2 AND needs_reconnection_at IS NOT NULL")
                .text(tenant.as_str())
                .text(id.as_str()),
        };
        let changed = tx.execute(&changed).await?;
        let draft = AuditDraft::new(tenant.clone(), "gateway", AuditKind::ConfigChanged)
            .resource(format!("connection:{id}"))
            .detail(serde_json::json!({
                "needs_reconnection": reason.is_some(),
                "reason": reason,
            }));
        if changed == 0 {
            return tx.commit().await;
        }
        tx.audited((), draft, now).await.map(drop)
    }

    /// Every active connection of every tenant (the supervisor starts them all).
    pub async fn all_active_connections(&self) -> StoreResult<Vec<Connection>> {
        let q = sql("SELECT * FROM connections WHERE revoked_at IS NULL ORDER BY created_at");
        all(
            self.read_all(Scope::AllTenants, &q, Freshness::Any).await?,
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
        let both = sql("SELECT 1 FROM agents a, connections c WHERE a.tenant_id = $1 AND a.id = $2 AND c.tenant_id = $1 AND c.id = $3")
            .text(tenant.as_str())
            .text(agent.as_str())
            .text(connection.as_str());
        if !tx.exists(&both).await? {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            &sql("INSERT INTO grants (tenant_id, agent_id, connection_id, tool, created_at) VALUES ($1, $2, $3, $4, $5) \
                  ON CONFLICT DO NOTHING")
            .text(tenant.as_str())
            .text(agent.as_str())
            .text(connection.as_str())
            .text(tool)
            .int(now),
        )
        .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::GrantAdded)
            .resource(format!("tool:{connection}/{tool}"))
            .detail(serde_json::json!({ "agent": agent }));
        tx.audited((), draft, now).await.map(drop)
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
        let change = sql("DELETE FROM grants WHERE tenant_id = $1 AND agent_id = $2 AND connection_id = $3 AND tool = $4")
            .text(tenant.as_str())
            .text(agent.as_str())
            .text(connection.as_str())
            .text(tool);
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
        let q = sql("SELECT agent_id, connection_id, tool FROM grants WHERE tenant_id = $1 AND agent_id = $2")
            .text(tenant.as_str())
            .text(agent.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::grant,
        )
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
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // Replicas may sync the same connection at once; its row lock makes them take turns,
        // so the second sees the first's tools instead of colliding on their keys.
        let lock = format!(
            "SELECT 1 FROM connections WHERE tenant_id = $1 AND id = $2{}",
            tx.lock(Lock::Update)
        );
        tx.all(&sql(lock).text(tenant.as_str()).text(connection.as_str()))
            .await?;
        for tool in discovered {
            let name = &tool.definition.name;
            let existing = tx
                .opt(&tool_query(tenant, connection, name))
                .await?
                .map(|row| parse::tool(&row))
                .transpose()?;
            match existing {
                None => {
                    tx.execute(
                        &sql("INSERT INTO tools (tenant_id, connection_id, name, definition, pinned_hash, current_hash, effect, effect_source, updated_at) \
                              VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)")
                        .text(tenant.as_str())
                        .text(connection.as_str())
                        .text(name.as_str())
                        .text(json(&tool.definition))
                        .text(tool.hash.as_str())
                        .text(tool.seed_effect.as_str())
                        .text(tool.seed_source)
                        .int(now),
                    )
                    .await?;
                    let draft = AuditDraft::new(tenant.clone(), "system", AuditKind::ToolClassified)
                        .resource(format!("tool:{connection}/{name}"))
                        .detail(serde_json::json!({ "effect": tool.seed_effect, "source": tool.seed_source, "definition_hash": tool.hash }));
                    tx.append(draft, now).await?;
                }
                Some(current) if current.current_hash == tool.hash => {}
                Some(current) => {
                    tx.execute(
                        &sql(
                            "UPDATE tools SET definition = $1, current_hash = $2, updated_at = $3 \
                              WHERE tenant_id = $4 AND connection_id = $5 AND name = $6",
                        )
                        .text(json(&tool.definition))
                        .text(tool.hash.as_str())
                        .int(now)
                        .text(tenant.as_str())
                        .text(connection.as_str())
                        .text(name.as_str()),
                    )
                    .await?;
                    if current.pinned_hash != tool.hash {
                        let draft = AuditDraft::new(
                            tenant.clone(),
                            "system",
                            AuditKind::ToolDefinitionChanged,
                        )
                        .resource(format!("tool:{connection}/{name}"))
                        .detail(serde_json::json!({ "pinned_hash": current.pinned_hash, "current_hash": tool.hash }));
                        tx.append(draft, now).await?;
                    }
                }
            }
        }
        let tools = all(tx.all(&tools_query(tenant, connection)).await?, parse::tool)?;
        tx.commit().await?;
        Ok(tools)
    }

    pub async fn tools(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> StoreResult<Vec<ToolRecord>> {
        all(
            self.read_all(
                Scope::Tenant(tenant),
                &tools_query(tenant, connection),
                Freshness::Any,
            )
            .await?,
            parse::tool,
        )
    }

    pub async fn tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
    ) -> StoreResult<ToolRecord> {
        parse::tool(
            &self
                .read_one(Scope::Tenant(tenant), &tool_query(tenant, connection, name))
                .await?,
        )
    }

    /// Update one tool, record it, and return it as it now stands.
    async fn change_tool(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        change: Sql<'_>,
        draft: impl FnOnce(&ToolRecord) -> AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(ToolRecord, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let tool = parse::tool(&tx.one(&tool_query(tenant, connection, name)).await?)?;
        let draft = draft(&tool);
        tx.audited(tool, draft, now).await
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
        let change = sql(
            "UPDATE tools SET effect = $1, effect_source = 'operator', updated_at = $2 \
                          WHERE tenant_id = $3 AND connection_id = $4 AND name = $5",
        )
        .text(effect.as_str())
        .int(now)
        .text(tenant.as_str())
        .text(connection.as_str())
        .text(name);
        let draft = |_: &ToolRecord| {
            AuditDraft::new(tenant.clone(), actor, AuditKind::ToolClassified)
                .resource(format!("tool:{connection}/{name}"))
                .detail(serde_json::json!({ "effect": effect, "source": "operator" }))
        };
        Ok(self
            .change_tool(tenant, connection, name, change, draft, now)
            .await?
            .0)
    }

    /// Replace what an operator declared about a tool, with its audit event. `sync_tools`
    /// never changes a profile.
    pub async fn set_tool_profile(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        name: &str,
        profile: &ToolProfile,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(ToolRecord, AuditEvent)> {
        let change = sql("UPDATE tools SET profile = $1, updated_at = $2 WHERE tenant_id = $3 AND connection_id = $4 AND name = $5")
            .text(json(profile))
            .int(now)
            .text(tenant.as_str())
            .text(connection.as_str())
            .text(name);
        self.change_tool(tenant, connection, name, change, |_| draft, now)
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
        let change = sql(
            "UPDATE tools SET pinned_hash = current_hash, updated_at = $1 \
                          WHERE tenant_id = $2 AND connection_id = $3 AND name = $4",
        )
        .int(now)
        .text(tenant.as_str())
        .text(connection.as_str())
        .text(name);
        let draft = |tool: &ToolRecord| {
            AuditDraft::new(tenant.clone(), actor, AuditKind::ToolDefinitionAccepted)
                .resource(format!("tool:{connection}/{name}"))
                .detail(serde_json::json!({ "definition_hash": tool.pinned_hash }))
        };
        Ok(self
            .change_tool(tenant, connection, name, change, draft, now)
            .await?
            .0)
    }
}
