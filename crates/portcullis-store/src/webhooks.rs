//! Webhook rows, each query written once for both backends: a tenant's endpoints, the
//! outbox cursor, messages, the delivery queue with its leases and attempt log, and the
//! inbound sources with the events they delivered.
//!
//! INVARIANT: the audit trail is the outbox. A tenant's cursor moves only in the
//! transaction that stores the messages made from the entries it passes, and only from the
//! value the caller read (compare-and-set): a crash enqueues nothing or everything, and two
//! replicas never enqueue the same entry twice.
//!
//! INVARIANT: a delivery is worked on by one worker at a time (its lease), and an attempt's
//! result is recorded only by the worker whose claim it is (`attempts` still matches): a
//! worker that outlived its lease writes nothing.

use crate::rows::{json, parse_id, parse_json};
use crate::sql::{Freshness, Lock, Row, Scope, sql};
use crate::tx::{Tx, all};
use crate::*;
use portcullis_core::audit::AuditKind;
use portcullis_core::webhook::{EventFilter, EventType};

/// A tenant's webhook endpoint. Its signing secrets are in the vault (`webhook.<id>` and,
/// during a rotation's grace period, `webhook.<id>.previous`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub tenant: TenantId,
    pub url: String,
    pub description: String,
    pub events: EventFilter,
    /// It hears of audit entries after this sequence number …
    pub start_seq: i64,
    /// … and of checkpoints past this tree size.
    pub start_size: i64,
    /// Until then the previous secret signs too (a rotation's grace period).
    pub previous_until: Option<UnixMillis>,
    /// The first failure since the last success.
    pub failing_since: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub disabled_at: Option<UnixMillis>,
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands. `Pending` until it succeeds, runs out of attempts (`Failed`),
/// or the egress policy refuses its destination (`Blocked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Success,
    Failed,
    Blocked,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        Ok(match value {
            "pending" => Self::Pending,
            "success" => Self::Success,
            "failed" => Self::Failed,
            "blocked" => Self::Blocked,
            other => return Err(StoreError::Corrupt(format!("delivery state `{other}`"))),
        })
    }
}

/// One message's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub message_id: WebhookMessageId,
    pub endpoint_id: WebhookEndpointId,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: UnixMillis,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
}

/// One attempt of a delivery, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub started_at: UnixMillis,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// `success`, `retry`, `failed`, `blocked` or `gone`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A message made from one audit entry or checkpoint, before it is stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: WebhookMessageId,
    pub event: EventType,
    /// The audit entry it reports (endpoints created after it do not hear of it) …
    pub seq: Option<i64>,
    /// … or the checkpoint's tree size.
    pub size: Option<i64>,
    /// The JSON body, exactly as it will be signed and sent.
    pub payload: String,
}

/// A delivery a worker has claimed: everything it needs to make one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub tenant: TenantId,
    pub message_id: WebhookMessageId,
    pub endpoint_id: WebhookEndpointId,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    pub payload: String,
    pub url: String,
    pub previous_until: Option<UnixMillis>,
    pub failing_since: Option<UnixMillis>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer: delivered.
    Success,
    /// Not delivered; try again at this time.
    Retry(UnixMillis),
    /// Not delivered and no attempt left.
    Failed,
    /// The egress policy refused the destination: no attempt will ever reach it.
    Blocked,
    /// 410 Gone: the endpoint is disabled.
    Gone,
}

impl AttemptResult {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry(_) => "retry",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::Gone => "gone",
        }
    }
}

/// The facts of one attempt, for the log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: UnixMillis,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// How an inbound source proves its events are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundScheme {
    /// `X-Hub-Signature-256: sha256=<hex HMAC of the body>` (GitHub and many others), with
    /// the delivery id in `X-GitHub-Delivery` (or `X-Delivery-Id`).
    Github,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
}

impl InboundScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Standard => "standard",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "github" => Some(Self::Github),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }
}

/// A source of inbound webhooks for one tenant. Its secret is in the vault as
/// `inbound.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundSource {
    pub id: InboundSourceId,
    pub tenant: TenantId,
    pub name: String,
    pub scheme: InboundScheme,
    pub tolerance_secs: i64,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub revoked_at: Option<UnixMillis>,
}

/// An inbound event that passed verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundEvent {
    pub seq: i64,
    pub delivery: String,
    pub event: String,
    pub received_at: UnixMillis,
    pub body: String,
}

fn endpoint(row: &Row) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        url: row.text("url")?,
        description: row.text("description")?,
        events: parse_json("events", &row.text("events")?)?,
        start_seq: row.int("start_seq")?,
        start_size: row.int("start_size")?,
        previous_until: row.opt_int("previous_until")?,
        failing_since: row.opt_int("failing_since")?,
        created_at: row.int("created_at")?,
        created_by: row.text("created_by")?,
        disabled_at: row.opt_int("disabled_at")?,
        disabled_reason: row.opt_text("disabled_reason")?,
    })
}

fn count(row: &Row, column: &str) -> StoreResult<u32> {
    u32::try_from(row.int(column)?)
        .map_err(|_| StoreError::Corrupt(format!("column `{column}` is out of range")))
}

fn delivery(row: &Row) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: parse_id(row.text("id")?)?,
        message_id: parse_id(row.text("message_id")?)?,
        endpoint_id: parse_id(row.text("endpoint_id")?)?,
        event_type: row.text("event_type")?,
        state: DeliveryState::parse(&row.text("state")?)?,
        attempts: count(row, "attempts")?,
        next_attempt_at: row.int("next_attempt_at")?,
        created_at: row.int("created_at")?,
        finished_at: row.opt_int("finished_at")?,
    })
}

fn attempt(row: &Row) -> StoreResult<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        attempt: count(row, "attempt")?,
        started_at: row.int("started_at")?,
        status: row
            .opt_int("status")?
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt("status".into())))
            .transpose()?,
        latency_ms: row.int("latency_ms")?,
        outcome: row.text("outcome")?,
        error: row.opt_text("error")?,
    })
}

fn inbound_source(row: &Row) -> StoreResult<InboundSource> {
    Ok(InboundSource {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        name: row.text("name")?,
        scheme: InboundScheme::parse(&row.text("scheme")?)
            .ok_or_else(|| StoreError::Corrupt("inbound scheme".into()))?,
        tolerance_secs: row.int("tolerance_secs")?,
        created_at: row.int("created_at")?,
        created_by: row.text("created_by")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

fn inbound_event(row: &Row) -> StoreResult<InboundEvent> {
    Ok(InboundEvent {
        seq: row.int("seq")?,
        delivery: row.text("delivery")?,
        event: row.text("event")?,
        received_at: row.int("received_at")?,
        body: row.text("body")?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.message_id, d.endpoint_id, m.event_type, d.state, d.attempts, \
     d.next_attempt_at, d.created_at, d.finished_at";

impl Store {
    /// Create an endpoint, audited (URL and events; its secret is the caller's to store in
    /// the vault). It hears of what happens from now on: the tenant's outbox cursor starts
    /// at the trail's current end if it has none yet.
    pub async fn create_webhook_endpoint(
        &self,
        tenant: &TenantId,
        url: &str,
        description: &str,
        events: &EventFilter,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        let head = tx
            .one(
                &sql("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_events WHERE tenant_id = $1")
                    .text(tenant.as_str()),
            )
            .await?
            .int("seq")?;
        let size = tx
            .one(
                &sql("SELECT COALESCE(MAX(size), 0) AS size FROM audit_checkpoints WHERE tenant_id = $1")
                    .text(tenant.as_str()),
            )
            .await?
            .int("size")?;
        tx.execute(
            &sql("INSERT INTO webhook_cursors (tenant_id, audit_seq, checkpoint_size) VALUES ($1, $2, $3) \
                  ON CONFLICT DO NOTHING")
            .text(tenant.as_str())
            .int(head)
            .int(size),
        )
        .await?;
        let id = WebhookEndpointId::generate();
        tx.execute(
            &sql("INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, start_seq, start_size, \
                  created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .text(id.as_str())
            .text(tenant.as_str())
            .text(url)
            .text(description)
            .text(json(events))
            .int(head)
            .int(size)
            .int(now)
            .text(actor),
        )
        .await?;
        let created = endpoint(&tx.one(&endpoint_query(tenant, &id)).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::WebhookEndpointCreated)
            .resource(format!("webhook:{id}"))
            .detail(serde_json::json!({ "destination": destination(url), "events": events }));
        Ok(tx.audited(created, draft, now).await?.0)
    }

    /// A tenant's endpoints (not deleted), oldest first.
    pub async fn webhook_endpoints(&self, tenant: &TenantId) -> StoreResult<Vec<WebhookEndpoint>> {
        let q = sql(
            "SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        )
        .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            endpoint,
        )
    }

    pub async fn webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &WebhookEndpointId,
    ) -> StoreResult<WebhookEndpoint> {
        let row = self
            .read_opt(
                Scope::Tenant(tenant),
                &endpoint_query(tenant, id),
                Freshness::Latest,
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        endpoint(&row)
    }

    /// Enable or disable an endpoint by a person's hand, audited. Enabling clears the
    /// failure streak; deliveries that failed while it was disabled stay failed (redeliver
    /// them).
    pub async fn set_webhook_endpoint_enabled(
        &self,
        tenant: &TenantId,
        id: &WebhookEndpointId,
        enabled: bool,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change = if enabled {
            sql("UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
            .text(tenant.as_str())
            .text(id.as_str())
        } else {
            sql("UPDATE webhook_endpoints SET disabled_at = COALESCE(disabled_at, $3), disabled_reason = 'disabled by an admin' \
                 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
            .text(tenant.as_str())
            .text(id.as_str())
            .int(now)
        };
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let changed = endpoint(&tx.one(&endpoint_query(tenant, id)).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::WebhookEndpointChanged)
            .resource(format!("webhook:{id}"))
            .detail(serde_json::json!({ "enabled": enabled }));
        Ok(tx.audited(changed, draft, now).await?.0)
    }

    /// Start a secret rotation's grace period (the caller has stored the previous secret
    /// in the vault): until `previous_until` both secrets sign. Audited.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        id: &WebhookEndpointId,
        previous_until: UnixMillis,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change = sql("UPDATE webhook_endpoints SET previous_until = $3 \
                          WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
        .text(tenant.as_str())
        .text(id.as_str())
        .int(previous_until);
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let changed = endpoint(&tx.one(&endpoint_query(tenant, id)).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::WebhookEndpointChanged)
            .resource(format!("webhook:{id}"))
            .detail(
                serde_json::json!({ "secret_rotated": true, "previous_until": previous_until }),
            );
        Ok(tx.audited(changed, draft, now).await?.0)
    }

    /// Delete an endpoint: its pending deliveries fail, its log stays. Audited.
    pub async fn delete_webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &WebhookEndpointId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let change = sql("UPDATE webhook_endpoints SET deleted_at = $3, disabled_at = COALESCE(disabled_at, $3), \
                          disabled_reason = COALESCE(disabled_reason, 'deleted') \
                          WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
        .text(tenant.as_str())
        .text(id.as_str())
        .int(now);
        if tx.execute(&change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        fail_pending(&mut tx, tenant, Some(id), now).await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::WebhookEndpointDeleted)
            .resource(format!("webhook:{id}"));
        tx.audited((), draft, now).await.map(drop)
    }

    /// The tenants with at least one enabled endpoint (whose trails the outbox reads).
    pub async fn webhook_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let q = sql("SELECT DISTINCT tenant_id FROM webhook_endpoints \
                     WHERE disabled_at IS NULL AND deleted_at IS NULL ORDER BY tenant_id");
        self.read_all(Scope::AllTenants, &q, Freshness::Latest)
            .await?
            .iter()
            .map(|row| parse_id(row.text("tenant_id")?))
            .collect()
    }

    /// The tenant's outbox cursor: (last audit seq, last checkpoint size) made into messages.
    pub async fn webhook_cursor(&self, tenant: &TenantId) -> StoreResult<Option<(i64, i64)>> {
        let q = sql("SELECT audit_seq, checkpoint_size FROM webhook_cursors WHERE tenant_id = $1")
            .text(tenant.as_str());
        match self
            .read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
        {
            Some(row) => Ok(Some((row.int("audit_seq")?, row.int("checkpoint_size")?))),
            None => Ok(None),
        }
    }

    /// A tenant's signed checkpoints (C2SP notes) past tree size `after`, smallest first.
    pub async fn checkpoints_after(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<portcullis_core::audit::Checkpoint>> {
        let q = sql(
            "SELECT * FROM audit_checkpoints WHERE tenant_id = $1 AND size > $2 \
                     AND note IS NOT NULL ORDER BY size LIMIT $3",
        )
        .text(tenant.as_str())
        .int(after)
        .int(limit.clamp(1, 10_000));
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            crate::rows::checkpoint,
        )
    }

    /// Store the messages made from the entries and checkpoints between `from` and `to`
    /// (both `(audit seq, checkpoint size)`), each with a delivery to every enabled endpoint
    /// that subscribes to its event and existed before it, and move the cursor — in one
    /// transaction, and only if the cursor is still at `from`. `false`: another replica moved
    /// it first; nothing was written.
    pub async fn enqueue_webhooks(
        &self,
        tenant: &TenantId,
        from: (i64, i64),
        to: (i64, i64),
        messages: &[NewMessage],
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let moved = tx
            .execute(
                &sql(
                    "UPDATE webhook_cursors SET audit_seq = $1, checkpoint_size = $2 \
                      WHERE tenant_id = $3 AND audit_seq = $4 AND checkpoint_size = $5",
                )
                .int(to.0)
                .int(to.1)
                .text(tenant.as_str())
                .int(from.0)
                .int(from.1),
            )
            .await?;
        if moved != 1 {
            return Ok(false);
        }
        let endpoints = all(
            tx.all(
                &sql("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 \
                      AND disabled_at IS NULL AND deleted_at IS NULL")
                .text(tenant.as_str()),
            )
            .await?,
            endpoint,
        )?;
        for message in messages {
            let to: Vec<&WebhookEndpoint> = endpoints
                .iter()
                .filter(|e| e.events.matches(message.event))
                .filter(|e| message.seq.is_none_or(|seq| seq > e.start_seq))
                .filter(|e| message.size.is_none_or(|size| size > e.start_size))
                .collect();
            if to.is_empty() {
                continue;
            }
            tx.execute(
                &sql(
                    "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at) \
                      VALUES ($1, $2, $3, $4, $5)",
                )
                .text(message.id.as_str())
                .text(tenant.as_str())
                .text(message.event.as_str())
                .text(message.payload.as_str())
                .int(now),
            )
            .await?;
            for e in to {
                insert_delivery(&mut tx, tenant, &message.id, &e.id, now).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Claim up to `limit` deliveries due first (any tenant), in one transaction: each one's
    /// attempt count goes up and it is leased to the caller until `lease_until`.
    pub async fn claim_webhook_deliveries(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let pick = format!(
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2{}",
            tx.lock(Lock::SkipLocked)
        );
        let ids = tx
            .all(&sql(pick).int(now).int(limit.clamp(1, 1000) as i64))
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<StoreResult<Vec<String>>>()?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let taken = tx
                .execute(
                    &sql("UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = $1 \
                          WHERE id = $2 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $3)")
                    .int(lease_until)
                    .text(id.as_str())
                    .int(now),
                )
                .await?;
            if taken != 1 {
                continue;
            }
            let q = sql(
                "SELECT d.id, d.tenant_id, d.message_id, d.endpoint_id, d.attempts, m.payload, \
                 e.url, e.previous_until, e.failing_since \
                 FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
            )
            .text(id.as_str());
            let row = tx.one(&q).await?;
            claimed.push(ClaimedDelivery {
                id: parse_id(row.text("id")?)?,
                tenant: parse_id(row.text("tenant_id")?)?,
                message_id: parse_id(row.text("message_id")?)?,
                endpoint_id: parse_id(row.text("endpoint_id")?)?,
                attempt: count(&row, "attempts")?,
                payload: row.text("payload")?,
                url: row.text("url")?,
                previous_until: row.opt_int("previous_until")?,
                failing_since: row.opt_int("failing_since")?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Record attempts and what each came to, in one transaction. Each is written only while
    /// its claim is still the caller's (`false` in its place otherwise: the lease ran out and
    /// another worker took over). `Gone`, or a failure while the endpoint has been failing
    /// since before `disable_failing_before`, disables the endpoint (audited, which notifies
    /// the tenant's other endpoints).
    pub async fn finish_webhook_attempts(
        &self,
        finished: &[(ClaimedDelivery, AttemptRecord, AttemptResult)],
        disable_failing_before: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<Vec<bool>> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let mut mine = Vec::with_capacity(finished.len());
        for (claimed, record, result) in finished {
            mine.push(
                finish_in(
                    &mut tx,
                    claimed,
                    record,
                    result,
                    disable_failing_before,
                    now,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(mine)
    }

    /// A tenant's deliveries, newest first, optionally of one endpoint, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: Option<&WebhookEndpointId>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let q = sql(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
             WHERE d.tenant_id = $1 AND ($2 IS NULL OR d.endpoint_id = $2) \
             ORDER BY d.created_at DESC, d.id DESC LIMIT $3"
        ))
        .text(tenant.as_str())
        .opt_text(endpoint.map(WebhookEndpointId::as_str))
        .int(limit.clamp(1, 1000));
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            delivery,
        )
    }

    /// One delivery and its attempts, oldest first, read together (an attempt being recorded
    /// meanwhile is in both or in neither).
    pub async fn webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
    ) -> StoreResult<(Delivery, Vec<DeliveryAttempt>)> {
        let q = delivery_query(tenant, id);
        let attempts =
            sql("SELECT * FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt")
                .text(tenant.as_str())
                .text(id.as_str());
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let found = tx.opt(&q).await?.ok_or(StoreError::NotFound)?;
        let log = all(tx.all(&attempts).await?, attempt)?;
        tx.commit().await?;
        Ok((delivery(&found)?, log))
    }

    /// Deliver a message again: a new delivery of the same message (the same `webhook-id`)
    /// to the same endpoint, due now. Refused while the endpoint is disabled. Audited.
    pub async fn redeliver_webhook(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<Delivery> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let q = sql("SELECT d.message_id, d.endpoint_id, e.disabled_at FROM webhook_deliveries d \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.tenant_id = $1 AND d.id = $2")
        .text(tenant.as_str())
        .text(id.as_str());
        let row = tx.opt(&q).await?.ok_or(StoreError::NotFound)?;
        if row.opt_int("disabled_at")?.is_some() {
            return Err(StoreError::Conflict(Conflict::EndpointDisabled));
        }
        let message: WebhookMessageId = parse_id(row.text("message_id")?)?;
        let endpoint: WebhookEndpointId = parse_id(row.text("endpoint_id")?)?;
        let new = insert_delivery(&mut tx, tenant, &message, &endpoint, now).await?;
        let q = delivery_query(tenant, &new);
        let created = delivery(&tx.one(&q).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::WebhookRedelivered)
            .resource(format!("webhook:{endpoint}"))
            .detail(serde_json::json!({ "message": message, "delivery": new, "of": id }));
        Ok(tx.audited(created, draft, now).await?.0)
    }

    // ---- inbound

    /// Add a source of inbound webhooks (its secret is the caller's to store in the vault).
    /// Audited.
    pub async fn create_inbound_source(
        &self,
        tenant: &TenantId,
        name: &str,
        scheme: InboundScheme,
        tolerance_secs: i64,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<InboundSource> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        let id = InboundSourceId::generate();
        tx.execute(
            &sql("INSERT INTO inbound_sources (id, tenant_id, name, scheme, tolerance_secs, created_at, created_by) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .text(id.as_str())
            .text(tenant.as_str())
            .text(name)
            .text(scheme.as_str())
            .int(tolerance_secs)
            .int(now)
            .text(actor),
        )
        .await?;
        let q = sql("SELECT * FROM inbound_sources WHERE tenant_id = $1 AND id = $2")
            .text(tenant.as_str())
            .text(id.as_str());
        let created = inbound_source(&tx.one(&q).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::InboundSourceChanged)
            .resource(format!("inbound:{name}"))
            .detail(serde_json::json!({ "created": id, "scheme": scheme, "tolerance_secs": tolerance_secs }));
        Ok(tx.audited(created, draft, now).await?.0)
    }

    pub async fn inbound_sources(&self, tenant: &TenantId) -> StoreResult<Vec<InboundSource>> {
        let q = sql("SELECT * FROM inbound_sources WHERE tenant_id = $1 ORDER BY name")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            inbound_source,
        )
    }

    /// A live (not revoked) source by name.
    pub async fn inbound_source(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<InboundSource> {
        let q = sql(
            "SELECT * FROM inbound_sources WHERE tenant_id = $1 AND name = $2 AND revoked_at IS NULL",
        )
        .text(tenant.as_str())
        .text(name);
        inbound_source(&self.read_one(Scope::Tenant(tenant), &q).await?)
    }

    /// Revoke one source (by id: a name may name a newer source meanwhile). Audited.
    pub async fn revoke_inbound_source(
        &self,
        source: &InboundSource,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let tenant = &source.tenant;
        let change = sql("UPDATE inbound_sources SET revoked_at = $3 \
                          WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
        .text(tenant.as_str())
        .text(source.id.as_str())
        .int(now);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::InboundSourceChanged)
            .resource(format!("inbound:{}", source.name))
            .detail(serde_json::json!({ "revoked": source.id }));
        self.change_one(tenant, change, draft, now).await
    }

    /// Keep a verified event, audited by delivery id and event name (never its body).
    /// `Conflict::AlreadyExists` when the source delivered this id, or what its signature
    /// covers (`digest`), before: a replay.
    pub async fn accept_inbound_event(
        &self,
        source: &InboundSource,
        delivery: &str,
        event: &str,
        body: &str,
        digest: &str,
        now: UnixMillis,
    ) -> StoreResult<InboundEvent> {
        let tenant = &source.tenant;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let live = format!(
            "SELECT 1 FROM inbound_sources WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL{}",
            tx.lock(Lock::Update)
        );
        if !tx
            .exists(&sql(live).text(tenant.as_str()).text(source.id.as_str()))
            .await?
        {
            return Err(StoreError::NotFound);
        }
        let seen = sql(
            "SELECT 1 FROM inbound_events WHERE source_id = $1 AND (delivery = $2 OR digest = $3)",
        )
        .text(source.id.as_str())
        .text(delivery)
        .text(digest);
        if tx.exists(&seen).await? {
            return Err(StoreError::Conflict(Conflict::AlreadyExists));
        }
        let seq = tx
            .one(
                &sql("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM inbound_events WHERE source_id = $1")
                    .text(source.id.as_str()),
            )
            .await?
            .int("seq")?;
        tx.execute(
            &sql("INSERT INTO inbound_events (tenant_id, source_id, seq, delivery, event, received_at, body, digest) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .text(tenant.as_str())
            .text(source.id.as_str())
            .int(seq)
            .text(delivery)
            .text(event)
            .int(now)
            .text(body)
            .text(digest),
        )
        .await?;
        let accepted = InboundEvent {
            seq,
            delivery: delivery.to_owned(),
            event: event.to_owned(),
            received_at: now,
            body: body.to_owned(),
        };
        let draft = AuditDraft::new(
            tenant.clone(),
            format!("inbound:{}", source.name),
            AuditKind::InboundAccepted,
        )
        .resource(format!("inbound:{}", source.name))
        .detail(serde_json::json!({ "delivery": delivery, "event": event, "seq": seq }));
        Ok(tx.audited(accepted, draft, now).await?.0)
    }

    /// A source's accepted events after `after`, oldest first, at most `limit`.
    pub async fn inbound_events(
        &self,
        source: &InboundSource,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<InboundEvent>> {
        let q = sql(
            "SELECT * FROM inbound_events WHERE tenant_id = $1 AND source_id = $2 AND seq > $3 \
                     ORDER BY seq LIMIT $4",
        )
        .text(source.tenant.as_str())
        .text(source.id.as_str())
        .int(after)
        .int(limit.clamp(1, 1000));
        all(
            self.read_all(Scope::Tenant(&source.tenant), &q, Freshness::Latest)
                .await?,
            inbound_event,
        )
    }
}

fn delivery_query<'a>(tenant: &'a TenantId, id: &'a DeliveryId) -> crate::sql::Sql<'a> {
    sql(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
         WHERE d.tenant_id = $1 AND d.id = $2"
    ))
    .text(tenant.as_str())
    .text(id.as_str())
}

/// What the audit trail says of an endpoint's URL: scheme, host and port only. The rest (a
/// userinfo, a path or query token — chat webhooks carry their secret there) never leaves
/// the endpoint's row.
fn destination(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}")
}

impl WebhookEndpoint {
    /// Where it sends, as pages other than its own API answer show it: scheme, host, port.
    pub fn destination(&self) -> String {
        destination(&self.url)
    }
}

fn endpoint_query<'a>(tenant: &'a TenantId, id: &'a WebhookEndpointId) -> crate::sql::Sql<'a> {
    sql("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
        .text(tenant.as_str())
        .text(id.as_str())
}

async fn insert_delivery(
    tx: &mut Tx,
    tenant: &TenantId,
    message: &WebhookMessageId,
    endpoint: &WebhookEndpointId,
    now: UnixMillis,
) -> StoreResult<DeliveryId> {
    let id = DeliveryId::generate();
    tx.execute(
        &sql("INSERT INTO webhook_deliveries (id, tenant_id, message_id, endpoint_id, state, attempts, next_attempt_at, created_at) \
              VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)")
        .text(id.as_str())
        .text(tenant.as_str())
        .text(message.as_str())
        .text(endpoint.as_str())
        .int(now),
    )
    .await?;
    Ok(id)
}

/// Fail every pending delivery of a tenant (of one endpoint, if named): it was disabled,
/// deleted, or its tenant was.
pub(crate) async fn fail_pending(
    tx: &mut Tx,
    tenant: &TenantId,
    endpoint: Option<&WebhookEndpointId>,
    now: UnixMillis,
) -> StoreResult<()> {
    tx.execute(
        &sql(
            "UPDATE webhook_deliveries SET state = 'failed', finished_at = $2, lease_until = NULL \
              WHERE tenant_id = $1 AND state = 'pending' AND ($3 IS NULL OR endpoint_id = $3)",
        )
        .text(tenant.as_str())
        .int(now)
        .opt_text(endpoint.map(WebhookEndpointId::as_str)),
    )
    .await
    .map(drop)
}

/// One attempt's record and consequences, inside the caller's transaction (see
/// [`Store::finish_webhook_attempts`]).
async fn finish_in(
    tx: &mut Tx,
    claimed: &ClaimedDelivery,
    record: &AttemptRecord,
    result: &AttemptResult,
    disable_failing_before: UnixMillis,
    now: UnixMillis,
) -> StoreResult<bool> {
    let tenant = &claimed.tenant;
    let (state, next, finished) = match result {
        AttemptResult::Success => (DeliveryState::Success, now, Some(now)),
        AttemptResult::Retry(at) => (DeliveryState::Pending, *at, None),
        AttemptResult::Failed | AttemptResult::Gone => (DeliveryState::Failed, now, Some(now)),
        AttemptResult::Blocked => (DeliveryState::Blocked, now, Some(now)),
    };
    let mine = tx
        .execute(
            &sql("UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, finished_at = $3, lease_until = NULL \
                  WHERE id = $4 AND tenant_id = $5 AND attempts = $6 AND state = 'pending'")
            .text(state.as_str())
            .int(next)
            .opt_int(finished)
            .text(claimed.id.as_str())
            .text(tenant.as_str())
            .int(i64::from(claimed.attempt)),
        )
        .await?;
    if mine != 1 {
        return Ok(false);
    }
    tx.execute(
        &sql("INSERT INTO webhook_attempts (delivery_id, tenant_id, attempt, started_at, status, latency_ms, outcome, error) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
        .text(claimed.id.as_str())
        .text(tenant.as_str())
        .int(i64::from(claimed.attempt))
        .int(record.started_at)
        .opt_int(record.status.map(i64::from))
        .int(record.latency_ms)
        .text(result.outcome())
        .opt_text(record.error.as_deref()),
    )
    .await?;
    let endpoint_id = claimed.endpoint_id.as_str();
    if *result == AttemptResult::Success {
        tx.execute(
            &sql("UPDATE webhook_endpoints SET failing_since = NULL \
                  WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL")
            .text(tenant.as_str())
            .text(endpoint_id),
        )
        .await?;
        return Ok(true);
    }
    tx.execute(
        &sql(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $3) \
              WHERE tenant_id = $1 AND id = $2",
        )
        .text(tenant.as_str())
        .text(endpoint_id)
        .int(record.started_at),
    )
    .await?;
    let failing_since = tx
        .one(
            &sql("SELECT failing_since FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .text(tenant.as_str())
                .text(endpoint_id),
        )
        .await?
        .opt_int("failing_since")?;
    let reason = match result {
        AttemptResult::Gone => Some("the endpoint answered 410 Gone".to_owned()),
        AttemptResult::Blocked => None,
        _ if failing_since.is_some_and(|since| since <= disable_failing_before) => {
            Some("every delivery failed for the disable period".to_owned())
        }
        _ => None,
    };
    let Some(reason) = reason else {
        return Ok(true);
    };
    let disabled = tx
        .execute(
            &sql(
                "UPDATE webhook_endpoints SET disabled_at = $3, disabled_reason = $4 \
                  WHERE tenant_id = $1 AND id = $2 AND disabled_at IS NULL",
            )
            .text(tenant.as_str())
            .text(endpoint_id)
            .int(now)
            .text(reason.as_str()),
        )
        .await?;
    if disabled == 0 {
        return Ok(true);
    }
    fail_pending(tx, tenant, Some(&claimed.endpoint_id), now).await?;
    let draft = AuditDraft::new(tenant.clone(), "system", AuditKind::WebhookEndpointDisabled)
        .resource(format!("webhook:{endpoint_id}"))
        .detail(serde_json::json!({ "reason": reason, "destination": destination(&claimed.url) }));
    tx.append(draft, now).await?;
    Ok(true)
}
