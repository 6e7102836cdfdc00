//! Connections and access: every connection of the tenant with its upstream's state, its
//! last use and its grants, the access review's recommendations (unused connections,
//! `*` grants wider than what was used, secrets due for rotation), and revocation of a
//! connection in one action. Names, kinds and dates only: never a URL, a command or a
//! secret.

use super::page::{action, frame, maybe_when, when};
use super::{Failure, Signed, tenant_for};
use crate::admin::connections::ConnectionState;
use crate::admin::review::{Action, ReviewQuery};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
pub struct AccessQuery {
    unused_days: Option<u32>,
}

fn state_words(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Starting => "starting".into(),
        ConnectionState::Ready { tools } => format!("ready, {tools} tools"),
        ConnectionState::Down { reason, .. } => format!("down: {reason}"),
        ConnectionState::Stopped => "stopped".into(),
    }
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Query(query): Query<AccessQuery>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let connections = crate::admin::connections::list_connections(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let review = crate::admin::review::access_review(
        State(state.clone()),
        signed.ctx.clone(),
        Ok(Query(ReviewQuery {
            tenant: Some(tenant.name.clone()),
            unused_days: query.unused_days,
        })),
    )
    .await?
    .0;
    let Some(facts) = review.tenants.into_iter().next() else {
        return Err(Failure::NotFound);
    };
    let admin = signed.ctx.is_admin();
    let base = format!("/console/t/{}", tenant.name);
    let who = signed.ctx.actor();
    let body = html! {
        p class="meta" {
            "Reviewed " (when(review.generated_at)) "; unused means no use in the last "
            (review.unused_days) " days."
        }
        h2 { "Recommendations" }
        @if facts.recommendations.is_empty() {
            p { "Nothing to do: everything granted was used." }
        }
        ul {
            @for r in &facts.recommendations {
                li {
                    strong { (r.action.words()) } " " code { (r.target) } " — " (r.reason)
                    @if admin && r.action == Action::RevokeConnection {
                        @if let Some(c) = connections.iter().find(|c| c.name == r.target && c.revoked_at.is_none()) {
                            " " (action(&format!("{base}/connections/{}/revoke", c.id), &signed.csrf, &format!("Revoke {}", c.name), "deny"))
                        }
                    }
                }
            }
        }
        h2 { "Connections" }
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "State" }
                th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Grants" }
                th scope="col" { "Use" } @if admin { th scope="col" { "Revoke" } }
            } }
            tbody {
                @for c in &connections {
                    @let seen = facts.connections.iter().find(|r| r.name == c.name);
                    tr {
                        th scope="row" { (c.name) }
                        td { (c.kind.as_deref().unwrap_or("—")) }
                        td { @if let Some(at) = c.revoked_at { "revoked " (when(at)) } @else { (state_words(&c.status)) } }
                        td { (when(c.created_at)) }
                        td { (maybe_when(seen.and_then(|r| r.last_used_at))) }
                        td { (seen.map_or(0, |r| r.grants)) }
                        td { (seen.map_or("—", |r| match r.status { crate::admin::review::Usage::Active => "active", crate::admin::review::Usage::Unused => "unused" })) }
                        @if admin { td { @if c.revoked_at.is_none() {
                            (action(&format!("{base}/connections/{}/revoke", c.id), &signed.csrf, &format!("Revoke {}", c.name), "deny"))
                        } } }
                    }
                }
            }
        }
        h2 { "Grants" }
        table {
            thead { tr { th scope="col" { "Agent" } th scope="col" { "Connection" } th scope="col" { "Tool" } th scope="col" { "Last used" } th scope="col" { "Tools used" } } }
            tbody {
                @for g in &facts.grants {
                    tr {
                        td { (g.agent) } td { (g.connection) } td { code { (g.tool) } }
                        td { (maybe_when(g.last_used_at)) } td { (g.tools_used.join(", ")) }
                    }
                }
            }
        }
        h2 { "Secrets" }
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Last used" } th scope="col" { "Rotation" } th scope="col" { "Used by" } } }
            tbody {
                @for s in &facts.secrets {
                    tr {
                        td { (s.name) } td { (s.version) } td { (maybe_when(s.last_used_at)) }
                        td { (format!("{:?}", s.rotation).to_lowercase()) @if let Some(due) = s.rotation_due_at { " (due " (when(due)) ")" } }
                        td { (s.used_by.join(", ")) }
                    }
                }
            }
        }
    };
    Ok(frame(
        "Connections and access",
        Some(signed.nav(&tenant.name, &who)),
        body,
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Revoke a connection (admins): its upstream stops and every call through it is refused.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let _changed =
        crate::admin::connections::revoke_connection(State(state), ctx, Path((tenant.clone(), id)))
            .await?;
    Ok(Redirect::to(&format!("/console/t/{tenant}/access")).into_response())
}
