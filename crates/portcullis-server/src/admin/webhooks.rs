//! A tenant's webhooks. Outbound endpoints: create (the signing secret is shown once),
//! list, show, enable, disable, delete, rotate the secret (both sign during the grace
//! period), the delivery log, and redelivery. Inbound sources: add (the verification secret
//! goes into the vault, write-only), list, revoke. Admins only; every change is audited.

use super::common::{ApiResult, AppRef, parse_id, require_admin, tenant_for, valid_name};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::webhooks::{inbound_secret_name, previous_secret_name, secret_name};
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::id::{DeliveryId, WebhookEndpointId};
use portcullis_core::webhook::{EventFilter, SigningSecret};
use portcullis_store::{
    Delivery, DeliveryAttempt, InboundScheme, InboundSource, StoreError, WebhookEndpoint,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route(
            "/tenants/{tenant}/webhooks",
            post(create_endpoint).get(list_endpoints),
        )
        .route(
            "/tenants/{tenant}/webhooks/{endpoint}",
            get(show_endpoint).delete(delete_endpoint),
        )
        .route("/tenants/{tenant}/webhooks/{endpoint}/enable", post(enable))
        .route(
            "/tenants/{tenant}/webhooks/{endpoint}/disable",
            post(disable),
        )
        .route(
            "/tenants/{tenant}/webhooks/{endpoint}/rotate-secret",
            post(rotate_secret),
        )
        .route(
            "/tenants/{tenant}/webhooks/{endpoint}/deliveries",
            get(list_deliveries),
        )
        .route(
            "/tenants/{tenant}/deliveries/{delivery}",
            get(show_delivery),
        )
        .route(
            "/tenants/{tenant}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
        .route(
            "/tenants/{tenant}/inbound",
            post(create_source).get(list_sources),
        )
        .route("/tenants/{tenant}/inbound/{name}", delete(revoke_source))
}

/// A new endpoint: where to send, and which events (`["*"]` for all).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// An endpoint as the API shows it (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `enabled` or `disabled`.
    pub status: String,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(endpoint: WebhookEndpoint) -> Self {
        Self {
            status: if endpoint.disabled_at.is_some() {
                "disabled"
            } else {
                "enabled"
            }
            .into(),
            endpoint,
        }
    }
}

/// A signing secret, shown exactly once: when the endpoint is created or the secret rotated.
#[derive(Serialize, Deserialize)]
pub struct EndpointWithSecret {
    pub endpoint: EndpointView,
    /// `whsec_…`: the receiver's verification key. Not shown again.
    #[serde(serialize_with = "reveal")]
    pub secret: SecretString,
    /// During a rotation: until then the previous secret signs too.
    #[serde(default)]
    pub previous_valid_until: Option<UnixMillis>,
}

impl std::fmt::Debug for EndpointWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointWithSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// A secret's text, for the few fields that carry one across the API exactly once (or, in
/// a request, into the vault).
fn reveal<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// One delivery and its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A new inbound source: its name (the path segment), how it signs, and its secret.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceIn {
    pub name: String,
    /// `github` (X-Hub-Signature-256) or `standard` (Standard Webhooks).
    pub scheme: InboundScheme,
    /// GitHub: the shared secret as configured there; Standard Webhooks: `whsec_…`.
    #[serde(serialize_with = "reveal")]
    pub secret: SecretString,
    /// The replay window, in seconds (default `webhooks.inbound_tolerance_secs`, at most 3600).
    #[serde(default)]
    pub tolerance_secs: Option<u32>,
}

impl std::fmt::Debug for SourceIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceIn")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

fn shown(
    endpoint: WebhookEndpoint,
    secret: &SigningSecret,
    previous_valid_until: Option<UnixMillis>,
) -> Json<EndpointWithSecret> {
    Json(EndpointWithSecret {
        endpoint: endpoint.into(),
        secret: SecretString::from(secret.to_text().as_str().to_owned()),
        previous_valid_until,
    })
}

async fn create_endpoint(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<EndpointIn>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let events =
        EventFilter::parse(&body.events).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if body.description.len() > 256 {
        return Err(ApiError::BadRequest(
            "the description is at most 256 bytes".into(),
        ));
    }
    if body.url.len() > 2048 {
        return Err(ApiError::BadRequest("the URL is at most 2048 bytes".into()));
    }
    let hosts = crate::egress::HostAllowList::parse(&tenant.egress_hosts)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Err(refusal) = state.egress.check_url(&body.url, &hosts) {
        return Err(ApiError::BadRequest(format!(
            "the URL is refused by the egress policy ({}): {}",
            refusal.rule.name(),
            refusal.detail
        )));
    }
    let now = state.clock.now();
    let endpoint = state
        .store
        .create_webhook_endpoint(
            &tenant.id,
            &body.url,
            &body.description,
            &events,
            &ctx.actor(),
            now,
        )
        .await?;
    let secret = SigningSecret::generate();
    let stored = state
        .vault
        .put(
            &tenant.id,
            &secret_name(&endpoint.id),
            secret.to_text().as_bytes(),
            None,
            &ctx.actor(),
            now,
        )
        .await;
    if let Err(e) = stored {
        // Without a secret nothing could be signed: take the endpoint away again.
        let _ = state
            .store
            .delete_webhook_endpoint(&tenant.id, &endpoint.id, &ctx.actor(), now)
            .await;
        return Err(e.into());
    }
    state.webhook_wake.notify_one();
    Ok(shown(endpoint, &secret, None))
}

pub(crate) async fn list_endpoints(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<EndpointView>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let list = state.store.webhook_endpoints(&tenant.id).await?;
    Ok(Json(list.into_iter().map(EndpointView::from).collect()))
}

pub(crate) async fn show_endpoint(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> ApiResult<EndpointView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: WebhookEndpointId = parse_id(&endpoint)?;
    Ok(Json(
        state.store.webhook_endpoint(&tenant.id, &id).await?.into(),
    ))
}

async fn set_enabled(
    state: AppRef,
    ctx: AdminContext,
    tenant: String,
    endpoint: String,
    enabled: bool,
) -> ApiResult<EndpointView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: WebhookEndpointId = parse_id(&endpoint)?;
    let changed = state
        .store
        .set_webhook_endpoint_enabled(&tenant.id, &id, enabled, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(changed.into()))
}

async fn enable(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> ApiResult<EndpointView> {
    set_enabled(state, ctx, tenant, endpoint, true).await
}

async fn disable(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> ApiResult<EndpointView> {
    set_enabled(state, ctx, tenant, endpoint, false).await
}

async fn delete_endpoint(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: WebhookEndpointId = parse_id(&endpoint)?;
    let now = state.clock.now();
    state
        .store
        .delete_webhook_endpoint(&tenant.id, &id, &ctx.actor(), now)
        .await?;
    for name in [secret_name(&id), previous_secret_name(&id)] {
        match state
            .vault
            .delete(&tenant.id, &name, &ctx.actor(), now)
            .await
        {
            Ok(()) | Err(crate::vault::VaultError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(serde_json::json!({ "deleted": id })))
}

/// A new secret; the previous one keeps signing too for `webhooks.rotation_grace_secs`.
async fn rotate_secret(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: WebhookEndpointId = parse_id(&endpoint)?;
    state.store.webhook_endpoint(&tenant.id, &id).await?;
    let now = state.clock.now();
    let actor = ctx.actor();
    // The order keeps every step signable: the previous secret is kept first, the grace
    // period starts (both are the same secret until the next step), then the new one.
    let current = state
        .vault
        .reveal(&tenant.id, &secret_name(&id), now)
        .await?;
    state
        .vault
        .put(
            &tenant.id,
            &previous_secret_name(&id),
            current.expose(),
            None,
            &actor,
            now,
        )
        .await?;
    drop(current);
    let until = now + state.config.webhooks.rotation_grace_secs as i64 * 1000;
    let endpoint = state
        .store
        .rotate_webhook_secret(&tenant.id, &id, until, &actor, now)
        .await?;
    let secret = SigningSecret::generate();
    state
        .vault
        .put(
            &tenant.id,
            &secret_name(&id),
            secret.to_text().as_bytes(),
            None,
            &actor,
            now,
        )
        .await?;
    Ok(shown(endpoint, &secret, Some(until)))
}

pub(crate) async fn list_deliveries(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, endpoint)): Path<(String, String)>,
    Query(query): Query<DeliveriesQuery>,
) -> ApiResult<Vec<Delivery>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: WebhookEndpointId = parse_id(&endpoint)?;
    state.store.webhook_endpoint(&tenant.id, &id).await?;
    let list = state
        .store
        .webhook_deliveries(&tenant.id, Some(&id), query.limit.unwrap_or(100))
        .await?;
    Ok(Json(list))
}

async fn show_delivery(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, delivery)): Path<(String, String)>,
) -> ApiResult<DeliveryView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: DeliveryId = parse_id(&delivery)?;
    let (delivery, attempts) = state.store.webhook_delivery(&tenant.id, &id).await?;
    Ok(Json(DeliveryView {
        delivery,
        attempt_log: attempts,
    }))
}

/// The same message (the same `webhook-id`) once more, as a new delivery due now.
pub(crate) async fn redeliver(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, delivery)): Path<(String, String)>,
) -> ApiResult<Delivery> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: DeliveryId = parse_id(&delivery)?;
    let created = state
        .store
        .redeliver_webhook(&tenant.id, &id, &ctx.actor(), state.clock.now())
        .await?;
    state.webhook_wake.notify_one();
    Ok(Json(created))
}

async fn create_source(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<SourceIn>,
) -> ApiResult<InboundSource> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    valid_name("source", &body.name)?;
    let secret = body.secret.expose_secret();
    match body.scheme {
        InboundScheme::Standard => {
            SigningSecret::parse(secret).map_err(|_| {
                ApiError::BadRequest(
                    "a Standard Webhooks secret is `whsec_` and base64 of 24 to 64 bytes".into(),
                )
            })?;
        }
        InboundScheme::Github => {
            if secret.len() < 16 || secret.len() > 256 {
                return Err(ApiError::BadRequest(
                    "the shared secret must be 16 to 256 bytes".into(),
                ));
            }
        }
    }
    let tolerance = body
        .tolerance_secs
        .map_or(state.config.webhooks.inbound_tolerance_secs, u64::from);
    if tolerance == 0 || tolerance > 3600 {
        return Err(ApiError::BadRequest(
            "tolerance_secs must be between 1 and 3600".into(),
        ));
    }
    let now = state.clock.now();
    let source = state
        .store
        .create_inbound_source(
            &tenant.id,
            &body.name,
            body.scheme,
            tolerance as i64,
            &ctx.actor(),
            now,
        )
        .await?;
    let stored = state
        .vault
        .put(
            &tenant.id,
            &inbound_secret_name(&source.id),
            secret.as_bytes(),
            None,
            &ctx.actor(),
            now,
        )
        .await;
    if let Err(e) = stored {
        let _ = state
            .store
            .revoke_inbound_source(&source, &ctx.actor(), now)
            .await;
        return Err(e.into());
    }
    Ok(Json(source))
}

async fn list_sources(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<InboundSource>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    Ok(Json(state.store.inbound_sources(&tenant.id).await?))
}

async fn revoke_source(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let now = state.clock.now();
    let source = match state.store.inbound_source(&tenant.id, &name).await {
        Ok(source) => source,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound),
        Err(e) => return Err(e.into()),
    };
    state
        .store
        .revoke_inbound_source(&source, &ctx.actor(), now)
        .await?;
    match state
        .vault
        .delete(
            &tenant.id,
            &inbound_secret_name(&source.id),
            &ctx.actor(),
            now,
        )
        .await
    {
        Ok(()) | Err(crate::vault::VaultError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(serde_json::json!({ "revoked": name })))
}
