//! Short-lived agent sessions: `POST /t/{tenant}/sessions` exchanges an agent's long-lived
//! token for a session token of at most 15 minutes, for the same agent and tenant, scoped to
//! a subset of what the parent token may reach. A session token cannot open sessions itself;
//! it lives no longer than its parent, is refused on its next request once the parent is
//! revoked or expires (the store reads the parent with the token), and spends its parent's
//! rate limit.

use crate::api::problem;
use crate::identity::AgentContext;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::UnixMillis;
use portcullis_core::id::TokenId;
use portcullis_core::token::{BearerSecret, TokenKind};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// The longest a session lives.
pub const MAX_SESSION_SECS: u64 = 15 * 60;

/// What an agent asks for. Both fields are optional: the longest life and the parent's scope.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionIn {
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Connection names or `connection/tool` pairs, each within the parent token's scope.
    #[serde(default)]
    pub scope: Vec<String>,
}

/// The session token, shown once.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionOut {
    pub token: String,
    pub id: TokenId,
    pub expires_at: UnixMillis,
    pub scope: Vec<String>,
}

/// The scope a session gets: the requested entries when every one lies within the parent's
/// scope (an empty parent scope means everything the agent is granted), else the refusal.
/// Nothing requested: the parent's own scope.
pub fn narrowed_scope(parent: &[String], requested: &[String]) -> Result<Vec<String>, String> {
    if requested.is_empty() {
        return Ok(parent.to_vec());
    }
    for entry in requested {
        let (connection, tool) = match entry.split_once('/') {
            Some((c, t)) => (c, Some(t)),
            None => (entry.as_str(), None),
        };
        let well_formed = crate::admin::common::valid_name("connection", connection).is_ok()
            && tool.is_none_or(|t| !t.is_empty() && !t.contains('/'));
        if !well_formed {
            return Err(format!(
                "scope entry `{entry}` is not a connection or connection/tool"
            ));
        }
        let covered = parent.is_empty()
            || parent
                .iter()
                .any(|p| p == connection || tool.is_some_and(|_| p == entry));
        if !covered {
            return Err(format!(
                "scope entry `{entry}` is wider than the token it is exchanged for"
            ));
        }
    }
    Ok(requested.to_vec())
}

/// Axum handler for `POST /t/{tenant}/sessions`.
pub async fn exchange(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.metrics.request("sessions");
    let ctx: AgentContext = match crate::api::agent_of(&state, peer, &tenant, &headers).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    if ctx.parent_token.is_some() {
        return problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a session token cannot open sessions; use the agent's own token",
        );
    }
    let request: SessionIn = if body.is_empty() {
        SessionIn::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("invalid session request: {e}"),
                );
            }
        }
    };
    let ttl = request.ttl_secs.unwrap_or(MAX_SESSION_SECS);
    if ttl == 0 || ttl > MAX_SESSION_SECS {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("ttl_secs must be between 1 and {MAX_SESSION_SECS}"),
        );
    }
    let scope = match narrowed_scope(&ctx.scope, &request.scope) {
        Ok(scope) => scope,
        Err(message) => return problem(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let now = state.clock.now();
    let expires_at = (now + ttl as i64 * 1000).min(ctx.token_expires_at);
    let secret = BearerSecret::generate(TokenKind::Agent);
    let session = portcullis_store::NewToken {
        tenant: &ctx.tenant,
        agent: &ctx.agent,
        token_hash: &secret.hash(),
        scope: &scope,
        expires_at,
    };
    match state
        .store
        .create_session_token(&ctx.token, session, now)
        .await
    {
        Ok(token) => {
            state.cache.invalidate();
            (
                StatusCode::CREATED,
                axum::Json(SessionOut {
                    token: secret.expose().to_owned(),
                    id: token.id,
                    expires_at: token.expires_at,
                    scope: token.scope,
                }),
            )
                .into_response()
        }
        Err(portcullis_store::StoreError::NotFound) => problem(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing, invalid, revoked or expired agent token",
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot create a session token");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway cannot reach its store",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_session_is_never_wider_than_its_parent() {
        assert_eq!(narrowed_scope(&[], &[]).unwrap(), Vec::<String>::new());
        assert_eq!(narrowed_scope(&v(&["crm"]), &[]).unwrap(), v(&["crm"]));
        assert_eq!(
            narrowed_scope(&v(&["crm"]), &v(&["crm/send_email"])).unwrap(),
            v(&["crm/send_email"])
        );
        assert!(narrowed_scope(&v(&["crm/read"]), &v(&["crm"])).is_err());
        assert!(narrowed_scope(&v(&["crm/read"]), &v(&["crm/send"])).is_err());
        assert!(narrowed_scope(&v(&["crm"]), &v(&["billing"])).is_err());
        assert!(narrowed_scope(&[], &v(&["crm/a/b"])).is_err());
        assert!(narrowed_scope(&[], &v(&["crm/"])).is_err());
        assert_eq!(
            narrowed_scope(&[], &v(&["billing"])).unwrap(),
            v(&["billing"])
        );
    }
}
