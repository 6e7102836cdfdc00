//! Model routes of a tenant (create or replace, list, delete), its provider policy (allow
//! and block lists) and the credits ledger of model requests. Admins change them; every
//! human of the tenant may read them. A route names the vault secret that holds its key:
//! the key is put with the secrets endpoint and never appears here.

use super::common::{ApiResult, AppRef, require_admin, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::models::route::{ModelRoute, ProviderPolicy, valid_name};
use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_store::{ModelUsageTotal, StoreError};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/models", get(list))
        .route(
            "/tenants/{tenant}/models/{name}",
            put(put_route).delete(delete_route),
        )
        .route("/tenants/{tenant}/model-providers", put(set_providers))
        .route("/tenants/{tenant}/model-usage", get(usage))
}

/// A stored route as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    pub name: String,
    pub route: ModelRoute,
    pub updated_by: String,
    pub updated_at: UnixMillis,
}

/// The tenant's routes and provider policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsView {
    pub routes: Vec<RouteView>,
    pub providers: ProviderPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

/// The period of a usage report, back from now: `30d` (the default), `12h`, `90m`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub since: UnixMillis,
    pub total_credits: i64,
    pub lines: Vec<ModelUsageTotal>,
}

async fn list(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<ModelsView> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let mut routes = Vec::new();
    for record in state.store.model_routes(&tenant.id).await? {
        let route = serde_json::from_value(record.spec)
            .map_err(|e| ApiError::Internal(format!("stored model route: {e}")))?;
        routes.push(RouteView {
            name: record.name,
            route,
            updated_by: record.updated_by,
            updated_at: record.updated_at,
        });
    }
    let providers = match state.store.model_providers(&tenant.id).await? {
        Some(value) => serde_json::from_value(value)
            .map_err(|e| ApiError::Internal(format!("stored provider policy: {e}")))?,
        None => ProviderPolicy::default(),
    };
    Ok(Json(ModelsView { routes, providers }))
}

/// Admins only. The route is checked whole (see [`ModelRoute::validate`]), its provider
/// against the tenant's provider policy, and its key secret must already be in the vault.
async fn put_route(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, name)): Path<(String, String)>,
    Json(route): Json<ModelRoute>,
) -> ApiResult<RouteView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(
            "a route name must be 1-64 of a-z, 0-9, -, _ and .".into(),
        ));
    }
    route.validate().map_err(ApiError::BadRequest)?;
    if let Some(policy) = state.store.model_providers(&tenant.id).await?
        && let Ok(policy) = serde_json::from_value::<ProviderPolicy>(policy)
        && let Some(reason) = policy.refusal(&route.provider)
    {
        return Err(ApiError::BadRequest(reason));
    }
    let hosts = crate::egress::HostAllowList::parse(&tenant.egress_hosts)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Err(refusal) = state.egress.check_url(&route.base_url, &hosts) {
        let draft = portcullis_core::audit::AuditDraft::new(
            tenant.id.clone(),
            ctx.actor(),
            portcullis_core::audit::AuditKind::EgressRefused,
        )
        .resource(format!("model_route:{name}"))
        .detail(serde_json::json!({ "rule": refusal.rule.name() }));
        state.store.append_audit(draft, state.clock.now()).await?;
        return Err(ApiError::BadRequest(format!(
            "the base URL is refused by the egress policy ({}): {}",
            refusal.rule.name(),
            refusal.detail
        )));
    }
    match state.store.secret_meta(&tenant.id, &route.key_secret).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return Err(ApiError::BadRequest(format!(
                "no secret `{}` in this tenant's vault: put the provider key first",
                route.key_secret
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let spec = serde_json::to_value(&route)
        .map_err(|e| ApiError::Internal(format!("model route: {e}")))?;
    let record = state
        .store
        .put_model_route(
            &tenant.id,
            &name,
            &spec,
            route.audit_summary(&name),
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(RouteView {
        name: record.name,
        route,
        updated_by: record.updated_by,
        updated_at: record.updated_at,
    }))
}

async fn delete_route(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Deleted> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    state
        .store
        .delete_model_route(&tenant.id, &name, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(Deleted { deleted: name }))
}

/// Admins only. Requests to a provider the new policy refuses are refused from the next
/// request on (routes that name it stay stored, and answer with the reason).
async fn set_providers(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(policy): Json<ProviderPolicy>,
) -> ApiResult<ProviderPolicy> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    policy.validate().map_err(ApiError::BadRequest)?;
    let value = serde_json::to_value(&policy)
        .map_err(|e| ApiError::Internal(format!("provider policy: {e}")))?;
    state
        .store
        .set_model_providers(&tenant.id, Some(&value), &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(policy))
}

async fn usage(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<UsageReport> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let period = crate::clock::period_ms(query.since.as_deref().unwrap_or("30d"))
        .map_err(ApiError::BadRequest)?;
    let since = state.clock.now().saturating_sub(period);
    let lines = state.store.model_usage_totals(&tenant.id, since).await?;
    Ok(Json(UsageReport {
        since,
        total_credits: lines.iter().map(|l| l.credits).sum(),
        lines,
    }))
}
