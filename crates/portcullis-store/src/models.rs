//! Model routes, the tenant's provider policy and the credits ledger of model requests —
//! each query written once for both backends. A route's spec is JSON the server validates;
//! the store keeps it as text and never holds a key (only the name of a vault secret).

use crate::sql::{Freshness, Row, Scope, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::audit::AuditKind;

/// A stored model route.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelRouteRecord {
    pub name: String,
    pub spec: serde_json::Value,
    pub updated_by: String,
    pub updated_at: UnixMillis,
}

/// One request that reached a provider, for the ledger.
#[derive(Debug, Clone)]
pub struct ModelUsage<'a> {
    pub tenant: &'a TenantId,
    pub agent: &'a AgentId,
    pub route: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub credits: i64,
    pub byo: bool,
    pub zero_retention: bool,
}

/// The ledger summed per route, provider and model over a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelUsageTotal {
    pub route: String,
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub credits: i64,
    /// Requests sent with the tenant's own key.
    pub byo_requests: i64,
    /// Requests sent with the no-retention settings.
    pub zero_retention_requests: i64,
}

fn route(row: &Row) -> StoreResult<ModelRouteRecord> {
    Ok(ModelRouteRecord {
        name: row.text("name")?,
        spec: serde_json::from_str(&row.text("spec")?)
            .map_err(|e| StoreError::Corrupt(format!("model route spec: {e}")))?,
        updated_by: row.text("updated_by")?,
        updated_at: row.int("updated_at")?,
    })
}

impl Store {
    /// Create or replace a route. `summary` is what the audit keeps of it (the caller
    /// leaves out what must not be copied there, such as the system prompt's text).
    pub async fn put_model_route(
        &self,
        tenant: &TenantId,
        name: &str,
        spec: &serde_json::Value,
        summary: serde_json::Value,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ModelRouteRecord> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        let text = serde_json::to_string(spec)
            .map_err(|e| StoreError::Corrupt(format!("model route spec: {e}")))?;
        let replaced = tx
            .execute(
                &sql(
                    "UPDATE model_routes SET spec = $3, updated_by = $4, updated_at = $5 \
                      WHERE tenant_id = $1 AND name = $2",
                )
                .text(tenant.as_str())
                .text(name)
                .text(text.as_str())
                .text(actor)
                .int(now),
            )
            .await?;
        if replaced == 0 {
            tx.execute(
                &sql(
                    "INSERT INTO model_routes (tenant_id, name, spec, updated_by, updated_at) \
                      VALUES ($1, $2, $3, $4, $5)",
                )
                .text(tenant.as_str())
                .text(name)
                .text(text.as_str())
                .text(actor)
                .int(now),
            )
            .await?;
        }
        let record = ModelRouteRecord {
            name: name.to_owned(),
            spec: spec.clone(),
            updated_by: actor.to_owned(),
            updated_at: now,
        };
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConfigChanged)
            .resource(format!("model_route:{name}"))
            .detail(serde_json::json!({ "model_route": summary, "replaced": replaced > 0 }));
        Ok(tx.audited(record, draft, now).await?.0)
    }

    pub async fn delete_model_route(
        &self,
        tenant: &TenantId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("DELETE FROM model_routes WHERE tenant_id = $1 AND name = $2")
            .text(tenant.as_str())
            .text(name);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConfigChanged)
            .resource(format!("model_route:{name}"))
            .detail(serde_json::json!({ "model_route_deleted": name }));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn model_routes(&self, tenant: &TenantId) -> StoreResult<Vec<ModelRouteRecord>> {
        let q = sql("SELECT * FROM model_routes WHERE tenant_id = $1 ORDER BY name")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            route,
        )
    }

    /// Set (or clear, with `None`) the tenant's provider policy, audited.
    pub async fn set_model_providers(
        &self,
        tenant: &TenantId,
        policy: Option<&serde_json::Value>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let text = policy.map(|p| p.to_string());
        let change =
            sql("UPDATE tenants SET model_providers = $2 WHERE id = $1 AND deleted_at IS NULL")
                .text(tenant.as_str())
                .opt_text(text);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ConfigChanged)
            .resource(format!("tenant:{tenant}"))
            .detail(serde_json::json!({ "model_providers": policy }));
        self.change_one(tenant, change, draft, now).await
    }

    pub async fn model_providers(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Option<serde_json::Value>> {
        let q = sql("SELECT model_providers FROM tenants WHERE id = $1 AND deleted_at IS NULL")
            .text(tenant.as_str());
        let row = self
            .read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.opt_text("model_providers")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("model providers: {e}")))
            })
            .transpose()
    }

    /// Record one request in the ledger together with its audit event (one transaction:
    /// a request is counted exactly when it is audited).
    pub async fn record_model_usage(
        &self,
        usage: ModelUsage<'_>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        let mut tx = self.begin(Scope::Tenant(usage.tenant)).await?;
        tx.execute(
            &sql("INSERT INTO model_usage (tenant_id, time, agent_id, route, provider, model, status, \
                  input_tokens, output_tokens, credits, byo, zero_retention) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .text(usage.tenant.as_str())
            .int(now)
            .text(usage.agent.as_str())
            .text(usage.route)
            .text(usage.provider)
            .text(usage.model)
            .int(i64::from(usage.status))
            .int(usage.input_tokens)
            .int(usage.output_tokens)
            .int(usage.credits)
            .int(i64::from(usage.byo))
            .int(i64::from(usage.zero_retention)),
        )
        .await?;
        Ok(tx.audited((), draft, now).await?.1)
    }

    /// The ledger since `since`, summed per route, provider and model.
    pub async fn model_usage_totals(
        &self,
        tenant: &TenantId,
        since: UnixMillis,
    ) -> StoreResult<Vec<ModelUsageTotal>> {
        let q = sql(
            "SELECT route, provider, model, COUNT(*) AS requests, \
                    CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
                    CAST(SUM(credits) AS BIGINT) AS credits, CAST(SUM(byo) AS BIGINT) AS byo_requests, \
                    CAST(SUM(zero_retention) AS BIGINT) AS zero_retention_requests \
             FROM model_usage WHERE tenant_id = $1 AND time >= $2 \
             GROUP BY route, provider, model ORDER BY route, provider, model",
        )
        .text(tenant.as_str())
        .int(since);
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            |row| {
                Ok(ModelUsageTotal {
                    route: row.text("route")?,
                    provider: row.text("provider")?,
                    model: row.text("model")?,
                    requests: row.int("requests")?,
                    input_tokens: row.int("input_tokens")?,
                    output_tokens: row.int("output_tokens")?,
                    credits: row.int("credits")?,
                    byo_requests: row.int("byo_requests")?,
                    zero_retention_requests: row.int("zero_retention_requests")?,
                })
            },
        )
    }
}
