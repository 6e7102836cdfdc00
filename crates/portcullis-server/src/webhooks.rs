//! Webhooks. Outbound: the tenant's audit trail is the outbox — each entry that matters to
//! people (an action held, an approval decided, an action executed or failed, a guardrail
//! changed, an address locked out, a connection revoked, an endpoint disabled) and each
//! signed checkpoint becomes a message, signed per Standard Webhooks and delivered to every
//! endpoint that subscribes, through the egress policy only, retried with backoff and jitter
//! for over a day. Inbound: events a code host or SaaS tool sends a tenant are verified
//! (GitHub-style `X-Hub-Signature-256` or Standard Webhooks, with a replay window and
//! delivery-id deduplication) before anything stores them for an agent to read.
//!
//! INVARIANT: a message keeps its id (the `webhook-id` header) across every attempt and
//! every redelivery; a receiver deduplicates on it.
//!
//! INVARIANT: nothing leaves for a webhook URL except through [`crate::egress::Egress`]; a
//! refused destination ends the delivery as `blocked`.

use crate::egress::{EgressError, HostAllowList};
use crate::state::AppState;
use crate::vault::VaultError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent, AuditKind, Checkpoint};
use portcullis_core::id::{TenantId, WebhookEndpointId, WebhookMessageId};
use portcullis_core::webhook::{self, EventType, RetrySchedule, SigningSecret};
use portcullis_store::{
    AttemptRecord, AttemptResult, ClaimedDelivery, InboundScheme, InboundSource, NewMessage,
    StoreError,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The vault name of an endpoint's signing secret.
pub fn secret_name(endpoint: &WebhookEndpointId) -> String {
    format!("webhook.{endpoint}")
}

/// The vault name of an endpoint's previous signing secret (during a rotation's grace).
pub fn previous_secret_name(endpoint: &WebhookEndpointId) -> String {
    format!("webhook.{endpoint}.previous")
}

/// The vault name of an inbound source's verification secret.
pub fn inbound_secret_name(source: &portcullis_core::id::InboundSourceId) -> String {
    format!("inbound.{source}")
}

/// Which event an audit entry is, if it is one a person is told about.
pub fn event_of(entry: &AuditEvent) -> Option<EventType> {
    let d = &entry.draft;
    let on_approval = || {
        d.resource
            .as_deref()
            .is_some_and(|r| r.starts_with("approval:") || r.starts_with("batch:"))
    };
    Some(match d.kind {
        AuditKind::Hold => EventType::ActionHeld,
        AuditKind::Approve => EventType::ApprovalDecided,
        AuditKind::Deny if on_approval() => EventType::ApprovalDecided,
        AuditKind::ExecutionResult => {
            if d.detail.get("outcome").and_then(Value::as_str) == Some("ok") {
                EventType::ActionExecuted
            } else {
                EventType::ActionFailed
            }
        }
        AuditKind::ExecutionUnknown => EventType::ActionFailed,
        AuditKind::GuardrailCreated | AuditKind::GuardrailChanged | AuditKind::GuardrailRevoked => {
            EventType::GuardrailChanged
        }
        AuditKind::LockedOut => EventType::TokenLockedOut,
        AuditKind::ConnectionRevoked => EventType::ConnectionRevoked,
        AuditKind::WebhookEndpointDisabled => EventType::EndpointDisabled,
        _ => return None,
    })
}

/// A message body: `{"type", "timestamp", "data"}` (the Standard Webhooks shape). `data`
/// is the audit entry as the trail holds it — its place (`seq`, `hash`), who acted, on what,
/// the decision and its facts — which never carries secrets or arguments.
fn entry_payload(event: EventType, entry: &AuditEvent) -> String {
    let d = &entry.draft;
    json!({
        "type": event.as_str(),
        "timestamp": crate::clock::rfc3339(entry.time),
        "data": {
            "tenant": d.tenant,
            "seq": entry.seq,
            "hash": entry.hash,
            "kind": d.kind.as_str(),
            "actor": d.actor,
            "resource": d.resource,
            "decision": d.decision,
            "receipt_id": d.receipt_id,
            "detail": d.detail,
        }
    })
    .to_string()
}

/// A checkpoint's message: the signed note itself, so the tenant keeps its own copy of what
/// was witnessed.
fn checkpoint_payload(checkpoint: &Checkpoint) -> String {
    json!({
        "type": EventType::AuditCheckpoint.as_str(),
        "timestamp": crate::clock::rfc3339(checkpoint.body.time),
        "data": {
            "tenant": checkpoint.body.tenant,
            "size": checkpoint.body.size,
            "head_hash": checkpoint.body.head_hash,
            "note": checkpoint.note,
        }
    })
    .to_string()
}

const OUTBOX_PAGE: i64 = 500;

/// Turn every tenant's new audit entries and checkpoints into messages (see the store's
/// outbox invariant). Returns how many messages were made.
pub async fn run_outbox(state: &AppState) -> Result<usize, StoreError> {
    let mut made = 0;
    for tenant in state.store.webhook_tenants().await? {
        made += outbox_of(state, &tenant).await?;
    }
    Ok(made)
}

async fn outbox_of(state: &AppState, tenant: &TenantId) -> Result<usize, StoreError> {
    let mut made = 0;
    loop {
        let Some(from) = state.store.webhook_cursor(tenant).await? else {
            return Ok(made);
        };
        let entries = state.store.audit_page(tenant, from.0, OUTBOX_PAGE).await?;
        let checkpoints = state
            .store
            .checkpoints_after(tenant, from.1, OUTBOX_PAGE)
            .await?;
        if entries.is_empty() && checkpoints.is_empty() {
            return Ok(made);
        }
        let to = (
            entries.last().map_or(from.0, |e| e.seq),
            checkpoints.last().map_or(from.1, |c| c.body.size),
        );
        let mut messages = Vec::new();
        for entry in &entries {
            if let Some(event) = event_of(entry) {
                messages.push(NewMessage {
                    id: WebhookMessageId::generate(),
                    event,
                    seq: Some(entry.seq),
                    size: None,
                    payload: entry_payload(event, entry),
                });
            }
        }
        for checkpoint in &checkpoints {
            messages.push(NewMessage {
                id: WebhookMessageId::generate(),
                event: EventType::AuditCheckpoint,
                seq: None,
                size: Some(checkpoint.body.size),
                payload: checkpoint_payload(checkpoint),
            });
        }
        let full = entries.len() as i64 == OUTBOX_PAGE || checkpoints.len() as i64 == OUTBOX_PAGE;
        if state
            .store
            .enqueue_webhooks(tenant, from, to, &messages, state.clock.now())
            .await?
        {
            made += messages.len();
            if !full {
                return Ok(made);
            }
        }
        // A full page, or another replica moved the cursor first: read it again and go on.
    }
}

/// What sending one attempt came to, before it is judged.
enum Sent {
    Answered {
        status: u16,
        retry_after_ms: Option<i64>,
    },
    Refused(String),
    Failed(String),
}

/// A finished attempt, to be recorded (in a batch, see [`worker`]).
pub type Finished = (ClaimedDelivery, AttemptRecord, AttemptResult);

/// Sign and send one claimed delivery; what it came to.
pub async fn attempt(state: &AppState, claimed: ClaimedDelivery) -> Finished {
    let now = state.clock.now();
    let started = Instant::now();
    let sent = send(state, &claimed, now).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let retry = |retry_after_ms: Option<i64>| {
        RetrySchedule::DEFAULT
            .retry_at(now, claimed.attempt, random(), retry_after_ms)
            .map_or(AttemptResult::Failed, AttemptResult::Retry)
    };
    let (status, result, error) = match sent {
        Sent::Answered {
            status,
            retry_after_ms,
        } => match status {
            200..=299 => (Some(status), AttemptResult::Success, None),
            410 => (
                Some(status),
                AttemptResult::Gone,
                Some("410 Gone".to_owned()),
            ),
            300..=399 => (
                Some(status),
                retry(retry_after_ms),
                Some(format!("{status}: redirects are not followed")),
            ),
            _ => (
                Some(status),
                retry(retry_after_ms),
                Some(format!("HTTP {status}")),
            ),
        },
        Sent::Refused(reason) => (None, AttemptResult::Blocked, Some(reason)),
        Sent::Failed(reason) => (None, retry(None), Some(reason)),
    };
    let record = AttemptRecord {
        started_at: now,
        status,
        latency_ms,
        error,
    };
    (claimed, record, result)
}

/// Record finished attempts in one transaction.
async fn record(state: &AppState, finished: Vec<Finished>) {
    let now = state.clock.now();
    let disable_before = now.saturating_sub(state.config.webhooks.disable_after_secs as i64 * 1000);
    match state
        .store
        .finish_webhook_attempts(&finished, disable_before, now)
        .await
    {
        Ok(mine) => {
            for ((claimed, _, _), mine) in finished.iter().zip(mine) {
                if !mine {
                    tracing::warn!(delivery = %claimed.id, "a delivery's lease ran out before its attempt was recorded");
                }
            }
        }
        // Unrecorded attempts are claimed again once their leases end.
        Err(e) => tracing::error!(error = %e, "cannot record delivery attempts"),
    }
}

async fn send(state: &AppState, claimed: &ClaimedDelivery, now: UnixMillis) -> Sent {
    let hosts = match tenant_hosts(state, &claimed.tenant).await {
        Ok(hosts) => hosts,
        Err(reason) => return Sent::Failed(reason),
    };
    let url = match state.egress.check_url(&claimed.url, &hosts) {
        Ok(url) => url,
        Err(refusal) => {
            audit_refusal(state, claimed, &refusal).await;
            return Sent::Refused(format!(
                "refused by the egress policy ({})",
                refusal.rule.name()
            ));
        }
    };
    let secrets = match signing_secrets(state, claimed, now).await {
        Ok(secrets) => secrets,
        Err(reason) => return Sent::Failed(reason),
    };
    let timestamp = now.div_euclid(1000);
    let refs: Vec<&SigningSecret> = secrets.iter().collect();
    let signature = webhook::signature_header(
        &refs,
        claimed.message_id.as_str(),
        timestamp,
        claimed.payload.as_bytes(),
    );
    let request = state
        .egress
        .client()
        .post(url)
        .header("webhook-id", claimed.message_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .timeout(Duration::from_secs(state.config.webhooks.timeout_secs))
        .body(claimed.payload.clone())
        .build();
    let request = match request {
        Ok(request) => request,
        Err(_) => return Sent::Failed("the request could not be built".into()),
    };
    match state.egress.send(request, &hosts).await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after_ms = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now));
            // Read (a little of) the answer so the connection can be reused; what it says
            // is not kept.
            let mut read = 0usize;
            while read < 65_536 {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            Sent::Answered {
                status,
                retry_after_ms,
            }
        }
        Err(EgressError::Refused(refusal)) => {
            audit_refusal(state, claimed, &refusal).await;
            Sent::Refused(format!(
                "refused by the egress policy ({})",
                refusal.rule.name()
            ))
        }
        Err(EgressError::Transport(reason)) => Sent::Failed(reason),
    }
}

async fn audit_refusal(
    state: &AppState,
    claimed: &ClaimedDelivery,
    refusal: &crate::egress::Refusal,
) {
    let draft = AuditDraft::new(claimed.tenant.clone(), "gateway", AuditKind::EgressRefused)
        .resource(format!("webhook:{}", claimed.endpoint_id))
        .detail(json!({ "rule": refusal.rule.name(), "delivery": claimed.id }));
    if let Err(e) = state.store.append_audit(draft, state.clock.now()).await {
        tracing::error!(error = %e, "cannot audit an egress refusal");
    }
}

async fn tenant_hosts(state: &AppState, tenant: &TenantId) -> Result<HostAllowList, String> {
    let tenant = state
        .store
        .tenant(tenant)
        .await
        .map_err(|e| format!("cannot read the tenant: {e}"))?;
    HostAllowList::parse(&tenant.egress_hosts)
        .map_err(|e| format!("the tenant's egress hosts: {e}"))
}

/// The secrets that sign this attempt: the endpoint's own, and the previous one while a
/// rotation's grace period lasts.
async fn signing_secrets(
    state: &AppState,
    claimed: &ClaimedDelivery,
    now: UnixMillis,
) -> Result<Vec<SigningSecret>, String> {
    let read = |name: String| async move {
        let revealed = state.vault.reveal(&claimed.tenant, &name, now).await?;
        let text = revealed.expose_str()?;
        SigningSecret::parse(text).map_err(|_| VaultError::InvalidValue)
    };
    let mut secrets = vec![
        read(secret_name(&claimed.endpoint_id))
            .await
            .map_err(|e| format!("the endpoint's signing secret cannot be read: {e}"))?,
    ];
    if claimed.previous_until.is_some_and(|until| now < until) {
        match read(previous_secret_name(&claimed.endpoint_id)).await {
            Ok(previous) => secrets.push(previous),
            Err(e) => {
                tracing::warn!(endpoint = %claimed.endpoint_id, error = %e, "the previous signing secret cannot be read; signing with the current one only")
            }
        }
    }
    Ok(secrets)
}

/// `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date. Nonsense is
/// ignored (the schedule decides).
pub fn retry_after(value: &str, now: UnixMillis) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(i64::try_from(secs.min(86_400)).unwrap_or(86_400) * 1000);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    let at = i64::try_from(at).ok()?;
    Some(at.saturating_sub(now).max(0))
}

fn random() -> u64 {
    let mut bytes = [0u8; 8];
    // Jitter only spreads retries out; without randomness they keep the schedule's base.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Delivers webhooks: moves every tenant's outbox, claims due deliveries in batches (at
/// most `webhooks.concurrency` in flight) and records finished attempts in batches (one
/// transaction each, whatever finished together); wakes on a local audit append, when an
/// attempt ends, or every `webhooks.poll_interval_ms`.
pub async fn worker(state: Arc<AppState>, stop: tokio_util::sync::CancellationToken) {
    let config = state.config.webhooks.clone();
    let poll = Duration::from_millis(config.poll_interval_ms);
    // The lease outlives the attempt's time limit (twice over, and a second for recording
    // it): a worker that died mid-attempt leaves its delivery to another after that.
    let lease_ms = config.timeout_secs as i64 * 2000 + 1000;
    let mut tasks: tokio::task::JoinSet<Finished> = tokio::task::JoinSet::new();
    loop {
        if let Err(e) = run_outbox(&state).await {
            tracing::warn!(error = %e, "webhook outbox failed");
        }
        let free = config.concurrency.saturating_sub(tasks.len());
        if free > 0 {
            let now = state.clock.now();
            match state
                .store
                .claim_webhook_deliveries(now, now + lease_ms, free)
                .await
            {
                Ok(claimed) => {
                    for claimed in claimed {
                        let state = state.clone();
                        tasks.spawn(async move { attempt(&state, claimed).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let mut finished: Vec<Finished> = done.into_iter().collect();
                while let Some(done) = tasks.try_join_next() {
                    finished.extend(done);
                }
                record(&state, finished).await;
            }
            () = state.webhook_wake.notified(), if tasks.len() < config.concurrency => {}
            () = tokio::time::sleep(poll) => {}
            () = stop.cancelled() => return,
        }
    }
}

// ---- inbound

/// What an inbound sender gets back when verification fails: one answer for every reason
/// (the audit trail keeps the reason).
fn unverified() -> Response {
    crate::api::problem(
        StatusCode::UNAUTHORIZED,
        "unverified",
        "the webhook's signature, timestamp or delivery id is not valid",
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Axum handler for `POST /t/{tenant}/hooks/{source}`: verify, deduplicate, keep. A
/// signature that does not verify counts towards the address's lockout like a wrong token.
pub async fn inbound(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((tenant, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.metrics.request("inbound");
    let ip = state.client_ip(peer.ip(), &headers);
    let attempt = match crate::auth::admit_attempt(&state, ip).await {
        Ok(attempt) => attempt,
        Err(refusal) => return crate::error::ApiError::from(refusal).into_response(),
    };
    let not_found = || crate::api::problem(StatusCode::NOT_FOUND, "not_found", "not found");
    // Read from the store, not the cache: the cache keeps a tenant as first seen, and its
    // suspension changes.
    let tenant = match state.store.tenant_by_name(&tenant).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound) => return not_found(),
        Err(_) => return unavailable(),
    };
    let source = match state.store.inbound_source(&tenant.id, &source).await {
        Ok(source) => source,
        Err(StoreError::NotFound) => return not_found(),
        Err(_) => return unavailable(),
    };
    // The kill switch stops what comes in too.
    if tenant.suspended_at.is_some() {
        return crate::api::problem(
            StatusCode::FORBIDDEN,
            "suspended",
            "the tenant is suspended",
        );
    }
    let now = state.clock.now();
    let secret = match state
        .vault
        .reveal(&tenant.id, &inbound_secret_name(&source.id), now)
        .await
    {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(source = %source.id, error = %e, "an inbound source's secret cannot be read");
            return unavailable();
        }
    };
    let verified = verify_inbound(&source, secret.expose(), &headers, &body, now);
    drop(secret);
    let found = match verified {
        Ok(found) => found,
        Err(reason) => {
            let reason = format!("inbound `{}`: {reason}", source.name);
            let refusal =
                crate::auth::refuse_attempt(&state, attempt, tenant.id.clone(), "inbound", &reason)
                    .await;
            return match refusal {
                crate::auth::AuthRefusal::Unauthenticated => unverified(),
                other => crate::error::ApiError::from(other).into_response(),
            };
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        refused(&state, &source, "the body is not UTF-8", now).await;
        return crate::api::problem(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body must be UTF-8 text",
        );
    };
    match state
        .store
        .accept_inbound_event(
            &source,
            &found.delivery,
            &found.event,
            text,
            &found.digest,
            now,
        )
        .await
    {
        Ok(accepted) => (
            StatusCode::OK,
            axum::Json(json!({ "accepted": accepted.seq })),
        )
            .into_response(),
        Err(StoreError::Conflict(_)) => {
            refused(&state, &source, "a delivery seen before (replay)", now).await;
            crate::api::problem(
                StatusCode::CONFLICT,
                "replayed",
                "this delivery was accepted before",
            )
        }
        Err(StoreError::NotFound) => not_found(),
        Err(e) => {
            tracing::error!(error = %e, "cannot keep an inbound webhook");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    crate::api::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "try again later",
    )
}

/// What a verified inbound request is: its delivery id, event name, and the digest of what
/// its signature covers.
struct Verified {
    delivery: String,
    event: String,
    digest: String,
}

/// Check an inbound request against its source's scheme, or say why it is refused.
fn verify_inbound(
    source: &InboundSource,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: UnixMillis,
) -> Result<Verified, &'static str> {
    match source.scheme {
        InboundScheme::Github => {
            let signature =
                header(headers, "x-hub-signature-256").ok_or("no X-Hub-Signature-256 header")?;
            webhook::verify_hub_sha256(secret, body, signature)
                .map_err(|_| "the signature does not match")?;
            let delivery = header(headers, "x-github-delivery")
                .or_else(|| header(headers, "x-delivery-id"))
                .filter(|d| valid_delivery(d))
                .ok_or("no valid delivery id header")?;
            let event = header(headers, "x-github-event")
                .filter(|e| valid_delivery(e))
                .unwrap_or("");
            Ok(Verified {
                delivery: delivery.to_owned(),
                event: event.to_owned(),
                digest: webhook::signed_digest(&[body]),
            })
        }
        InboundScheme::Standard => {
            let text =
                std::str::from_utf8(secret).map_err(|_| "the source's secret is unusable")?;
            let key = SigningSecret::parse(text).map_err(|_| "the source's secret is unusable")?;
            let (Some(id), Some(timestamp), Some(signature)) = (
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
            ) else {
                return Err("missing webhook-id, webhook-timestamp or webhook-signature");
            };
            webhook::verify(
                &[&key],
                id,
                timestamp,
                signature,
                body,
                now.div_euclid(1000),
                source.tolerance_secs,
            )
            .map_err(|e| match e {
                webhook::VerifyError::Expired | webhook::VerifyError::FromFuture => {
                    "the timestamp is outside the replay window"
                }
                _ => "the signature does not match",
            })?;
            let event = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .filter(|e| valid_delivery(e))
                .unwrap_or_default();
            Ok(Verified {
                delivery: id.to_owned(),
                event,
                // The timestamp as the signature covers it: parsed (a zero-padded copy
                // verifies too, and must not make a new digest).
                digest: webhook::signed_digest(&[
                    id.as_bytes(),
                    timestamp
                        .parse::<i64>()
                        .map_err(|_| "the timestamp is not a number")?
                        .to_string()
                        .as_bytes(),
                    body,
                ]),
            })
        }
    }
}

fn valid_delivery(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

async fn refused(state: &AppState, source: &InboundSource, reason: &str, now: UnixMillis) {
    let draft = AuditDraft::new(
        source.tenant.clone(),
        format!("inbound:{}", source.name),
        AuditKind::InboundRefused,
    )
    .resource(format!("inbound:{}", source.name))
    .detail(json!({ "reason": reason }));
    if let Err(e) = state.store.append_audit(draft, now).await {
        tracing::error!(error = %e, "cannot audit a refused inbound webhook");
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub after: i64,
    #[serde(default = "default_limit")]
    pub limit: i64,
}

fn default_limit() -> i64 {
    100
}

/// Axum handler for `GET /t/{tenant}/hooks/{source}/events`: what an agent may read — the
/// verified events of one source, after a sequence number. The body is data from outside,
/// never instructions.
pub async fn inbound_events(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((tenant, source)): Path<(String, String)>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let ctx = match crate::api::agent_of(&state, peer, &tenant, &headers).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    // A scoped token reads a source only when its scope names `hooks/NAME` (or `hooks`).
    if !ctx.scope_covers("hooks", &source) {
        return crate::api::problem(StatusCode::NOT_FOUND, "not_found", "no such source");
    }
    let source = match state.store.inbound_source(&ctx.tenant, &source).await {
        Ok(source) => source,
        Err(StoreError::NotFound) => {
            return crate::api::problem(StatusCode::NOT_FOUND, "not_found", "no such source");
        }
        Err(_) => return unavailable(),
    };
    match state
        .store
        .inbound_events(&source, query.after, query.limit)
        .await
    {
        Ok(events) => {
            let events: Vec<Value> = events
                .into_iter()
                .map(|e| {
                    let body =
                        serde_json::from_str::<Value>(&e.body).unwrap_or(Value::String(e.body));
                    json!({ "seq": e.seq, "delivery": e.delivery, "event": e.event,
                            "received_at": crate::clock::rfc3339(e.received_at), "body": body })
                })
                .collect();
            axum::Json(json!({ "source": source.name, "verified": true, "events": events }))
                .into_response()
        }
        Err(_) => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_ignores_nonsense() {
        assert_eq!(retry_after("120", 0), Some(120_000));
        assert_eq!(retry_after(" 7 ", 0), Some(7_000));
        // Capped at a day.
        assert_eq!(retry_after("99999999999", 0), Some(86_400_000));
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(0));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(60_000)
        );
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(0));
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }

    fn entry(kind: AuditKind, resource: &str, detail: Value) -> AuditEvent {
        let draft = AuditDraft::new(TenantId::generate(), "admin:alice", kind)
            .resource(resource.to_owned())
            .detail(detail);
        AuditEvent {
            seq: 1,
            time: 0,
            prev_hash: String::new(),
            hash: String::new(),
            draft,
        }
    }

    #[test]
    fn audit_entries_map_to_the_events_people_are_told_about() {
        let e = |k, r: &str, d| event_of(&entry(k, r, d));
        assert_eq!(
            e(AuditKind::Hold, "tool:x", json!({})),
            Some(EventType::ActionHeld)
        );
        assert_eq!(
            e(AuditKind::Approve, "approval:apr_x", json!({})),
            Some(EventType::ApprovalDecided)
        );
        assert_eq!(
            e(AuditKind::Deny, "approval:apr_x", json!({})),
            Some(EventType::ApprovalDecided)
        );
        // A call refused by policy is not a decision on an approval.
        assert_eq!(e(AuditKind::Deny, "tool:con_x/send", json!({})), None);
        assert_eq!(
            e(
                AuditKind::ExecutionResult,
                "tool:x",
                json!({ "outcome": "ok" })
            ),
            Some(EventType::ActionExecuted)
        );
        assert_eq!(
            e(
                AuditKind::ExecutionResult,
                "tool:x",
                json!({ "outcome": "upstream_error" })
            ),
            Some(EventType::ActionFailed)
        );
        assert_eq!(
            e(AuditKind::GuardrailRevoked, "guardrail:g", json!({})),
            Some(EventType::GuardrailChanged)
        );
        assert_eq!(
            e(AuditKind::LockedOut, "mcp", json!({})),
            Some(EventType::TokenLockedOut)
        );
        assert_eq!(
            e(AuditKind::ConnectionRevoked, "connection:c", json!({})),
            Some(EventType::ConnectionRevoked)
        );
        assert_eq!(e(AuditKind::ToolCall, "tool:x", json!({})), None);
        assert_eq!(e(AuditKind::SecretPut, "secret:x", json!({})), None);
    }
}
