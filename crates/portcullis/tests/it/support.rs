//! The test harness: a real gateway on port 0 (in-process, with a controllable clock), the
#![allow(dead_code)] // Each test module uses a different part of the harness.
//! shipped demo upstream as a real stdio child process, a real MCP client (rmcp) speaking
//! either protocol era, and the admin API through the typed client the CLI uses. Tests of the
//! wire itself — refusals, malformed, forged or raw requests — use [`TestApp::api`] instead.

use portcullis_core::effect::EffectClass;
use portcullis_server::admin::approvals::VerdictIn;
use portcullis_server::admin::audit::EventsQuery;
use portcullis_server::admin::connections::{ConnectionIn, ConnectionState};
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::humans::AdminIn;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::tokens::TokenIn;
use portcullis_server::clock::Clock;
use portcullis_server::config::Config;
use portcullis_server::state::AppState;
use portcullis_server::upstream::{ConnectionSpec, EnvValue, Transport};
use portcullis_server::{Application, BuildOptions};
use reqwest::StatusCode;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, JsonObject, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use portcullis_server::admin::approvals::ApprovalView;
pub use portcullis_server::admin::client::AdminClient;
pub use portcullis_store::ApprovalStatus;

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
    /// The data folder (database, key file, witness log), apart from `dir`: the demo
    /// upstream may write in `dir`, and no launched program may see the data folder.
    data: tempfile::TempDir,
    pub state: Arc<AppState>,
    pub clock: Clock,
    pub admin_token: String,
    pub http: reqwest::Client,
    /// The admin API as the bootstrap admin.
    admin_api: AdminClient,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Declared last: on PostgreSQL the database is dropped after everything else.
    db: TestDatabase,
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
    /// While this file exists, the upstream's effect tools wait before acting.
    pub hold_file: PathBuf,
}

/// The operator's catalog entry for the demo upstream in tests: this binary's
/// `demo-upstream`, whose effect log, variant file and hold file a tenant may point at files
/// directly inside `files` (and nowhere else).
pub fn demo_program(files: &Path) -> portcullis_server::programs::ProgramConfig {
    let inside = format!(
        "{}/[A-Za-z0-9._-]+",
        regex::escape(&files.display().to_string())
    );
    portcullis_server::programs::ProgramConfig {
        command: BIN.into(),
        args: vec!["demo-upstream".into()],
        tenant_env: [
            ("PORTCULLIS_DEMO_EFFECT_LOG".to_owned(), inside.clone()),
            ("PORTCULLIS_DEMO_VARIANT_FILE".to_owned(), inside.clone()),
            ("PORTCULLIS_DEMO_HOLD_FILE".to_owned(), inside),
            // Carries the leak tests' canary secret (see `canary`).
            (
                "PORTCULLIS_DEMO_CANARY".to_owned(),
                "[A-Za-z0-9_-]{1,64}".to_owned(),
            ),
        ]
        .into(),
        description: "the demo CRM/mail/billing server".into(),
        tenants: vec!["*".into()],
        sandbox: portcullis_server::programs::SandboxEntry {
            write: vec![files.to_path_buf()],
            // Whatever this machine cannot give (not root, an older kernel): the sandbox's
            // own tests check each mode; the rest of the suite runs with what there is.
            allow_missing: host_missing(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The protections this machine cannot give launched programs, by name.
pub fn host_missing() -> Vec<String> {
    let host = portcullis_sandbox::Host::detect(Default::default());
    let offers = host.offers();
    portcullis_sandbox::Protection::ALL
        .into_iter()
        .filter(|p| !offers.contains(p))
        .map(|p| p.name().to_owned())
        .collect()
}

/// Let launched programs (each its own user when the tests run as root) enter and write a
/// test's folder: the demo upstream writes its effect log there.
pub fn open_to_programs(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
}

/// The same entry as configuration-file text, for `portcullis serve` child processes. Their
/// data folder lies inside `files` (which the demo writes), so the file-system view cannot be
/// given: they run the demo with every other protection (`[sandbox] off = ["filesystem"]`).
pub fn demo_program_toml(files: &Path) -> String {
    let entry = demo_program(files);
    let mut toml = format!(
        "[sandbox]\noff = [\"filesystem\", \"signals\"]\nrooms = {:?}\n\n[programs.demo]\ncommand = {:?}\nargs = [\"demo-upstream\"]\ntenants = [\"*\"]\n",
        files.join("rooms"),
        entry.command
    );
    let mut allow = host_missing();
    allow.extend(["filesystem".to_owned(), "signals".to_owned()]);
    toml.push_str(&format!(
        "[programs.demo.sandbox]\nallow_missing = {allow:?}\n"
    ));
    toml.push_str("[programs.demo.tenant_env]\n");
    for (name, pattern) in &entry.tenant_env {
        toml.push_str(&format!("{name} = {}\n", toml_string(pattern)));
    }
    toml
}

/// A TOML literal string (no escapes inside single quotes).
fn toml_string(value: &str) -> String {
    assert!(!value.contains('\''), "no single quotes in test patterns");
    format!("'{value}'")
}

/// The leak test's canary secret (`PORTCULLIS_TEST_CANARY`, set by `.ci/canary.sh`): every
/// seeded tenant stores it in its vault and hands it to its demo upstream's environment, and
/// every response body is scanned for it.
pub fn canary() -> Option<String> {
    std::env::var("PORTCULLIS_TEST_CANARY")
        .ok()
        .filter(|c| c.len() >= 16)
}

/// Responses that carried the canary (`.ci/canary.sh` fails on the marker any of them prints).
pub static CANARY_LEAKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A test's folder; kept (for `.ci/canary.sh` to scan every database and log file) when
/// `PORTCULLIS_TEST_KEEP_DATA` names a folder to keep them in.
fn test_dir() -> tempfile::TempDir {
    match std::env::var_os("PORTCULLIS_TEST_KEEP_DATA") {
        Some(keep) => {
            let mut dir = tempfile::Builder::new()
                .prefix("app-")
                .tempdir_in(keep)
                .expect("temp dir");
            dir.disable_cleanup(true);
            dir
        }
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// How the demo tools are classified by the operator in tests.
pub fn demo_classification() -> BTreeMap<String, EffectClass> {
    use EffectClass::*;
    [
        ("list_contacts", Read),
        ("get_contact", Read),
        ("count_to", Read),
        ("draft_email", Draft),
        ("send_email", Send),
        ("update_contact", Write),
        ("create_contact", Write),
        ("issue_refund", Spend),
    ]
    .into_iter()
    .map(|(tool, effect)| (tool.to_owned(), effect))
    .collect()
}

/// The demo CRM as a tenant's `crm` connection, its effect log, variant and hold files
/// named after the tenant under `files`.
pub fn demo_connection(files: &Path, tenant: &str) -> ConnectionIn {
    let file = |suffix: &str| {
        files
            .join(format!("{tenant}-{suffix}"))
            .display()
            .to_string()
    };
    ConnectionIn {
        name: "crm".into(),
        spec: ConnectionSpec::new(
            Transport::Stdio {
                program: "demo".into(),
                args: Vec::new(),
                env: [
                    ("PORTCULLIS_DEMO_EFFECT_LOG", file("effects.jsonl")),
                    ("PORTCULLIS_DEMO_VARIANT_FILE", file("variant")),
                    ("PORTCULLIS_DEMO_HOLD_FILE", file("hold")),
                ]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), EnvValue::Plain(value)))
                .collect(),
            },
            demo_classification(),
        ),
        redaction: Default::default(),
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Start with a tweaked configuration (data folder and listen address are set here).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = test_dir();
        let data = test_dir();
        open_to_programs(dir.path());
        let db = TestDatabase::create(Backend::from_env()).await;
        let mut config = Config::defaults();
        config.data.dir = data.path().join("data");
        config.sandbox.rooms = dir.path().join("rooms").display().to_string();
        config.audit.checkpoint_interval_secs = 0;
        // The tests' HTTP upstreams listen on loopback: the operator's setting allows it
        // (the gateway's own listener stays refused).
        config.egress.allow_private = vec!["127.0.0.1/32".into()];
        if let Some(url) = db.app_url() {
            config.data.database_url = url;
        }
        config
            .programs
            .insert("demo".into(), demo_program(dir.path()));
        tweak(&mut config);
        let clock = Clock::manual(Clock::System.now());
        let mut app = Application::build(
            config,
            BuildOptions {
                clock: clock.clone(),
                self_exe: Some(PathBuf::from(BIN)),
                config_file: None,
                demo: false,
                lookup: None,
                probe: canary().map(|canary| -> portcullis_server::Probe {
                    std::sync::Arc::new(move |chunk: &[u8]| {
                        if chunk.windows(canary.len()).any(|w| w == canary.as_bytes()) {
                            // The marker `.ci/canary.sh` looks for; never the canary itself.
                            eprintln!("CANARY LEAK: a response body carried the canary secret");
                            CANARY_LEAKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    })
                }),
            },
        )
        .await
        .expect("build application");
        let admin_token = app
            .first_start
            .admin_token
            .take()
            .expect("bootstrap admin token on first start")
            .expose()
            .to_owned();
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let admin_api = AdminClient::with_http(http.clone(), &base, admin_token.clone());
        Self {
            addr,
            base,
            dir,
            data,
            state,
            clock,
            admin_token,
            http,
            admin_api,
            shutdown: Some(tx),
            server: Some(server),
            db,
        }
    }

    /// The database this gateway runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
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

    /// The SQLite database file (SQLite backend only).
    pub fn db_path(&self) -> PathBuf {
        assert_eq!(
            self.backend(),
            Backend::Sqlite,
            "no database file on PostgreSQL"
        );
        self.data_dir().join("portcullis.db")
    }

    /// The MCP endpoint of a tenant.
    pub fn mcp_url(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}/mcp", self.base)
    }

    /// The admin API as the bootstrap admin.
    pub fn admin_api(&self) -> &AdminClient {
        &self.admin_api
    }

    /// The admin API as the human holding `token`.
    pub fn api_as(&self, token: &str) -> AdminClient {
        self.admin_api.as_token(token)
    }

    /// Raw HTTP on the admin API as `token`, for tests of the wire itself (refusals, malformed
    /// or forged requests, exact shapes); returns the status and the JSON body.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        api_at(&self.http, &self.base, method, path, token, body).await
    }

    /// Create a tenant with the demo CRM connection, an agent granted every CRM tool, a
    /// token for it and an approver; waits until the upstream is connected.
    pub async fn seed_tenant(&self, name: &str) -> Tenant {
        let tenant = seed(&self.admin_api, self.dir.path(), name).await;
        self.wait_ready(&tenant.connection_id).await;
        tenant
    }

    /// Wait until a connection's upstream is connected and its tools are synced.
    pub async fn wait_ready(&self, connection_id: &str) {
        let id = connection_id.parse().expect("connection id");
        assert!(
            self.state.upstreams.wait_ready(&id, WAIT).await,
            "upstream {connection_id} did not become ready"
        );
    }

    /// Connect an MCP client to a tenant's endpoint with `token`.
    pub async fn client(&self, tenant: &str, token: &str, era: Era) -> Client {
        connect(&self.mcp_url(tenant), token, era)
            .await
            .expect("mcp client connects")
    }

    /// Approve as the tenant's approver; returns the approval.
    pub async fn approve(&self, tenant: &Tenant, approval_id: &str) -> ApprovalView {
        let verdict = VerdictIn {
            reason: Some("test".into()),
        };
        self.api_as(&tenant.approver_token)
            .approve(approval_id, &verdict)
            .await
            .unwrap_or_else(|e| panic!("approve {approval_id}: {e}"))
    }

    /// Run SQL directly against the database, as an insider with database access would: the
    /// SQLite file, or on PostgreSQL the test server's superuser on this test's database.
    /// Statements are separated by `;;`; returns the rows affected by all of them.
    pub async fn raw_sql(&self, sql: &str) -> Result<u64, sqlx::Error> {
        use sqlx::{ConnectOptions, Connection as _};
        let mut affected = 0;
        match self.db.owner_url() {
            None => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.db_path())
                    .busy_timeout(Duration::from_secs(10))
                    .connect()
                    .await?;
                for statement in sql.split(";;") {
                    affected += sqlx::query(statement)
                        .execute(&mut conn)
                        .await?
                        .rows_affected();
                }
            }
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                for statement in sql.split(";;") {
                    affected += sqlx::query(statement)
                        .execute(&mut conn)
                        .await?
                        .rows_affected();
                }
                let _ = conn.close().await;
            }
        }
        Ok(affected)
    }
}

/// The plain reqwest client rmcp uses, telling the test when the session's standalone stream
/// (the `GET` SSE stream) is open. In the `initialize` era a server sends notifications that
/// belong to no request (logging, `resources/updated`, list changes) only on that stream, and a
/// notification sent before the client opened it is gone; a client that acts before its stream
/// is open races the server. Tests wait for it the way an agent's event loop would be running.
#[derive(Clone)]
struct Watched {
    inner: reqwest::Client,
    standalone: Arc<tokio::sync::watch::Sender<bool>>,
}

type SseStream = futures::stream::BoxStream<
    'static,
    Result<sse_stream::Sse, rmcp::transport::streamable_http_client::SseError>,
>;
type HttpError = rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>;
type Headers = std::collections::HashMap<axum::http::HeaderName, axum::http::HeaderValue>;

impl rmcp::transport::streamable_http_client::StreamableHttpClient for Watched {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: rmcp::model::ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<rmcp::transport::streamable_http_client::StreamableHttpPostResponse, HttpError>
    {
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: rmcp::model::ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<rmcp::transport::streamable_http_client::StreamableHttpPostResponse, HttpError>
    {
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), HttpError> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<SseStream, HttpError> {
        let stream = self
            .inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await?;
        self.standalone.send_replace(true);
        Ok(stream)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<SseStream, HttpError> {
        let stream = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await?;
        // The server answers only once the stream is registered with the session.
        self.standalone.send_replace(true);
        Ok(stream)
    }
}

/// Connect an MCP client; errors are returned so tests can assert refusals.
pub async fn connect(url: &str, token: &str, era: Era) -> Result<Client, String> {
    let (standalone, mut stream_open) = tokio::sync::watch::channel(false);
    let transport = StreamableHttpClientTransport::with_client(
        Watched {
            inner: reqwest::Client::default(),
            standalone: Arc::new(standalone),
        },
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    let (handler, inbox) = RecordingClient::new();
    let running = tokio::time::timeout(WAIT, async {
        match era {
            Era::Initialize => handler.serve(transport).await,
            Era::Discover => {
                handler
                    .serve_with_lifecycle(
                        transport,
                        ClientLifecycleMode::Discover {
                            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                        },
                    )
                    .await
            }
        }
    })
    .await
    .map_err(|_| "client start timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    if era == Era::Initialize {
        tokio::time::timeout(WAIT, stream_open.wait_for(|open| *open))
            .await
            .map_err(|_| "the standalone stream never opened".to_owned())?
            .map_err(|_| "the client stopped before its standalone stream opened".to_owned())?;
    }
    Ok(Client {
        running,
        inbox: tokio::sync::Mutex::new(inbox),
    })
}

/// An MCP client plus what the server pushed to it.
pub struct Client {
    pub running: RunningService<RoleClient, RecordingClient>,
    pub inbox: tokio::sync::Mutex<Inbox>,
}

impl Client {
    /// The protocol version the gateway agreed to.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.running
            .peer_info()
            .expect("server info")
            .protocol_version
            .clone()
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let tools = tokio::time::timeout(WAIT, self.running.list_all_tools())
            .await
            .expect("tools/list timed out")
            .expect("tools/list");
        let mut names: Vec<String> = tools.into_iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names
    }

    /// Call a tool; protocol-level errors come back as `Err(message)`.
    pub async fn try_call(&self, tool: &str, arguments: Value) -> Result<CallToolResult, String> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        tokio::time::timeout(WAIT, self.running.call_tool(params))
            .await
            .map_err(|_| "call timed out".to_owned())?
            .map_err(|e| e.to_string())
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        self.try_call(tool, arguments)
            .await
            .unwrap_or_else(|e| panic!("{tool} failed: {e}"))
    }
}

/// The structured content of any result (including held and denied ones).
pub fn structured(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .expect("structured content")
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
    assert_eq!(
        status(result),
        "pending_approval",
        "expected a hold: {result:?}"
    );
    structured(result)["approval_id"]
        .as_str()
        .expect("approval id")
        .to_owned()
}

/// The effect log's lines (empty when the file does not exist yet).
pub fn effect_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).expect("effect line is JSON"))
            .collect(),
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
    /// URIs of `notifications/resources/updated`.
    pub updates: mpsc::UnboundedReceiver<String>,
}

#[derive(Clone)]
pub struct RecordingClient {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    logs: mpsc::UnboundedSender<Value>,
    updates: mpsc::UnboundedSender<String>,
}

impl RecordingClient {
    pub fn new() -> (Self, Inbox) {
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let (logs_tx, logs) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        (
            Self {
                progress: progress_tx,
                logs: logs_tx,
                updates: updates_tx,
            },
            Inbox {
                progress,
                logs,
                updates,
            },
        )
    }
}

impl ClientHandler for RecordingClient {
    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self
            .logs
            .send(serde_json::to_value(&params).expect("log params serialise"));
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

// ---- raw HTTP on the MCP endpoint and audit reads (access, tenants, bad_input, protocol)

/// `Content-Type` and `Accept` a streamable-HTTP POST must carry.
pub const JSON_AND_SSE: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// A raw HTTP answer from the MCP endpoint.
#[derive(Debug)]
pub struct RawReply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl RawReply {
    /// The JSON-RPC messages in the body: a JSON body, or the JSON `data:` lines of an SSE body.
    pub fn messages(&self) -> Vec<Value> {
        if let Ok(value) = serde_json::from_str::<Value>(&self.text) {
            return match value {
                Value::Array(items) => items,
                other => vec![other],
            };
        }
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .collect()
    }

    /// The first JSON-RPC error code in the body.
    pub fn error_code(&self) -> Option<i64> {
        self.messages()
            .iter()
            .find_map(|m| m["error"]["code"].as_i64())
    }

    /// The first JSON-RPC result in the body.
    pub fn result(&self) -> Option<Value> {
        self.messages()
            .into_iter()
            .find_map(|m| m.get("result").cloned())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// POST `body` to `url` with `token` (if any) and exactly `headers`; waits for the whole body.
pub async fn raw_post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> RawReply {
    let mut request = http.post(url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(WAIT, async {
        let response = request.send().await.expect("mcp endpoint reachable");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        RawReply {
            status,
            headers,
            text,
        }
    })
    .await
    .expect("raw POST answered in time")
}

/// The JSON-RPC `initialize` request of the pre-2026 lifecycle.
pub fn initialize_request(id: i64) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw-test", "version": "0" } } })
}

/// The `_meta` every 2026-07-28 request carries.
pub fn meta_2026() -> Value {
    json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} })
}

/// A 2026-07-28 `tools/call` body.
pub fn tools_call_2026(id: i64, name: &str, arguments: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": name, "arguments": arguments, "_meta": meta_2026() } })
}

/// POST one 2026-07-28 request with the standard headers (`Mcp-Name` as given).
pub async fn post_2026(
    app: &TestApp,
    tenant: &str,
    token: &str,
    body: &Value,
    mcp_name: Option<&str>,
) -> RawReply {
    post_2026_at(&app.http, &app.mcp_url(tenant), token, body, mcp_name).await
}

/// [`post_2026`] to any MCP endpoint URL (for gateways running as child processes).
pub async fn post_2026_at(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    mcp_name: Option<&str>,
) -> RawReply {
    let method = body["method"].as_str().expect("request method").to_owned();
    let mut headers = JSON_AND_SSE.to_vec();
    headers.push(("mcp-protocol-version", "2026-07-28"));
    headers.push(("mcp-method", &method));
    if let Some(name) = mcp_name {
        headers.push(("mcp-name", name));
    }
    raw_post(http, url, Some(token), &headers, body.to_string()).await
}

/// Open a legacy session with a raw `initialize` (+ `notifications/initialized`); returns its id.
pub async fn raw_legacy_session(app: &TestApp, tenant: &str, token: &str) -> String {
    let url = app.mcp_url(tenant);
    let init = raw_post(
        &app.http,
        &url,
        Some(token),
        &JSON_AND_SSE,
        initialize_request(1).to_string(),
    )
    .await;
    assert_eq!(init.status, StatusCode::OK, "initialize: {}", init.text);
    assert!(
        init.result().is_some(),
        "initialize answered: {}",
        init.text
    );
    let session = init.header("mcp-session-id").expect("legacy session id");
    let mut headers = JSON_AND_SSE.to_vec();
    headers.push(("mcp-session-id", &session));
    headers.push(("mcp-protocol-version", "2025-11-25"));
    let initialized = raw_post(
        &app.http,
        &url,
        Some(token),
        &headers,
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string(),
    )
    .await;
    assert!(
        initialized.status.is_success(),
        "initialized: {} {}",
        initialized.status,
        initialized.text
    );
    session
}

/// Every audit event of `tenant` readable with `token` (admin API), oldest first.
pub async fn audit_events_of(app: &TestApp, token: &str, tenant: &str) -> Vec<Value> {
    audit_events_through(&app.api_as(token), tenant).await
}

/// Every audit event of `tenant` through `api`, oldest first, each as the JSON document the
/// API sends (and an export writes): tests match events by kind and detail paths.
pub async fn audit_events_through(api: &AdminClient, tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let query = EventsQuery {
            tenant: Some(tenant.to_owned()),
            after: Some(after),
            limit: Some(1000),
        };
        let page = api
            .audit_events(&query)
            .await
            .unwrap_or_else(|e| panic!("audit events of {tenant}: {e}"));
        let Some(last) = page.last() else {
            return out;
        };
        after = last.seq;
        out.extend(
            page.iter()
                .map(|e| serde_json::to_value(e).expect("events serialise")),
        );
    }
}

/// The events of one kind (`auth_failed`, `locked_out`, …).
pub fn events_of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Approvals of a tenant as the bootstrap admin, newest first.
pub async fn approvals_of(app: &TestApp, tenant: &str) -> Vec<ApprovalView> {
    let query = portcullis_server::admin::approvals::ApprovalQuery {
        tenant: Some(tenant.to_owned()),
        ..Default::default()
    };
    app.admin_api
        .list_approvals(&query)
        .await
        .unwrap_or_else(|e| panic!("approvals of {tenant}: {e}"))
}

// ---- Helpers for the approvals, receipts, audit-trail, crash and pinning tests.

/// What one run of the `portcullis` binary produced.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Run the real binary in `cwd` with no inherited `PORTCULLIS_*` variables, plus `env`.
pub async fn run_cli(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("cli timed out")
        .expect("cli runs");
    CliRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Poll `check` until it holds, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, WAIT, || {
        let checked = check();
        async move {
            if checked.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await;
}

/// [`eventually`] with its own bound; `check` says what it saw when not yet done, and the
/// last of those is in the failure message.
pub async fn eventually_within<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let seen = match check().await {
            Ok(()) => return,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// The data folder (database and key file).
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// Run an admin CLI command against this server as `token`.
    pub async fn cli_as(&self, token: &str, args: &[&str]) -> CliRun {
        run_cli(
            self.dir.path(),
            args,
            &[
                ("PORTCULLIS_URL", &self.base),
                ("PORTCULLIS_ADMIN_TOKEN", token),
            ],
        )
        .await
    }

    /// Run a command that reads the data folder (key file) and the database directly
    /// (`audit …`, `public-key`), configured like this gateway.
    pub async fn cli_local(&self, args: &[&str]) -> CliRun {
        let data = self.data_dir().display().to_string();
        let mut env = vec![("PORTCULLIS_DATA__DIR", data)];
        env.extend(self.db.env());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_cli(self.dir.path(), args, &env).await
    }

    /// One approval as the bootstrap admin sees it.
    pub async fn approval(&self, id: &str) -> ApprovalView {
        self.admin_api
            .approval(id)
            .await
            .unwrap_or_else(|e| panic!("approval {id}: {e}"))
    }

    /// Every audit event of a tenant, oldest first, through the admin API.
    pub async fn audit_events(&self, tenant: &str) -> Vec<Value> {
        audit_events_through(&self.admin_api, tenant).await
    }
}

/// The audit kinds of a list of events, in order.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Raw HTTP on the admin API at any base URL (gateways running as child processes too); see
/// [`TestApp::api`].
pub async fn api_at(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method, format!("{base}/admin/v1{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin api reachable");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// [`TestApp::seed_tenant`] against any gateway: same shapes, files under `files`; waits until
/// the connection reports `ready` over the admin API.
pub async fn seed_tenant_at(api: &AdminClient, files: &Path, name: &str) -> Tenant {
    let tenant = seed(api, files, name).await;
    wait_connection_ready(api, name, &tenant.connection_id).await;
    tenant
}

/// A tenant with the demo CRM connection, an agent granted all of it, the agent's token and a
/// tenant-scoped approver, created through the admin API (not waiting for the upstream).
async fn seed(api: &AdminClient, files: &Path, name: &str) -> Tenant {
    let tenant = api
        .create_tenant(&NameIn { name: name.into() })
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: tenant: {e}"));
    let mut demo = demo_connection(files, name);
    if let Some(canary) = canary() {
        use portcullis_server::admin::secrets::SecretIn;
        api.put_secret(
            name,
            "canary",
            &SecretIn {
                value: canary.clone().into(),
                rotate_every_days: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: canary: {e}"));
        if let Transport::Stdio { env, .. } = &mut demo.spec.transport {
            env.insert("PORTCULLIS_DEMO_CANARY".into(), EnvValue::Plain(canary));
        }
    }
    let connection = api
        .create_connection(name, &demo)
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: connection: {e}"));
    let agent = api
        .create_agent(
            name,
            &NameIn {
                name: "agent".into(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: agent: {e}"));
    let grant = GrantIn {
        agent: agent.id.to_string(),
        connection: connection.id.to_string(),
        tool: "*".into(),
    };
    api.add_grant(name, &grant)
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: grant: {e}"));
    let token = api
        .create_token(name, agent.id.as_str(), &TokenIn::default())
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: token: {e}"));
    let approver = AdminIn {
        name: format!("{name}-approver"),
        role: "approver".into(),
        tenant: Some(name.into()),
        ttl_secs: None,
    };
    let approver = api
        .create_admin(&approver)
        .await
        .unwrap_or_else(|e| panic!("seeding {name}: approver: {e}"));
    // Replicas run the same connection's demo program, each as its own user: the effect log
    // they all append to is made writable for every one of them up front.
    let effect_log = files.join(format!("{name}-effects.jsonl"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&effect_log)
            .expect("effect log");
        std::fs::set_permissions(&effect_log, std::fs::Permissions::from_mode(0o666))
            .expect("chmod effect log");
    }
    Tenant {
        name: name.to_owned(),
        id: tenant.id.to_string(),
        connection_id: connection.id.to_string(),
        agent_id: agent.id.to_string(),
        agent_token: token.token,
        approver_token: approver.token,
        effect_log,
        variant_file: files.join(format!("{name}-variant")),
        hold_file: files.join(format!("{name}-hold")),
    }
}

/// Wait until the admin API reports a connection's upstream as `ready` (the last state seen
/// is in the failure message).
pub async fn wait_connection_ready(api: &AdminClient, tenant: &str, connection_id: &str) {
    wait_connection_ready_within(api, tenant, connection_id, WAIT).await;
}

/// [`wait_connection_ready`] with its own bound: several replicas starting their upstreams at
/// once on a loaded two-core machine take longer than one.
pub async fn wait_connection_ready_within(
    api: &AdminClient,
    tenant: &str,
    connection_id: &str,
    bound: Duration,
) {
    let what = format!("connection {connection_id} to be ready");
    eventually_within(&what, bound, || async {
        let listed = api
            .list_connections(tenant)
            .await
            .map_err(|e| e.to_string())?;
        match listed.iter().find(|c| c.id.as_str() == connection_id) {
            Some(c) if matches!(c.status, ConnectionState::Ready { .. }) => Ok(()),
            Some(c) => Err(format!("{:?}", c.status)),
            None => Err("not listed".to_owned()),
        }
    })
    .await;
}

/// `portcullis serve` as a child process on its own data folder.
/// What [`ServeProcess::start_custom`] runs: which binary, with which configuration file, as
/// which user (None: this process's).
pub struct Custom<'a> {
    pub bin: &'a Path,
    pub toml: &'a str,
    pub uid: Option<u32>,
}

pub struct ServeProcess {
    pub child: tokio::process::Child,
    pub base: String,
    /// Printed on first start only.
    pub admin_token: Option<String>,
    /// Everything the process wrote to standard error (its logs), collected as it arrives.
    pub logs: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl ServeProcess {
    /// Start `portcullis serve` on `data_dir` (port 0) and wait for its "listening" line.
    pub async fn start(cwd: &Path, data_dir: &Path) -> Self {
        Self::start_with_log_filter(cwd, data_dir, None).await
    }

    /// [`ServeProcess::start`] with a `log.filter` (`None`: the shipped default).
    pub async fn start_with_log_filter(cwd: &Path, data_dir: &Path, filter: Option<&str>) -> Self {
        Self::start_with(cwd, data_dir, filter, &[]).await
    }

    /// [`ServeProcess::start_with_log_filter`] plus more `PORTCULLIS_*` variables (a database
    /// URL, a shared key file …), applied last.
    pub async fn start_with(
        cwd: &Path,
        data_dir: &Path,
        filter: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let toml = demo_program_toml(cwd);
        Self::start_custom(
            cwd,
            data_dir,
            filter,
            env,
            Custom {
                bin: Path::new(BIN),
                toml: &toml,
                uid: None,
            },
        )
        .await
    }

    /// [`ServeProcess::start_with`] with another binary, configuration and user.
    pub async fn start_custom(
        cwd: &Path,
        data_dir: &Path,
        filter: Option<&str>,
        env: &[(&str, &str)],
        custom: Custom<'_>,
    ) -> Self {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
        // The operator's configuration: the demo upstream in the program catalog.
        // Replicas start side by side from one folder: the file is replaced whole (written
        // aside, then renamed), so a process starting meanwhile never reads half of it — it
        // once read an empty catalog and refused its own upstream.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let aside = cwd.join(format!("portcullis.toml.{n}"));
        std::fs::write(&aside, custom.toml).expect("write portcullis.toml");
        open_to_programs(cwd);
        std::fs::rename(&aside, cwd.join("portcullis.toml")).expect("replace portcullis.toml");
        let mut command = tokio::process::Command::new(custom.bin);
        if let Some(uid) = custom.uid {
            command.uid(uid).gid(uid);
        }
        command
            .arg("serve")
            .current_dir(cwd)
            .stdin(std::process::Stdio::null());
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTCULLIS_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        // Several gateways on one host (replicas) each need their own program users and
        // rooms: one's ending program must never take another's along.
        let uid_base = 3_000_000_000u64 + (n % 15_000) * 65_536;
        command
            .env("PORTCULLIS_SANDBOX__UID_BASE", uid_base.to_string())
            .env("PORTCULLIS_SANDBOX__ROOMS", cwd.join(format!("rooms-{n}")))
            .env("PORTCULLIS_DATA__DIR", data_dir)
            .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_AUDIT__CHECKPOINT_INTERVAL_SECS", "0");
        if let Some(filter) = filter {
            command.env("PORTCULLIS_LOG__FILTER", filter);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("portcullis serve starts");
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("stderr piped");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let (base, admin_token) = tokio::time::timeout(WAIT, async {
            let mut admin_token = None;
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(token) = line.trim().strip_prefix("export PORTCULLIS_ADMIN_TOKEN=") {
                    admin_token = Some(token.to_owned());
                }
                if let Some(base) = line.strip_prefix("portcullis listening on ") {
                    return (base.trim().to_owned(), admin_token);
                }
            }
            panic!("portcullis serve exited before listening");
        })
        .await
        .expect("portcullis serve did not start listening");
        // Keep draining standard output so the process never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            base,
            admin_token,
            logs,
        }
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().expect("lock")).into_owned()
    }

    /// The operating system's id of the process (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown hooks, no final checkpoint.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill portcullis");
    }

    pub fn mcp_url(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}/mcp", self.base)
    }
}

// ---- The database under test: SQLite (the data folder's file) or a fresh PostgreSQL database.

/// Chooses the backend of [`TestApp`] (and of the tests that start `portcullis serve`):
/// `sqlite` (the default) or `postgres`.
pub const BACKEND_VAR: &str = "PORTCULLIS_TEST_BACKEND";
/// A PostgreSQL server and a role that may create databases (and the `portcullis_app` role),
/// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// Which store a gateway under test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From [`BACKEND_VAR`]; unset or empty means SQLite.
    pub fn from_env() -> Self {
        match std::env::var(BACKEND_VAR).as_deref() {
            Err(_) | Ok("" | "sqlite") => Self::Sqlite,
            Ok("postgres" | "postgresql") => Self::Postgres,
            Ok(other) => panic!("{BACKEND_VAR}=`{other}`: expected `sqlite` or `postgres`"),
        }
    }
}

/// Set (to anything) where a missing PostgreSQL must fail the tests that need it rather than
/// skip them: `.ci/run` sets it.
pub const REQUIRE_POSTGRES_VAR: &str = "PORTCULLIS_TEST_REQUIRE_POSTGRES";

/// [`POSTGRES_URL_VAR`], when set and not empty. Panics when it is missing but
/// [`REQUIRE_POSTGRES_VAR`] says it must be there.
pub fn postgres_server_url() -> Option<String> {
    let url = std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() && std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
        panic!(
            "{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not: the PostgreSQL tests cannot run"
        );
    }
    url
}

/// The database of one test. On SQLite that is the data folder's file (nothing to do here);
/// on PostgreSQL a fresh, migrated database of its own, dropped when this value is.
pub struct TestDatabase {
    pg: Option<PgDatabase>,
}

impl TestDatabase {
    /// A database for `backend`; PostgreSQL needs [`POSTGRES_URL_VAR`] and panics without it.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self { pg: None },
            Backend::Postgres => {
                let server = postgres_server_url().unwrap_or_else(|| {
                    panic!(
                        "{BACKEND_VAR}=postgres needs {POSTGRES_URL_VAR} (a PostgreSQL server and a role that may create databases and roles, e.g. postgres://postgres@127.0.0.1:5432/postgres)"
                    )
                });
                Self {
                    pg: Some(PgDatabase::create(&server).await),
                }
            }
        }
    }

    /// A PostgreSQL database when [`POSTGRES_URL_VAR`] is set, whatever the backend variable
    /// says; `None` otherwise.
    pub async fn postgres_if_configured() -> Option<Self> {
        let server = postgres_server_url()?;
        Some(Self {
            pg: Some(PgDatabase::create(&server).await),
        })
    }

    pub fn backend(&self) -> Backend {
        if self.pg.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// What the gateway connects to (`portcullis_app`); `None` on SQLite (the default file).
    pub fn app_url(&self) -> Option<String> {
        self.pg.as_ref().map(PgDatabase::app_url)
    }

    /// The test server's (super)user on this database; `None` on SQLite.
    pub fn owner_url(&self) -> Option<String> {
        self.pg.as_ref().map(PgDatabase::owner_url)
    }

    /// The PostgreSQL database's name; `None` on SQLite.
    pub fn database_name(&self) -> Option<String> {
        self.pg.as_ref().map(|p| p.name.clone())
    }

    /// The environment that points `portcullis` at this database (empty on SQLite).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.app_url()
            .map(|url| ("PORTCULLIS_DATA__DATABASE_URL", url))
            .into_iter()
            .collect()
    }
}

/// A fresh PostgreSQL database, migrated, dropped (`WITH (FORCE)`, best effort) on drop.
pub struct PgDatabase {
    server_url: String,
    pub name: String,
}

impl PgDatabase {
    pub async fn create(server_url: &str) -> Self {
        use sqlx::Connection as _;
        let name = format!(
            "pc_test_{}",
            &portcullis_core::id::TenantId::generate().as_str()[4..]
        );
        let mut conn = sqlx::PgConnection::connect(server_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: cannot connect: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let database = Self {
            server_url: server_url.to_owned(),
            name,
        };
        portcullis_store::migrate(&database.owner_url())
            .await
            .unwrap_or_else(|e| panic!("migrating {}: {e}", database.name));
        database
    }

    /// The test URL's role (a superuser) on this database.
    pub fn owner_url(&self) -> String {
        with_database(&self.server_url, &self.name, None)
    }

    /// `portcullis_app` on this database (local trust authentication: no password).
    pub fn app_url(&self) -> String {
        with_database(&self.server_url, &self.name, Some("portcullis_app"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime or while a failed test unwinds: the cleanup
        // gets a thread and a runtime of its own.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            use sqlx::Connection as _;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server_url).await.ok()?;
                let dropped =
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .ok();
                let _ = conn.close().await;
                dropped
            })
        });
        let _ = cleanup.join();
    }
}

/// `url` pointed at another database and, optionally, another user (without a password).
fn with_database(url: &str, database: &str, user: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base
        .split_once("://")
        .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} must be a postgres://… url"));
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = match user {
        Some(user) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{database}{query}")
}

/// Assert a raw read of the demo contact `c_1` went through to the upstream.
pub fn assert_read_ok(reply: &RawReply) {
    assert_eq!(reply.status, StatusCode::OK, "read refused: {}", reply.text);
    let result = reply
        .result()
        .unwrap_or_else(|| panic!("no result: {}", reply.text));
    assert_eq!(
        result["structuredContent"]["name"], "Ada Lovelace",
        "{result}"
    );
}

/// Add an HTTP connection `name` to `url` for `tenant`, its tools classified as given (the
/// rest from their annotations), granted whole to the tenant's agent. Returns its id; does
/// not wait for the upstream.
pub async fn add_http_connection(
    app: &TestApp,
    tenant: &Tenant,
    name: &str,
    url: String,
    classify: &[(&str, EffectClass)],
    forward_roots: bool,
) -> String {
    let connection = ConnectionIn {
        name: name.into(),
        spec: ConnectionSpec {
            forward_roots,
            ..ConnectionSpec::new(
                Transport::Http { url, auth: None },
                classify
                    .iter()
                    .map(|(tool, effect)| ((*tool).to_owned(), *effect))
                    .collect(),
            )
        },
        redaction: Default::default(),
    };
    add_connection(app, tenant, &connection).await
}

/// Add `connection` for `tenant`, granted whole to the tenant's agent. Returns its id; does
/// not wait for the upstream.
pub async fn add_connection(app: &TestApp, tenant: &Tenant, connection: &ConnectionIn) -> String {
    let api = app.admin_api();
    let connection = api
        .create_connection(&tenant.name, connection)
        .await
        .expect("create connection");
    api.add_grant(
        &tenant.name,
        &GrantIn {
            agent: tenant.agent_id.clone(),
            connection: connection.id.to_string(),
            tool: "*".into(),
        },
    )
    .await
    .expect("grant");
    connection.id.to_string()
}

/// A send whose every value must never appear in the audit trail.
pub fn confidential_email() -> Value {
    json!({ "to": "zelda.quartermain-7731@example.org", "subject": "Quarterly numbers XK-99", "body": "Strictly confidential draft body" })
}

/// Some traffic in a tenant: a read, a held send, its approval and execution.
pub async fn traffic(app: &TestApp, tenant: &Tenant) {
    let client = app
        .client(&tenant.name, &tenant.agent_token, Era::Discover)
        .await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let id = approval_id(&client.call("crm__send_email", confidential_email()).await);
    app.approve(tenant, &id).await;
    assert_eq!(
        status(&client.call("crm__send_email", confidential_email()).await),
        "sent"
    );
}
