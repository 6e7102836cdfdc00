//! The kill switch: suspend an agent, or a whole tenant, at once — the very next call is
//! refused — and lift the suspension. Suspending only makes the gateway stricter, so
//! approvers may do it; resuming needs the admin role.

use super::agents::AgentView;
use super::common::{ApiResult, AppRef, agent_in, draft, require_admin, tenant_for};
use super::tenants::TenantView;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use portcullis_core::audit::AuditKind;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/suspend", post(suspend_tenant))
        .route("/tenants/{tenant}/resume", post(resume_tenant))
        .route(
            "/tenants/{tenant}/agents/{agent}/suspend",
            post(suspend_agent),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}/resume",
            post(resume_agent),
        )
}

async fn suspend_tenant(
    state: State<AppRef>,
    ctx: AdminContext,
    tenant: Path<String>,
) -> ApiResult<TenantView> {
    tenant_switch(state, ctx, tenant, true).await
}

async fn resume_tenant(
    state: State<AppRef>,
    ctx: AdminContext,
    tenant: Path<String>,
) -> ApiResult<TenantView> {
    tenant_switch(state, ctx, tenant, false).await
}

pub(crate) async fn tenant_switch(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    suspended: bool,
) -> ApiResult<TenantView> {
    if !suspended {
        require_admin(&ctx)?;
    }
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let kind = if suspended {
        AuditKind::TenantSuspended
    } else {
        AuditKind::TenantResumed
    };
    let audit = draft(&tenant.id, &ctx, kind, format!("tenant:{}", tenant.id));
    let (tenant, _) = state
        .store
        .set_tenant_suspended(&tenant.id, suspended, audit, state.clock.now())
        .await?;
    Ok(Json(tenant.into()))
}

async fn suspend_agent(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, String)>,
) -> ApiResult<AgentView> {
    agent_switch(state, ctx, path, true).await
}

async fn resume_agent(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, String)>,
) -> ApiResult<AgentView> {
    agent_switch(state, ctx, path, false).await
}

pub(crate) async fn agent_switch(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    suspended: bool,
) -> ApiResult<AgentView> {
    if !suspended {
        require_admin(&ctx)?;
    }
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent = agent_in(&state, &tenant.id, &agent).await?;
    let kind = if suspended {
        AuditKind::AgentSuspended
    } else {
        AuditKind::AgentResumed
    };
    let audit = draft(&tenant.id, &ctx, kind, format!("agent:{}", agent.id));
    let (agent, _) = state
        .store
        .set_agent_suspended(&tenant.id, &agent.id, suspended, audit, state.clock.now())
        .await?;
    Ok(Json(agent.into()))
}
