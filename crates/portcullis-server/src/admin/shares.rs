//! Signed share links for artifacts: a tenant's verifiable audit export (`audit-export`) or
//! one approval's evidence (`approval:<id>`), behind `/share/<token>` for 1 h, 24 h, 7 d,
//! 30 d or without expiry; listed and revoked by id. The token is shown once; only its hash
//! is stored. Admins, approvers and auditors may share (viewers do not read the audit trail).

use super::common::{ApiResult, AppRef, parse_id, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, header};
use portcullis_core::id::{ApprovalId, ShareLinkId};
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::{ShareLink, StoreError};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route(
            "/tenants/{tenant}/shares",
            post(create_share).get(list_shares),
        )
        .route("/tenants/{tenant}/shares/{id}", delete(revoke_share))
}

/// What to share, and for how long: `1h`, `24h`, `7d`, `30d` or `none`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareIn {
    pub artifact: String,
    pub expires: String,
}

/// A new link: its path (`/share/<token>`) is shown here once.
#[derive(Serialize, Deserialize)]
pub struct CreatedShare {
    pub link: ShareLink,
    #[serde(serialize_with = "reveal")]
    pub path: SecretString,
}

impl std::fmt::Debug for CreatedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedShare")
            .field("link", &self.link)
            .field("path", &"[REDACTED]")
            .finish()
    }
}

fn reveal<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// Milliseconds a choice lasts (`None`: no expiry).
pub fn lifetime(choice: &str) -> Result<Option<i64>, ApiError> {
    Ok(match choice {
        "1h" => Some(3_600_000),
        "24h" => Some(86_400_000),
        "7d" => Some(7 * 86_400_000),
        "30d" => Some(30 * 86_400_000),
        "none" => None,
        _ => {
            return Err(ApiError::BadRequest(
                "expires is one of 1h, 24h, 7d, 30d or none".into(),
            ));
        }
    })
}

/// Create a link for `artifact` of `tenant` (checked to exist and to be the tenant's).
pub async fn share(
    state: &crate::state::AppState,
    ctx: &AdminContext,
    tenant: &portcullis_store::Tenant,
    artifact: &str,
    expires: &str,
) -> Result<CreatedShare, ApiError> {
    if !matches!(
        ctx.admin.role,
        portcullis_store::AdminRole::Admin
            | portcullis_store::AdminRole::Approver
            | portcullis_store::AdminRole::Auditor
    ) {
        return Err(ApiError::Forbidden(
            "sharing needs a role that reads the audit trail".into(),
        ));
    }
    let life = lifetime(expires)?;
    let now = state.clock.now();
    match artifact.strip_prefix("approval:") {
        Some(id) => {
            let id: ApprovalId = parse_id(id)?;
            state
                .store
                .find_approval(Some(&tenant.id), &id, now)
                .await?;
        }
        None if artifact == "audit-export" => {}
        None => {
            return Err(ApiError::BadRequest(
                "artifact is `audit-export` or `approval:<id>`".into(),
            ));
        }
    }
    let token = BearerSecret::generate(TokenKind::Share);
    let path = format!("/share/{}", token.expose());
    let link = state
        .store
        .create_share_link(
            &tenant.id,
            &crate::console::sha256_hex(token.expose()),
            artifact,
            life.map(|ms| now + ms),
            &ctx.actor(),
            now,
        )
        .await?;
    Ok(CreatedShare {
        link,
        path: path.into(),
    })
}

async fn create_share(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<ShareIn>,
) -> ApiResult<CreatedShare> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    Ok(Json(
        share(&state, &ctx, &tenant, &body.artifact, &body.expires).await?,
    ))
}

async fn list_shares(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<ShareLink>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    Ok(Json(state.store.share_links(&tenant.id).await?))
}

async fn revoke_share(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<serde_json::Value> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: ShareLinkId = parse_id(&id)?;
    state
        .store
        .revoke_share_link(&tenant.id, &id, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}

/// `GET /share/{token}`: the artifact, if the link is live and its tenant still owns what it
/// names; anything else is one "not found". Every download is audited.
pub async fn download(
    State(state): State<Arc<crate::state::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    if token.len() > 128 {
        return not_found();
    }
    let ip = state.client_ip(peer.ip(), &headers);
    let now = state.clock.now();
    let link = match state
        .store
        .open_share_link(&crate::console::sha256_hex(&token), &ip.to_string(), now)
        .await
    {
        Ok(link) => link,
        Err(StoreError::NotFound) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "cannot open a share link");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let (body, name, kind) = match link.artifact.strip_prefix("approval:") {
        Some(id) => {
            let Ok(id) = id.parse::<ApprovalId>() else {
                return not_found();
            };
            // Ownership again, at download: the approval must still be this tenant's.
            match state
                .store
                .find_approval(Some(&link.tenant), &id, now)
                .await
            {
                Ok(approval) => {
                    let view = super::approvals::ApprovalView::from(approval);
                    (
                        serde_json::to_vec_pretty(&view).unwrap_or_default(),
                        format!("{id}.json"),
                        "application/json",
                    )
                }
                Err(_) => return not_found(),
            }
        }
        None => {
            let mut out = Vec::new();
            let key = portcullis_core::note::vkey(
                portcullis_core::note::KEY_NAME,
                &state.keys.verifying_key(),
            );
            match crate::audit::write_export(
                &state.store,
                std::slice::from_ref(&link.tenant),
                vec![key],
                now,
                &mut out,
                &|_| {},
            )
            .await
            {
                Ok(_) => (out, "audit-export.jsonl".to_owned(), "application/x-ndjson"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot write a shared export");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
                }
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response()
}
