//! Upstream MCP servers: one supervised client per tenant connection. Stdio upstreams are
//! launched as child processes (one per tenant connection, with a cleared environment) and
//! restarted with backoff when they die; streamable-HTTP upstreams are reconnected the same
//! way. Each (re)connection lists the upstream's tools and pins their definitions in the store.
//!
//! Calls forward progress (with the token mapped back to the agent's), cancellation, and
//! logging notifications; upstream sampling and elicitation requests are forwarded to the
//! calling agent when it declared the capability and the call can be identified.

use portcullis_core::action::ToolDefinition;
use portcullis_core::decision::Permit;
use portcullis_core::effect::EffectClass;
use portcullis_core::id::{ConnectionId, TenantId};
use portcullis_store::{Connection, DiscoveredTool, Store};
use rmcp::model::*;
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestContext, RunningService,
};
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, RoleServer, ServiceExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::gate::resolve::{Granted, Offering};
pub use crate::vault::{Credential, EnvValue};

/// How to reach an upstream. Credentials appear by vault secret name only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transport {
    /// A program from the operator's catalog ([`crate::programs`]), with the extra arguments
    /// and environment the tenant chose (checked against the entry at every launch). The
    /// environment's values are vault secrets, revealed when the process starts.
    Stdio {
        program: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, EnvValue>,
    },
    /// A streamable-HTTP MCP server, reached through the egress policy, with an optional
    /// credential added to every request.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<Credential>,
    },
    /// A plain HTTP API reached by agents at `/t/{tenant}/http/{connection}/{path}` (see
    /// [`crate::api`]): each request is a call of one of its routes (the tools of this
    /// connection), with the credential injected and the URL vetted at egress.
    Api {
        base_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<Credential>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        routes: Vec<crate::api::ApiRoute>,
    },
}

/// A connection's configuration: transport, the operator's classification of its tools, and
/// the names agents see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionSpec {
    #[serde(flatten)]
    pub transport: Transport,
    /// Operator classification by tool name; wins over annotations.
    #[serde(default)]
    pub classify: BTreeMap<String, EffectClass>,
    /// How agents see the connection's tools and prompts named (and its resources' URIs).
    #[serde(default, skip_serializing_if = "Names::is_namespaced")]
    pub names: Names,
    /// Names agents see instead of the upstream's, by upstream tool or prompt name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
    /// Answer the upstream's `roots/list` with the calling agent's roots. Off by default: on a
    /// filesystem server a client's roots would replace the folders the operator chose.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_roots: bool,
}

/// How a connection's tools, prompts and resource URIs are named to agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    /// `connection__tool`, `portcullis://connection/<uri>` (the default: never collides).
    #[default]
    Namespaced,
    /// The upstream's own names, where they do not collide with another name the agent sees
    /// (then that name stays namespaced); URIs pass through when this is the only such
    /// connection whose resources the agent may read.
    Upstream,
}

impl Names {
    pub fn is_namespaced(&self) -> bool {
        *self == Names::Namespaced
    }
}

/// Whether `name` may be shown to agents as a plain tool or prompt name: the characters the
/// MCP specification allows in tool names, and never the namespace separator.
pub fn valid_plain_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.contains("__")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl ConnectionSpec {
    /// A connection with the safe defaults for everything else: namespaced names, no
    /// aliases, roots not forwarded.
    pub fn new(transport: Transport, classify: BTreeMap<String, EffectClass>) -> Self {
        Self {
            transport,
            classify,
            names: Names::Namespaced,
            aliases: BTreeMap::new(),
            forward_roots: false,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("connection specs serialise")
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        if value.get("command").is_some() {
            // Stored before the program catalog existed: a tenant chose the command line.
            return Err(
                "this connection names a command directly, which is no longer allowed; re-create it with a program from the catalog".into(),
            );
        }
        serde_json::from_value(value.clone()).map_err(|e| {
            // serde's message may quote a stored value: the operator's log only.
            tracing::error!(error = %e, "unreadable connection configuration");
            "the stored connection configuration is unreadable; re-create the connection".to_owned()
        })
    }

    /// Check a tenant's request against the catalog (stdio) or the URL's shape (HTTP).
    pub fn validate(
        &self,
        catalog: &crate::programs::Catalog,
        tenant_name: &str,
    ) -> Result<(), String> {
        let mut exposed = std::collections::BTreeSet::new();
        for (upstream, alias) in &self.aliases {
            if !valid_plain_name(alias) {
                return Err(format!(
                    "alias `{alias}` for `{upstream}`: use 1-128 letters, digits, `_`, `-` or `.`, without `__`"
                ));
            }
            if !exposed.insert(alias) {
                return Err(format!("alias `{alias}` is given twice"));
            }
        }
        match &self.transport {
            Transport::Stdio { program, args, env } => {
                // Plain values (sealed into the vault before the connection is stored) are
                // checked against the entry's patterns now; secrets when the process starts.
                let plain: BTreeMap<String, String> = env
                    .iter()
                    .filter_map(|(k, v)| match v {
                        EnvValue::Plain(value) => Some((k.clone(), value.clone())),
                        EnvValue::Secret { .. } => None,
                    })
                    .collect();
                catalog
                    .resolve(tenant_name, program, args, &plain)
                    .map_err(|e| e.to_string())?;
                let entry = catalog
                    .get(program)
                    .ok_or_else(|| format!("no program `{program}` in the catalog"))?;
                for (name, value) in env {
                    if let EnvValue::Secret { secret } = value {
                        if !crate::vault::valid_secret_name(secret) {
                            return Err(format!(
                                "environment variable `{name}`: `{secret}` is not a secret name"
                            ));
                        }
                        if !entry.tenant_env_names().any(|n| n == name) {
                            return Err(format!(
                                "environment variable `{name}` is not one program `{program}` lets tenants set"
                            ));
                        }
                    }
                }
                Ok(())
            }
            // The URL itself (scheme, host, address) is the egress policy's to judge.
            Transport::Http {
                auth: Some(Credential::Oauth { .. }),
                ..
            } => Err("an MCP upstream takes a bearer, basic, header or query credential; OAuth is for HTTP API connections (--api-url)".into()),
            Transport::Http { auth, .. } => auth.as_ref().map_or(Ok(()), Credential::validate),
            Transport::Api { auth, routes, .. } => {
                let mut names = std::collections::BTreeSet::new();
                for route in routes {
                    route.validate()?;
                    if !names.insert(&route.name) {
                        return Err(format!("route `{}` is given twice", route.name));
                    }
                }
                auth.as_ref().map_or(Ok(()), Credential::validate)
            }
        }
    }

    /// Every vault secret the connection names.
    pub fn secrets(&self) -> Vec<&str> {
        match &self.transport {
            Transport::Stdio { env, .. } => env
                .values()
                .filter_map(|v| match v {
                    EnvValue::Secret { secret } => Some(secret.as_str()),
                    EnvValue::Plain(_) => None,
                })
                .collect(),
            Transport::Http { auth, .. } | Transport::Api { auth, .. } => {
                auth.iter().flat_map(Credential::secrets).collect()
            }
        }
    }

    /// The URL outbound requests of this connection go to, if it is reached over HTTP.
    pub fn outbound_url(&self) -> Option<&str> {
        match &self.transport {
            Transport::Stdio { .. } => None,
            Transport::Http { url, .. } => Some(url),
            Transport::Api { base_url, .. } => Some(base_url),
        }
    }
}

/// What went wrong calling an upstream. Transport failures carry no detail: what a
/// misbehaving (or not-MCP) server sent back stays in the operator's log.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream is not connected")]
    NotConnected,
    #[error("upstream call timed out")]
    Timeout,
    #[error("call cancelled by the agent")]
    Cancelled,
    /// The upstream answered with a JSON-RPC error: its message is part of the tool's answer.
    #[error("upstream error: {0}")]
    Protocol(String),
    #[error("the upstream could not be reached or answered outside the protocol")]
    Transport,
    /// The upstream answered, but what the gate must record about the answer (redaction,
    /// untrusted content) could not be written: the answer is withheld (fail closed).
    #[error("the result was withheld: the gateway could not record it")]
    Withheld,
}

/// A failure to reach an upstream as tenants see it: a generic reason and, for HTTP, the
/// status code. The full error goes to the operator's log only.
fn generic_failure(what: &str, error: &str, connection: &ConnectionId) -> String {
    tracing::warn!(%connection, %error, "{what}");
    match http_status_in(error) {
        Some(code) => format!("{what} (HTTP {code})"),
        None => what.to_owned(),
    }
}

/// The first `HTTP nnn` status code in an error message, if any.
fn http_status_in(text: &str) -> Option<u16> {
    text.match_indices("HTTP ").find_map(|(i, _)| {
        let digits = text.get(i + 5..i + 8)?;
        let code: u16 = digits.parse().ok()?;
        (100..600).contains(&code).then_some(code)
    })
}

/// Connection status, for the admin API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    Starting,
    Ready { tools: usize },
    Down { reason: String, retry_in_ms: u64 },
    Stopped,
}

/// Supervised connections by state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct UpstreamCounts {
    pub ready: usize,
    pub starting: usize,
    pub down: usize,
}

/// The calling agent's side of a forwarded call.
pub struct AgentSide {
    pub peer: Peer<RoleServer>,
    pub progress_token: Option<ProgressToken>,
    pub cancel: CancellationToken,
    pub request_id: RequestId,
    pub can_sample: bool,
    pub can_elicit: bool,
    /// The agent declared the roots capability.
    pub can_list_roots: bool,
    /// The agent speaks 2026-07-28, where a server cannot send it requests: the upstream's
    /// sampling, elicitation and roots requests reach it as questions on this channel (see
    /// [`crate::bridge`]), which the gate turns into an input-required result.
    pub questions: Option<tokio::sync::mpsc::UnboundedSender<Question>>,
    /// The agent negotiated 2026-07-28 (multi round-trip requests instead of server→client
    /// requests).
    pub multi_round_trip: bool,
}

/// One request of the upstream's for the agent (sampling, elicitation, roots), and where its
/// answer (the agent's result, as JSON, or why there is none) goes.
pub struct Question {
    pub request: InputRequest,
    pub answer: tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>,
}

/// Ask the agent through `questions` and wait for its answer, read as `T`.
async fn ask<T: serde::de::DeserializeOwned>(
    questions: &tokio::sync::mpsc::UnboundedSender<Question>,
    request: InputRequest,
) -> Result<T, McpError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    questions
        .send(Question { request, answer })
        .map_err(|_| McpError::internal_error("the agent's call is gone", None))?;
    let value = answered
        .await
        .map_err(|_| McpError::internal_error("the agent did not answer", None))?
        .map_err(|why| McpError::internal_error(why, None))?;
    serde_json::from_value(value).map_err(|e| {
        McpError::invalid_params(format!("the agent's answer is malformed: {e}"), None)
    })
}

impl AgentSide {
    /// The same agent request, for a gateway-internal read (a preview): no progress, no
    /// sampling or elicitation forwarded to the agent.
    pub fn quiet(&self) -> AgentSide {
        AgentSide {
            peer: self.peer.clone(),
            progress_token: None,
            cancel: self.cancel.clone(),
            request_id: self.request_id.clone(),
            can_sample: false,
            can_elicit: false,
            can_list_roots: false,
            questions: None,
            multi_round_trip: false,
        }
    }
}

#[derive(Clone)]
struct InFlight {
    peer: Peer<RoleServer>,
    agent_token: Option<ProgressToken>,
    request_id: RequestId,
    can_sample: bool,
    can_elicit: bool,
    can_list_roots: bool,
    questions: Option<tokio::sync::mpsc::UnboundedSender<Question>>,
}

/// Calls in flight on one upstream, keyed by the upstream-side progress token.
#[derive(Default)]
struct Routes {
    inner: Mutex<RouteTable>,
    /// Woken whenever a call is registered.
    registered: tokio::sync::Notify,
}

#[derive(Default)]
struct RouteTable {
    calls: HashMap<ProgressToken, InFlight>,
    /// Progress that arrived before its call was registered (the upstream can answer faster
    /// than `call` records the route). Bounded: stale entries are dropped oldest first.
    early: Vec<ProgressNotificationParam>,
    /// Log messages that arrived while no call was registered: the upstream can log and
    /// answer before `call` records the route. Handed to the next call registered within
    /// `EARLY_LOG_MS` (calls of one connection are one tenant's); bounded, oldest dropped.
    early_logs: Vec<(std::time::Instant, LogMessage)>,
}

/// An upstream's log message (MCP logging is deprecated by SEP-2577 but still relayed).
#[allow(deprecated)]
type LogMessage = LoggingMessageNotificationParam;

/// Early log messages kept at most (per connection), and for how long.
const EARLY_LOGS: usize = 32;
const EARLY_LOG_MS: u64 = 5_000;

/// Early progress kept at most (per connection).
const EARLY_PROGRESS: usize = 256;

impl Routes {
    fn snapshot(&self) -> Vec<InFlight> {
        self.inner
            .lock()
            .expect("lock poisoned")
            .calls
            .values()
            .cloned()
            .collect()
    }

    /// Register a call; returns progress that arrived for it before registration, and log
    /// messages that arrived while no call was registered.
    fn register(
        &self,
        token: ProgressToken,
        call: InFlight,
    ) -> (Vec<ProgressNotificationParam>, Vec<LogMessage>) {
        let early = {
            let mut table = self.inner.lock().expect("lock poisoned");
            table.calls.insert(token.clone(), call);
            let (mine, rest) = std::mem::take(&mut table.early)
                .into_iter()
                .partition(|p| p.progress_token == token);
            table.early = rest;
            let fresh = std::time::Duration::from_millis(EARLY_LOG_MS);
            let logs = std::mem::take(&mut table.early_logs)
                .into_iter()
                .filter(|(at, _)| at.elapsed() <= fresh)
                .map(|(_, log)| log)
                .collect();
            (mine, logs)
        };
        self.registered.notify_waiters();
        early
    }

    /// The calls a log message goes to; none registered: keep it for the next one.
    fn route_log(&self, log: &LogMessage) -> Vec<InFlight> {
        let mut table = self.inner.lock().expect("lock poisoned");
        if table.calls.is_empty() {
            if table.early_logs.len() >= EARLY_LOGS {
                table.early_logs.remove(0);
            }
            table
                .early_logs
                .push((std::time::Instant::now(), log.clone()));
            return Vec::new();
        }
        table.calls.values().cloned().collect()
    }

    fn unregister(&self, token: &ProgressToken) {
        self.inner
            .lock()
            .expect("lock poisoned")
            .calls
            .remove(token);
    }

    /// The call a progress notification belongs to, or keep it for a call not yet registered.
    fn route_progress(
        &self,
        params: ProgressNotificationParam,
    ) -> Option<(InFlight, ProgressNotificationParam)> {
        let mut table = self.inner.lock().expect("lock poisoned");
        match table.calls.get(&params.progress_token) {
            Some(call) => Some((call.clone(), params)),
            None => {
                if table.early.len() >= EARLY_PROGRESS {
                    table.early.remove(0);
                }
                table.early.push(params);
                None
            }
        }
    }
}

async fn forward_progress(call: &InFlight, mut params: ProgressNotificationParam) {
    if let Some(token) = &call.agent_token {
        params.progress_token = token.clone();
        let _ = call.peer.notify_progress(params).await;
    }
}

/// Wraps an upstream transport so that progress and logging notifications reach the calling
/// agent in wire order, before the response that follows them is handed to rmcp. (rmcp runs
/// notification handlers on spawned tasks; relying on them alone lets the response overtake
/// the notifications and the agent's stream close before they are sent.)
struct InOrder<T> {
    inner: T,
    routes: Arc<Routes>,
}

impl<T> rmcp::transport::Transport<RoleClient> for InOrder<T>
where
    T: rmcp::transport::Transport<RoleClient>,
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            if let JsonRpcMessage::Notification(notification) = &message {
                match &notification.notification {
                    ServerNotification::ProgressNotification(progress) => {
                        if let Some((call, params)) =
                            self.routes.route_progress(progress.params.clone())
                        {
                            forward_progress(&call, params).await;
                        }
                        continue;
                    }
                    #[allow(deprecated)]
                    ServerNotification::LoggingMessageNotification(log) => {
                        // Log messages carry no request id; deliver them to the agents with
                        // calls in flight on this connection (one tenant: the process is per
                        // tenant connection).
                        for call in self.routes.route_log(&log.params) {
                            let _ = call.peer.notify_logging_message(log.params.clone()).await;
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            return Some(message);
        }
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Agents subscribed to an upstream's resources (legacy `resources/subscribe`), by the
/// upstream's URI: each with its session's peer and the URI it knows the resource by.
#[derive(Default)]
struct Subscribers {
    by_uri: Mutex<HashMap<String, Vec<Subscriber>>>,
}

#[derive(Clone)]
struct Subscriber {
    session: String,
    peer: Peer<RoleServer>,
    agent_uri: String,
}

impl Subscribers {
    /// Add one; true when it is the URI's first (the upstream must be told).
    fn add(&self, upstream_uri: &str, subscriber: Subscriber) -> bool {
        let mut map = self.by_uri.lock().expect("lock poisoned");
        let list = map.entry(upstream_uri.to_owned()).or_default();
        let first = list.is_empty();
        list.retain(|s| s.session != subscriber.session);
        list.push(subscriber);
        first
    }

    /// Remove a session's; true when none is left (the upstream may be told).
    fn remove(&self, upstream_uri: &str, session: &str) -> bool {
        let mut map = self.by_uri.lock().expect("lock poisoned");
        let Some(list) = map.get_mut(upstream_uri) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.session != session);
        let emptied = before > 0 && list.is_empty();
        if list.is_empty() {
            map.remove(upstream_uri);
        }
        emptied
    }

    fn of(&self, upstream_uri: &str) -> Vec<Subscriber> {
        self.by_uri
            .lock()
            .expect("lock poisoned")
            .get(upstream_uri)
            .cloned()
            .unwrap_or_default()
    }
}

/// The gateway as an MCP client of one upstream.
#[derive(Clone)]
struct UpstreamClient {
    routes: Arc<Routes>,
    tools_changed: Arc<tokio::sync::Notify>,
    subscribers: Arc<Subscribers>,
    /// The connection's `forward_roots`.
    forward_roots: bool,
}

impl UpstreamClient {
    /// The one call an upstream request can be attributed to, if there is exactly one. The
    /// call is registered just after it is sent, so a fast upstream's request may arrive
    /// first: an empty table is given a moment to fill.
    async fn single_caller(&self) -> Option<InFlight> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let registered = self.routes.registered.notified();
            let mut registered = std::pin::pin!(registered);
            registered.as_mut().enable();
            match self.routes.snapshot().as_slice() {
                [one] => return Some(one.clone()),
                [] => {}
                _ => return None,
            }
            if tokio::time::timeout_at(deadline, registered).await.is_err() {
                return None;
            }
        }
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        if self.forward_roots {
            capabilities.roots = Some(Default::default());
        }
        ClientConfig::new(
            capabilities,
            Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    /// The calling agent's roots, when the operator chose to forward them for this connection
    /// and exactly one call is in flight; otherwise none.
    #[expect(
        deprecated,
        reason = "roots are deprecated by SEP-2577 but still part of both revisions"
    )]
    async fn list_roots(
        &self,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        let call = self
            .single_caller()
            .await
            .filter(|c| self.forward_roots && c.can_list_roots);
        match call {
            Some(InFlight {
                questions: Some(questions),
                ..
            }) => {
                let request = InputRequest::ListRoots(ListRootsRequest::default());
                ask(&questions, request).await
            }
            Some(call) => call.peer.list_roots().await.map_err(|e| {
                McpError::internal_error(format!("the agent's roots are unavailable: {e}"), None)
            }),
            None => Ok(ListRootsResult::default()),
        }
    }

    /// An updated resource reaches only the agent sessions subscribed to it, under the URI
    /// each knows it by; a session that is gone is dropped.
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        for subscriber in self.subscribers.of(&params.uri) {
            let sent = subscriber
                .peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(
                    subscriber.agent_uri.clone(),
                ))
                .await;
            if sent.is_err() {
                self.subscribers.remove(&params.uri, &subscriber.session);
            }
        }
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        match self.single_caller().await {
            Some(InFlight {
                can_sample: true,
                questions: Some(questions),
                ..
            }) => {
                let request = InputRequest::CreateMessage(CreateMessageRequest::new(params));
                ask(&questions, request).await
            }
            Some(call) if call.can_sample => {
                let mut request = CreateMessageRequest::new(params);
                request
                    .extensions
                    .insert(rmcp::service::OriginatingRequestId(call.request_id.clone()));
                match call
                    .peer
                    .send_request(ServerRequest::CreateMessageRequest(request))
                    .await
                {
                    Ok(ClientResult::CreateMessageResult(result)) => Ok(*result),
                    Ok(_) => Err(McpError::internal_error(
                        "unexpected response from the agent",
                        None,
                    )),
                    Err(e) => Err(McpError::internal_error(
                        format!("agent refused sampling: {e}"),
                        None,
                    )),
                }
            }
            _ => Err(McpError::invalid_request(
                "sampling is not available through the gateway for this call",
                None,
            )),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        match self.single_caller().await {
            Some(InFlight {
                can_elicit: true,
                questions: Some(questions),
                ..
            }) => {
                let request = InputRequest::Elicitation(ElicitRequest::new(params));
                ask(&questions, request).await
            }
            Some(call) if call.can_elicit => {
                let mut request = ElicitRequest::new(params);
                request
                    .extensions
                    .insert(rmcp::service::OriginatingRequestId(call.request_id.clone()));
                match call
                    .peer
                    .send_request(ServerRequest::ElicitRequest(request))
                    .await
                {
                    Ok(ClientResult::ElicitResult(result)) => Ok(result),
                    Ok(_) => Err(McpError::internal_error(
                        "unexpected response from the agent",
                        None,
                    )),
                    Err(e) => Err(McpError::internal_error(
                        format!("agent refused elicitation: {e}"),
                        None,
                    )),
                }
            }
            _ => Err(McpError::invalid_request(
                "elicitation is not available through the gateway for this call",
                None,
            )),
        }
    }
}

struct Slot {
    tenant: TenantId,
    status: Mutex<Status>,
    peer: Mutex<Option<Peer<RoleClient>>>,
    routes: Arc<Routes>,
    stop: CancellationToken,
    restart: tokio::sync::Notify,
    ready: tokio::sync::Notify,
    subscribers: Arc<Subscribers>,
    /// A call failed on the transport or timed out: the supervisor pings at once.
    suspect: tokio::sync::Notify,
    /// Set for an HTTP API connection once its routes are synced (it has no MCP peer).
    api: Mutex<Option<Arc<crate::api::ApiUpstream>>>,
    /// The protections of a stdio connection's program, from its latest launch.
    confinement: Mutex<Option<portcullis_sandbox::Report>>,
    /// The process id of its program while it runs.
    pid: Mutex<Option<u32>>,
    /// Revoked: once its program has ended, its folder is removed.
    discard_room: std::sync::atomic::AtomicBool,
    /// Its supervisor has returned (nothing of it runs any more).
    done: std::sync::atomic::AtomicBool,
}

/// The supervisor of every tenant's upstream connections.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Mutex<HashMap<ConnectionId, Arc<Slot>>>,
    store: Store,
    cache: Arc<crate::cache::AccessCache>,
    clock: Clock,
    call_timeout: Duration,
    max_backoff: Duration,
    liveness: Liveness,
    outbound: Outbound,
    shutdown: CancellationToken,
}

/// What an upstream connection may start and leave the gateway through: the operator's
/// program catalog (stdio), credentials from the vault (injected at connect time), and the
/// egress policy and client (HTTP).
#[derive(Clone)]
pub struct Outbound {
    pub catalog: Arc<crate::programs::Catalog>,
    /// Mints OAuth access tokens for HTTP API connections.
    pub broker: Arc<crate::vault::oauth::Broker>,
    pub vault: Arc<crate::vault::Vault>,
    pub egress: Arc<crate::egress::Egress>,
    /// Confines every launched program.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
}

/// How a live connection is watched: a ping every `interval` (none when zero), and after any
/// call that failed on the transport or timed out; no answer within `timeout` and the
/// connection is taken down (calls fail fast) and reconnected with backoff.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Upstreams {
    pub fn new(
        store: Store,
        cache: Arc<crate::cache::AccessCache>,
        clock: Clock,
        call_timeout: Duration,
        max_backoff: Duration,
        liveness: Liveness,
        outbound: Outbound,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                store,
                cache,
                clock,
                call_timeout,
                max_backoff,
                liveness,
                outbound,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The supervised slot of a connection, if any.
    fn slot_of(&self, id: &ConnectionId) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .lock()
            .expect("lock poisoned")
            .get(id)
            .cloned()
    }

    /// Start supervising a connection (no-op if it is already supervised).
    pub fn start(&self, connection: Connection) {
        let mut slots = self.inner.slots.lock().expect("lock poisoned");
        if slots.contains_key(&connection.id) {
            return;
        }
        let slot = Arc::new(Slot {
            tenant: connection.tenant.clone(),
            status: Mutex::new(Status::Starting),
            peer: Mutex::new(None),
            routes: Arc::new(Routes::default()),
            stop: self.inner.shutdown.child_token(),
            restart: tokio::sync::Notify::new(),
            ready: tokio::sync::Notify::new(),
            subscribers: Arc::default(),
            suspect: tokio::sync::Notify::new(),
            api: Mutex::new(None),
            confinement: Mutex::new(None),
            pid: Mutex::new(None),
            discard_room: std::sync::atomic::AtomicBool::new(false),
            done: std::sync::atomic::AtomicBool::new(false),
        });
        slots.insert(connection.id.clone(), slot.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let id = connection.id.clone();
            supervise(inner.clone(), connection, slot.clone()).await;
            slot.done.store(true, std::sync::atomic::Ordering::SeqCst);
            // Its program is killed and reaped by now: nothing writes the folder any more.
            if slot.discard_room.load(std::sync::atomic::Ordering::SeqCst) {
                remove_room(&inner, &id).await;
            }
        });
    }

    /// Make the supervised set match the store: start every active connection that is not
    /// supervised here yet (created on another replica) and stop those revoked elsewhere.
    pub async fn reconcile(&self) -> Result<(), portcullis_store::StoreError> {
        // What runs is taken before the store is read: a connection created (and started) here
        // while the read is under way is missing from the read but is not stopped for it.
        let running: Vec<ConnectionId> = self
            .inner
            .slots
            .lock()
            .expect("lock poisoned")
            .keys()
            .cloned()
            .collect();
        let active = self.inner.store.all_active_connections().await?;
        let wanted: std::collections::HashSet<ConnectionId> =
            active.iter().map(|c| c.id.clone()).collect();
        for id in running.iter().filter(|id| !wanted.contains(*id)) {
            self.revoke(id);
        }
        for connection in active {
            self.start(connection);
        }
        Ok(())
    }

    /// A connection revoked (or its tenant deleted): stop its upstream at once, and remove
    /// its program's folder once the program has ended.
    pub fn revoke(&self, id: &ConnectionId) {
        let slot = self.slot_of(id);
        let running = slot.is_some_and(|slot| {
            slot.discard_room
                .store(true, std::sync::atomic::Ordering::SeqCst);
            !slot.done.load(std::sync::atomic::Ordering::SeqCst)
        });
        self.stop(id);
        // No supervisor left to do it (it gave up on a refused launch, or never ran here).
        if !running {
            let inner = self.inner.clone();
            let id = id.clone();
            tokio::spawn(async move { remove_room(&inner, &id).await });
        }
    }

    /// Stop a connection's upstream at once (its folder stays: see [`Upstreams::revoke`]).
    pub fn stop(&self, id: &ConnectionId) {
        let removed = self.inner.slots.lock().expect("lock poisoned").remove(id);
        if let Some(slot) = removed {
            // Revoking a connection drops every access token minted for it at once.
            self.inner.outbound.broker.drop_connection(&slot.tenant, id);
            slot.stop.cancel();
            *slot.peer.lock().expect("lock poisoned") = None;
            *slot.status.lock().expect("lock poisoned") = Status::Stopped;
        }
    }

    /// Ask a connection's supervisor to reconnect (and re-list its tools).
    pub fn restart(&self, id: &ConnectionId) -> bool {
        let slot = self.slot_of(id);
        slot.map(|s| s.restart.notify_one()).is_some()
    }

    /// Stop everything (server shutdown).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// The protections of a stdio connection's program (None: not launched here yet, or not
    /// a stdio connection).
    pub fn confinement(&self, id: &ConnectionId) -> Option<portcullis_sandbox::Report> {
        let slot = self.slot_of(id)?;
        slot.confinement.lock().expect("lock poisoned").clone()
    }

    /// The process id of a stdio connection's running program (for the operator's tools).
    pub fn program_pid(&self, id: &ConnectionId) -> Option<u32> {
        let slot = self.slot_of(id)?;
        *slot.pid.lock().expect("lock poisoned")
    }

    /// Every launched program's protections, by tenant and connection.
    pub fn confinements(&self) -> Vec<(TenantId, ConnectionId, portcullis_sandbox::Report)> {
        let slots = self.inner.slots.lock().expect("lock poisoned");
        slots
            .iter()
            .filter_map(|(id, slot)| {
                let report = slot.confinement.lock().expect("lock poisoned").clone()?;
                Some((slot.tenant.clone(), id.clone(), report))
            })
            .collect()
    }

    /// What this host gives every launched program.
    pub fn sandbox(&self) -> &crate::sandbox::Sandbox {
        &self.inner.outbound.sandbox
    }

    pub fn status(&self, id: &ConnectionId) -> Status {
        self.inner
            .slots
            .lock()
            .expect("lock poisoned")
            .get(id)
            .map_or(Status::Stopped, |s| {
                s.status.lock().expect("lock poisoned").clone()
            })
    }

    /// How many supervised connections are ready, starting and down (for `/readyz`, which
    /// names none of them: it answers anyone).
    pub fn counts(&self) -> UpstreamCounts {
        let slots = self.inner.slots.lock().expect("lock poisoned");
        let mut counts = UpstreamCounts::default();
        for slot in slots.values() {
            match *slot.status.lock().expect("lock poisoned") {
                Status::Ready { .. } => counts.ready += 1,
                Status::Starting => counts.starting += 1,
                Status::Down { .. } => counts.down += 1,
                Status::Stopped => {}
            }
        }
        counts
    }

    /// Wait until a connection is ready (its tools are synced), up to `timeout`.
    pub async fn wait_ready(&self, id: &ConnectionId, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(slot) = self.slot_of(id) else {
                return false;
            };
            let notified = slot.ready.notified();
            if matches!(
                *slot.status.lock().expect("lock poisoned"),
                Status::Ready { .. }
            ) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Send one permitted action upstream. The only way to call an upstream tool: it takes a
    /// [`Permit`], which only the decision (reads, drafts) or receipt verification (effects)
    /// can produce.
    pub async fn call(
        &self,
        permit: Permit,
        agent: AgentSide,
    ) -> Result<CallToolResult, UpstreamError> {
        self.call_for(permit, Some(agent)).await
    }

    /// [`Upstreams::call`] on behalf of a person rather than an agent's request (an approved
    /// revert): no progress, sampling or cancellation to forward.
    pub async fn call_unattended(&self, permit: Permit) -> Result<CallToolResult, UpstreamError> {
        self.call_for(permit, None).await
    }

    async fn call_for(
        &self,
        permit: Permit,
        agent: Option<AgentSide>,
    ) -> Result<CallToolResult, UpstreamError> {
        let action = permit.into_action().into_action();
        let slot = self
            .inner
            .slots
            .lock()
            .expect("lock poisoned")
            .get(&action.connection)
            .cloned();
        let Some(slot) = slot.filter(|s| s.tenant == action.tenant) else {
            return Err(UpstreamError::NotConnected);
        };
        let api = slot.api.lock().expect("lock poisoned").clone();
        if let Some(api) = api {
            return crate::api::send(
                &self.inner.outbound,
                &api,
                &action.arguments,
                self.inner.clock.now(),
                self.inner.call_timeout,
            )
            .await;
        }
        let peer = slot
            .peer
            .lock()
            .expect("lock poisoned")
            .clone()
            .ok_or(UpstreamError::NotConnected)?;
        let connection_id = action.connection.clone();
        let arguments = match action.arguments {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        };
        let mut params = CallToolRequestParams::new(action.tool);
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let options =
            PeerRequestOptions::with_timeout(self.inner.call_timeout).reset_timeout_on_progress();
        let handle = peer
            .send_cancellable_request(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                options,
            )
            .await
            .map_err(|e| {
                tracing::warn!(connection = %connection_id, error = %e, "cannot send to the upstream");
                slot.suspect.notify_one();
                UpstreamError::Transport
            })?;
        let upstream_token = handle.progress_token.clone();
        let cancel = agent
            .as_ref()
            .map_or_else(CancellationToken::new, |a| a.cancel.clone());
        if let Some(agent) = agent {
            let call = InFlight {
                peer: agent.peer,
                agent_token: agent.progress_token,
                request_id: agent.request_id,
                can_sample: agent.can_sample,
                can_elicit: agent.can_elicit,
                can_list_roots: agent.can_list_roots,
                questions: agent.questions,
            };
            let (progress, logs) = slot.routes.register(upstream_token.clone(), call.clone());
            for early in progress {
                forward_progress(&call, early).await;
            }
            for log in logs {
                #[allow(deprecated)]
                let _ = call.peer.notify_logging_message(log).await;
            }
        }
        let request_id = handle.id.clone();
        let outcome = tokio::select! {
            response = handle.await_response() => Some(response),
            () = cancel.cancelled() => None,
        };
        slot.routes.unregister(&upstream_token);
        match outcome {
            None => {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(request_id),
                        Some("cancelled by the agent".into()),
                    ))
                    .await;
                Err(UpstreamError::Cancelled)
            }
            Some(Ok(ServerResult::CallToolResult(result))) => Ok(result),
            Some(Ok(_)) => Err(UpstreamError::Protocol(
                "unexpected response to tools/call".into(),
            )),
            Some(Err(rmcp::ServiceError::Timeout { .. })) => {
                // A slow tool, or an upstream that went away without closing: a ping tells.
                slot.suspect.notify_one();
                Err(UpstreamError::Timeout)
            }
            Some(Err(rmcp::ServiceError::McpError(e))) => {
                Err(UpstreamError::Protocol(e.message.to_string()))
            }
            Some(Err(e)) => {
                tracing::warn!(connection = %connection_id, error = %e, "upstream call failed");
                slot.suspect.notify_one();
                Err(UpstreamError::Transport)
            }
        }
    }
}

/// Resources, prompts and completions: reads, served only for a connection the agent was
/// found to be granted ([`Granted`]), each within the call timeout. An upstream that does not
/// offer a kind answers an empty list.
impl Upstreams {
    fn peer_for(&self, granted: &Granted) -> Result<Peer<RoleClient>, UpstreamError> {
        let slot = self.slot(granted)?;
        let peer = slot.peer.lock().expect("lock poisoned").clone();
        peer.ok_or(UpstreamError::NotConnected)
    }

    /// Whether the upstream declared `offering` (read from its handshake).
    fn offers(peer: &Peer<RoleClient>, granted: &Granted) -> bool {
        peer.peer_info()
            .is_some_and(|info| match granted.offering() {
                Offering::Resources => info.capabilities.resources.is_some(),
                Offering::Prompts => info.capabilities.prompts.is_some(),
            })
    }

    async fn within<T>(
        &self,
        granted: &Granted,
        request: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(self.inner.call_timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(rmcp::ServiceError::McpError(e))) => {
                Err(UpstreamError::Protocol(e.message.to_string()))
            }
            Ok(Err(e)) => {
                tracing::warn!(connection = %granted.connection().id, error = %e, "upstream request failed");
                Err(UpstreamError::Transport)
            }
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// Every resource the upstream lists (all pages).
    pub async fn resources(&self, granted: &Granted) -> Result<Vec<Resource>, UpstreamError> {
        let peer = self.peer_for(granted)?;
        if !Self::offers(&peer, granted) {
            return Ok(Vec::new());
        }
        self.within(granted, peer.list_all_resources()).await
    }

    /// Every resource template the upstream lists (all pages).
    pub async fn resource_templates(
        &self,
        granted: &Granted,
    ) -> Result<Vec<ResourceTemplate>, UpstreamError> {
        let peer = self.peer_for(granted)?;
        if !Self::offers(&peer, granted) {
            return Ok(Vec::new());
        }
        self.within(granted, peer.list_all_resource_templates())
            .await
    }

    /// Read one resource by the upstream's own URI.
    pub async fn read_resource(
        &self,
        granted: &Granted,
        uri: String,
    ) -> Result<ReadResourceResult, UpstreamError> {
        let peer = self.peer_for(granted)?;
        if !Self::offers(&peer, granted) {
            return Err(UpstreamError::Protocol("resource not found".into()));
        }
        self.within(
            granted,
            peer.read_resource(ReadResourceRequestParams::new(uri)),
        )
        .await
    }

    /// Every prompt the upstream lists (all pages).
    pub async fn prompts(&self, granted: &Granted) -> Result<Vec<Prompt>, UpstreamError> {
        let peer = self.peer_for(granted)?;
        if !Self::offers(&peer, granted) {
            return Ok(Vec::new());
        }
        self.within(granted, peer.list_all_prompts()).await
    }

    /// One prompt by the upstream's own name.
    pub async fn get_prompt(
        &self,
        granted: &Granted,
        name: String,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, UpstreamError> {
        let peer = self.peer_for(granted)?;
        if !Self::offers(&peer, granted) {
            return Err(UpstreamError::Protocol("prompt not found".into()));
        }
        let mut params = GetPromptRequestParams::new(name);
        params.arguments = arguments;
        self.within(granted, peer.get_prompt(params)).await
    }

    /// Subscribe an agent's session to a resource (legacy `resources/subscribe`): the
    /// upstream is asked once per URI; updates reach the subscribed sessions only.
    pub async fn subscribe(
        &self,
        granted: &Granted,
        upstream_uri: String,
        session: String,
        peer: Peer<RoleServer>,
        agent_uri: String,
    ) -> Result<(), UpstreamError> {
        let upstream = self.peer_for(granted)?;
        let slot = self.slot(granted)?;
        let subscriber = Subscriber {
            session,
            peer,
            agent_uri,
        };
        if slot.subscribers.add(&upstream_uri, subscriber) {
            #[expect(
                deprecated,
                reason = "upstreams of the initialize era subscribe this way"
            )]
            let asked = upstream.subscribe(SubscribeRequestParams::new(upstream_uri.clone()));
            if let Err(e) = self.within(granted, asked).await {
                slot.subscribers
                    .by_uri
                    .lock()
                    .expect("lock poisoned")
                    .remove(&upstream_uri);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Undo [`Upstreams::subscribe`] for one session; the upstream is told when no session
    /// is left on the URI.
    pub async fn unsubscribe(
        &self,
        granted: &Granted,
        upstream_uri: String,
        session: &str,
    ) -> Result<(), UpstreamError> {
        let slot = self.slot(granted)?;
        if slot.subscribers.remove(&upstream_uri, session) {
            let upstream = self.peer_for(granted)?;
            #[expect(
                deprecated,
                reason = "upstreams of the initialize era subscribe this way"
            )]
            let asked = upstream.unsubscribe(UnsubscribeRequestParams::new(upstream_uri));
            self.within(granted, asked).await?;
        }
        Ok(())
    }

    fn slot(&self, granted: &Granted) -> Result<Arc<Slot>, UpstreamError> {
        let connection = granted.connection();
        let slot = self
            .inner
            .slots
            .lock()
            .expect("lock poisoned")
            .get(&connection.id)
            .cloned();
        slot.filter(|s| s.tenant == connection.tenant)
            .ok_or(UpstreamError::NotConnected)
    }

    /// Completion of a prompt's or a resource template's argument, in the upstream's names.
    /// An upstream that does not offer completions has none.
    pub async fn complete(
        &self,
        granted: &Granted,
        params: CompleteRequestParams,
    ) -> Result<CompleteResult, UpstreamError> {
        let peer = self.peer_for(granted)?;
        let completes = peer
            .peer_info()
            .is_some_and(|info| info.capabilities.completions.is_some());
        if !completes {
            return Ok(CompleteResult::default());
        }
        self.within(granted, peer.complete(params)).await
    }
}

/// Connect, sync tools, serve until the upstream dies or the connection stops; repeat with backoff.
async fn supervise(inner: Arc<Inner>, connection: Connection, slot: Arc<Slot>) {
    let spec = match ConnectionSpec::from_json(&connection.transport) {
        Ok(spec) => spec,
        Err(reason) => {
            tracing::error!(connection = %connection.id, %reason, "cannot start upstream");
            *slot.status.lock().expect("lock poisoned") = Status::Down {
                reason,
                retry_in_ms: 0,
            };
            return;
        }
    };
    if let Transport::Api {
        base_url,
        auth,
        routes,
    } = &spec.transport
    {
        // Ready until stopped; a restart syncs the routes again and clears a reconnection mark.
        loop {
            supervise_api(&inner, &connection, &slot, base_url, auth, routes).await;
            tokio::select! {
                () = slot.restart.notified() => {}
                () = slot.stop.cancelled() => {
                    *slot.api.lock().expect("lock poisoned") = None;
                    return;
                }
            }
        }
    }
    let mut backoff = Duration::from_millis(250);
    loop {
        if slot.stop.is_cancelled() {
            return;
        }
        let tools_changed = Arc::new(tokio::sync::Notify::new());
        let client = UpstreamClient {
            routes: slot.routes.clone(),
            tools_changed: tools_changed.clone(),
            subscribers: slot.subscribers.clone(),
            forward_roots: spec.forward_roots,
        };
        let mut process = None;
        let reason = match connect(&inner, &connection, &slot, &spec.transport, client).await {
            Ok((running, launched)) => {
                process = launched;
                let peer = running.peer().clone();
                // The gateway must see what the upstream serves now, never a cached list.
                peer.set_response_cache_config(rmcp::service::ClientCacheConfig::disabled())
                    .await;
                match sync_tools(&inner, &connection, &spec, &peer).await {
                    Ok(count) => {
                        *slot.peer.lock().expect("lock poisoned") = Some(peer.clone());
                        *slot.status.lock().expect("lock poisoned") =
                            Status::Ready { tools: count };
                        slot.ready.notify_waiters();
                        backoff = Duration::from_millis(250);
                        tracing::info!(connection = %connection.name, tenant = %connection.tenant, tools = count, "upstream ready");
                        serve_until_closed(
                            &inner,
                            &connection,
                            &spec,
                            &slot,
                            running,
                            &tools_changed,
                        )
                        .await
                    }
                    Err(reason) => {
                        let _ = running.cancel().await;
                        reason
                    }
                }
            }
            Err(ConnectError::Failed(reason)) => reason,
            Err(ConnectError::Refused(reason)) => {
                // The catalog refuses what the connection names: retrying changes nothing.
                tracing::error!(connection = %connection.id, tenant = %connection.tenant, %reason, "launch refused by the program catalog");
                let draft = portcullis_core::audit::AuditDraft::new(
                    connection.tenant.clone(),
                    "system",
                    portcullis_core::audit::AuditKind::ConfigRefused,
                )
                .resource(format!("connection:{}", connection.id))
                .detail(serde_json::json!({ "reason": reason }));
                if let Err(e) = inner.store.append_audit(draft, inner.clock.now()).await {
                    tracing::error!(error = %e, "could not audit a refused launch");
                }
                *slot.peer.lock().expect("lock poisoned") = None;
                *slot.status.lock().expect("lock poisoned") = Status::Down {
                    reason,
                    retry_in_ms: 0,
                };
                return;
            }
        };
        *slot.peer.lock().expect("lock poisoned") = None;
        if let Some(process) = process {
            *slot.pid.lock().expect("lock poisoned") = None;
            let ended = process.end().await;
            // Asked to stop or restart: not an event. Anything else (it quit, crashed, ran
            // into a limit, stopped answering and was killed) is audited.
            if !matches!(reason.as_str(), STOPPED | RESTART_REQUESTED) {
                audit_exit(&inner, &connection, &ended, &reason).await;
            }
            // A folder over its cap would end the next start at once: the program overran
            // its scratch space, which starts again empty.
            if ended.limit == Some("folder_mb") {
                remove_room(&inner, &connection.id).await;
            }
        }
        if slot.stop.is_cancelled() {
            return;
        }
        tracing::warn!(connection = %connection.name, tenant = %connection.tenant, %reason, retry_in_ms = backoff.as_millis() as u64, "upstream down");
        *slot.status.lock().expect("lock poisoned") = Status::Down {
            reason,
            retry_in_ms: backoff.as_millis() as u64,
        };
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = slot.restart.notified() => {}
            () = slot.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(inner.max_backoff);
    }
}

/// Remove a connection's folder (off the async threads: it may be large).
async fn remove_room(inner: &Inner, id: &ConnectionId) {
    let sandbox = inner.outbound.sandbox.clone();
    let id = id.clone();
    let _ = tokio::task::spawn_blocking(move || sandbox.remove_room(&id)).await;
}

/// Why a connection went down when it was asked to (not audited as an exit).
const STOPPED: &str = "stopped";
const RESTART_REQUESTED: &str = "restart requested";

/// Record how a launched program ended when nobody asked it to: its exit, the limit it ran
/// into (when known) and why the gateway saw it go.
async fn audit_exit(
    inner: &Inner,
    connection: &Connection,
    ended: &crate::sandbox::Ended,
    reason: &str,
) {
    tracing::warn!(connection = %connection.id, tenant = %connection.tenant, exit = %ended.exit, limit = ?ended.limit, "upstream program ended");
    let draft = portcullis_core::audit::AuditDraft::new(
        connection.tenant.clone(),
        "gateway",
        portcullis_core::audit::AuditKind::UpstreamExited,
    )
    .resource(format!("connection:{}", connection.id))
    .detail(serde_json::json!({
        "exit": ended.exit,
        "limit": ended.limit,
        "reason": reason.chars().take(200).collect::<String>(),
    }));
    if let Err(e) = inner.store.append_audit(draft, inner.clock.now()).await {
        tracing::error!(error = %e, "cannot audit an upstream's exit");
    }
}

/// Record that the egress policy refused a connection's destination (the rule, never the
/// URL, which may carry a credential).
async fn audit_egress_refusal(
    inner: &Inner,
    connection: &Connection,
    refusal: &crate::egress::Refusal,
) {
    let draft = portcullis_core::audit::AuditDraft::new(
        connection.tenant.clone(),
        "gateway",
        portcullis_core::audit::AuditKind::EgressRefused,
    )
    .resource(format!("connection:{}", connection.id))
    .detail(serde_json::json!({ "rule": refusal.rule.name() }));
    if let Err(e) = inner.store.append_audit(draft, inner.clock.now()).await {
        tracing::error!(error = %e, "cannot audit an egress refusal");
    }
}

/// The tenant's own host allow list (it only narrows the egress policy).
async fn tenant_hosts(
    inner: &Inner,
    tenant: &TenantId,
) -> Result<crate::egress::HostAllowList, ConnectError> {
    let tenant = inner
        .store
        .tenant(tenant)
        .await
        .map_err(|e| ConnectError::Failed(format!("cannot read the tenant: {e}")))?;
    crate::egress::HostAllowList::parse(&tenant.egress_hosts)
        .map_err(|e| ConnectError::Refused(format!("the tenant's egress hosts: {e}")))
}

/// Bring an HTTP API connection up: it has no session to keep, so its routes are synced as
/// its tools and its base URL vetted; each call is then one vetted request.
async fn supervise_api(
    inner: &Inner,
    connection: &Connection,
    slot: &Slot,
    base_url: &str,
    auth: &Option<Credential>,
    routes: &[crate::api::ApiRoute],
) {
    let down = |reason: String| {
        *slot.status.lock().expect("lock poisoned") = Status::Down {
            reason,
            retry_in_ms: 0,
        };
    };
    let hosts = match tenant_hosts(inner, &connection.tenant).await {
        Ok(hosts) => hosts,
        Err(ConnectError::Refused(reason) | ConnectError::Failed(reason)) => return down(reason),
    };
    let url = match inner.outbound.egress.check_url(base_url, &hosts) {
        Ok(url) => url,
        Err(refusal) => {
            audit_egress_refusal(inner, connection, &refusal).await;
            return down(refusal.to_string());
        }
    };
    let discovered: Vec<DiscoveredTool> = match crate::api::effective_routes(routes)
        .iter()
        .map(|route| {
            let definition = route.definition();
            let hash = definition.pin_hash().map_err(|e| e.to_string())?;
            Ok(DiscoveredTool {
                definition,
                hash,
                seed_effect: route.effect,
                seed_source: "operator",
            })
        })
        .collect::<Result<_, String>>()
    {
        Ok(discovered) => discovered,
        Err(reason) => return down(reason),
    };
    let count = discovered.len();
    // A (re)start is the reconnection: a new refresh token may be in the vault by now, so no
    // cached token survives it and the mark is cleared (the next refused grant sets it again).
    inner
        .outbound
        .broker
        .drop_connection(&connection.tenant, &connection.id);
    if let Err(e) = inner
        .store
        .set_needs_reconnection(&connection.tenant, &connection.id, None, inner.clock.now())
        .await
    {
        tracing::warn!(connection = %connection.id, error = %e, "cannot clear needs_reconnection");
    }
    if let Err(e) = inner
        .store
        .sync_tools(
            &connection.tenant,
            &connection.id,
            &discovered,
            inner.clock.now(),
        )
        .await
    {
        tracing::error!(connection = %connection.id, error = %e, "cannot store routes");
        return down("cannot store routes".into());
    }
    inner.cache.invalidate();
    *slot.api.lock().expect("lock poisoned") = Some(Arc::new(crate::api::ApiUpstream {
        tenant: connection.tenant.clone(),
        base_url: url,
        auth: auth.clone(),
        hosts,
        connection: connection.id.clone(),
    }));
    *slot.status.lock().expect("lock poisoned") = Status::Ready { tools: count };
    slot.ready.notify_waiters();
}

async fn serve_until_closed(
    inner: &Inner,
    connection: &Connection,
    spec: &ConnectionSpec,
    slot: &Slot,
    running: RunningService<RoleClient, UpstreamClient>,
    tools_changed: &tokio::sync::Notify,
) -> String {
    let peer = running.peer().clone();
    let cancel = running.cancellation_token();
    let mut waiting = std::pin::pin!(running.waiting());
    let liveness = inner.liveness;
    let mut pings = (!liveness.interval.is_zero()).then(|| {
        let mut timer = tokio::time::interval_at(
            tokio::time::Instant::now() + liveness.interval,
            liveness.interval,
        );
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        let tick = async {
            match pings.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            quit = &mut waiting => {
                tracing::warn!(connection = %connection.id, reason = ?quit, "upstream closed");
                return "upstream closed".into();
            }
            () = tick => {
                if let Err(reason) = alive(&peer, liveness.timeout).await {
                    return down(slot, cancel, connection, reason);
                }
            }
            () = slot.suspect.notified() => {
                if let Err(reason) = alive(&peer, liveness.timeout).await {
                    return down(slot, cancel, connection, reason);
                }
            }
            () = slot.stop.cancelled() => {
                cancel.cancel();
                return STOPPED.into();
            }
            () = slot.restart.notified() => {
                cancel.cancel();
                let _ = waiting.await;
                return RESTART_REQUESTED.into();
            }
            () = tools_changed.notified() => {
                if let Err(reason) = sync_tools(inner, connection, spec, &peer).await {
                    tracing::warn!(connection = %connection.name, %reason, "could not re-list tools");
                }
            }
        }
    }
}

/// Whether the upstream still answers: two pings in a row must go unanswered (one slow answer
/// on a loaded machine does not take a healthy connection down).
async fn alive(peer: &Peer<RoleClient>, timeout: Duration) -> Result<(), String> {
    match ping(peer, timeout).await {
        Ok(()) => Ok(()),
        Err(_) => ping(peer, timeout).await,
    }
}

/// Ask the upstream for a `ping` answer within `timeout`.
async fn ping(peer: &Peer<RoleClient>, timeout: Duration) -> Result<(), String> {
    let request = rmcp::model::PingRequest {
        method: Default::default(),
        extensions: Default::default(),
    };
    let options = PeerRequestOptions::with_timeout(timeout);
    let answered = async {
        peer.send_request_with_option(ClientRequest::PingRequest(request), options)
            .await?
            .await_response()
            .await
    };
    // The deadline also covers sending (a dead peer's transport may never accept the write).
    match tokio::time::timeout(timeout, answered).await {
        // Any answer, even an error (a server that does not implement `ping`), is a live peer.
        Ok(Ok(_) | Err(rmcp::ServiceError::McpError(_))) => Ok(()),
        Ok(Err(e)) => Err(format!("upstream not answering: {e}")),
        Err(_) => Err(format!(
            "upstream not answering: no ping answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// A live connection found dead: calls fail fast from now on (no peer), the session is
/// closed, and the supervisor reconnects with backoff.
fn down(
    slot: &Slot,
    cancel: rmcp::service::RunningServiceCancellationToken,
    connection: &Connection,
    reason: String,
) -> String {
    *slot.peer.lock().expect("lock poisoned") = None;
    cancel.cancel();
    tracing::warn!(connection = %connection.id, %reason, "upstream found dead");
    reason
}

/// Why a connection could not be brought up: a refusal stops retrying (the configuration
/// must change first); anything else is retried with backoff.
enum ConnectError {
    Refused(String),
    Failed(String),
}

type Connected = (
    RunningService<RoleClient, UpstreamClient>,
    Option<crate::sandbox::Process>,
);

async fn connect(
    inner: &Inner,
    connection: &Connection,
    slot: &Slot,
    transport: &Transport,
    client: UpstreamClient,
) -> Result<Connected, ConnectError> {
    let routes = client.routes.clone();
    let failed = ConnectError::Failed;
    match transport {
        // Supervised by `supervise_api`: there is no MCP session to open.
        Transport::Api { .. } => Err(ConnectError::Refused(
            "an HTTP API connection has no MCP session".into(),
        )),
        Transport::Stdio { program, args, env } => {
            // INVARIANT: the executable comes from the operator's catalog, checked again at
            // every launch (the catalog, or the tenants an entry is offered to, may have
            // changed since the connection was created).
            let tenant = inner
                .store
                .tenant(&connection.tenant)
                .await
                .map_err(|e| failed(format!("cannot read the tenant: {e}")))?;
            let now = inner.clock.now();
            let env = crate::vault::inject::reveal_env(&inner.outbound.vault, &tenant.id, env, now)
                .await
                .map_err(ConnectError::Refused)?;
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_owned()))
                .collect();
            let launch = inner
                .outbound
                .catalog
                .resolve(&tenant.name, program, args, &env)
                .map_err(|refusal| ConnectError::Refused(refusal.to_string()))?;
            // Confined before its first instruction (see `crate::sandbox`); the report of what
            // protects it is what `/healthz` and `connections list` show.
            let tunnels = if launch.confinement.egress {
                Some(crate::tunnel::Tunnels {
                    egress: inner.outbound.egress.clone(),
                    hosts: tenant_hosts(inner, &connection.tenant).await?,
                    store: inner.store.clone(),
                    clock: inner.clock.clone(),
                    tenant: connection.tenant.clone(),
                    connection: connection.id.clone(),
                    ports: launch.confinement.egress_ports.clone(),
                    open: Arc::new(tokio::sync::Semaphore::new(crate::tunnel::MAX_TUNNELS)),
                })
            } else {
                None
            };
            // Off the async threads: handing a folder over walks it, and killing what is
            // left of a user forks and waits.
            let sandbox = inner.outbound.sandbox.clone();
            let id = connection.id.clone();
            let launched =
                tokio::task::spawn_blocking(move || sandbox.launch(&id, &launch, tunnels))
                    .await
                    .map_err(|e| failed(format!("the launch did not finish: {e}")))?
                    .map_err(|e| match e {
                        crate::sandbox::LaunchError::Refused(reason) => {
                            ConnectError::Refused(reason)
                        }
                        crate::sandbox::LaunchError::Failed(reason) => failed(generic_failure(
                            &format!("cannot launch program `{program}`"),
                            &reason,
                            &connection.id,
                        )),
                    })?;
            tracing::info!(connection = %connection.id, tenant = %connection.tenant, program = %program, active = ?names(&launched.report.active), missing = ?names(&launched.report.missing), "upstream program confined");
            *slot.confinement.lock().expect("lock poisoned") = Some(launched.report.clone());
            *slot.pid.lock().expect("lock poisoned") = Some(launched.process.pid());
            if let Some(child_stderr) = launched.stderr {
                tokio::spawn(relay_stderr(connection.id.clone(), child_stderr));
            }
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(
                launched.stdout,
                launched.stdin,
            );
            let process = launched.process;
            let running = client
                .serve(InOrder {
                    inner: transport,
                    routes,
                })
                .await
                .map_err(|e| {
                    failed(generic_failure(
                        "handshake failed",
                        &e.to_string(),
                        &connection.id,
                    ))
                })?;
            Ok((running, Some(process)))
        }
        Transport::Http { url, auth } => {
            // INVARIANT: the URL is vetted by the egress policy at every (re)connection and
            // the client resolves through the checking resolver; redirects are not followed.
            let hosts = tenant_hosts(inner, &connection.tenant).await?;
            let (url, http) = match inner.outbound.egress.client_for(url, &hosts) {
                Ok(vetted) => vetted,
                Err(crate::egress::EgressError::Refused(refusal)) => {
                    audit_egress_refusal(inner, connection, &refusal).await;
                    return Err(ConnectError::Refused(refusal.to_string()));
                }
                Err(e) => return Err(failed(format!("cannot build the upstream client: {e}"))),
            };
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                );
            if let Some(credential) = auth {
                let injected = crate::vault::inject::inject(
                    &inner.outbound.vault,
                    &connection.tenant,
                    credential,
                    inner.clock.now(),
                )
                .await
                .map_err(|e| match e {
                    crate::vault::VaultError::NotFound => ConnectError::Refused(format!(
                        "the credential's secret `{}` is not in the vault",
                        credential.secrets().join("`, `")
                    )),
                    other => failed(format!("cannot reveal the upstream credential: {other}")),
                })?;
                if let Some((name, value)) = injected.header {
                    config.custom_headers.insert(name, value);
                }
                if let Some((name, value)) = &injected.query {
                    let mut with_query = url.clone();
                    with_query
                        .query_pairs_mut()
                        .append_pair(name, value.as_str());
                    config.uri = with_query.as_str().into();
                }
            }
            let transport =
                rmcp::transport::StreamableHttpClientTransport::with_client(http, config);
            let running = client
                .serve(InOrder {
                    inner: transport,
                    routes,
                })
                .await
                .map_err(|e| {
                    failed(generic_failure(
                        "handshake failed",
                        &e.to_string(),
                        &connection.id,
                    ))
                })?;
            Ok((running, None))
        }
    }
}

/// Protection names, for the log.
fn names(set: &std::collections::BTreeSet<portcullis_sandbox::Protection>) -> Vec<&'static str> {
    set.iter().map(|p| p.name()).collect()
}

/// Relay a program's standard error to the log, line by line (each line cut at 2 KiB), when
/// its catalog entry says `stderr = "log"`.
async fn relay_stderr(connection: ConnectionId, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(2048).collect();
        tracing::info!(target: "portcullis_upstream_stderr", %connection, %line);
    }
}

async fn sync_tools(
    inner: &Inner,
    connection: &Connection,
    spec: &ConnectionSpec,
    peer: &Peer<RoleClient>,
) -> Result<usize, String> {
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|e| generic_failure("tools/list failed", &e.to_string(), &connection.id))?;
    let mut discovered = Vec::with_capacity(tools.len());
    for tool in tools {
        let annotations = tool.annotations.as_ref();
        let definition = ToolDefinition {
            name: tool.name.to_string(),
            description: tool.description.as_ref().map(ToString::to_string),
            input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
            annotations: annotations.map(|a| serde_json::to_value(a).unwrap_or_default()),
            title: tool.title.clone(),
            output_schema: tool
                .output_schema
                .as_ref()
                .map(|s| serde_json::Value::Object((**s).clone())),
            meta: tool
                .meta
                .as_ref()
                .map(|m| serde_json::Value::Object(m.0.clone())),
        };
        let hash = definition.pin_hash().map_err(|e| e.to_string())?;
        let (seed_effect, seed_source) = match spec.classify.get(&definition.name) {
            Some(effect) => (*effect, "operator"),
            None => (
                EffectClass::seed_from_annotations(
                    annotations.and_then(|a| a.read_only_hint),
                    annotations.and_then(|a| a.destructive_hint),
                ),
                "annotations",
            ),
        };
        discovered.push(DiscoveredTool {
            definition,
            hash,
            seed_effect,
            seed_source,
        });
    }
    let records = inner
        .store
        .sync_tools(
            &connection.tenant,
            &connection.id,
            &discovered,
            inner.clock.now(),
        )
        .await
        .map_err(|e| {
            tracing::error!(connection = %connection.id, error = %e, "cannot store tools");
            "cannot store tools".to_owned()
        })?;
    // A changed definition must be seen as changed by the very next call.
    inner.cache.invalidate();
    Ok(records.len())
}
