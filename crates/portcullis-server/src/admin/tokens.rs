//! Agent tokens: mint one (shown once, optionally scoped to connections or single tools, with
//! a bounded life), list them (never a secret or its hash) and revoke one.

use super::common::{ApiResult, AppRef, Revoked, parse_id, require_admin, tenant_for, valid_name};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::id::{AgentId, TokenId};
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::{AgentToken, NewToken};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route(
            "/tenants/{tenant}/agents/{agent}/tokens",
            post(create_token),
        )
        .route("/tenants/{tenant}/tokens", get(list_tokens))
        .route(
            "/tenants/{tenant}/tokens/{token}/revoke",
            post(revoke_token),
        )
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    /// Connection names (`crm`) or single tools (`crm/send_email`), `@models` or
    /// `@models/ROUTE` for model routes; empty: everything granted and every model route.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Life in seconds; none: the configured default.
    pub ttl_secs: Option<u64>,
}

/// A token just minted: the secret is shown once.
#[derive(Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub id: TokenId,
    pub expires_at: UnixMillis,
    pub scope: Vec<String>,
    pub note: String,
}

// The token is a credential: never in a debug print.
impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"[redacted]")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("note", &self.note)
            .finish()
    }
}

/// A minted token as lists show it: who holds it, what it reaches, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: TokenId,
    pub agent: AgentId,
    pub scope: Vec<String>,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

impl From<AgentToken> for TokenView {
    fn from(t: AgentToken) -> Self {
        Self {
            id: t.id,
            agent: t.agent,
            scope: t.scope,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A tenant's tokens, live ones first, at most 500 (sessions exchanged for them are not
/// listed).
pub(crate) async fn list_tokens(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<TokenView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let tokens = state
        .store
        .list_tokens(&tenant.id, state.clock.now(), 500)
        .await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

pub(crate) async fn create_token(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    Json(body): Json<TokenIn>,
) -> ApiResult<CreatedToken> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent: AgentId = parse_id(&agent)?;
    let max = state.config.auth.token_ttl_secs.max(366 * 24 * 3600);
    let ttl = body.ttl_secs.unwrap_or(state.config.auth.token_ttl_secs);
    if ttl == 0 || ttl > max {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {max}"
        )));
    }
    for entry in &body.scope {
        // `@models` (every model route) or `@models/NAME` (one route).
        if entry == crate::models::SCOPE
            || entry
                .strip_prefix(crate::models::SCOPE)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(crate::models::route::valid_name)
        {
            continue;
        }
        let (connection, tool) = entry.split_once('/').unwrap_or((entry, ""));
        valid_name("connection", connection)?;
        if entry.contains('/') && tool.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "scope entry `{entry}` names no tool"
            )));
        }
    }
    let now = state.clock.now();
    let secret = BearerSecret::generate(TokenKind::Agent);
    let token = state
        .store
        .create_token(
            NewToken {
                tenant: &tenant.id,
                agent: &agent,
                token_hash: &secret.hash(),
                scope: &body.scope,
                expires_at: now + (ttl as i64) * 1000,
            },
            &ctx.actor(),
            now,
        )
        .await?;
    Ok(Json(CreatedToken {
        token: secret.expose().to_owned(),
        id: token.id,
        expires_at: token.expires_at,
        scope: token.scope,
        note: "shown once; only its hash is stored".into(),
    }))
}

pub(crate) async fn revoke_token(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, token)): Path<(String, String)>,
) -> ApiResult<Revoked<TokenId>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let token: TokenId = parse_id(&token)?;
    state
        .store
        .revoke_token(&tenant.id, &token, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(Revoked { revoked: token }))
}
