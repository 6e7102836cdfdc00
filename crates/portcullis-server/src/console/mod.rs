//! The console: server-rendered pages for the people who decide and audit — sign-in with a
//! password and a second factor, the approvals inbox, the audit viewer, connections and the
//! access review, agents and their tokens, guardrails, webhooks and policies. No script at all: the
//! Content-Security-Policy forbids every script, and pages are plain forms (usable by
//! keyboard, every field labelled).
//!
//! INVARIANT: every state change is a POST carrying the session's CSRF token (derived from the
//! session token, compared in constant time) from a session cookie that is `Secure`,
//! `HttpOnly` and `SameSite=Strict`; a session ends after `console.session_idle_secs` without
//! use or `console.session_absolute_secs` in all. Every page shows only the signed-in human's
//! tenants: another tenant's approval is "not found", like the admin API. Errors are generic
//! pages; the detail goes to the log.
//!
//! Every change a page offers runs the admin API's own handler with the signed-in human's
//! context ([`Signed::change`] is the only way to that context for a change: CSRF checked,
//! read-only roles refused), so the console can do nothing the API would not let the same
//! human do, and every change is audited the same way.

mod access;
mod agents;
mod approvals;
mod audit;
mod guardrails;
mod login;
mod page;
mod policy;
mod webhooks;

pub use login::totp_aad;

use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use portcullis_store::{ConsoleSession, StoreError};
use std::sync::Arc;

/// The session cookie (`__Host-`: Secure, path `/`, no domain — set by this host only).
pub const COOKIE: &str = "__Host-portcullis_session";

/// The console's routes, under `/console`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/console.css", get(page::stylesheet))
        .route("/console/t/{tenant}/approvals", get(approvals::inbox))
        .route(
            "/console/t/{tenant}/approvals/{id}",
            post(approvals::decide),
        )
        .route("/console/t/{tenant}/audit", get(audit::viewer))
        .route("/console/t/{tenant}/audit/share", post(audit::share))
        .route("/console/t/{tenant}/access", get(access::page))
        .route(
            "/console/t/{tenant}/connections/{id}/revoke",
            post(access::revoke),
        )
        .route("/console/t/{tenant}/agents", get(agents::page))
        .route("/console/t/{tenant}/agents/new", post(agents::create_agent))
        .route("/console/t/{tenant}/agents/{id}/tokens", post(agents::mint))
        .route(
            "/console/t/{tenant}/agents/{id}/switch/{to}",
            post(agents::switch),
        )
        .route(
            "/console/t/{tenant}/agents/{id}/revoke",
            post(agents::revoke_agent),
        )
        .route(
            "/console/t/{tenant}/tokens/{id}/revoke",
            post(agents::revoke_token),
        )
        .route(
            "/console/t/{tenant}/kill-switch/{to}",
            post(agents::tenant_switch),
        )
        .route("/console/t/{tenant}/guardrails", get(guardrails::page))
        .route(
            "/console/t/{tenant}/guardrails/new",
            post(guardrails::create),
        )
        .route(
            "/console/t/{tenant}/guardrails/{id}/approve-each",
            post(guardrails::approve_each),
        )
        .route(
            "/console/t/{tenant}/guardrails/{id}/revoke",
            post(guardrails::revoke),
        )
        .route("/console/t/{tenant}/webhooks", get(webhooks::page))
        .route(
            "/console/t/{tenant}/webhooks/{id}",
            get(webhooks::deliveries),
        )
        .route(
            "/console/t/{tenant}/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/console/t/{tenant}/policy", get(policy::page))
        .route(
            "/console/t/{tenant}/policy/validate",
            post(policy::validate),
        )
        .route("/console/t/{tenant}/policy/explain", post(policy::explain))
        .route(
            "/console/{*rest}",
            axum::routing::any(|| async { Failure::NotFound }),
        )
        // On the console's own routes only (a `layer` would reach the gateway's fallback).
        // A change made here reaches agents' very next call, as one made on the admin API.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::invalidate_after_writes,
        ))
        .route_layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

/// Headers on every console response: no script, no framing, no caching, no sniffing, no
/// referrer to another origin. (`same-origin`, not `no-referrer`: under `no-referrer` a
/// browser sends `Origin: null` with the console's own form posts, which the gateway's
/// cross-site check refuses.)
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a console request can end in besides its page: always a generic page.
#[derive(Debug)]
pub enum Failure {
    /// No live session: back to sign-in.
    SignIn,
    NotFound,
    /// The CSRF token is missing or wrong, or the role may not do this.
    Forbidden,
    BadRequest(&'static str),
    /// The admin API refused the request's input; its own words (they name the input, never
    /// a secret) help the human fix it.
    Refused(String),
    Unavailable,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            Failure::SignIn => return Redirect::to("/console/login").into_response(),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it is not yours to see.",
            ),
            Failure::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "This request was refused. Go back, reload the page and try again.",
            ),
            Failure::BadRequest(text) => (StatusCode::BAD_REQUEST, "Cannot do that", text),
            Failure::Refused(text) => {
                let page = page::message("Cannot do that", &text);
                return (StatusCode::BAD_REQUEST, page).into_response();
            }
            Failure::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The gateway cannot answer right now.",
            ),
        };
        (status, page::message(title, text)).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Failure::NotFound,
            other => {
                tracing::error!(error = %other, "console: store failure");
                Failure::Unavailable
            }
        }
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::NotFound => Failure::NotFound,
            ApiError::Forbidden(_) | ApiError::Unauthenticated => Failure::Forbidden,
            ApiError::BadRequest(text) | ApiError::Conflict(text) => Failure::Refused(text),
            other => {
                tracing::error!(error = ?other, "console: failure");
                Failure::Unavailable
            }
        }
    }
}

/// The signed-in human of a console request.
pub struct Signed {
    pub ctx: AdminContext,
    pub session: ConsoleSession,
    /// SHA-256 of the session token (the session's key in the store).
    pub token_hash: String,
    /// This session's CSRF token, for the forms on its pages.
    pub csrf: String,
    /// Whether this session was begun with a TOTP code (a tenant may let humans without one
    /// sign in with a password alone).
    pub second_factor: bool,
}

/// The CSRF token of a session: derived from its token, so only the cookie's holder has it.
pub fn csrf_of(session_token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(session_token.as_bytes()).expect("HMAC takes any key");
    mac.update(b"portcullis console csrf");
    hex::encode(mac.finalize().into_bytes())
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn cookie_value(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.metrics.request("console");
        let token = cookie_value(parts).ok_or(Failure::SignIn)?;
        let token_hash = sha256_hex(&token);
        let now = state.clock.now();
        let config = &state.config.console;
        let session = match state
            .store
            .console_session(&token_hash, config.session_idle_secs as i64 * 1000, now)
            .await
        {
            Ok(session) => session,
            Err(StoreError::NotFound) => return Err(Failure::SignIn),
            Err(e) => return Err(e.into()),
        };
        let sign_in = state.store.sign_in_by_id(&session.admin_id).await?;
        // A session begun without a code lives only while no code is needed: it ends when
        // the tenant makes the code required again (enrolling a factor ends it too).
        let second_factor = sign_in.totp.is_some();
        if !sign_in.admin.is_usable(now) || (!second_factor && login::needs_code(&sign_in)) {
            return Err(Failure::SignIn);
        }
        let admin = sign_in.admin;
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let ip = state.client_ip(peer, &parts.headers);
        Ok(Signed {
            ctx: AdminContext { admin, ip },
            session,
            token_hash,
            csrf: csrf_of(&token),
            second_factor,
        })
    }
}

impl Signed {
    /// The context a change runs with: only with this session's CSRF token, and only for a
    /// role that may change anything (auditors and viewers read). The handler it is passed to
    /// checks the rest (admin-only changes, the tenant) exactly as for the admin API.
    pub fn change(&self, csrf: &str) -> Result<AdminContext, Failure> {
        self.check_csrf(csrf)?;
        if !self.ctx.admin.role.may_change() {
            return Err(Failure::Forbidden);
        }
        Ok(self.ctx.clone())
    }

    /// The context for a change that lets more through — a new agent or token, a guardrail,
    /// lifting a kill switch: [`Signed::change`], and only in a session begun with a second
    /// factor. A password alone (where a tenant allows it) may make the gateway stricter and
    /// decide small requests, never widen it.
    pub fn widen(&self, csrf: &str) -> Result<AdminContext, Failure> {
        let ctx = self.change(csrf)?;
        if !self.second_factor {
            return Err(Failure::BadRequest(
                "This change needs a session begun with a code from an authenticator app.",
            ));
        }
        Ok(ctx)
    }

    /// The navigation of this human's pages in `tenant`.
    pub fn nav<'a>(&'a self, tenant: &'a str, who: &'a str) -> page::Nav<'a> {
        page::Nav {
            tenant,
            who,
            csrf: &self.csrf,
            audit: self.ctx.admin.role.may_read_audit(),
            webhooks: self.ctx.is_admin(),
        }
    }

    /// The form's CSRF token is this session's (constant-time comparison).
    pub fn check_csrf(&self, presented: &str) -> Result<(), Failure> {
        let expected = self.csrf.as_bytes();
        let presented = presented.as_bytes();
        let same = expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Failure::Forbidden)
        }
    }
}

/// `/console`: the first tenant's inbox (a tenant-scoped human's own tenant).
async fn home(State(state): State<Arc<AppState>>, signed: Signed) -> Result<Response, Failure> {
    let tenant = match &signed.ctx.admin.tenant {
        Some(id) => state.store.tenant(id).await?,
        None => match state.store.list_tenants().await?.into_iter().next() {
            Some(tenant) => tenant,
            None => {
                return Ok(page::message(
                    "No tenants yet",
                    "Create one with `portcullis tenants create`.",
                )
                .into_response());
            }
        },
    };
    Ok(Redirect::to(&format!("/console/t/{}/approvals", tenant.name)).into_response())
}

/// The tenant a console path names, if this human may see it; otherwise "not found".
pub async fn tenant_for(
    state: &AppState,
    signed: &Signed,
    name: &str,
) -> Result<portcullis_store::Tenant, Failure> {
    let tenant = state.store.tenant_by_name(name).await?;
    if !signed.ctx.may_access(&tenant.id) {
        return Err(Failure::NotFound);
    }
    Ok(tenant)
}

/// The tenants this human may switch between.
pub async fn tenants_of(
    state: &AppState,
    signed: &Signed,
) -> Result<Vec<portcullis_store::Tenant>, Failure> {
    Ok(state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| signed.ctx.may_access(&t.id))
        .collect())
}
