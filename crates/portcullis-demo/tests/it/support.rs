//! Shared helpers: a recording MCP client, process spawning, result decoding.

use std::{path::Path, time::Duration};

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
    model::{
        CallToolRequestParams, CallToolResult, JsonObject, ProgressNotificationParam,
        ProtocolVersion,
    },
    service::{NotificationContext, RunningService},
    transport::{ConfigureCommandExt as _, TokioChildProcess},
};
use serde_json::Value;
use tokio::sync::mpsc;

/// Upper bound for any single wait, so a broken server fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis-demo-upstream");

pub const ALL_TOOLS: [&str; 8] = [
    "count_to",
    "create_contact",
    "draft_email",
    "get_contact",
    "issue_refund",
    "list_contacts",
    "send_email",
    "update_contact",
];

/// Everything a server pushed to the client outside responses.
pub struct Inbox {
    pub progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    pub logs: mpsc::UnboundedReceiver<Value>,
}

/// A client that forwards progress and logging notifications to an [`Inbox`].
#[derive(Clone)]
pub struct RecordingClient {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    logs: mpsc::UnboundedSender<Value>,
}

impl RecordingClient {
    pub fn new() -> (Self, Inbox) {
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let (logs_tx, logs) = mpsc::unbounded_channel();
        (
            Self {
                progress: progress_tx,
                logs: logs_tx,
            },
            Inbox { progress, logs },
        )
    }
}

impl ClientHandler for RecordingClient {
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
            .send(serde_json::to_value(&params).expect("log params serialize"));
    }
}

pub type Client = RunningService<RoleClient, RecordingClient>;

/// Which MCP lifecycle the client uses.
#[derive(Clone, Copy, Debug)]
pub enum Lifecycle {
    /// The pre-2026 `initialize` / `notifications/initialized` handshake.
    Initialize,
    /// 2026-07-28: `server/discover` plus per-request `_meta`.
    Discover,
}

impl Lifecycle {
    fn mode(self) -> ClientLifecycleMode {
        match self {
            Self::Initialize => ClientLifecycleMode::Initialize,
            Self::Discover => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        }
    }
}

/// Connects a recording client over any rmcp client transport.
pub async fn connect<T, E, A>(transport: T, lifecycle: Lifecycle) -> (Client, Inbox)
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let (handler, inbox) = RecordingClient::new();
    let client = tokio::time::timeout(WAIT, async {
        match lifecycle {
            Lifecycle::Initialize => handler.serve(transport).await,
            other => handler.serve_with_lifecycle(transport, other.mode()).await,
        }
    })
    .await
    .expect("client start timed out")
    .expect("client start failed");
    let negotiated = client
        .peer_info()
        .expect("server info after startup")
        .protocol_version
        .clone();
    match lifecycle {
        Lifecycle::Initialize => assert_ne!(negotiated, ProtocolVersion::V_2026_07_28),
        Lifecycle::Discover => assert_eq!(negotiated, ProtocolVersion::V_2026_07_28),
    }
    (client, inbox)
}

/// Spawns the real binary over stdio with the given extra environment.
pub async fn spawn_stdio(
    lifecycle: Lifecycle,
    effect_log: Option<&Path>,
    variant: Option<&str>,
) -> (Client, Inbox) {
    let command = tokio::process::Command::new(BIN).configure(|cmd| {
        cmd.env_remove("PORTCULLIS_DEMO_EFFECT_LOG")
            .env_remove("PORTCULLIS_DEMO_VARIANT");
        if let Some(path) = effect_log {
            cmd.env("PORTCULLIS_DEMO_EFFECT_LOG", path);
        }
        if let Some(variant) = variant {
            cmd.env("PORTCULLIS_DEMO_VARIANT", variant);
        }
    });
    let transport = TokioChildProcess::new(command).expect("spawn portcullis-demo-upstream");
    connect(transport, lifecycle).await
}

pub fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("tool arguments must be an object, got {other}"),
    }
}

/// Calls a tool, failing the test on protocol errors or timeouts.
pub async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    tokio::time::timeout(
        WAIT,
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments))),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} timed out"))
    .unwrap_or_else(|e| panic!("{tool} failed: {e}"))
}

/// The structured content of a successful result.
pub fn structured(result: &CallToolResult) -> &Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "unexpected tool error: {result:?}"
    );
    result
        .structured_content
        .as_ref()
        .expect("structured content")
}

/// The first text block of a result.
pub fn text(result: &CallToolResult) -> &str {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str())
        .expect("a text content block")
}

/// The effect log's lines, parsed (empty when the file does not exist).
pub fn effect_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "effect log must end with a newline: {text:?}"
            );
            text.lines()
                .map(|line| serde_json::from_str(line).expect("effect line is JSON"))
                .collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading effect log: {e}"),
    }
}

/// Receives exactly `n` progress notifications, then checks they count 1..=n.
pub async fn expect_progress(inbox: &mut Inbox, n: u32) {
    let mut seen = Vec::new();
    for _ in 0..n {
        let p = tokio::time::timeout(WAIT, inbox.progress.recv())
            .await
            .expect("progress notification timed out")
            .expect("progress channel closed");
        seen.push(p);
    }
    // rmcp's client runs each notification handler in its own task, so the
    // wire order is not preserved here: compare as a set.
    let token = seen[0].progress_token.clone();
    let mut steps: Vec<f64> = seen
        .iter()
        .map(|p| {
            assert_eq!(p.progress_token, token, "one progress token per call");
            assert_eq!(p.total, Some(f64::from(n)));
            p.progress
        })
        .collect();
    steps.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (1..=n).map(f64::from).collect();
    assert_eq!(steps, expected, "progress i of n for i in 1..=n");
    let log = tokio::time::timeout(WAIT, inbox.logs.recv())
        .await
        .expect("logging notification timed out")
        .expect("log channel closed");
    assert_eq!(log["level"], "info", "{log}");
    assert_eq!(log["data"]["message"], format!("counted to {n}"), "{log}");
    assert!(inbox.progress.try_recv().is_err(), "no extra progress");
    assert!(inbox.logs.try_recv().is_err(), "exactly one log message");
}
