//! Sign-in and sign-out. A password (argon2id) is always required; a TOTP code too, unless
//! the human's tenant made the second factor optional (`PUT /admin/v1/tenants/{t}/console`,
//! `required` by default) and the human has not enrolled one. A human who has enrolled is
//! always asked for a code, and a human scoped to no tenant always needs one: without an
//! enrolled second factor they cannot sign in to the console (their token still works for
//! the CLI and the API). Decisions at or above `console.fresh_factor_above_cents` need a
//! fresh code whatever the rule (`approvals.rs`), so a human without one cannot make them
//! here. Failures count per human (`console.login_lockout_threshold`) and per address (the
//! gateway's lockout), and are audited; every failure reads the same.

use super::page::frame;
use super::{COOKIE, Failure, Signed, sha256_hex};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use maud::html;
use portcullis_core::account::{TotpSecret, verify_password};
use portcullis_core::id::TenantId;
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::{ConsoleTotp, SignIn, StoreError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

const WRONG: &str = "The name, password or code is not right, or sign-in is paused after too many attempts. Try again.";

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(error) = error {
            p class="bad" role="alert" { (error) }
        }
        form class="card" method="post" action="/console/login" {
            label for="name" { "Name" }
            input id="name" name="name" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            // Not `required`: a human of a tenant where the second factor is optional, who has
            // not enrolled one, leaves it empty.
            label for="code" { "Code from your authenticator app (needed if you have set one up)" }
            input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}";
            button type="submit" { "Sign in" }
        }
    };
    (status, frame("Sign in", None, body)).into_response()
}

pub async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// A password hash no password matches (made once), checked for unknown names.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 24];
        let _ = getrandom::fill(&mut random);
        portcullis_core::account::hash_password(&hex::encode(random)).unwrap_or_default()
    })
}

/// The TOTP secret of a human, unwrapped by the key provider.
pub async fn totp_secret(
    state: &AppState,
    admin: &portcullis_core::id::AdminId,
    master: &str,
    wrapped: &str,
) -> Option<TotpSecret> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(wrapped)
        .ok()?;
    let wrapped = crate::vault::WrappedKey {
        master_id: master.to_owned(),
        bytes,
    };
    let aad = totp_aad(admin);
    let provider = state.vault.provider_handle();
    let key = tokio::task::spawn_blocking(move || provider.unwrap(&aad, &wrapped))
        .await
        .ok()?
        .ok()?;
    Some(TotpSecret::from_bytes(key.expose()))
}

/// What a human's wrapped TOTP secret is bound to.
pub fn totp_aad(admin: &portcullis_core::id::AdminId) -> Vec<u8> {
    format!("portcullis-totp:{admin}").into_bytes()
}

/// Whether signing in needs a TOTP code of this human: always once they have enrolled one
/// (an enrolled factor is never skipped), and always for a human scoped to no tenant; for
/// the rest, as their tenant says.
pub fn needs_code(sign_in: &SignIn) -> bool {
    sign_in.totp.is_some() || sign_in.tenant_console_totp != Some(ConsoleTotp::Optional)
}

/// Check a code against a human's enrolled secret and spend its step (a code works once).
pub async fn check_code(state: &AppState, sign_in: &SignIn, code: &str) -> bool {
    let Some((master, wrapped)) = &sign_in.totp else {
        return false;
    };
    let Some(secret) = totp_secret(state, &sign_in.admin.id, master, wrapped).await else {
        return false;
    };
    let Some(step) = secret.matching_step(code, state.clock.now()) else {
        return false;
    };
    state
        .store
        .spend_totp_step(&sign_in.admin.id, step)
        .await
        .unwrap_or(false)
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginIn>,
) -> Response {
    let ip = state.client_ip(peer.ip(), &headers);
    let attempt = match crate::auth::admit_attempt(&state, ip).await {
        Ok(attempt) => attempt,
        Err(_) => return login_page(StatusCode::TOO_MANY_REQUESTS, Some(WRONG)),
    };
    let now = state.clock.now();
    let config = &state.config.console;
    let refuse = |chain: TenantId, reason: &'static str| {
        let state = state.clone();
        async move {
            let refusal =
                crate::auth::refuse_attempt(&state, attempt, chain, "console", reason).await;
            let status = match refusal {
                crate::auth::AuthRefusal::Unauthenticated => StatusCode::UNAUTHORIZED,
                _ => StatusCode::TOO_MANY_REQUESTS,
            };
            login_page(status, Some(WRONG))
        }
    };
    let sign_in = match state.store.sign_in_of(form.name.trim()).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => {
            // As long as a known name's check: the answer's time tells no names.
            let password = form.password.clone();
            let _ = tokio::task::spawn_blocking(move || verify_password(&password, decoy())).await;
            return refuse(TenantId::system(), "unknown name").await;
        }
        Err(_) => return Failure::Unavailable.into_response(),
    };
    let admin = sign_in.admin.clone();
    let chain = admin.tenant.clone().unwrap_or_else(TenantId::system);
    if !admin.is_usable(now) {
        return refuse(chain, "revoked or expired human").await;
    }
    if sign_in.login_locked_until.is_some_and(|until| until > now) {
        return refuse(chain, "sign-in paused for this human").await;
    }
    let password_ok = match sign_in.password_hash.clone() {
        Some(phc) => {
            let password = form.password.clone();
            tokio::task::spawn_blocking(move || verify_password(&password, &phc))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    // The code is checked (and its step spent) only after the password: a guess of the
    // password cannot burn the human's next code.
    let factors_ok =
        password_ok && (!needs_code(&sign_in) || check_code(&state, &sign_in, &form.code).await);
    if !factors_ok {
        let reason = if !password_ok {
            "wrong password (or none set)"
        } else if sign_in.totp.is_none() {
            "no second factor enrolled"
        } else {
            "wrong or reused code"
        };
        if let Err(e) = state
            .store
            .record_sign_in_failure(
                &admin,
                reason,
                i64::from(config.login_lockout_threshold),
                config.login_lockout_secs as i64 * 1000,
                &ip.to_string(),
                now,
            )
            .await
        {
            tracing::error!(error = %e, "cannot record a failed sign-in");
        }
        return refuse(chain, "console sign-in failed").await;
    }
    let token = BearerSecret::generate(TokenKind::Console);
    let token = token.expose().to_owned();
    let expires_at = now + config.session_absolute_secs as i64 * 1000;
    if let Err(e) = state
        .store
        .create_console_session(
            &admin,
            &sha256_hex(&token),
            expires_at,
            &ip.to_string(),
            now,
        )
        .await
    {
        tracing::error!(error = %e, "cannot start a console session");
        return Failure::Unavailable.into_response();
    }
    let cookie = format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        config.session_absolute_secs
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct CsrfIn {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Form(form): Form<CsrfIn>,
) -> Result<Response, Failure> {
    signed.check_csrf(&form.csrf)?;
    state
        .store
        .end_console_session(&signed.ctx.admin, &signed.token_hash, state.clock.now())
        .await?;
    let mut response = Redirect::to("/console/login").into_response();
    let expired = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = expired.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
