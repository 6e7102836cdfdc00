//! The operator's program catalog as an admin may see it: what a stdio connection may launch
//! (the catalog itself is `crate::programs`).

use super::common::{ApiResult, AppRef, TenantQuery, require_admin, tenant_for};
use crate::identity::AdminContext;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new().route("/programs", get(list_programs))
}

/// One catalog entry: never its command line or the operator's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramView {
    pub name: String,
    pub description: String,
    /// The patterns a tenant's extra arguments must match.
    pub tenant_args: Vec<String>,
    /// The environment variables a tenant may set.
    pub tenant_env: Vec<String>,
    /// Whom the entry is offered to (`*`: every tenant); shown to unscoped admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
}

/// The entries offered to the admin's tenant (an unscoped admin sees every entry and whom it
/// is offered to), their descriptions and what a tenant may set.
async fn list_programs(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Vec<ProgramView>> {
    require_admin(&ctx)?;
    let tenant = match (&q.tenant, &ctx.admin.tenant) {
        (Some(name), _) => Some(tenant_for(&state, &ctx, name).await?.name),
        (None, Some(id)) => Some(state.store.tenant(id).await?.name),
        (None, None) => None,
    };
    Ok(Json(
        state
            .catalog
            .programs(tenant.as_deref())
            .map(|p| ProgramView {
                name: p.name.clone(),
                description: p.description.clone(),
                tenant_args: p.tenant_arg_patterns().map(str::to_owned).collect(),
                tenant_env: p.tenant_env_names().map(str::to_owned).collect(),
                tenants: ctx.admin.tenant.is_none().then(|| p.tenants().to_vec()),
            })
            .collect(),
    ))
}
