//! The approvals inbox: pending requests first, each with every argument, the target's state
//! before and what the call would change, the dollar impact, the evidence, the approval
//! points that fired, approver progress and time left; approve or deny with a reason. A
//! decision on a request at or above `console.fresh_factor_above_cents` needs a fresh code
//! from the authenticator app. A decision runs the same gate code as the admin API, so the
//! agent's waiting call proceeds as soon as it lands.

use super::page::{dollars, frame, when};
use super::{Failure, Signed, tenant_for};
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use portcullis_core::id::ApprovalId;
use portcullis_store::{Approval, ApprovalFilter, ApprovalStatus};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn left(expires_at: i64, now: i64) -> String {
    let secs = (expires_at - now).max(0) / 1000;
    match secs {
        0 => "expired".into(),
        s if s < 3600 => format!("{} min left", (s + 59) / 60),
        s => format!("{} h {} min left", s / 3600, (s % 3600) / 60),
    }
}

/// The fields the call would set, next to what the target held before (when a preview read
/// captured it): the approver's diff.
fn diff(approval: &Approval) -> Markup {
    let arguments = approval.action.arguments.as_object();
    let before = approval
        .before_state
        .as_ref()
        .and_then(|b| b.get("state").or(Some(b)));
    html! {
        table {
            caption class="meta" { "What the call sets, and what the target held before" }
            thead { tr { th scope="col" { "Field" } th scope="col" { "Before" } th scope="col" { "After (requested)" } } }
            tbody {
                @for (field, after) in arguments.into_iter().flatten() {
                    @let was = before.and_then(|b| b.get(field));
                    tr {
                        th scope="row" { (field) }
                        td { @if let Some(was) = was { code { (was.to_string()) } } @else { span class="meta" { "—" } } }
                        td { code { (after.to_string()) } }
                    }
                }
            }
        }
    }
}

/// What every card of one inbox page shares.
struct Inbox<'a> {
    csrf: &'a str,
    tenant: &'a str,
    fresh_factor_above: i64,
    /// Whether the reader has an authenticator (a large decision needs its code).
    has_totp: bool,
    now: i64,
}

fn card(approval: &Approval, votes: usize, needed: usize, inbox: &Inbox<'_>) -> Markup {
    let Inbox {
        csrf,
        tenant,
        fresh_factor_above,
        has_totp,
        now,
    } = *inbox;
    let pending = approval.status == ApprovalStatus::Pending;
    let id = approval.id.to_string();
    let points: Vec<String> = crate::gate::approve::approval_rules(approval)
        .unwrap_or_default()
        .iter()
        .filter_map(|(point, _)| serde_json::to_value(point).ok())
        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
        .collect();
    html! {
        article class={ "card " (if pending { "pending" } else { "decided" }) } id=(id) aria-labelledby={ "t-" (id) } {
            h2 id={ "t-" (id) } { (approval.summary) }
            p class="meta" {
                (approval.status.as_str()) " · " (approval.tool) " · agent " (approval.agent)
                " · held " (when(approval.created_at))
                @if pending { " · " strong { (left(approval.expires_at, now)) } }
            }
            p {
                "Dollar impact: " strong { (dollars(approval.cost_cents)) }
                " · Approvers: " strong { (votes) " of " (needed) }
            }
            @if !approval.reasons.is_empty() {
                p { "Why it is held:" }
                ul { @for reason in &approval.reasons { li { (reason) } } }
            }
            @if !points.is_empty() {
                p { "Approval points that fired: " (points.join(", ")) }
            }
            (diff(approval))
            details {
                summary { "Every argument" }
                pre { (pretty(&approval.action.arguments)) }
            }
            @if approval.evidence != Value::Null {
                details {
                    summary { "Evidence" }
                    pre { (pretty(&approval.evidence)) }
                }
            }
            @if let Some(decided_by) = &approval.decided_by {
                p class="meta" { "Decided by " (decided_by) @if let Some(reason) = &approval.decision_reason { ": " (reason) } }
            }
            @if pending {
                form method="post" action={ "/console/t/" (tenant) "/approvals/" (id) } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for={ "reason-" (id) } { "Reason (needed to deny)" }
                    textarea id={ "reason-" (id) } name="reason" rows="2" {}
                    @if approval.cost_cents >= fresh_factor_above && !has_totp {
                        p class="bad" { "Deciding " (dollars(fresh_factor_above)) " or more needs a code from an authenticator app; set one up with " code { "portcullis admins totp" } "." }
                    } @else if approval.cost_cents >= fresh_factor_above {
                        label for={ "code-" (id) } { "Code from your authenticator app (needed above " (dollars(fresh_factor_above)) ")" }
                        input id={ "code-" (id) } name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required;
                    }
                    button class="approve" type="submit" name="decision" value="approve" { "Approve" }
                    button class="deny" type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        }
    }
}

pub async fn inbox(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let now = state.clock.now();
    let list = |status| ApprovalFilter {
        tenant: Some(tenant.id.clone()),
        status,
        now,
        limit: 100,
    };
    let pending = state
        .store
        .list_approvals(&list(Some(ApprovalStatus::Pending)))
        .await?;
    let recent: Vec<Approval> = state
        .store
        .list_approvals(&ApprovalFilter {
            limit: 20,
            ..list(None)
        })
        .await?
        .into_iter()
        .filter(|a| a.status != ApprovalStatus::Pending)
        .collect();
    let fresh = state.config.console.fresh_factor_above_cents;
    let has_totp = state
        .store
        .sign_in_by_id(&signed.ctx.admin.id)
        .await?
        .totp
        .is_some();
    let inbox = Inbox {
        csrf: &signed.csrf,
        tenant: &tenant.name,
        fresh_factor_above: fresh,
        has_totp,
        now,
    };
    let mut cards = Vec::new();
    for approval in pending.iter().chain(&recent) {
        let votes = state.store.votes(&tenant.id, &approval.id).await?;
        let needed = crate::gate::approve::approval_rules(approval)
            .map(|rules| rules.iter().map(|(_, r)| r.required).max().unwrap_or(1))
            .unwrap_or(1) as usize;
        let approvals = votes
            .iter()
            .filter(|v| v.vote == portcullis_store::Vote::Approve)
            .count();
        cards.push(card(approval, approvals, needed, &inbox));
    }
    let who = signed.ctx.actor();
    let nav = signed.nav(&tenant.name, &who);
    let body = html! {
        p class="meta" { (pending.len()) " waiting for a decision." }
        @if pending.is_empty() { p { "Nothing is waiting. Held actions appear here as they arrive." } }
        @for card in &cards { (card) }
    };
    Ok(frame("Approvals", Some(nav), body).into_response())
}

#[derive(Deserialize)]
pub struct DecisionIn {
    // Missing reads as empty, and is refused like a wrong token.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

pub async fn decide(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<DecisionIn>,
) -> Result<Response, Failure> {
    signed.check_csrf(&form.csrf)?;
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let id: ApprovalId = id.parse().map_err(|_| Failure::NotFound)?;
    let now = state.clock.now();
    let approval = state
        .store
        .find_approval(Some(&tenant.id), &id, now)
        .await?;
    if !signed.ctx.admin.role.may_change() {
        return Err(Failure::Forbidden);
    }
    // Everything that could refuse the decision is checked before a code is spent.
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" if reason.is_some() => false,
        "deny" => return Err(Failure::BadRequest("A denial needs a reason.")),
        _ => return Err(Failure::BadRequest("Choose approve or deny.")),
    };
    if approval.status != ApprovalStatus::Pending {
        return Err(Failure::BadRequest(
            "This request is no longer waiting for a decision.",
        ));
    }
    if approval.cost_cents >= state.config.console.fresh_factor_above_cents {
        let sign_in = state.store.sign_in_by_id(&signed.ctx.admin.id).await?;
        if sign_in.totp.is_none() {
            // Nothing to guess: no failure is counted against a human without a factor.
            return Err(Failure::BadRequest(
                "This decision needs a code from an authenticator app; set one up first.",
            ));
        }
        let paused = sign_in.login_locked_until.is_some_and(|until| until > now);
        if paused || !super::login::check_code(&state, &sign_in, &form.code).await {
            // A wrong code counts like a failed sign-in (and pauses this human's codes).
            let config = &state.config.console;
            if !paused
                && let Err(e) = state
                    .store
                    .record_sign_in_failure(
                        &signed.ctx.admin,
                        "wrong code for a decision",
                        i64::from(config.login_lockout_threshold),
                        config.login_lockout_secs as i64 * 1000,
                        &signed.ctx.ip.to_string(),
                        now,
                    )
                    .await
            {
                tracing::error!(error = %e, "cannot record a wrong decision code");
            }
            return Err(Failure::BadRequest(
                "This decision needs a fresh code from your authenticator app.",
            ));
        }
    }
    if approve {
        crate::gate::approve(&state, &signed.ctx, approval, reason).await?;
    } else {
        let reason = reason.unwrap_or_default();
        crate::gate::approve::deny(&state, &signed.ctx, approval, reason).await?;
    }
    Ok(Redirect::to(&format!("/console/t/{}/approvals", tenant.name)).into_response())
}
