//! Agents of a tenant: create, list, revoke, and record the human an agent acts for (its
//! owner, who therefore may not approve its actions). Their tokens are `tokens`; suspending
//! one is `suspension`.

use super::common::{
    ApiResult, AppRef, Revoked, agent_in, draft, parse_id, require_admin, tenant_for, valid_name,
};
use super::tenants::NameIn;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::{post, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::audit::AuditKind;
use portcullis_core::id::{AgentId, TenantId};
use portcullis_store::Agent;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route(
            "/tenants/{tenant}/agents",
            post(create_agent).get(list_agents),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}/revoke",
            post(revoke_agent),
        )
        .route("/tenants/{tenant}/agents/{agent}/owner", put(set_owner))
}

/// An agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: AgentId,
    pub tenant: TenantId,
    pub name: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// The human the agent acts for.
    pub owner: Option<String>,
    /// Set while the agent's kill switch is on.
    pub suspended_at: Option<UnixMillis>,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        Self {
            id: agent.id,
            tenant: agent.tenant,
            name: agent.name,
            created_at: agent.created_at,
            revoked_at: agent.revoked_at,
            owner: agent.owner,
            suspended_at: agent.suspended_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerIn {
    /// The owner's name; none clears it.
    pub owner: Option<String>,
}

pub(crate) async fn create_agent(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<NameIn>,
) -> ApiResult<AgentView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    valid_name("agent", &body.name)?;
    let agent = state
        .store
        .create_agent(&tenant.id, &body.name, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(agent.into()))
}

pub(crate) async fn list_agents(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<AgentView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agents = state.store.list_agents(&tenant.id).await?;
    Ok(Json(agents.into_iter().map(AgentView::from).collect()))
}

pub(crate) async fn revoke_agent(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
) -> ApiResult<Revoked<AgentId>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent: AgentId = parse_id(&agent)?;
    state
        .store
        .revoke_agent(&tenant.id, &agent, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(Revoked { revoked: agent }))
}

async fn set_owner(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    Json(body): Json<OwnerIn>,
) -> ApiResult<AgentView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent = agent_in(&state, &tenant.id, &agent).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ConfigChanged,
        format!("agent:{}", agent.id),
    );
    audit.detail = json!({ "owner": body.owner });
    let (agent, _) = state
        .store
        .set_agent_owner(
            &tenant.id,
            &agent.id,
            body.owner.as_deref(),
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(agent.into()))
}
