//! Model routes: an OpenAI-compatible `/t/{tenant}/v1/chat/completions` and an
//! Anthropic-compatible `/t/{tenant}/v1/messages`, authenticated with agent tokens. A request
//! names a model; the tenant's route that allows it sends it to its provider with a key from
//! the vault, through the egress client — after the provider policy, the zero-retention
//! rules, the credential search and the PII redaction ([`prompt`]) had their say. The answer
//! comes back with pseudonyms restored (streamed answers event by event, [`stream`]); the
//! audit and the credits ledger keep provider, model, status, token counts, request id and
//! latency — never a prompt or a completion.

pub mod prompt;
pub mod route;
pub mod stream;

use crate::auth::{AuthRefusal, authenticate_agent};
use crate::egress::HostAllowList;
use crate::identity::AgentContext;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_redact::Pseudonyms;
use portcullis_store::ModelUsage;
use prompt::Refusal;
use route::{Api, ModelRoute, ProviderPolicy};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest non-streamed answer the gateway reads from a provider.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// How long a provider has for a whole answer (a long stream included).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(600);
/// The Anthropic API version sent when the caller names none.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The scope entry that lets a scoped agent token use model routes (`@models` for all,
/// `@models/NAME` for one route). An unscoped token may use every route of its tenant.
pub const SCOPE: &str = "@models";

/// `POST /t/{tenant}/v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, Api::Openai, peer, &tenant, &headers, &body).await
}

/// `POST /t/{tenant}/v1/messages`.
pub async fn messages(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, Api::Anthropic, peer, &tenant, &headers, &body).await
}

/// `GET /t/{tenant}/v1/models`: the models this agent may ask for, in the OpenAI shape, or
/// the Anthropic one when the caller sends `anthropic-version` (both SDKs list models from
/// the same path). Only exact names are listed (a prefix pattern cannot be enumerated), and
/// only from routes the provider policy and the token's scope allow.
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let api = if headers.contains_key("anthropic-version") {
        Api::Anthropic
    } else {
        Api::Openai
    };
    state.metrics.request("model");
    let ctx = match agent_of(&state, api, peer, &tenant, &headers).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    let (routes, policy) = match tenant_routes(&state, &ctx).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot read model routes");
            return unavailable(api);
        }
    };
    let mut models: Vec<(String, String)> = routes
        .iter()
        .filter(|(name, r)| {
            r.api == api && scope_allows(&ctx, name) && policy.refusal(&r.provider).is_none()
        })
        .flat_map(|(_, r)| {
            r.models
                .iter()
                .filter(|m| !m.ends_with('*'))
                .map(|m| (m.clone(), r.provider.clone()))
        })
        .collect();
    models.sort();
    models.dedup_by(|a, b| a.0 == b.0);
    let body = match api {
        Api::Openai => json!({
            "object": "list",
            "data": models.iter().map(|(id, provider)| json!({
                "id": id, "object": "model", "created": 0, "owned_by": provider,
            })).collect::<Vec<_>>(),
        }),
        Api::Anthropic => json!({
            "data": models.iter().map(|(id, _)| json!({
                "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first().map(|m| m.0.clone()),
            "last_id": models.last().map(|m| m.0.clone()),
        }),
    };
    axum::Json(body).into_response()
}

/// A refusal in the caller's API's own error shape, so its SDK raises a typed error with
/// our message.
fn error(api: Api, status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = match api {
        Api::Openai => json!({ "error": { "message": message, "type": kind, "code": kind } }),
        Api::Anthropic => json!({ "type": "error", "error": { "type": kind, "message": message } }),
    };
    (status, axum::Json(body)).into_response()
}

fn auth_refusal(api: Api, refusal: AuthRefusal) -> Response {
    match refusal {
        AuthRefusal::Unauthenticated => error(
            api,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing, invalid, revoked or expired agent token",
        ),
        AuthRefusal::LockedOut { retry_after_secs }
        | AuthRefusal::RateLimited { retry_after_secs } => {
            let mut response = error(
                api,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "slow down",
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        AuthRefusal::Suspended => error(
            api,
            StatusCode::FORBIDDEN,
            "permission_error",
            "this agent or its tenant is suspended; nothing was sent",
        ),
        AuthRefusal::Unavailable => unavailable(api),
    }
}

fn unavailable(api: Api) -> Response {
    error(
        api,
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "the gateway cannot reach its store",
    )
}

/// The agent a model request comes from (from the client address the proxies
/// configuration names); a refusal answered in the caller's API's shape.
async fn agent_of(
    state: &AppState,
    api: Api,
    peer: SocketAddr,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<AgentContext, Response> {
    let ip = crate::auth::client_ip(
        peer.ip(),
        headers,
        &state.trusted_proxies,
        state.config.server.forwarded_header,
    );
    authenticate_agent(state, ip, tenant, authorization(headers).as_deref())
        .await
        .map_err(|refusal| auth_refusal(api, refusal))
}

/// The agent token: `Authorization: Bearer` (OpenAI SDKs), or `x-api-key` (Anthropic SDKs).
fn authorization(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        return value.to_str().ok().map(str::to_owned);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| format!("Bearer {key}"))
}

/// What one request is, for its audit event and ledger line.
struct Facts<'a> {
    ctx: &'a AgentContext,
    api: Api,
    route: Option<&'a str>,
    model: Option<&'a str>,
}

impl Facts<'_> {
    fn draft(&self, decision: &str, detail: Value) -> AuditDraft {
        let mut draft = AuditDraft::new(
            self.ctx.tenant.clone(),
            self.ctx.actor(),
            AuditKind::ModelRequest,
        )
        .resource(format!("model:{}", self.route.unwrap_or("-")))
        .detail(detail);
        draft.decision = Some(decision.into());
        if let (Some(object), Some(model)) = (draft.detail.as_object_mut(), self.model) {
            object.insert("model".into(), model.into());
            object.insert("api".into(), self.api.as_str().into());
        }
        draft
    }

    /// A `redaction` event of this request: kinds and counts crossing at `surface`.
    fn redaction(&self, surface: &str, action: &str, detail: Value) -> AuditDraft {
        let mut draft = self.draft("allow", detail);
        draft.kind = AuditKind::Redaction;
        draft.decision = None;
        if let Some(object) = draft.detail.as_object_mut() {
            object.insert("surface".into(), surface.into());
            object.insert("action".into(), action.into());
        }
        draft
    }
}

/// Refuse a request: audited (the reason names kinds, never values), then answered.
async fn refuse(
    state: &AppState,
    facts: &Facts<'_>,
    status: StatusCode,
    kind: &str,
    message: String,
) -> Response {
    let draft = facts.draft(
        "deny",
        json!({ "reason": message, "api": facts.api.as_str() }),
    );
    if let Err(e) = state.store.append_audit(draft, state.clock.now()).await {
        tracing::error!(error = %e, "cannot audit a refused model request");
        return unavailable(facts.api);
    }
    error(facts.api, status, kind, message)
}

async fn handle(
    state: &Arc<AppState>,
    api: Api,
    peer: SocketAddr,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let started = Instant::now();
    state.metrics.request("model");
    let ctx = match agent_of(state, api, peer, tenant, headers).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body is not JSON",
        );
    };
    // The model name is the caller's text and goes into the audit: it must look like a
    // model name, and never like a credential, before anything records it.
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(model) = &model
        && !usable_model_name(&state.redactor, model)
    {
        return error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`model` must be a model name: 1-128 characters, no spaces, not credential-shaped",
        );
    }
    let mut facts = Facts {
        ctx: &ctx,
        api,
        route: None,
        model: model.as_deref(),
    };
    let (routes, policy) = match tenant_routes(state, &ctx).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot read model routes");
            return unavailable(api);
        }
    };
    let Some(model) = model.as_deref() else {
        return error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`model` is required",
        );
    };
    let Some((name, route)) = routes
        .iter()
        .find(|(_, r)| r.api == api && r.allows_model(model))
    else {
        return refuse(
            state,
            &facts,
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!(
                "model `{model}` is not offered to this tenant on the {} API",
                api.as_str()
            ),
        )
        .await;
    };
    facts.route = Some(name);
    if !scope_allows(&ctx, name) {
        return refuse(
            state,
            &facts,
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("this token's scope does not include model route `{name}` ({SCOPE})"),
        )
        .await;
    }
    if let Some(reason) = policy.refusal(&route.provider) {
        return refuse(
            state,
            &facts,
            StatusCode::FORBIDDEN,
            "permission_error",
            reason,
        )
        .await;
    }
    let beta = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if api == Api::Anthropic
        && route.zero_retention
        && let Some(beta) = &beta
        && retaining_beta(beta)
    {
        // Named generically: the header is the caller's text, and the audit keeps the reason.
        let message = Refusal::Retains("the requested beta features".into()).message();
        return refuse(
            state,
            &facts,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
        )
        .await;
    }
    let mut pseudonyms = Pseudonyms::new();
    let prepared = match prompt::prepare(route, &mut request, &state.redactor, &mut pseudonyms) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let kind = match refusal {
                Refusal::Secrets(_) => "secret_in_prompt",
                Refusal::Retains(_) => "retention_refused",
                Refusal::Malformed(_) => "invalid_request_error",
            };
            return refuse(
                state,
                &facts,
                StatusCode::BAD_REQUEST,
                kind,
                refusal.message(),
            )
            .await;
        }
    };
    let now = state.clock.now();
    if !prepared.pii.is_empty() {
        let action = match route.pii {
            route::PiiMode::Mask => "masked",
            route::PiiMode::Pseudonymise => "pseudonymised",
            route::PiiMode::Off => "observed",
        };
        let draft = facts.redaction(
            "model_prompt",
            action,
            json!({ "kinds": prepared.pii, "route": name, "provider": route.provider }),
        );
        if let Err(e) = state.store.append_audit(draft, now).await {
            tracing::error!(error = %e, "cannot audit a model prompt's redaction");
            return unavailable(api);
        }
    }
    let outbound =
        match outbound_request(state, &ctx, route, api, headers, beta, &request, now).await {
            Ok(outbound) => outbound,
            Err(response) => return response,
        };
    // The tenant's own host allow list narrows the operator's egress policy here too.
    let hosts = match state.store.tenant(&ctx.tenant).await {
        Ok(tenant) => HostAllowList::parse(&tenant.egress_hosts).unwrap_or_else(|e| {
            tracing::error!(tenant = %ctx.tenant_name, error = %e, "unreadable egress hosts; refusing every host");
            HostAllowList::parse(["refuse.invalid"]).expect("a valid pattern")
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the tenant");
            return unavailable(api);
        }
    };
    let sent = state.egress.send(outbound, &hosts).await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(crate::egress::EgressError::Refused(refusal)) => {
            let message = format!(
                "the route's base URL is refused by the egress policy ({})",
                refusal.rule.name()
            );
            return refuse(
                state,
                &facts,
                StatusCode::FORBIDDEN,
                "permission_error",
                message,
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(tenant = %ctx.tenant_name, route = %name, error = %e, "model provider unreachable");
            let draft = facts.draft(
                "error",
                json!({
                    "provider": route.provider,
                    "status": 502,
                    "latency_ms": started.elapsed().as_millis() as u64,
                    "zero_retention": route.zero_retention,
                    "byo": route.byo,
                }),
            );
            if let Err(e) = state.store.append_audit(draft, state.clock.now()).await {
                tracing::error!(error = %e, "cannot audit a failed model request");
            }
            return error(
                api,
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the model provider could not be reached",
            );
        }
    };
    let done = Done {
        state: state.clone(),
        ctx: ctx.clone(),
        api,
        route_name: name.clone(),
        route: route.clone(),
        model: prepared.model.clone(),
        started,
        stream: prepared.stream,
    };
    let status = answer.status();
    let request_id = request_id(answer.headers());
    let is_stream = answer
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if is_stream && status.is_success() {
        return streamed(done, answer, pseudonyms, request_id);
    }
    whole(done, answer, pseudonyms, request_id).await
}

/// Whether a caller's `model` may be named in answers and the audit.
fn usable_model_name(redactor: &portcullis_redact::Redactor, model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 128
        && !model.chars().any(|c| c.is_control() || c.is_whitespace())
        && !redactor.scan(model).iter().any(|f| f.kind().is_secret())
}

/// Anthropic beta features that keep data at the provider (files, batches, containers).
fn retaining_beta(beta: &str) -> bool {
    beta.split(',').map(str::trim).any(|b| {
        [
            "files-api",
            "message-batches",
            "code-execution",
            "mcp-client",
            "skills",
        ]
        .iter()
        .any(|f| b.starts_with(f))
    })
}

fn scope_allows(ctx: &AgentContext, route: &str) -> bool {
    ctx.scope.is_empty()
        || ctx.scope.iter().any(|s| {
            s == SCOPE || s.strip_prefix(SCOPE).and_then(|r| r.strip_prefix('/')) == Some(route)
        })
}

/// The tenant's routes (a stored route that no longer parses is left out, with an error in
/// the operator's log) and its provider policy (unreadable: every provider refused).
async fn tenant_routes(
    state: &AppState,
    ctx: &AgentContext,
) -> Result<(Vec<(String, ModelRoute)>, ProviderPolicy), portcullis_store::StoreError> {
    let records = state.store.model_routes(&ctx.tenant).await?;
    let routes = records
        .into_iter()
        .filter_map(|r| match serde_json::from_value::<ModelRoute>(r.spec) {
            Ok(route) => Some((r.name, route)),
            Err(e) => {
                tracing::error!(tenant = %ctx.tenant_name, route = %r.name, error = %e, "a stored model route does not parse");
                None
            }
        })
        .collect();
    let policy = match state.store.model_providers(&ctx.tenant).await? {
        None => ProviderPolicy::default(),
        Some(value) => serde_json::from_value(value).unwrap_or_else(|e| {
            tracing::error!(tenant = %ctx.tenant_name, error = %e, "the stored provider policy does not parse; refusing every provider");
            ProviderPolicy {
                allow: Some(vec![]),
                block: vec![],
            }
        }),
    };
    Ok((routes, policy))
}

/// The request to the provider: its URL, the key from the vault (a sensitive header), the
/// retention headers, and only the caller headers the API needs.
#[allow(clippy::too_many_arguments)]
async fn outbound_request(
    state: &AppState,
    ctx: &AgentContext,
    route: &ModelRoute,
    api: Api,
    headers: &HeaderMap,
    beta: Option<String>,
    body: &Value,
    now: portcullis_core::UnixMillis,
) -> Result<reqwest::Request, Response> {
    let url = format!(
        "{}{}",
        route.base_url.trim_end_matches('/'),
        api.upstream_path()
    );
    let key = match state
        .vault
        .reveal_for_request(&ctx.tenant, &route.key_secret, now)
        .await
    {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(tenant = %ctx.tenant_name, error = %e, "cannot reveal a model provider key");
            return Err(error(
                api,
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the route's provider key is not available",
            ));
        }
    };
    let key = key.expose_str().map_err(|_| {
        error(
            api,
            StatusCode::BAD_GATEWAY,
            "api_error",
            "the route's provider key is not text",
        )
    })?;
    let (name, text) = match api {
        Api::Openai => (
            http::header::AUTHORIZATION,
            zeroize::Zeroizing::new(format!("Bearer {key}")),
        ),
        Api::Anthropic => (
            http::HeaderName::from_static("x-api-key"),
            zeroize::Zeroizing::new(key.to_owned()),
        ),
    };
    let mut secret = HeaderValue::from_str(&text).map_err(|_| {
        error(
            api,
            StatusCode::BAD_GATEWAY,
            "api_error",
            "the route's provider key is not a header value",
        )
    })?;
    secret.set_sensitive(true);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut request = state
        .egress
        .client()
        .post(url)
        .header(name, secret)
        .header(http::header::CONTENT_TYPE, "application/json")
        .timeout(PROVIDER_TIMEOUT)
        .body(bytes);
    if api == Api::Anthropic {
        let version = headers
            .get("anthropic-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(ANTHROPIC_VERSION);
        request = request.header("anthropic-version", version);
        if let Some(beta) = beta {
            request = request.header("anthropic-beta", beta);
        }
    }
    if route.zero_retention {
        for (name, value) in &route.retention_headers {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    request.build().map_err(|_| {
        error(
            api,
            StatusCode::BAD_GATEWAY,
            "api_error",
            "the route's base URL cannot be used",
        )
    })
}

fn request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ["x-request-id", "request-id"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 200)
        .map(str::to_owned)
}

/// Everything needed to close the books on one request that reached its provider.
struct Done {
    state: Arc<AppState>,
    ctx: AgentContext,
    api: Api,
    route_name: String,
    route: ModelRoute,
    model: String,
    started: Instant,
    stream: bool,
}

impl Done {
    /// Personal data the provider returned of its own: a `redaction` event (observed).
    async fn observed_in_answer(&self, kinds: std::collections::BTreeMap<String, usize>) {
        let facts = Facts {
            ctx: &self.ctx,
            api: self.api,
            route: Some(&self.route_name),
            model: Some(&self.model),
        };
        let draft = facts.redaction(
            "model_completion",
            "observed",
            json!({ "kinds": kinds, "route": self.route_name, "provider": self.route.provider }),
        );
        if let Err(e) = self
            .state
            .store
            .append_audit(draft, self.state.clock.now())
            .await
        {
            tracing::error!(error = %e, "cannot audit what a model answer carried");
        }
    }

    /// The ledger line and the `model_request` event, in one transaction.
    async fn record(
        &self,
        status: u16,
        tokens: (Option<i64>, Option<i64>),
        request_id: Option<String>,
    ) {
        let (input, output) = (tokens.0.unwrap_or(0), tokens.1.unwrap_or(0));
        let credits = self.route.credits(input, output);
        let facts = Facts {
            ctx: &self.ctx,
            api: self.api,
            route: Some(&self.route_name),
            model: Some(&self.model),
        };
        let draft = facts.draft(
            "allow",
            json!({
                "provider": self.route.provider,
                "status": status,
                "input_tokens": input,
                "output_tokens": output,
                "credits": credits,
                "request_id": request_id,
                "latency_ms": self.started.elapsed().as_millis() as u64,
                "zero_retention": self.route.zero_retention,
                "byo": self.route.byo,
                "stream": self.stream,
            }),
        );
        let usage = ModelUsage {
            tenant: &self.ctx.tenant,
            agent: &self.ctx.agent,
            route: &self.route_name,
            provider: &self.route.provider,
            model: &self.model,
            status,
            input_tokens: input,
            output_tokens: output,
            credits,
            byo: self.route.byo,
            zero_retention: self.route.zero_retention,
        };
        let now = self.state.clock.now();
        if let Err(e) = self.state.store.record_model_usage(usage, draft, now).await {
            tracing::error!(error = %e, "cannot record a model request in the ledger");
        }
    }
}

fn response_headers(response: &mut Response, content_type: &str, request_id: &Option<String>) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    if let Some(id) = request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert("x-request-id", id.clone());
        headers.insert("request-id", id);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}

/// A whole (non-streamed) answer: read, restored, recorded, returned.
async fn whole(
    done: Done,
    mut answer: reqwest::Response,
    pseudonyms: Pseudonyms,
    request_id: Option<String>,
) -> Response {
    let status = answer.status();
    let content_type = answer
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let mut bytes = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(None) => break,
            _ => {
                done.record(502, (None, None), request_id).await;
                return error(
                    done.api,
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "the model provider's answer could not be read",
                );
            }
        }
    }
    // The provider refused the route's key: its own words may quote part of the key, which
    // the agent must never see. Our words instead (the operator's log has the status).
    if matches!(status.as_u16(), 401 | 403) {
        tracing::warn!(tenant = %done.ctx.tenant_name, route = %done.route_name, status = status.as_u16(), "the model provider refused the route's key");
        done.record(status.as_u16(), (None, None), request_id).await;
        return error(
            done.api,
            StatusCode::BAD_GATEWAY,
            "api_error",
            format!(
                "the model provider refused this route's key (HTTP {}); ask the tenant's admin to check it",
                status.as_u16()
            ),
        );
    }
    let (body, tokens, answer_id) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut value) if !status.is_success() => {
            // Any other refusal is passed on, with whatever looks like a credential masked.
            prompt::mask_credentials(&done.state.redactor, &mut value);
            (
                serde_json::to_vec(&value).unwrap_or_default(),
                (None, None),
                None,
            )
        }
        Ok(mut value) => {
            let observed = prompt::observed_in_answer(&done.state.redactor, &mut value);
            if !observed.is_empty() {
                done.observed_in_answer(observed).await;
            }
            prompt::finish_answer(&done.route, &mut value, &pseudonyms);
            let tokens = prompt::usage_of(done.api, &value);
            let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
            (serde_json::to_vec(&value).unwrap_or_default(), tokens, id)
        }
        // Not JSON: passed on with whatever looks like a credential masked.
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let masked = prompt::mask_credentials_in(&done.state.redactor, &text);
            (masked.into_bytes(), (None, None), None)
        }
    };
    let request_id = request_id.or(answer_id);
    done.record(status.as_u16(), tokens, request_id.clone())
        .await;
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, body).into_response();
    response_headers(&mut response, &content_type, &request_id);
    response
}

/// A streamed answer: a task reads the provider's events, edits them and hands them on; it
/// records the request when the provider's stream ends — also if the caller went away.
fn streamed(
    done: Done,
    mut answer: reqwest::Response,
    pseudonyms: Pseudonyms,
    request_id: Option<String>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let status = answer.status().as_u16();
    let header_id = request_id.clone();
    tokio::spawn(async move {
        let restore = done.route.restore && !pseudonyms.is_empty();
        let mut editor = stream::StreamEditor::new(done.api, restore.then_some(&pseudonyms));
        let mut caller_gone = false;
        let mut broken = false;
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => match editor.push(&chunk) {
                    Ok(out) if !out.is_empty() && !caller_gone => {
                        caller_gone = tx.send(Ok(Bytes::from(out))).await.is_err();
                    }
                    Ok(_) => {}
                    Err(stream::TooLarge) => {
                        broken = true;
                        break;
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            let _ = tx
                .send(Err(std::io::Error::other("the provider stream broke off")))
                .await;
        } else {
            let rest = editor.finish();
            if !rest.is_empty() && !caller_gone {
                let _ = tx.send(Ok(Bytes::from(rest))).await;
            }
        }
        drop(tx);
        let request_id = header_id.or(editor.answer_id.clone());
        let tokens = (editor.input_tokens, editor.output_tokens);
        done.record(if broken { 502 } else { status }, tokens, request_id)
            .await;
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    response_headers(&mut response, "text/event-stream", &request_id);
    response
}
