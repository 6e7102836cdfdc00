//! Grants: which agent may see which tools of which connection (one tool, or `*` for all of
//! them). A token's scope can only narrow what its agent was granted.

use super::common::{ApiResult, AppRef, connection_in, parse_id, require_admin};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use portcullis_core::id::{AgentId, ConnectionId};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/grants", post(add_grant))
        .route("/tenants/{tenant}/grants/revoke", post(remove_grant))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantIn {
    /// The agent's id.
    pub agent: String,
    /// The connection's id.
    pub connection: String,
    /// One tool, or `*` (the default) for every tool of the connection.
    #[serde(default = "all_tools")]
    pub tool: String,
}

fn all_tools() -> String {
    "*".into()
}

/// One grant, as added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub agent: AgentId,
    pub connection: ConnectionId,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub granted: GrantView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: GrantView,
}

async fn add_grant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GrantIn>,
) -> ApiResult<Granted> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &body.connection).await?;
    if connection.revoked_at.is_some() {
        return Err(ApiError::Conflict("connection is revoked".into()));
    }
    let agent: AgentId = parse_id(&body.agent)?;
    state
        .store
        .grant(
            &tenant.id,
            &agent,
            &connection.id,
            &body.tool,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(Granted {
        granted: GrantView {
            agent,
            connection: connection.id,
            tool: body.tool,
        },
    }))
}

async fn remove_grant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GrantIn>,
) -> ApiResult<Removed> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &body.connection).await?;
    let agent: AgentId = parse_id(&body.agent)?;
    state
        .store
        .revoke_grant(
            &tenant.id,
            &agent,
            &connection.id,
            &body.tool,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(Removed {
        removed: GrantView {
            agent,
            connection: connection.id,
            tool: body.tool,
        },
    }))
}
