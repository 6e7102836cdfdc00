//! The audit viewer: a tenant's trail filtered by time, actor, kind, resource and decision,
//! page by page, with the chain's verification state (checked on request against the
//! database's checkpoints and the witness log) and the last witnessed checkpoint.

use super::page::{frame, when};
use super::{Failure, Signed, tenant_for};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use portcullis_store::AuditFilter;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    verify: Option<String>,
}

/// A day (`2026-11-30`, from its start) or an RFC 3339 time.
fn time_of(text: &str, end_of_day: bool) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.len() == 10 {
        let start = crate::clock::parse_rfc3339(&format!("{text}T00:00:00Z"))?;
        return Some(if end_of_day {
            start + 86_400_000
        } else {
            start
        });
    }
    crate::clock::parse_rfc3339(text)
}

fn some(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

const PAGE: i64 = 100;

pub async fn viewer(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Query(filters): Query<Filters>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    if !signed.ctx.admin.role.may_read_audit() {
        return Err(Failure::Forbidden);
    }
    let filter = AuditFilter {
        tenant: Some(tenant.id.clone()),
        from: time_of(&filters.from, false),
        to: time_of(&filters.to, true),
        actor: some(&filters.actor),
        kind: some(&filters.kind),
    };
    let resource = some(&filters.resource);
    let decision = some(&filters.decision);
    // Pages of the SQL-filtered trail, narrowed here by resource and decision.
    let mut after = filters.after.unwrap_or(0);
    let mut shown = Vec::new();
    let mut more = false;
    for _ in 0..20 {
        let page = state
            .store
            .audit_query(&filter, Some((tenant.id.clone(), after)), PAGE)
            .await?;
        let full = page.len() as i64 == PAGE;
        for event in page {
            after = event.seq;
            let keep = resource.as_deref().is_none_or(|r| {
                event
                    .draft
                    .resource
                    .as_deref()
                    .is_some_and(|x| x.contains(r))
            }) && decision
                .as_deref()
                .is_none_or(|d| event.draft.decision.as_deref() == Some(d));
            if keep {
                shown.push(event);
                if shown.len() as i64 == PAGE {
                    break;
                }
            }
        }
        if shown.len() as i64 == PAGE || !full {
            more = full;
            break;
        }
    }
    let checkpoint = state
        .store
        .checkpoints_after(&tenant.id, 0, 100_000)
        .await?
        .pop();
    let verification = if filters.verify.is_some() {
        let keys = [portcullis_core::note::NoteVerifier {
            name: portcullis_core::note::KEY_NAME.into(),
            key: state.keys.verifying_key(),
        }];
        let witness = [state.config.witness_file()];
        Some(
            match crate::audit::verify_trails(
                &state.store,
                &keys,
                &witness,
                Some(&tenant.id),
                &|_| {},
            )
            .await
            {
                Ok(verdicts) => match verdicts.into_iter().next().map(|v| v.outcome) {
                    Some(Ok(report)) => Ok(format!(
                        "Intact: {} entries, chain and Merkle tree match {} signed checkpoint(s); {} witnessed, {} after the last witnessed checkpoint.",
                        report.entries, report.checkpoints, report.witnessed, report.unwitnessed
                    )),
                    Some(Err(problem)) => Err(problem),
                    None => Ok("No entries yet.".to_owned()),
                },
                Err(e) => Err(e.to_string()),
            },
        )
    } else {
        None
    };
    let who = signed.ctx.actor();
    let nav = signed.nav(&tenant.name, &who);
    let next = {
        let q = |k: &str, v: &str| format!("{k}={}", portcullis_core::account::percent_encode(v));
        format!(
            "?{}&{}&{}&{}&{}&{}&after={after}",
            q("from", &filters.from),
            q("to", &filters.to),
            q("actor", &filters.actor),
            q("kind", &filters.kind),
            q("resource", &filters.resource),
            q("decision", &filters.decision)
        )
    };
    let body = html! {
        section class="card" aria-label="Verification" {
            @match &checkpoint {
                Some(cp) => p { "Last signed checkpoint: " strong { (cp.body.size) " entries" } " at " (when(cp.body.time)) "." },
                None => p { "No signed checkpoint yet." },
            }
            @match &verification {
                Some(Ok(text)) => p class="ok" role="status" { (text) },
                Some(Err(problem)) => p class="bad" role="alert" { "Verification failed: " (problem) },
                None => form method="get" {
                    input type="hidden" name="verify" value="1";
                    button type="submit" { "Verify the chain now" }
                },
            }
        }
        form class="card filters" method="get" aria-label="Filters" {
            div { label for="from" { "From (day or time)" } input id="from" name="from" value=(filters.from) placeholder="2026-11-30"; }
            div { label for="to" { "To" } input id="to" name="to" value=(filters.to); }
            div { label for="actor" { "Actor" } input id="actor" name="actor" value=(filters.actor) placeholder="admin:alice"; }
            div { label for="kind" { "Kind" } input id="kind" name="kind" value=(filters.kind) placeholder="approve"; }
            div { label for="resource" { "Resource contains" } input id="resource" name="resource" value=(filters.resource); }
            div { label for="decision" { "Decision" } input id="decision" name="decision" value=(filters.decision) placeholder="deny"; }
            div { button type="submit" { "Filter" } }
        }
        table {
            caption class="meta" { (shown.len()) " entries" }
            thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Kind" } th scope="col" { "Resource" } th scope="col" { "Decision" } th scope="col" { "Facts" } } }
            tbody {
                @for e in &shown {
                    tr {
                        td { (e.seq) }
                        td { (when(e.time)) }
                        td { (e.draft.actor) }
                        td { (e.draft.kind.as_str()) }
                        td { (e.draft.resource.as_deref().unwrap_or("")) }
                        td { (e.draft.decision.as_deref().unwrap_or("")) }
                        td { code { (e.draft.detail.to_string()) } }
                    }
                }
            }
        }
        @if more { p { a href=(next) { "Later entries" } } }
        form class="card" method="post" action={ "/console/t/" (tenant.name) "/audit/share" } aria-label="Share" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label for="expires" { "Export the whole trail (verifiable offline) through a share link that ends after" }
            select id="expires" name="expires" {
                option value="1h" { "1 hour" }
                option value="24h" selected { "24 hours" }
                option value="7d" { "7 days" }
                option value="30d" { "30 days" }
                option value="none" { "never (until revoked)" }
            }
            button type="submit" { "Create a share link" }
        }
    };
    Ok(frame("Audit trail", Some(nav), body).into_response())
}

#[derive(Deserialize)]
pub struct ShareForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    expires: String,
}

/// Create a share link of the tenant's audit export; the link is shown on this page once.
pub async fn share(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    axum::extract::Form(form): axum::extract::Form<ShareForm>,
) -> Result<Response, Failure> {
    signed.check_csrf(&form.csrf)?;
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let created =
        crate::admin::shares::share(&state, &signed.ctx, &tenant, "audit-export", &form.expires)
            .await?;
    let who = signed.ctx.actor();
    let nav = signed.nav(&tenant.name, &who);
    use secrecy::ExposeSecret as _;
    let path = created.path.expose_secret().to_owned();
    let body = html! {
        p { "Anyone with this link can download the tenant's audit export until "
            (created.link.expires_at.map_or("it is revoked".to_owned(), when)) ". It is shown once." }
        p { code { (path) } }
        p class="meta" { "Revoke it with " code { "portcullis shares revoke --tenant " (tenant.name) " " (created.link.id) } "." }
    };
    Ok(frame("Share link", Some(nav), body).into_response())
}
