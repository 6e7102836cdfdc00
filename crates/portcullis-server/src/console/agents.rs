//! Agents and their tokens: create an agent, mint a token (shown once, on the page that
//! minted it, never again), revoke a token or an agent, and the kill switches — one agent,
//! or the whole tenant — whose very next call is refused. Suspending only makes the gateway
//! stricter, so approvers may do it; everything else needs the admin role, as on the API.

use super::access::CsrfForm;
use super::page::{action, frame, when};
use super::{Failure, Signed, tenant_for};
use crate::admin::agents::AgentView;
use crate::admin::tenants::NameIn;
use crate::admin::tokens::TokenIn;
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

fn status(agent: &AgentView) -> String {
    match (agent.revoked_at, agent.suspended_at) {
        (Some(at), _) => format!("revoked {}", when(at)),
        (None, Some(at)) => format!("suspended {}", when(at)),
        (None, None) => "active".into(),
    }
}

/// The page, with an optional notice on top (a token just minted).
async fn render(
    state: &Arc<AppState>,
    signed: &Signed,
    tenant: &str,
    notice: Option<Markup>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(state, signed, tenant).await?;
    let agents = crate::admin::agents::list_agents(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let tokens = crate::admin::tokens::list_tokens(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let now = state.clock.now();
    let admin = signed.ctx.is_admin();
    let changer = signed.ctx.admin.role.may_change();
    let base = format!("/console/t/{}", tenant.name);
    let csrf = &signed.csrf;
    let who = signed.ctx.actor();
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        section class="card" aria-labelledby="kill" {
            h2 id="kill" { "Kill switch for the whole tenant" }
            @if let Some(at) = tenant.suspended_at {
                p class="bad" { "Suspended since " (when(at)) ": every agent call is refused." }
                @if admin { (action(&format!("{base}/kill-switch/resume"), csrf, "Resume the tenant", "approve")) }
            } @else {
                p { "Active. Suspending refuses every agent's very next call." }
                @if changer { (action(&format!("{base}/kill-switch/suspend"), csrf, "Suspend the tenant", "deny")) }
            }
        }
        @for agent in &agents {
            section class="card" aria-labelledby={ "a-" (agent.id) } {
                h2 id={ "a-" (agent.id) } { (agent.name) }
                p class="meta" {
                    (status(agent)) " · created " (when(agent.created_at))
                    @if let Some(owner) = &agent.owner { " · acts for " (owner) }
                }
                @if agent.revoked_at.is_none() {
                    @if agent.suspended_at.is_some() {
                        @if admin { (action(&format!("{base}/agents/{}/switch/resume", agent.id), csrf, &format!("Resume {}", agent.name), "approve")) }
                    } @else if changer {
                        (action(&format!("{base}/agents/{}/switch/suspend", agent.id), csrf, &format!("Suspend {}", agent.name), "deny"))
                    }
                    @if admin { " " (action(&format!("{base}/agents/{}/revoke", agent.id), csrf, &format!("Revoke {}", agent.name), "deny")) }
                }
                table {
                    caption class="meta" { "Tokens" }
                    thead { tr { th scope="col" { "Token" } th scope="col" { "Scope" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "State" } } }
                    tbody {
                        @for t in tokens.iter().filter(|t| t.agent == agent.id) {
                            tr {
                                td { code { (t.id) } }
                                td { @if t.scope.is_empty() { "everything granted" } @else { (t.scope.join(", ")) } }
                                td { (when(t.created_at)) }
                                td { (when(t.expires_at)) }
                                td {
                                    @if let Some(at) = t.revoked_at { "revoked " (when(at)) }
                                    @else if t.expires_at <= now { "expired" }
                                    @else if admin { (action(&format!("{base}/tokens/{}/revoke", t.id), csrf, &format!("Revoke {}", t.id), "deny")) }
                                    @else { "live" }
                                }
                            }
                        }
                    }
                }
                @if admin && agent.revoked_at.is_none() {
                    form method="post" action={ (base) "/agents/" (agent.id) "/tokens" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="once" value=(once::fresh());
                        label for={ "scope-" (agent.id) } { "Scope of a new token (connections or connection/tool, comma-separated; empty: everything granted)" }
                        input id={ "scope-" (agent.id) } name="scope";
                        label for={ "days-" (agent.id) } { "Life in days (empty: the configured default)" }
                        input id={ "days-" (agent.id) } name="days" inputmode="numeric" pattern="[0-9]*";
                        button type="submit" { "Mint a token for " (agent.name) }
                    }
                }
            }
        }
        @if admin {
            form class="card" method="post" action={ (base) "/agents/new" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="agent-name" { "New agent's name (a-z, 0-9, -)" }
                input id="agent-name" name="name" required pattern="[a-z0-9][a-z0-9-]{0,31}";
                button type="submit" { "Create agent" }
            }
        }
        p class="meta" { "Last use of agents, connections and grants: see " a href={ (base) "/access" } { "Access" } "." }
    };
    Ok(frame(
        "Agents and tokens",
        Some(signed.nav(&tenant.name, &who)),
        body,
    )
    .into_response())
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    render(&state, &signed, &tenant, None).await
}

fn back(tenant: &str) -> Response {
    Redirect::to(&format!("/console/t/{tenant}/agents")).into_response()
}

#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_agent(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Form(form): Form<AgentForm>,
) -> Result<Response, Failure> {
    let ctx = signed.widen(&form.csrf)?;
    let _changed = crate::admin::agents::create_agent(
        State(state),
        ctx,
        Path(tenant.clone()),
        axum::Json(NameIn {
            name: form.name.trim().to_owned(),
        }),
    )
    .await?;
    Ok(back(&tenant))
}

#[derive(Deserialize)]
pub struct MintForm {
    #[serde(default)]
    csrf: String,
    /// The form's one-time value: a reload of the page that showed a token re-sends the
    /// form, and must not mint another.
    #[serde(default)]
    once: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    days: String,
}

/// Mint a token; the answer is the page itself with the token on top, shown this once (the
/// console's pages are never cached).
pub async fn mint(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, agent)): Path<(String, String)>,
    Form(form): Form<MintForm>,
) -> Result<Response, Failure> {
    let ctx = signed.widen(&form.csrf)?;
    if !once::spend(&form.once) {
        return Err(Failure::BadRequest(
            "This form was sent already (a reload?): each form mints one token. Open the agents page again to mint another.",
        ));
    }
    let ttl_secs = match form.days.trim() {
        "" => None,
        days => Some(
            days.parse::<u64>()
                .ok()
                .and_then(|d| d.checked_mul(86_400))
                .ok_or(Failure::BadRequest("The life is a whole number of days."))?,
        ),
    };
    let scope = form
        .scope
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let created = crate::admin::tokens::create_token(
        State(state.clone()),
        ctx,
        Path((tenant.clone(), agent)),
        axum::Json(TokenIn { scope, ttl_secs }),
    )
    .await?
    .0;
    let notice = html! {
        section class="card pending" role="status" aria-labelledby="minted" {
            h2 id="minted" { "New token " (created.id) }
            p { "Copy it now: it is shown once, and only its hash is kept. It expires " (when(created.expires_at)) "." }
            p { label for="minted-token" { "Token" } input id="minted-token" readonly value=(created.token); }
        }
    };
    render(&state, &signed, &tenant, Some(notice)).await
}

/// Which way a kill switch is thrown: the form says it, so a repeated click never flips it
/// back.
fn direction(to: &str) -> Result<bool, Failure> {
    match to {
        "suspend" => Ok(true),
        "resume" => Ok(false),
        _ => Err(Failure::NotFound),
    }
}

/// An agent's kill switch: suspend (approvers too) or resume (admins).
pub async fn switch(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, agent, to)): Path<(String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let suspend = direction(&to)?;
    let ctx = switch_context(&signed, suspend, &form.csrf)?;
    let path = Path((tenant.clone(), agent));
    done(
        &tenant,
        crate::admin::suspension::agent_switch(State(state), ctx, path, suspend),
    )
    .await
}

/// The tenant's kill switch, the same way.
pub async fn tenant_switch(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, to)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let suspend = direction(&to)?;
    let ctx = switch_context(&signed, suspend, &form.csrf)?;
    let path = Path(tenant.clone());
    done(
        &tenant,
        crate::admin::suspension::tenant_switch(State(state), ctx, path, suspend),
    )
    .await
}

pub async fn revoke_agent(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, agent)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let path = Path((tenant.clone(), agent));
    done(
        &tenant,
        crate::admin::agents::revoke_agent(State(state), ctx, path),
    )
    .await
}

pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, token)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let path = Path((tenant.clone(), token));
    done(
        &tenant,
        crate::admin::tokens::revoke_token(State(state), ctx, path),
    )
    .await
}

/// Suspending makes the gateway stricter (any human who may change things); resuming widens
/// it again (a session that began with a second factor).
fn switch_context(
    signed: &Signed,
    suspend: bool,
    csrf: &str,
) -> Result<crate::identity::AdminContext, Failure> {
    if suspend {
        signed.change(csrf)
    } else {
        signed.widen(csrf)
    }
}

/// Wait for the admin handler's answer, then back to the agents page.
async fn done<T>(
    tenant: &str,
    change: impl std::future::Future<Output = Result<T, crate::error::ApiError>>,
) -> Result<Response, Failure> {
    change.await?;
    Ok(back(tenant))
}

/// One-time values of the mint form, spent in this process (bounded: the oldest are
/// forgotten first, and a form is only ever served to a signed-in human with its CSRF token).
mod once {
    use std::collections::{HashSet, VecDeque};
    use std::sync::{LazyLock, Mutex};

    const REMEMBERED: usize = 4096;

    type Spent = (VecDeque<String>, HashSet<String>);
    static SPENT: LazyLock<Mutex<Spent>> = LazyLock::new(Mutex::default);

    /// A fresh value for a form.
    pub fn fresh() -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        hex::encode(bytes)
    }

    /// Spend `value`: false when it is not one of ours or was spent already.
    pub fn spend(value: &str) -> bool {
        if value.len() != 32 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let mut spent = SPENT.lock().unwrap_or_else(|p| p.into_inner());
        let (order, set) = &mut *spent;
        if !set.insert(value.to_owned()) {
            return false;
        }
        order.push_back(value.to_owned());
        if order.len() > REMEMBERED
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        true
    }
}
