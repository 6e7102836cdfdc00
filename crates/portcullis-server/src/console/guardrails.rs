//! Guardrails: each one as its sentence with its place on the ladder; the suggestions drawn
//! from runs of identical approvals, each with a form to create it (admins); and the way
//! back — revert a guardrail to approve-each, or revoke it — open to approvers too, because
//! it only makes the gateway stricter, and effective for the very next call.

use super::access::CsrfForm;
use super::page::{action, frame, when};
use super::{Failure, Signed, tenant_for};
use crate::admin::guardrails::{GuardrailIn, ModeIn, SuggestionQuery};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};
use serde::Deserialize;
use std::sync::Arc;

pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let guardrails = crate::admin::guardrails::list_guardrails(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let suggestions = crate::admin::guardrails::guardrail_suggestions(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
        Query(SuggestionQuery::default()),
    )
    .await?
    .0;
    let admin = signed.ctx.is_admin();
    let changer = signed.ctx.admin.role.may_change();
    let base = format!("/console/t/{}/guardrails", tenant.name);
    let csrf = &signed.csrf;
    let who = signed.ctx.actor();
    let body = html! {
        @if guardrails.is_empty() { p { "No guardrails: every held call waits for a person." } }
        @for g in &guardrails {
            section class="card" aria-labelledby={ "g-" (g.id) } {
                h2 id={ "g-" (g.id) } { (g.name) }
                p { (g.english) }
                p class="meta" { (g.mode.as_str()) " · created by " (g.created_by) " · " (g.created_at) }
                @if changer {
                    @if g.mode != GuardrailMode::ApproveEach {
                        (action(&format!("{base}/{}/approve-each", g.id), csrf, &format!("Revert {} to approve-each", g.name), "deny"))
                        " "
                    }
                    (action(&format!("{base}/{}/revoke", g.id), csrf, &format!("Revoke {}", g.name), "deny"))
                }
            }
        }
        h2 { "Suggestions" }
        @if suggestions.is_empty() {
            p class="meta" { "None yet: a suggestion appears after five identical approvals with no denial." }
        }
        @for (i, s) in suggestions.iter().enumerate() {
            section class="card" aria-labelledby={ "s-" (i) } {
                h2 id={ "s-" (i) } { (s.english) }
                p class="meta" { "Based on " (s.approvals) " approvals and no denial." }
                @if admin {
                    form method="post" action={ (base) "/new" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="spec" value=(serde_json::to_string(&s.spec).unwrap_or_default());
                        label for={ "name-" (i) } { "Name" }
                        input id={ "name-" (i) } name="name" required pattern="[a-z0-9][a-z0-9-]{0,31}";
                        label for={ "mode-" (i) } { "Start at" }
                        select id={ "mode-" (i) } name="mode" {
                            option value="approve_each" selected { "approve each (nothing runs unasked yet)" }
                            option value="auto_with_notice" { "auto with notice" }
                            option value="auto" { "auto" }
                        }
                        button type="submit" { "Create this guardrail" }
                    }
                }
            }
        }
        p class="meta" { "Generated " (when(state.clock.now())) "." }
    };
    Ok(frame("Guardrails", Some(signed.nav(&tenant.name, &who)), body).into_response())
}

fn back(tenant: &str) -> Response {
    Redirect::to(&format!("/console/t/{tenant}/guardrails")).into_response()
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    spec: String,
    #[serde(default)]
    mode: String,
}

/// Create a guardrail from a suggestion's spec (checked again, as any spec the API gets).
pub async fn create(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Form(form): Form<CreateForm>,
) -> Result<Response, Failure> {
    let ctx = signed.widen(&form.csrf)?;
    let spec: GuardrailSpec = serde_json::from_str(&form.spec)
        .map_err(|_| Failure::BadRequest("That guardrail's terms are not readable."))?;
    let mode = GuardrailMode::parse(&form.mode)
        .ok_or(Failure::BadRequest("Choose where the guardrail starts."))?;
    let _changed = crate::admin::guardrails::create_guardrail(
        State(state),
        ctx,
        Path(tenant.clone()),
        axum::Json(GuardrailIn {
            name: form.name.trim().to_owned(),
            spec,
            mode,
        }),
    )
    .await?;
    Ok(back(&tenant))
}

pub async fn approve_each(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let _changed = crate::admin::guardrails::set_guardrail_mode(
        State(state),
        ctx,
        Path((tenant.clone(), id)),
        axum::Json(ModeIn {
            mode: GuardrailMode::ApproveEach,
        }),
    )
    .await?;
    Ok(back(&tenant))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let _changed =
        crate::admin::guardrails::revoke_guardrail(State(state), ctx, Path((tenant.clone(), id)))
            .await?;
    Ok(back(&tenant))
}
