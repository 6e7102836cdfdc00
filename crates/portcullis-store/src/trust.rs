//! Tenant policy versions, guardrails and the spend ledger — each query written once for
//! both backends.

use crate::rows::{self as parse, json};
use crate::sql::{Freshness, Lock, Scope, Sql, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};

fn current_policy_query(tenant: &TenantId) -> Sql<'_> {
    sql("SELECT * FROM policy_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1")
        .text(tenant.as_str())
}

fn guardrail_query<'q>(tenant: &'q TenantId, id: &'q GuardrailId) -> Sql<'q> {
    sql("SELECT * FROM guardrails WHERE tenant_id = $1 AND id = $2")
        .text(tenant.as_str())
        .text(id.as_str())
}

impl Store {
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
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: puts for one tenant take turns on its row (PostgreSQL: NO KEY UPDATE, so
        // inserts that merely reference the tenant are not blocked; SQLite: the one writer),
        // and the next statement sees the previous put's version.
        let lock = format!(
            "SELECT 1 FROM tenants WHERE id = $1{}",
            tx.lock(Lock::NoKeyUpdate)
        );
        if !tx.exists(&sql(lock).text(tenant.as_str())).await? {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            &sql("INSERT INTO policy_versions (tenant_id, version, cedar, settings, hash, created_by, created_at) \
                  SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 FROM policy_versions WHERE tenant_id = $1")
            .text(tenant.as_str())
            .text(cedar)
            .text(json(settings))
            .text(hash)
            .text(created_by)
            .int(now),
        )
        .await?;
        let version = parse::policy_version(&tx.one(&current_policy_query(tenant)).await?)?;
        tx.audited(version, draft, now).await
    }

    /// The newest version of a tenant's policy; `None` before the first.
    pub async fn current_policy(&self, tenant: &TenantId) -> StoreResult<Option<PolicyVersion>> {
        self.read_opt(
            Scope::Tenant(tenant),
            &current_policy_query(tenant),
            Freshness::Any,
        )
        .await?
        .map(|r| parse::policy_version(&r))
        .transpose()
    }

    /// Every version of a tenant's policy, newest first.
    pub async fn policy_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PolicyVersion>> {
        let q = sql("SELECT * FROM policy_versions WHERE tenant_id = $1 ORDER BY version DESC")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::policy_version,
        )
    }

    // ---- guardrails

    /// One change to a guardrail (none changed: not found), read back and audited.
    async fn change_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        change: Sql<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let guardrail = parse::guardrail(&tx.one(&guardrail_query(tenant, id)).await?)?;
        tx.audited(guardrail, draft, now).await
    }

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
        let id = GuardrailId::generate();
        // The creation entry names the id the guardrail's runs will name (an offline verifier
        // links them).
        let mut draft = draft;
        if let serde_json::Value::Object(detail) = &mut draft.detail {
            detail.insert(
                "guardrail".into(),
                serde_json::Value::String(id.to_string()),
            );
        }
        // No tenant row: nothing inserted, not found.
        let change = sql("INSERT INTO guardrails (id, tenant_id, name, spec, mode, created_by, created_at, updated_at) \
                          SELECT $1, id, $3, $4, $5, $6, $7, $7 FROM tenants WHERE id = $2")
        .text(id.as_str())
        .text(tenant.as_str())
        .text(name)
        .text(json(spec))
        .text(mode.as_str())
        .text(created_by)
        .int(now);
        self.change_guardrail(tenant, &id, change, draft, now).await
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
        let change = sql("UPDATE guardrails SET mode = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL")
            .text(mode.as_str())
            .int(now)
            .text(tenant.as_str())
            .text(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
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
        let change = sql("UPDATE guardrails SET spec = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL")
            .text(json(spec))
            .int(now)
            .text(tenant.as_str())
            .text(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    /// Revoke an active guardrail; it then covers nothing and frees its name.
    pub async fn revoke_guardrail(
        &self,
        tenant: &TenantId,
        id: &GuardrailId,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Guardrail, AuditEvent)> {
        let change = sql("UPDATE guardrails SET revoked_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .int(now)
            .text(tenant.as_str())
            .text(id.as_str());
        self.change_guardrail(tenant, id, change, draft, now).await
    }

    /// The tenant's active guardrails, oldest first.
    pub async fn guardrails(&self, tenant: &TenantId) -> StoreResult<Vec<Guardrail>> {
        let q = sql("SELECT * FROM guardrails WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, name")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::guardrail,
        )
    }

    /// One guardrail of the tenant, revoked ones included (check `revoked_at`).
    pub async fn guardrail(&self, tenant: &TenantId, id: &GuardrailId) -> StoreResult<Guardrail> {
        parse::guardrail(
            &self
                .read_one(Scope::Tenant(tenant), &guardrail_query(tenant, id))
                .await?,
        )
    }

    // ---- spend ledger

    /// Record one run in the ledger. With a `limit` and a guardrail, the run must fit the
    /// guardrail's budget since `limit.since`: if it does not, nothing is written and the
    /// answer is `false`. The agent, connection, approval and guardrail must belong to the
    /// tenant, and the guardrail must be active, else not found.
    pub async fn charge(
        &self,
        charge: &Charge,
        limit: Option<&ChargeLimit>,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let tenant = charge.tenant.as_str();
        let mut tx = self.begin(Scope::Tenant(&charge.tenant)).await?;
        if let Some(guardrail) = &charge.guardrail {
            // INVARIANT: charges against one guardrail take turns on its row until commit
            // (PostgreSQL: NO KEY UPDATE, which the ledger's foreign key does not wait for;
            // SQLite: the one writer), so the budget counted below is still the budget when
            // this charge commits.
            let lock = format!(
                "SELECT 1 FROM guardrails WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL{}",
                tx.lock(Lock::NoKeyUpdate)
            );
            if !tx
                .exists(&sql(lock).text(tenant).text(guardrail.as_str()))
                .await?
            {
                return Err(StoreError::NotFound);
            }
            if let Some(limit) = limit {
                let row = tx
                    .one(
                        &sql("SELECT COUNT(*) AS runs, CAST(COALESCE(SUM(cost_cents), 0) AS BIGINT) AS cents \
                              FROM ledger WHERE tenant_id = $1 AND guardrail_id = $2 AND time >= $3")
                        .text(tenant)
                        .text(guardrail.as_str())
                        .int(limit.since),
                    )
                    .await?;
                if !limit.admits(row.int("runs")?, row.int("cents")?, charge.cost_cents) {
                    return Ok(false);
                }
            }
        }
        let inserted = tx
            .execute(
                &sql("INSERT INTO ledger (tenant_id, time, agent_id, guardrail_id, approval_id, connection_id, tool, cost_cents, action_hash) \
                      SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                      WHERE EXISTS (SELECT 1 FROM agents WHERE tenant_id = $1 AND id = $3) \
                      AND EXISTS (SELECT 1 FROM connections WHERE tenant_id = $1 AND id = $6) \
                      AND ($5 IS NULL OR EXISTS (SELECT 1 FROM approvals WHERE tenant_id = $1 AND id = $5))")
                .text(tenant)
                .int(now)
                .text(charge.agent.as_str())
                .opt_text(charge.guardrail.as_ref().map(GuardrailId::as_str))
                .opt_text(charge.approval.as_ref().map(ApprovalId::as_str))
                .text(charge.connection.as_str())
                .text(charge.tool.as_str())
                .int(charge.cost_cents)
                .text(charge.action_hash.as_str()),
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(true)
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
        let q = sql(
            "SELECT COUNT(*) AS runs, CAST(COALESCE(SUM(cost_cents), 0) AS BIGINT) AS cents \
                     FROM ledger WHERE tenant_id = $1 AND time >= $2 \
                     AND ($3 IS NULL OR agent_id = $3) AND ($4 IS NULL OR guardrail_id = $4)",
        )
        .text(tenant.as_str())
        .int(since)
        .opt_text(agent.map(AgentId::as_str))
        .opt_text(guardrail.map(GuardrailId::as_str));
        let row = self.read_one(Scope::Tenant(tenant), &q).await?;
        Ok((row.int("runs")?, row.int("cents")?))
    }

    /// Everything a call's decision needs from the ledger since `since`, in one query: the
    /// tenant's total, `agent`'s share, and each guardrail's runs and cents.
    pub async fn spend_today(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        since: UnixMillis,
    ) -> StoreResult<Spend> {
        let q = sql(
            "SELECT guardrail_id, CAST(CASE WHEN agent_id = $3 THEN 1 ELSE 0 END AS BIGINT) AS mine, \
                    COUNT(*) AS runs, CAST(COALESCE(SUM(cost_cents), 0) AS BIGINT) AS cents \
             FROM ledger WHERE tenant_id = $1 AND time >= $2 GROUP BY guardrail_id, mine",
        )
        .text(tenant.as_str())
        .int(since)
        .text(agent.as_str());
        let mut spend = Spend::default();
        for row in self
            .read_all(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
        {
            let (runs, cents) = (row.int("runs")?, row.int("cents")?);
            spend.tenant_cents += cents;
            if row.int("mine")? == 1 {
                spend.agent_cents += cents;
            }
            if let Some(id) = row.opt_text("guardrail_id")? {
                let id = GuardrailId::parse(&id)
                    .map_err(|_| StoreError::Corrupt(format!("ledger guardrail id `{id}`")))?;
                let today = spend.guardrails.entry(id).or_default();
                today.runs += runs;
                today.cents += cents;
            }
        }
        Ok(spend)
    }

    /// A tenant's ledger entries with `from <= time < to`, in the order they were recorded.
    pub async fn ledger_entries(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let q = sql(
            "SELECT * FROM ledger WHERE tenant_id = $1 AND time >= $2 AND time < $3 ORDER BY id",
        )
        .text(tenant.as_str())
        .int(from)
        .int(to);
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::ledger_entry,
        )
    }
}
