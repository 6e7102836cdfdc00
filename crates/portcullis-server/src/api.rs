//! HTTP API connections: an agent calls a plain REST API through the gate at
//! `/t/{tenant}/http/{connection}/{path}`. Each request becomes a call of one of the
//! connection's routes — named rules of methods and path patterns, each with an effect class —
//! so it is resolved, decided, held, approved, audited and executed exactly like an MCP tool
//! call (same grants, policy facts, receipts and audit). The gateway injects the credential
//! from the vault and sends the request through the egress policy; the agent never sees it.
//!
//! Without routes of its own a connection gets three: `read` (GET, HEAD), `delete` (DELETE)
//! and `write` (every other method). The action an approver approves is the request itself —
//! method, path, query and body — so a retry runs only if it is byte-for-byte the request
//! that was approved.

use crate::auth::{AuthRefusal, authenticate_agent};
use crate::gate::{self, CallOutcome, CallRequest, GateError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::action::ToolDefinition;
use portcullis_core::effect::EffectClass;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// Set on an answer the injection spotter flagged (the counterpart of the MCP result's
/// `_meta` `dev.portcullis/untrusted`).
pub const UNTRUSTED_HEADER: &str = "x-portcullis-untrusted";

/// Largest upstream response body handed back to an agent.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// One route of an HTTP API connection: the methods and path it covers and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRoute {
    /// The name grants, policies and approvers see (as the tool name).
    pub name: String,
    /// Upper-case methods, or `*` for any.
    pub methods: Vec<String>,
    /// A path pattern: `/v1/charges`, `/v1/customers/*` (`*` one segment), `/v1/**` (the
    /// rest of the path).
    pub path: String,
    pub effect: EffectClass,
}

impl ApiRoute {
    /// `NAME=METHODS:PATH:EFFECT`, methods separated by `,` (`create_charge=POST:/v1/charges:spend`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "route `{text}`: use NAME=METHODS:PATH:EFFECT, e.g. create_charge=POST:/v1/charges:spend"
            )
        };
        let (name, rest) = text.split_once('=').ok_or_else(usage)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(methods), Some(path), Some(effect)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let route = Self {
            name: name.to_owned(),
            methods: methods
                .split(',')
                .map(|m| m.trim().to_ascii_uppercase())
                .collect(),
            path: path.to_owned(),
            effect: EffectClass::parse(effect).map_err(|e| format!("route `{name}`: {e}"))?,
        };
        route.validate()?;
        Ok(route)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !crate::upstream::valid_plain_name(&self.name) {
            return Err(format!(
                "route name `{}`: use 1-128 letters, digits, `_`, `-` or `.`, without `__`",
                self.name
            ));
        }
        if self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m != "*" && (m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase())))
        {
            return Err(format!(
                "route `{}`: methods are upper-case names or `*`",
                self.name
            ));
        }
        if !self.path.starts_with('/') || self.path.contains("..") || self.path.contains('?') {
            return Err(format!(
                "route `{}`: the path pattern starts with `/` and has no `..` or query",
                self.name
            ));
        }
        Ok(())
    }

    fn covers(&self, method: &str, path: &str) -> bool {
        self.methods.iter().any(|m| m == "*" || m == method) && path_matches(&self.path, path)
    }

    /// The route as a tool definition (pinned like an MCP tool's: a changed route is a
    /// changed definition, held until an admin accepts it).
    pub fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name.clone(),
            description: Some(format!("{} {}", self.methods.join(","), self.path)),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "method": { "type": "string" },
                    "path": { "type": "string" },
                    "query": { "type": "string" },
                    "body": {},
                    "content_type": { "type": "string" }
                },
                "required": ["method", "path"]
            }),
            annotations: Some(json!({ "readOnlyHint": self.effect == EffectClass::Read })),
            title: None,
            output_schema: None,
            meta: None,
        }
    }
}

/// The routes a connection without its own gets.
pub fn default_routes() -> Vec<ApiRoute> {
    let route = |name: &str, methods: &[&str], effect| ApiRoute {
        name: name.to_owned(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        path: "/**".to_owned(),
        effect,
    };
    vec![
        route("read", &["GET", "HEAD"], EffectClass::Read),
        route("delete", &["DELETE"], EffectClass::Delete),
        route("write", &["*"], EffectClass::Write),
    ]
}

/// The connection's routes in the order they are tried: its own, then the defaults (so a
/// method nobody routed is still classified: reads as reads, everything else as an effect).
pub fn effective_routes(routes: &[ApiRoute]) -> Vec<ApiRoute> {
    let mut all = routes.to_vec();
    for default in default_routes() {
        if !all.iter().any(|r| r.name == default.name) {
            all.push(default);
        }
    }
    all
}

/// Whether `path` matches `pattern` segment by segment (`*` one segment, a final `**` the
/// rest, including nothing), ASCII case-insensitively.
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.trim_start_matches('/').split('/');
    let mut have = path.trim_start_matches('/').split('/');
    loop {
        match (want.next(), have.next()) {
            (Some("**"), _) => return want.next().is_none(),
            // Case-insensitively: an upstream that routes `/V1/Charges` as `/v1/charges` must
            // not get it under a looser route (for a case-sensitive one this only ever
            // picks the stricter route).
            (Some(w), Some(h)) if w == "*" && !h.is_empty() || w.eq_ignore_ascii_case(h) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A request path the gateway will forward: absolute, normalised, no `.`/`..` segments,
/// no empty segments, no encoded slash or backslash (which upstreams decode differently).
fn clean_path(path: &str) -> Result<String, String> {
    let path = format!("/{}", path.trim_start_matches('/'));
    let refused = || {
        Err(
            "the path may not contain `.` or `..` segments, empty segments, `;`, backslashes, \
             control characters, or percent-escapes of characters that need none (`%63` for `c`) \
             or of separators"
                .to_owned(),
        )
    };
    if path
        .split('/')
        .skip(1)
        .any(|s| s == "." || s == ".." || (s.is_empty() && path.len() > 1))
        || path.contains('\\')
        || path.contains(';')
        || path.bytes().any(|b| b.is_ascii_control())
    {
        return refused();
    }
    // Routes match the path as sent, and the upstream decodes it: an escape the upstream
    // would decode into something a route pattern spells differently (`%63harges` is
    // `charges`; `%2F` a separator; `%3B` a path parameter) would classify the request under
    // another route than the one it reaches. Only escapes of what must be escaped pass.
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escaped = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            match escaped {
                Some(b)
                    if !(b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b';')
                        || b.is_ascii_control()) => {}
                _ => return refused(),
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(path)
}

/// The request as the action's arguments: what is approved is exactly what is sent.
fn arguments(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut args = serde_json::Map::new();
    args.insert("method".into(), Value::String(method.as_str().to_owned()));
    args.insert("path".into(), Value::String(path.to_owned()));
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        args.insert("query".into(), Value::String(query.to_owned()));
    }
    if !body.is_empty() {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let value = if content_type.starts_with("application/json") {
            serde_json::from_slice(body).map_err(|_| "the body is not valid JSON".to_owned())?
        } else {
            let text = std::str::from_utf8(body)
                .map_err(|_| "only JSON and text bodies can be sent through the gate".to_owned())?;
            Value::String(text.to_owned())
        };
        args.insert("body".into(), value);
        args.insert("content_type".into(), Value::String(content_type));
    }
    Ok(args)
}

/// A JSON error the way agents read them.
pub(crate) fn problem(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "message": message.into() })),
    )
        .into_response()
}

fn auth_refusal(refusal: AuthRefusal) -> Response {
    match refusal {
        AuthRefusal::Unauthenticated => problem(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing, invalid, revoked or expired agent token",
        ),
        AuthRefusal::LockedOut { retry_after_secs }
        | AuthRefusal::RateLimited { retry_after_secs } => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "slow down",
            );
            if let Ok(value) = http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        AuthRefusal::Suspended => problem(
            StatusCode::FORBIDDEN,
            "suspended",
            "this agent or its tenant is suspended; nothing was done",
        ),
        AuthRefusal::Unavailable => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the gateway cannot reach its store",
        ),
    }
}

/// The agent a plain-HTTP request (an API call, a session exchange) comes from: its bearer
/// token for `tenant`, from the client address the proxies configuration names; refusals
/// answered as JSON.
pub(crate) async fn agent_of(
    state: &AppState,
    peer: SocketAddr,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<crate::identity::AgentContext, Response> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ip = crate::auth::client_ip(
        peer.ip(),
        headers,
        &state.trusted_proxies,
        state.config.server.forwarded_header,
    );
    authenticate_agent(state, ip, tenant, authorization)
        .await
        .map_err(auth_refusal)
}

/// Axum handler for `/t/{tenant}/http/{connection}/{*path}`.
pub async fn endpoint(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((tenant, connection, _)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.metrics.request("http");
    let ctx = match agent_of(&state, peer, &tenant, &headers).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    // The path as the agent sent it, still percent-encoded: what is checked, approved and
    // forwarded is the same text (a decoded `%2F` would become a separator upstream).
    let prefix = format!("/t/{tenant}/http/{connection}/");
    let Some(raw) = uri.path().strip_prefix(prefix.as_str()) else {
        // The tenant or connection name was percent-encoded: not a name of ours.
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "tenant and connection names are never percent-encoded",
        );
    };
    let path = match clean_path(raw) {
        Ok(path) => path,
        Err(message) => return problem(StatusCode::BAD_REQUEST, "bad_path", message),
    };
    // Which route this request is: the connection's own, then the defaults. An unknown
    // connection (or one that is not an HTTP API) answers like an unknown tool.
    let unknown = || {
        problem(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "no HTTP API connection and route of that name is available to this agent",
        )
    };
    let routes = match state.cache.connections(&state.store, &ctx.tenant).await {
        Ok(connections) => connections
            .iter()
            .find(|c| c.name == connection && c.revoked_at.is_none())
            .and_then(|c| crate::upstream::ConnectionSpec::from_json(&c.transport).ok())
            .and_then(|spec| match spec.transport {
                crate::upstream::Transport::Api { routes, .. } => Some(effective_routes(&routes)),
                _ => None,
            }),
        Err(_) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway cannot reach its store",
            );
        }
    };
    let Some(routes) = routes else {
        return unknown();
    };
    let Some(route) = routes.iter().find(|r| r.covers(method.as_str(), &path)) else {
        return unknown();
    };
    let arguments = match arguments(&method, &path, uri.query(), &headers, &body) {
        Ok(arguments) => arguments,
        Err(message) => return problem(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let stated_reason = headers
        .get("x-portcullis-reason")
        .and_then(|v| v.to_str().ok())
        .map(|r| r.chars().take(2000).collect());
    let request = CallRequest {
        name: format!("{connection}{}{}", gate::NAMESPACE_SEPARATOR, route.name),
        arguments: Some(arguments),
        session: None,
        stated_reason,
        agent: None,
        resume: None,
    };
    match gate::call_tool(&state, &ctx, request).await {
        Ok(outcome) => render(outcome),
        Err(GateError::UnknownTool(_)) => unknown(),
        Err(GateError::BadArguments(message)) => {
            problem(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        Err(GateError::Store(e)) => {
            tracing::error!(error = %e, "store error on an HTTP API call");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway cannot reach its store",
            )
        }
        Err(other) => {
            tracing::error!(error = ?other, "unexpected gate answer on an HTTP API call");
            problem(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the call could not be made",
            )
        }
    }
}

/// The gate's answer as an HTTP response: the upstream's own response when it ran.
fn render(outcome: CallOutcome) -> Response {
    match outcome {
        CallOutcome::Completed(result) => {
            let Some(answer) = result
                .structured_content
                .as_ref()
                .and_then(|v| serde_json::from_value::<ApiAnswer>(v.clone()).ok())
            else {
                return problem(StatusCode::BAD_GATEWAY, "upstream_error", "the upstream's answer is unreadable");
            };
            let untrusted = result
                .meta
                .as_ref()
                .is_some_and(|meta| meta.0.contains_key(gate::scrub::UNTRUSTED_META_KEY));
            let mut response = answer.into_response();
            // The body is passed on as data; the injection spotter's flag travels beside it.
            if untrusted {
                response.headers_mut().insert(
                    UNTRUSTED_HEADER,
                    http::HeaderValue::from_static("true"),
                );
            }
            response
        }
        CallOutcome::UpstreamFailed(reason) => {
            problem(StatusCode::BAD_GATEWAY, "upstream_error", reason)
        }
        CallOutcome::Held(approval) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "status": "pending_approval",
                "approval_id": approval.id,
                "expires_at": approval.expires_at,
                "reasons": approval.reasons,
                "retry": "send the identical request again once it is approved",
            })),
        )
            .into_response(),
        CallOutcome::Denied(reasons) => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "denied", "reasons": reasons })),
        )
            .into_response(),
        CallOutcome::NotRun { approval, why } => (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": why.as_str(),
                "approval_id": approval,
                "message": match &why {
                    gate::NotRun::Stale(m) => m.clone(),
                    gate::NotRun::AlreadyExecuted => "this approval was already used".into(),
                    gate::NotRun::UpstreamUnavailable => "the upstream is unavailable; retry later".into(),
                },
            })),
        )
            .into_response(),
        CallOutcome::InputRequired { .. } => problem(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "an HTTP API cannot ask questions",
        ),
    }
}

/// What an HTTP API upstream answered, carried through the gate as the call's structured
/// result: status, content type and body (text; binary bodies as base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiAnswer {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl IntoResponse for ApiAnswer {
    fn into_response(self) -> Response {
        use base64::Engine as _;
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = match (self.body, self.body_base64) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        let mut response = (status, body).into_response();
        if let Some(value) = self
            .content_type
            .and_then(|c| http::HeaderValue::from_str(&c).ok())
        {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, value);
        }
        response
    }
}

/// Where an HTTP API connection sends its requests (see `upstream::Transport::Api`).
pub struct ApiUpstream {
    pub tenant: portcullis_core::id::TenantId,
    pub base_url: reqwest::Url,
    pub auth: Option<crate::vault::Credential>,
    /// The tenant's host allow list when the connection started.
    pub hosts: crate::egress::HostAllowList,
    pub connection: portcullis_core::id::ConnectionId,
}

/// Send one permitted request: the path joined to the base URL, the credential injected,
/// through the egress policy. Runs only with the arguments of a `Permit` (see
/// `Upstreams::call`).
pub(crate) async fn send(
    outbound: &crate::upstream::Outbound,
    api: &ApiUpstream,
    arguments: &Value,
    now: portcullis_core::UnixMillis,
    timeout: std::time::Duration,
) -> Result<rmcp::model::CallToolResult, crate::upstream::UpstreamError> {
    use crate::upstream::UpstreamError;
    let text = |key: &str| arguments.get(key).and_then(Value::as_str);
    let (Some(method), Some(path)) = (text("method"), text("path")) else {
        return Err(UpstreamError::Transport);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| UpstreamError::Transport)?;
    let path = clean_path(path).map_err(|_| UpstreamError::Transport)?;
    let mut url = api.base_url.clone();
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(text("query"));
    let mut injected_query = None;
    let mut request = outbound.egress.client().request(method, url.clone());
    if let Some(credential) = &api.auth {
        let injected = match credential.oauth_client() {
            Some(client) => {
                crate::vault::inject::oauth_header(&outbound.broker, &api.tenant, &api.connection, &client)
                    .await
                    .map_err(|e| {
                        tracing::warn!(tenant = %api.tenant, connection = %api.connection, error = %e, "cannot mint an OAuth access token");
                        if let crate::vault::oauth::BrokerError::NeedsReconnection(reason) = &e {
                            let (store, tenant, connection, reason) = (
                                outbound.vault.store().clone(),
                                api.tenant.clone(),
                                api.connection.clone(),
                                reason.clone(),
                            );
                            tokio::spawn(async move {
                                if let Err(e) = store
                                    .set_needs_reconnection(&tenant, &connection, Some(&reason), now)
                                    .await
                                {
                                    tracing::error!(error = %e, "cannot mark a connection as needing reconnection");
                                }
                            });
                            return UpstreamError::Protocol(
                                "the connection needs reconnecting: its OAuth grant was refused".into(),
                            );
                        }
                        UpstreamError::Transport
                    })?
            }
            None => crate::vault::inject::inject_for_request(&outbound.vault, &api.tenant, credential, now)
                .await
                .map_err(|e| {
                    tracing::warn!(tenant = %api.tenant, error = %e, "cannot reveal an API credential");
                    UpstreamError::Transport
                })?,
        };
        if let Some((name, value)) = injected.header {
            request = request.header(name, value);
        }
        injected_query = injected.query;
    }
    if let Some(body) = arguments.get("body") {
        let content_type = text("content_type").unwrap_or("application/json");
        let bytes = match body {
            Value::String(s) if !content_type.starts_with("application/json") => {
                s.clone().into_bytes()
            }
            other => serde_json::to_vec(other).map_err(|_| UpstreamError::Transport)?,
        };
        request = request
            .header(http::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    let mut request = request
        .timeout(timeout)
        .build()
        .map_err(|_| UpstreamError::Transport)?;
    if let Some((name, value)) = &injected_query {
        request
            .url_mut()
            .query_pairs_mut()
            .append_pair(name, value.as_str());
    }
    let response = outbound
        .egress
        .send(request, &api.hosts)
        .await
        .map_err(|e| {
            // Never the URL: a query credential would be in it.
            tracing::warn!(tenant = %api.tenant, error = %e, "HTTP API request failed");
            UpstreamError::Transport
        })?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| UpstreamError::Transport)?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(UpstreamError::Transport);
        }
        body.extend_from_slice(&chunk);
    }
    let answer = match String::from_utf8(body) {
        Ok(text) => ApiAnswer {
            status,
            content_type,
            body: Some(text),
            body_base64: None,
        },
        Err(e) => {
            use base64::Engine as _;
            ApiAnswer {
                status,
                content_type,
                body: None,
                body_base64: Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            }
        }
    };
    let structured = serde_json::to_value(&answer).map_err(|_| UpstreamError::Transport)?;
    let mut result = rmcp::model::CallToolResult::structured(structured);
    // An upstream's 4xx/5xx is the upstream's own answer (a tool error), not a gateway failure.
    result.is_error = Some(status >= 400);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_segment_by_segment() {
        assert!(path_matches("/v1/charges", "/v1/charges"));
        assert!(!path_matches("/v1/charges", "/v1/charges/ch_1"));
        assert!(path_matches("/v1/charges/*", "/v1/charges/ch_1"));
        assert!(!path_matches("/v1/charges/*", "/v1/charges/"));
        assert!(!path_matches("/v1/charges/*", "/v1/charges/ch_1/refund"));
        assert!(path_matches("/v1/**", "/v1/charges/ch_1/refund"));
        assert!(path_matches("/**", "/"));
        assert!(path_matches("/v1/charges", "/V1/Charges"));
        assert!(!path_matches("/v1/**", "/v2/x"));
    }

    #[test]
    fn traversal_and_encoded_separators_are_refused() {
        for bad in [
            "/a/../b",
            "/a/./b",
            "/a//b",
            "/a/%2f/b",
            "/a/%2E%2E/b",
            "/a\\b",
            "/a/%5c",
        ] {
            assert!(clean_path(bad).is_err(), "{bad}");
        }
        assert_eq!(clean_path("v1/charges").unwrap(), "/v1/charges");
        assert_eq!(clean_path("").unwrap(), "/");
    }

    #[test]
    fn unrouted_methods_are_effects_and_reads_are_reads() {
        let routes = effective_routes(&[ApiRoute::parse("charge=POST:/v1/charges:spend").unwrap()]);
        let find = |m: &str, p: &str| {
            routes
                .iter()
                .find(|r| r.covers(m, p))
                .map(|r| (r.name.as_str(), r.effect))
        };
        assert_eq!(
            find("POST", "/v1/charges"),
            Some(("charge", EffectClass::Spend))
        );
        assert_eq!(
            find("POST", "/v1/refunds"),
            Some(("write", EffectClass::Write))
        );
        assert_eq!(
            find("GET", "/v1/charges"),
            Some(("read", EffectClass::Read))
        );
        assert_eq!(find("PATCH", "/x"), Some(("write", EffectClass::Write)));
        assert_eq!(find("DELETE", "/x"), Some(("delete", EffectClass::Delete)));
        assert!(ApiRoute::parse("bad name=GET:/x:read").is_err());
        assert!(ApiRoute::parse("x=get:/x:read").is_ok());
        assert!(ApiRoute::parse("x=GET:/../x:read").is_err());
    }
}
