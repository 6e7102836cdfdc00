//! Webhooks (admins, as on the API): each endpoint with where it sends (scheme, host and
//! port only: a URL's path or query may carry the receiver's secret), its events and state,
//! and per endpoint the delivery log — every attempt's time, status, latency and error —
//! with redelivery of a message under the same `webhook-id`.

use super::access::CsrfForm;
use super::page::{action, frame, maybe_when, when};
use super::{Failure, Signed, tenant_for};
use crate::admin::webhooks::DeliveriesQuery;
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use std::sync::Arc;

/// How many deliveries an endpoint's page shows, each with its attempt log.
const SHOWN: i64 = 50;

pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let endpoints = crate::admin::webhooks::list_endpoints(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let base = format!("/console/t/{}/webhooks", tenant.name);
    let who = signed.ctx.actor();
    let body = html! {
        @if endpoints.is_empty() {
            p { "No endpoints. Add one with " code { "portcullis webhooks add --tenant " (tenant.name) " URL" } "." }
        }
        table {
            thead { tr {
                th scope="col" { "Endpoint" } th scope="col" { "Sends to" } th scope="col" { "Events" }
                th scope="col" { "State" } th scope="col" { "Created" }
            } }
            tbody {
                @for view in &endpoints {
                    @let e = &view.endpoint;
                    tr {
                        td { a href={ (base) "/" (e.id) } { (e.id) } @if !e.description.is_empty() { br; span class="meta" { (e.description) } } }
                        td { code { (e.destination()) } }
                        td { (e.events.names().join(", ")) }
                        td {
                            @if let Some(at) = e.disabled_at {
                                span class="bad" { "disabled " (when(at)) } @if let Some(why) = &e.disabled_reason { ": " (why) }
                            } @else if let Some(since) = e.failing_since {
                                span class="bad" { "failing since " (when(since)) }
                            } @else { span class="ok" { "enabled" } }
                        }
                        td { (when(e.created_at)) " by " (e.created_by) }
                    }
                }
            }
        }
    };
    Ok(frame("Webhooks", Some(signed.nav(&tenant.name, &who)), body).into_response())
}

/// One endpoint's delivery log, newest first.
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(&state, &signed, &tenant).await?;
    let shown = crate::admin::webhooks::show_endpoint(
        State(state.clone()),
        signed.ctx.clone(),
        Path((tenant.name.clone(), endpoint.clone())),
    )
    .await?
    .0;
    let list = crate::admin::webhooks::list_deliveries(
        State(state.clone()),
        signed.ctx.clone(),
        Path((tenant.name.clone(), endpoint)),
        Query(DeliveriesQuery { limit: Some(SHOWN) }),
    )
    .await?
    .0;
    let mut logs = Vec::with_capacity(list.len());
    for delivery in &list {
        let (_, attempts) = state
            .store
            .webhook_delivery(&tenant.id, &delivery.id)
            .await?;
        logs.push(attempts);
    }
    let base = format!("/console/t/{}", tenant.name);
    let csrf = &signed.csrf;
    let who = signed.ctx.actor();
    let e = &shown.endpoint;
    let body = html! {
        p { "Sends " (e.events.names().join(", ")) " to " code { (e.destination()) } " · " (shown.status) }
        p class="meta" { "The newest " (SHOWN) " deliveries; a redelivery sends the same message (the same webhook-id) once more." }
        @for (d, attempts) in list.iter().zip(&logs) {
            section class="card" aria-labelledby={ "d-" (d.id) } {
                h2 id={ "d-" (d.id) } { (d.event_type) " · " (d.state.as_str()) }
                p class="meta" {
                    "webhook-id " code { (d.message_id) } " · delivery " (d.id) " · created " (when(d.created_at))
                    " · finished " (maybe_when(d.finished_at))
                    @if d.finished_at.is_none() { " · next attempt " (when(d.next_attempt_at)) }
                }
                table {
                    caption class="meta" { (d.attempts) " attempts" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Status" } th scope="col" { "Latency" } th scope="col" { "Outcome" } th scope="col" { "Error" } } }
                    tbody {
                        @for a in attempts {
                            tr {
                                td { (a.attempt) } td { (when(a.started_at)) }
                                td { (a.status.map_or("—".to_owned(), |s| s.to_string())) }
                                td { (a.latency_ms) " ms" } td { (a.outcome) }
                                td { (a.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                (action(&format!("{base}/deliveries/{}/redeliver", d.id), csrf, &format!("Redeliver {}", d.id), ""))
            }
        }
    };
    let title = format!("Deliveries of {}", e.id);
    Ok(frame(&title, Some(signed.nav(&tenant.name, &who)), body).into_response())
}

pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((tenant, delivery)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    let ctx = signed.change(&form.csrf)?;
    let created =
        crate::admin::webhooks::redeliver(State(state), ctx, Path((tenant.clone(), delivery)))
            .await?
            .0;
    Ok(Redirect::to(&format!(
        "/console/t/{tenant}/webhooks/{}",
        created.endpoint_id
    ))
    .into_response())
}
