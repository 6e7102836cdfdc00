//! Tenants: create (unscoped admins only) and list the ones this human may see; their egress
//! hosts and whether their humans need a TOTP code to sign in to the console. Tenants are
//! addressed by name everywhere else in the API.

use super::common::tenant_for;
use super::common::{ApiResult, AppRef, draft, from_wire, require_admin, valid_name};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::audit::AuditKind;
use portcullis_core::id::TenantId;
use portcullis_store::{ConsoleTotp, Tenant};
use serde::{Deserialize, Deserializer, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/tenants/{tenant}/egress",
            get(egress_hosts).put(set_egress_hosts),
        )
        .route("/tenants/{tenant}/console", put(set_console))
}

/// The hosts a tenant's outbound requests may reach: exact hosts and `*.domain` patterns.
/// Empty: any public host. It only narrows the operator's egress policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressHosts {
    pub hosts: Vec<String>,
}

async fn egress_hosts(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<EgressHosts> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    Ok(Json(EgressHosts {
        hosts: tenant.egress_hosts,
    }))
}

/// Admins only. Upstreams reconnect under the new list at once.
async fn set_egress_hosts(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<EgressHosts>,
) -> ApiResult<EgressHosts> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    if body.hosts.len() > 256 {
        return Err(ApiError::BadRequest("at most 256 hosts".into()));
    }
    crate::egress::HostAllowList::parse(&body.hosts)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .set_egress_hosts(&tenant.id, &body.hosts, &ctx.actor(), state.clock.now())
        .await?;
    state.cache.invalidate();
    for connection in state.store.list_connections(&tenant.id).await? {
        if connection.revoked_at.is_none() {
            state.upstreams.stop(&connection.id);
            state.upstreams.start(connection);
        }
    }
    Ok(Json(body))
}

/// A name for something new: a tenant or an agent.
// Request bodies refuse unknown fields: a misspelt field (`scopes` for `scope`) must not be
// silently dropped and create something wider than asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameIn {
    pub name: String,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub created_at: UnixMillis,
    /// Set while the tenant's kill switch is on.
    pub suspended_at: Option<UnixMillis>,
    /// `required`: every human of the tenant signs in to the console with a TOTP code.
    /// `optional`: one who has not enrolled a second factor may sign in with the password
    /// alone.
    #[serde(deserialize_with = "console_totp_from_wire")]
    pub console_totp: ConsoleTotp,
}

fn console_totp_from_wire<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ConsoleTotp, D::Error> {
    from_wire(deserializer, ConsoleTotp::parse, "console TOTP rule")
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        Self {
            id: tenant.id,
            name: tenant.name,
            created_at: tenant.created_at,
            suspended_at: tenant.suspended_at,
            console_totp: tenant.console_totp,
        }
    }
}

async fn create_tenant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Json(body): Json<NameIn>,
) -> ApiResult<TenantView> {
    require_admin(&ctx)?;
    if ctx.admin.tenant.is_some() {
        return Err(ApiError::Forbidden(
            "a tenant-scoped admin cannot create tenants".into(),
        ));
    }
    valid_name("tenant", &body.name)?;
    let tenant = state
        .store
        .create_tenant(&body.name, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(tenant.into()))
}

async fn list_tenants(
    State(state): State<AppRef>,
    ctx: AdminContext,
) -> ApiResult<Vec<TenantView>> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(
        tenants
            .into_iter()
            .filter(|t| ctx.may_access(&t.id))
            .map(TenantView::from)
            .collect(),
    ))
}

/// The console's rule for a tenant's humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleIn {
    /// `required` (every human signs in with a TOTP code) or `optional` (a human who has not
    /// enrolled one may sign in with the password alone); checked by the server.
    pub totp: String,
}

/// Admins only. Sign-ins from now on follow the new rule; sessions already open stay open.
/// A human who has enrolled a second factor is asked for a code either way, and a decision
/// at or above `console.fresh_factor_above_cents` still needs a fresh one.
async fn set_console(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<ConsoleIn>,
) -> ApiResult<TenantView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let rule = ConsoleTotp::parse(&body.totp).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "totp must be `required` or `optional`, not `{}`",
            body.totp
        ))
    })?;
    let audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ConfigChanged,
        format!("tenant:{}", tenant.id),
    )
    .detail(serde_json::json!({ "console_totp": rule.as_str() }));
    let (tenant, _) = state
        .store
        .set_tenant_console_totp(&tenant.id, rule, audit, state.clock.now())
        .await?;
    Ok(Json(tenant.into()))
}
