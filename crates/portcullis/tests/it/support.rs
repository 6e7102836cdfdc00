//! The test harness: a real gateway on port 0 (in-process, with a controllable clock), the
#![allow(dead_code)] // Each test module uses a different part of the harness.
//! shipped demo upstream as a real stdio child process, a real MCP client (rmcp) speaking
//! either protocol era, and the admin API through HTTP — the same API the CLI uses.

use portcullis_server::clock::Clock;
use portcullis_server::config::Config;
use portcullis_server::state::AppState;
use portcullis_server::{Application, BuildOptions};
use reqwest::StatusCode;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, ProgressNotificationParam, ProtocolVersion};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Upper bound for any single wait, so a broken server fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `portcullis` binary (also the demo upstream: `portcullis demo-upstream`).
pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Which MCP lifecycle a test client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// The pre-2026 `initialize` handshake (negotiates 2025-11-25, with a session).
    Initialize,
    /// 2026-07-28: `server/discover` plus per-request `_meta`, no sessions.
    Discover,
}

/// A gateway running in this test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub state: Arc<AppState>,
    pub clock: Clock,
    pub admin_token: String,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// One seeded tenant: the demo CRM connection (stdio child), an agent granted all of it,
/// a token for that agent and a tenant-scoped approver.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    pub id: String,
    pub connection_id: String,
    pub agent_id: String,
    pub agent_token: String,
    pub approver_token: String,
    /// One JSON line per effect the upstream executed.
    pub effect_log: PathBuf,
    /// Write `changed` here and restart the connection to change tool definitions.
    pub variant_file: PathBuf,
}

/// How the demo tools are classified by the operator in tests.
pub fn demo_classification() -> Value {
    json!({
        "list_contacts": "read", "get_contact": "read", "count_to": "read",
        "draft_email": "draft", "send_email": "send", "update_contact": "write", "issue_refund": "spend"
    })
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Start with a tweaked configuration (data folder and listen address are set here).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.data.dir = dir.path().join("data");
        config.audit.checkpoint_interval_secs = 0;
        tweak(&mut config);
        let clock = Clock::manual(Clock::System.now());
        let mut app = Application::build(config, BuildOptions { clock: clock.clone(), demo_upstream_command: None })
            .await
            .expect("build application");
        let admin_token = app.first_start.admin_token.take().expect("bootstrap admin token on first start").expose().to_owned();
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            dir,
            state,
            clock,
            admin_token,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stop the server gracefully and wait for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, server).await;
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("portcullis.db")
    }

    /// The MCP endpoint of a tenant.
    pub fn mcp_url(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}/mcp", self.base)
    }

    /// Call the admin API as `token`; returns the status and the JSON body.
    pub async fn api(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}/admin/v1{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin api reachable");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Admin API call as the bootstrap admin that must succeed.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.api(method, path, &self.admin_token, body).await;
        assert!(status.is_success(), "admin {path} failed with {status}: {value}");
        value
    }

    /// Create a tenant with the demo CRM connection, an agent granted every CRM tool, a
    /// token for it and an approver; waits until the upstream is connected.
    pub async fn seed_tenant(&self, name: &str) -> Tenant {
        use reqwest::Method;
        let tenant = self.admin(Method::POST, "/tenants", Some(json!({ "name": name }))).await;
        let effect_log = self.dir.path().join(format!("{name}-effects.jsonl"));
        let variant_file = self.dir.path().join(format!("{name}-variant"));
        let connection = self
            .admin(
                Method::POST,
                &format!("/tenants/{name}/connections"),
                Some(json!({
                    "name": "crm", "kind": "stdio", "command": BIN, "args": ["demo-upstream"],
                    "env": {
                        "PORTCULLIS_DEMO_EFFECT_LOG": effect_log.display().to_string(),
                        "PORTCULLIS_DEMO_VARIANT_FILE": variant_file.display().to_string(),
                    },
                    "classify": demo_classification(),
                })),
            )
            .await;
        let connection_id = connection["id"].as_str().expect("connection id").to_owned();
        let agent = self.admin(Method::POST, &format!("/tenants/{name}/agents"), Some(json!({ "name": "agent" }))).await;
        let agent_id = agent["id"].as_str().expect("agent id").to_owned();
        self.admin(Method::POST, &format!("/tenants/{name}/grants"), Some(json!({ "agent": agent_id, "connection": connection_id }))).await;
        let token = self.admin(Method::POST, &format!("/tenants/{name}/agents/{agent_id}/tokens"), Some(json!({}))).await;
        let approver = self
            .admin(Method::POST, "/admins", Some(json!({ "name": format!("{name}-approver"), "role": "approver", "tenant": name })))
            .await;
        self.wait_ready(&connection_id).await;
        Tenant {
            name: name.to_owned(),
            id: tenant["id"].as_str().expect("tenant id").to_owned(),
            connection_id,
            agent_id,
            agent_token: token["token"].as_str().expect("token").to_owned(),
            approver_token: approver["token"].as_str().expect("approver token").to_owned(),
            effect_log,
            variant_file,
        }
    }

    /// Wait until a connection's upstream is connected and its tools are synced.
    pub async fn wait_ready(&self, connection_id: &str) {
        let id = connection_id.parse().expect("connection id");
        assert!(self.state.upstreams.wait_ready(&id, WAIT).await, "upstream {connection_id} did not become ready");
    }

    /// Connect an MCP client to a tenant's endpoint with `token`.
    pub async fn client(&self, tenant: &str, token: &str, era: Era) -> Client {
        connect(&self.mcp_url(tenant), token, era).await.expect("mcp client connects")
    }

    /// Approve as the tenant's approver; returns the approval JSON.
    pub async fn approve(&self, tenant: &Tenant, approval_id: &str) -> Value {
        let (status, body) = self
            .api(reqwest::Method::POST, &format!("/approvals/{approval_id}/approve"), &tenant.approver_token, Some(json!({ "reason": "test" })))
            .await;
        assert_eq!(status, StatusCode::OK, "approve failed: {body}");
        body
    }

    /// Run SQL directly against the database file, as an insider with database access would.
    pub async fn raw_sql(&self, sql: &str) -> Result<u64, sqlx::Error> {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.db_path())
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        let mut affected = 0;
        for statement in sql.split(";;") {
            affected += sqlx::query(statement).execute(&mut conn).await?.rows_affected();
        }
        Ok(affected)
    }
}

/// Connect an MCP client; errors are returned so tests can assert refusals.
pub async fn connect(url: &str, token: &str, era: Era) -> Result<Client, String> {
    let transport = StreamableHttpClientTransport::from_config(StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()));
    let (handler, inbox) = RecordingClient::new();
    let running = tokio::time::timeout(WAIT, async {
        match era {
            Era::Initialize => handler.serve(transport).await,
            Era::Discover => {
                handler
                    .serve_with_lifecycle(transport, ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] })
                    .await
            }
        }
    })
    .await
    .map_err(|_| "client start timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    Ok(Client { running, inbox: tokio::sync::Mutex::new(inbox) })
}

/// An MCP client plus what the server pushed to it.
pub struct Client {
    pub running: RunningService<RoleClient, RecordingClient>,
    pub inbox: tokio::sync::Mutex<Inbox>,
}

impl Client {
    /// The protocol version the gateway agreed to.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.running.peer_info().expect("server info").protocol_version.clone()
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let tools = tokio::time::timeout(WAIT, self.running.list_all_tools()).await.expect("tools/list timed out").expect("tools/list");
        let mut names: Vec<String> = tools.into_iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names
    }

    /// Call a tool; protocol-level errors come back as `Err(message)`.
    pub async fn try_call(&self, tool: &str, arguments: Value) -> Result<CallToolResult, String> {
        let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        tokio::time::timeout(WAIT, self.running.call_tool(params)).await.map_err(|_| "call timed out".to_owned())?.map_err(|e| e.to_string())
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        self.try_call(tool, arguments).await.unwrap_or_else(|e| panic!("{tool} failed: {e}"))
    }
}

/// The structured content of any result (including held and denied ones).
pub fn structured(result: &CallToolResult) -> &Value {
    result.structured_content.as_ref().expect("structured content")
}

/// The `status` field of a gateway answer (`pending_approval`, `denied`, …), or `ok` for a
/// plain upstream result.
pub fn status(result: &CallToolResult) -> String {
    result
        .structured_content
        .as_ref()
        .and_then(|v| v.get("status"))
        .and_then(Value::as_str)
        .map_or_else(|| "ok".to_owned(), str::to_owned)
}

/// The approval id named by a `pending_approval` answer.
pub fn approval_id(result: &CallToolResult) -> String {
    assert_eq!(status(result), "pending_approval", "expected a hold: {result:?}");
    structured(result)["approval_id"].as_str().expect("approval id").to_owned()
}

/// The effect log's lines (empty when the file does not exist yet).
pub fn effect_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|line| serde_json::from_str(line).expect("effect line is JSON")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading effect log: {e}"),
    }
}

pub fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("tool arguments must be an object, got {other}"),
    }
}

/// What a server pushed to a client outside responses.
pub struct Inbox {
    pub progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    pub logs: mpsc::UnboundedReceiver<Value>,
}

#[derive(Clone)]
pub struct RecordingClient {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    logs: mpsc::UnboundedSender<Value>,
}

impl RecordingClient {
    pub fn new() -> (Self, Inbox) {
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let (logs_tx, logs) = mpsc::unbounded_channel();
        (Self { progress: progress_tx, logs: logs_tx }, Inbox { progress, logs })
    }
}

impl ClientHandler for RecordingClient {
    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let _ = self.progress.send(params);
    }

    #[allow(deprecated)]
    async fn on_logging_message(&self, params: rmcp::model::LoggingMessageNotificationParam, _context: NotificationContext<RoleClient>) {
        let _ = self.logs.send(serde_json::to_value(&params).expect("log params serialise"));
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber_init();
    }
}

fn tracing_subscriber_init() -> Result<(), ()> {
    portcullis_server::init_tracing(&portcullis_server::config::LogConfig {
        format: portcullis_server::config::LogFormat::Text,
        filter: "debug,rmcp=info".into(),
    });
    Ok(())
}
