//! The agent-facing MCP endpoint, `/t/{tenant}/mcp` (streamable HTTP). rmcp speaks the
//! protocol — both the 2026-07-28 revision (`server/discover`, per-request `_meta`, header
//! checks against the body) and the older `initialize` handshake with sessions; this module
//! authenticates each HTTP request, binds legacy sessions to the agent that opened them, and
//! hands tool listing and calls, resources, prompts and completions to the gate, rendering
//! its answers (`render`). Held calls of
//! clients that declare the tasks extension become tasks (`tasks`).

pub mod render;
pub mod tasks;

use crate::auth::{AuthRefusal, authenticate_agent};
use crate::gate::{self, CallRequest};
use crate::identity::AgentContext;
use crate::state::AppState;
use crate::upstream::AgentSide;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_core::id::AgentId;
use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The rmcp service behind every tenant's endpoint, plus the session → agent bindings.
pub struct McpEndpoint {
    service: StreamableHttpService<GatewayHandler, LocalSessionManager>,
    manager: Arc<LocalSessionManager>,
    sessions: Mutex<SessionTable>,
}

/// Most legacy sessions held at once, per tenant and per agent. Past a cap the least recently
/// used session is closed (and then refused like any unknown session): an agent opening
/// sessions in a loop crowds out only its own, a tenant only its own, and when the whole
/// table is full the tenant holding the most sessions gives one up.
pub const MAX_SESSIONS: usize = 16_384;
pub const MAX_SESSIONS_PER_TENANT: usize = 1_024;
pub const MAX_SESSIONS_PER_AGENT: usize = 64;
/// A session idle this long is forgotten (rmcp closes it after five idle minutes).
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(360);

/// Who opened a session and when it was last used.
struct SessionEntry {
    agent: AgentId,
    tenant: portcullis_core::id::TenantId,
    seen: std::time::Instant,
}

/// Session id → the agent that opened it.
#[derive(Default)]
struct SessionTable {
    entries: HashMap<String, SessionEntry>,
}

impl SessionTable {
    /// The agent a session belongs to (and mark it used).
    fn owner(&mut self, id: &str, now: std::time::Instant) -> Option<AgentId> {
        let entry = self.entries.get_mut(id)?;
        entry.seen = now;
        Some(entry.agent.clone())
    }

    /// The least recently used session among those `keep` admits.
    fn oldest(&self, keep: impl Fn(&SessionEntry) -> bool) -> Option<String> {
        self.entries
            .iter()
            .filter(|(_, e)| keep(e))
            .min_by_key(|(_, e)| e.seen)
            .map(|(id, _)| id.clone())
    }

    /// Record a new session; returns the sessions evicted to make room (to close).
    fn insert(
        &mut self,
        id: String,
        agent: AgentId,
        tenant: portcullis_core::id::TenantId,
        now: std::time::Instant,
    ) -> Vec<String> {
        let mut evicted: Vec<String> = Vec::new();
        self.entries.retain(|id, entry| {
            let keep = now.duration_since(entry.seen) < SESSION_IDLE;
            if !keep {
                evicted.push(id.clone());
            }
            keep
        });
        let mut evict =
            |table: &mut Self, keep: &dyn Fn(&SessionEntry) -> bool| match table.oldest(keep) {
                Some(id) => {
                    table.entries.remove(&id);
                    evicted.push(id);
                    true
                }
                None => false,
            };
        while self.entries.values().filter(|e| e.agent == agent).count() >= MAX_SESSIONS_PER_AGENT
            && evict(self, &|e| e.agent == agent)
        {}
        while self.entries.values().filter(|e| e.tenant == tenant).count()
            >= MAX_SESSIONS_PER_TENANT
            && evict(self, &|e| e.tenant == tenant)
        {}
        while self.entries.len() >= MAX_SESSIONS {
            // The tenant holding the most sessions gives one up.
            let mut counts: HashMap<&portcullis_core::id::TenantId, usize> = HashMap::new();
            for entry in self.entries.values() {
                *counts.entry(&entry.tenant).or_default() += 1;
            }
            let Some(largest) = counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            if !evict(self, &|e| e.tenant == largest) {
                break;
            }
        }
        self.entries.insert(
            id,
            SessionEntry {
                agent,
                tenant,
                seen: now,
            },
        );
        evicted
    }

    fn remove(&mut self, id: &str) {
        self.entries.remove(id);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl McpEndpoint {
    pub fn new(state: Arc<AppState>, streams: tokio_util::sync::CancellationToken) -> Self {
        // A 2026-07-28 call that emits nothing before its result is answered as one JSON body
        // (one write, nothing for a client to reassemble); anything that streams progress or
        // asks the client something falls back to SSE by itself.
        let config = StreamableHttpServerConfig::default()
            .with_json_response(true)
            .with_cancellation_token(streams)
            .with_allowed_hosts(state.config.server.allowed_hosts.clone())
            .with_max_request_body_bytes(state.config.server.max_body_bytes);
        let handler = GatewayHandler {
            state,
            task_results: Arc::default(),
        };
        let manager = Arc::new(LocalSessionManager::default());
        let service =
            StreamableHttpService::new(move || Ok(handler.clone()), manager.clone(), config);
        Self {
            service,
            manager,
            sessions: Mutex::new(SessionTable::default()),
        }
    }

    /// How many legacy sessions are bound (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().expect("lock poisoned").len()
    }

    fn close(&self, evicted: Vec<String>) {
        use rmcp::transport::streamable_http_server::session::SessionManager as _;
        for id in evicted {
            let manager = self.manager.clone();
            tokio::spawn(async move {
                let _ = manager.close_session(&id.into()).await;
            });
        }
    }
}

#[derive(Clone)]
pub struct GatewayHandler {
    state: Arc<AppState>,
    task_results: Arc<tasks::TaskResults>,
}

/// The calling agent's side of a request, for forwarding to an upstream.
fn agent_side(cx: &RequestContext<RoleServer>) -> AgentSide {
    let capabilities = cx.client_capabilities();
    AgentSide {
        peer: cx.peer.clone(),
        progress_token: cx.meta.get_progress_token(),
        cancel: cx.ct.clone(),
        request_id: cx.id.clone(),
        can_sample: capabilities.as_ref().is_some_and(|c| c.sampling.is_some()),
        can_elicit: capabilities
            .as_ref()
            .is_some_and(|c| c.elicitation.is_some()),
        can_list_roots: capabilities.as_ref().is_some_and(|c| c.roots.is_some()),
        // Set by the gate for a forwarded call of an agent on 2026-07-28 (see `bridge`).
        questions: None,
        multi_round_trip: cx
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28),
    }
}

fn agent_of(cx: &RequestContext<RoleServer>) -> Result<AgentContext, McpError> {
    // INVARIANT: every request reaching rmcp passed `endpoint`, which inserted the context;
    // a request without one is refused rather than served anonymously.
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AgentContext>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("unauthenticated", None))
}

fn session_of(cx: &RequestContext<RoleServer>) -> Option<String> {
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}

/// The agent's stated reason or plan from the call's `_meta`, bounded for display.
fn stated_reason(meta: Option<&rmcp::model::RequestMetaObject>) -> Option<String> {
    let value = meta?.0.get(gate::REASON_META_KEY)?.as_str()?;
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.chars().take(2_000).collect())
}

/// Whether a held call is answered as a task: only on 2026-07-28 or later, and only to a
/// client that declared the tasks extension (SEP-2663). On an earlier revision a client asks
/// for a task per request (the `task` parameter of 2025-11-25), which this gateway does not
/// offer: every hold there is a `pending_approval` result with `isError: true`, so a client
/// that declared the extension but sent a plain call never reads a hold as an empty success.
fn answers_holds_as_tasks(cx: &RequestContext<RoleServer>) -> bool {
    let modern = cx
        .protocol_version()
        .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28);
    modern && cx.client_capabilities().is_some_and(|c| c.supports_tasks())
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> ServerConfig {
        #[expect(
            deprecated,
            reason = "logging is deprecated by SEP-2577; older clients still set a level"
        )]
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tasks()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Portcullis gateway. Reads and drafts run at once; actions that change the world are held for human approval. \
                 A held call returns status `pending_approval` with an approval id: re-send the identical call after approval to execute it once.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let ctx = agent_of(&cx)?;
        let visible = gate::resolve::list(&self.state, &ctx, session_of(&cx))
            .await
            .map_err(render::store_error)?;
        let tools = visible.iter().map(render::tool).collect();
        // Grants and revocations change what an agent may see at any moment: never cacheable.
        Ok(ListToolsResult::with_all_items(tools).with_ttl_ms(0))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let ctx = agent_of(&cx)?;
        let tasks = answers_holds_as_tasks(&cx);
        let call = CallRequest {
            name: request.name.to_string(),
            arguments: request.arguments,
            session: session_of(&cx),
            stated_reason: stated_reason(request.meta.as_ref()),
            agent: Some(agent_side(&cx)),
            resume: request.request_state.map(|state| gate::Resume {
                request_state: state,
                responses: request.input_responses.unwrap_or_default(),
            }),
        };
        let outcome = gate::call_tool(&self.state, &ctx, call)
            .await
            .map_err(render::error)?;
        Ok(render::outcome(outcome, tasks, self.state.clock.now()))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let ctx = agent_of(&cx)?;
        tasks::get(
            &self.state,
            &self.task_results,
            &ctx,
            &request.task_id,
            agent_side(&cx),
            session_of(&cx),
        )
        .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let ctx = agent_of(&cx)?;
        let session = session_of(&cx);
        let listed = gate::offer::list_resources(&self.state, &ctx, session.as_deref())
            .await
            .map_err(render::store_error)?;
        Ok(ListResourcesResult::with_all_items(listed).with_ttl_ms(0))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let ctx = agent_of(&cx)?;
        let session = session_of(&cx);
        let listed = gate::offer::list_resource_templates(&self.state, &ctx, session.as_deref())
            .await
            .map_err(render::store_error)?;
        Ok(ListResourceTemplatesResult::with_all_items(listed).with_ttl_ms(0))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let ctx = agent_of(&cx)?;
        let session = session_of(&cx);
        let result =
            gate::offer::read_resource(&self.state, &ctx, session.as_deref(), &request.uri)
                .await
                .map_err(render::error)?;
        Ok(render::complete_read(result).into())
    }

    /// Legacy sessions only (2026-07-28 clients listen for updates instead, not bridged yet).
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let ctx = agent_of(&cx)?;
        let Some(session) = session_of(&cx) else {
            return Err(McpError::invalid_request(
                "resources/subscribe needs a session (the initialize handshake)",
                None,
            ));
        };
        gate::offer::subscribe(&self.state, &ctx, &session, cx.peer.clone(), &request.uri)
            .await
            .map_err(render::error)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let ctx = agent_of(&cx)?;
        let Some(session) = session_of(&cx) else {
            return Err(McpError::invalid_request(
                "resources/unsubscribe needs a session (the initialize handshake)",
                None,
            ));
        };
        gate::offer::unsubscribe(&self.state, &ctx, &session, &request.uri)
            .await
            .map_err(render::error)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let ctx = agent_of(&cx)?;
        let session = session_of(&cx);
        let listed = gate::offer::list_prompts(&self.state, &ctx, session.as_deref())
            .await
            .map_err(render::store_error)?;
        Ok(ListPromptsResult::with_all_items(listed).with_ttl_ms(0))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let ctx = agent_of(&cx)?;
        let session = session_of(&cx);
        let result = gate::offer::get_prompt(
            &self.state,
            &ctx,
            session.as_deref(),
            &request.name,
            request.arguments,
        )
        .await
        .map_err(render::error)?;
        Ok(render::complete_prompt(result).into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let ctx = agent_of(&cx)?;
        gate::offer::complete(&self.state, &ctx, request)
            .await
            .map_err(render::error)
    }

    /// Accepted and not forwarded: an upstream connection is shared by the tenant's agents,
    /// so one agent's level must not change what the others get. Upstream log messages reach
    /// only the agent whose call produced them.
    #[expect(
        deprecated,
        reason = "logging is deprecated by SEP-2577; older clients still set a level"
    )]
    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        agent_of(&cx)?;
        Ok(())
    }

    /// Requests rmcp could not read as one of its own. A `tools/call` lands here when its
    /// arguments are not an object: invalid params, not "method not found".
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if request.method == "tools/call" {
            return Err(McpError::invalid_params(
                "invalid params: tool arguments must be a JSON object",
                None,
            ));
        }
        Err(McpError::new(
            ErrorCode::METHOD_NOT_FOUND,
            request.method,
            None,
        ))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let ctx = agent_of(&cx)?;
        tasks::cancel(&self.state, &ctx, &request.task_id).await
    }
}

fn refusal(refusal: AuthRefusal) -> Response {
    let (status, message, retry) = match refusal {
        AuthRefusal::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "missing, invalid, revoked or expired agent token",
            None,
        ),
        AuthRefusal::LockedOut { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address",
            Some(retry_after_secs),
        ),
        AuthRefusal::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded for this token",
            Some(retry_after_secs),
        ),
        AuthRefusal::Suspended => (
            StatusCode::FORBIDDEN,
            "this agent or its tenant is suspended; nothing was done",
            None,
        ),
        AuthRefusal::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway cannot reach its store",
            None,
        ),
    };
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": message } });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry {
        response.headers_mut().insert("retry-after", secs.into());
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
    }
    response
}

/// A JSON `POST` body, buffered (within the size limit) so a refusal can be explained. The
/// body is parsed once, by rmcp; only when rmcp refuses it as undeserialisable (415) is it
/// looked at again, to answer as JSON-RPC does: not JSON is 400 / -32700, a batch or a
/// non-object is 400 / -32600. (`tools/call` arguments that are not an object reach
/// [`GatewayHandler::on_custom_request`], which answers -32602.)
async fn buffer_json(request: Request, limit: usize) -> Result<(Request, Option<Bytes>), Response> {
    let is_json = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if request.method() != http::Method::POST || !is_json {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response());
    };
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes.clone())),
        Some(bytes),
    ))
}

/// The JSON-RPC answer to a body rmcp could not deserialise, when it is not JSON at all or
/// not one object; `None` keeps rmcp's own answer.
fn explain_refused_body(bytes: &[u8]) -> Option<Response> {
    let error = |code: i64, message: &str| {
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    };
    let parsed = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).ok());
    match parsed {
        None => Some(error(-32700, "parse error: the body is not valid JSON")),
        Some(_) if !bytes.trim_ascii_start().starts_with(b"{") => Some(error(
            -32600,
            "invalid request: send one JSON-RPC object (batches are not supported)",
        )),
        Some(_) => None,
    }
}

/// Axum handler for `/t/{tenant}/mcp`: authenticate, bind sessions, hand over to rmcp.
pub async fn endpoint(
    State((state, endpoint)): State<(Arc<AppState>, Arc<McpEndpoint>)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    mut request: Request,
) -> Response {
    state.metrics.request("mcp");
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ip = crate::auth::client_ip(
        peer.ip(),
        request.headers(),
        &state.trusted_proxies,
        state.config.server.forwarded_header,
    );
    let ctx = match authenticate_agent(&state, ip, &tenant, header).await {
        Ok(ctx) => ctx,
        Err(r) => return refusal(r),
    };
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        // A legacy session belongs to the agent that opened it; anyone else gets the answer
        // rmcp gives for an unknown session.
        let owner = endpoint
            .sessions
            .lock()
            .expect("lock poisoned")
            .owner(session, std::time::Instant::now());
        // Every session was opened through this handler and recorded below, so an unknown one
        // is refused here too (fail closed) rather than left to rmcp.
        if owner.as_ref() != Some(&ctx.agent) {
            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
        }
    }
    let agent = ctx.agent.clone();
    let tenant_id = ctx.tenant.clone();
    let closing = request.method() == http::Method::DELETE;
    request.extensions_mut().insert(ctx);
    let (request, body) = match buffer_json(request, state.config.server.max_body_bytes).await {
        Ok(buffered) => buffered,
        Err(refused) => return refused,
    };
    let response = endpoint.service.handle(request).await.into_response();
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
        && let Some(explained) = body.as_deref().and_then(explain_refused_body)
    {
        return explained;
    }
    if session.is_none()
        && let Some(created) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        let evicted = endpoint.sessions.lock().expect("lock poisoned").insert(
            created.to_owned(),
            agent,
            tenant_id,
            std::time::Instant::now(),
        );
        endpoint.close(evicted);
    }
    if closing
        && response.status().is_success()
        && let Some(session) = &session
    {
        endpoint
            .sessions
            .lock()
            .expect("lock poisoned")
            .remove(session);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_session_table_is_bounded_per_agent_and_pruned_when_idle() {
        let mut table = SessionTable::default();
        let start = Instant::now();
        let agent = AgentId::generate();
        let other = AgentId::generate();
        let tenant = portcullis_core::id::TenantId::generate();
        table.insert("other-1".into(), other.clone(), tenant.clone(), start);
        for i in 0..(MAX_SESSIONS_PER_AGENT + 10) {
            let evicted = table.insert(
                format!("s-{i}"),
                agent.clone(),
                tenant.clone(),
                start + Duration::from_millis(i as u64 + 1),
            );
            // Only the agent's own oldest sessions make way.
            assert!(evicted.iter().all(|id| id.starts_with("s-")), "{evicted:?}");
        }
        assert_eq!(table.len(), MAX_SESSIONS_PER_AGENT + 1);
        assert_eq!(table.owner("s-0", start), None);
        assert_eq!(table.owner("other-1", start), Some(other));
        // Idle sessions are forgotten on the next insert.
        let later = start + SESSION_IDLE + Duration::from_secs(1000);
        let evicted = table.insert("fresh".into(), agent, tenant, later);
        assert_eq!(table.len(), 1);
        assert_eq!(evicted.len(), MAX_SESSIONS_PER_AGENT + 1);
    }

    #[test]
    fn a_full_table_takes_room_from_the_tenant_holding_the_most() {
        let mut table = SessionTable::default();
        let start = Instant::now();
        let quiet = portcullis_core::id::TenantId::generate();
        let quiet_agent = AgentId::generate();
        table.insert("quiet".into(), quiet_agent, quiet.clone(), start);
        // Many tenants, each at its cap, fill the table.
        let mut n = 0u64;
        while table.len() < MAX_SESSIONS {
            let tenant = portcullis_core::id::TenantId::generate();
            for _ in 0..MAX_SESSIONS_PER_TENANT.min(MAX_SESSIONS - table.len()) {
                n += 1;
                let agent = AgentId::generate();
                let at = start + Duration::from_millis(n);
                let evicted = table.insert(format!("t-{n}"), agent, tenant.clone(), at);
                assert!(evicted.is_empty());
            }
        }
        let noisy = portcullis_core::id::TenantId::generate();
        let evicted = table.insert(
            "noisy".into(),
            AgentId::generate(),
            noisy,
            start + Duration::from_millis(n + 1),
        );
        assert_eq!(evicted.len(), 1);
        assert_ne!(
            evicted[0], "quiet",
            "the oldest session of a one-session tenant stays"
        );
        assert!(table.owner("quiet", start).is_some());
    }
}
