//! Tenants: create (unscoped admins only) and list the ones this human may see. Tenants are
//! addressed by name everywhere else in the API.

use super::common::{ApiResult, AppRef, require_admin, valid_name};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::id::TenantId;
use portcullis_store::Tenant;
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new().route("/tenants", post(create_tenant).get(list_tenants))
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
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        Self {
            id: tenant.id,
            name: tenant.name,
            created_at: tenant.created_at,
            suspended_at: tenant.suspended_at,
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
