//! What the process-based benches share: the real `portcullis` binary as child processes
//! (demo upstream and gateway), rmcp clients over streamable HTTP, the admin API, the
//! gateway's own `/metrics`, percentiles and command-line options.
//!
//! Each bench compiles its own copy (`mod common;`) and uses a part of it.
#![allow(dead_code)]

use rmcp::model::ProtocolVersion;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

pub type Client = RunningService<RoleClient, ()>;

/// A child `portcullis` process whose stdout is read line by line.
pub struct Proc {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Proc {
    pub async fn spawn(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn portcullis");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, lines }
    }

    /// Read stdout lines until one starts with `prefix`; return the rest of that line.
    pub async fn line_after(&mut self, prefix: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.trim().strip_prefix(prefix) {
                    return rest.trim().to_owned();
                }
            }
            panic!("process ended before printing `{prefix}`");
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("timed out waiting for process output")
    }

    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The bearer token the bench's gateways accept on `/metrics`.
pub const METRICS_TOKEN: &str = "bench-metrics-token";

/// The gateway's environment for a bench: its data folder (always the first entry), an
/// ephemeral loopback port, rate limits out of the way, quiet logs and `/metrics` behind
/// [`METRICS_TOKEN`].
pub fn gateway_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_DATA__DIR", data_dir.display().to_string()),
        ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0".into()),
        (
            "PORTCULLIS_AUTH__RATE_LIMIT_PER_MINUTE",
            "1000000000".into(),
        ),
        ("PORTCULLIS_AUTH__RATE_LIMIT_BURST", "1000000".into()),
        ("PORTCULLIS_LOG__FILTER", "warn".into()),
        // `/metrics` needs a token: the bench reads the gateway's own upstream histogram.
        (
            "PORTCULLIS_METRICS__TOKEN_SHA256",
            portcullis_core::sha256_hex(METRICS_TOKEN.as_bytes()),
        ),
        // The demo upstream listens on loopback: plain http:// there needs the operator's
        // setting (the egress policy refuses non-public networks by default).
        (
            "PORTCULLIS_EGRESS__ALLOW_PRIVATE",
            "[\"127.0.0.1/32\"]".into(),
        ),
    ]
}

/// An rmcp client on the 2026-07-28 revision whose handler is `handler`.
pub async fn client_with<H: ClientHandler>(
    handler: H,
    url: &str,
    token: Option<&str>,
) -> RunningService<RoleClient, H> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    handler
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("client connects")
}

/// A plain rmcp client (no handler) on the 2026-07-28 revision.
pub async fn client(url: &str, token: Option<&str>) -> Client {
    client_with((), url, token).await
}

/// Wait until `client` lists `tool` (a connection comes up asynchronously); `what` names the
/// gateway in the failure.
pub async fn wait_for_tool<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    tool: &str,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .list_all_tools()
        .await
        .expect("tools/list")
        .iter()
        .any(|t| t.name == tool)
    {
        assert!(
            Instant::now() < deadline,
            "{what} never listed the upstream's tools"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One admin API request (`/admin/v1{path}`) that must succeed; its JSON answer.
pub async fn admin_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    let response = http
        .request(method, format!("{base}/admin/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("admin api");
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        panic!("{path}: {status}: {body}");
    }
    response.json().await.expect("json")
}

/// A `POST` to the admin API.
pub async fn admin(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    admin_request(http, reqwest::Method::POST, base, token, path, body).await
}

/// A tenant with a `crm` connection to the HTTP upstream at `upstream_url` (tools classified
/// by `classify`), an agent granted all of it; returns the agent's token.
pub async fn seed_tenant(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    tenant: &str,
    upstream_url: &str,
    classify: Value,
) -> String {
    admin(
        http,
        base,
        admin_token,
        "/tenants",
        json!({ "name": tenant }),
    )
    .await;
    let connection = admin(
        http,
        base,
        admin_token,
        &format!("/tenants/{tenant}/connections"),
        json!({ "name": "crm", "kind": "http", "url": upstream_url, "classify": classify }),
    )
    .await;
    let agent = admin(
        http,
        base,
        admin_token,
        &format!("/tenants/{tenant}/agents"),
        json!({ "name": "bench" }),
    )
    .await;
    let agent_id = agent["id"].as_str().expect("id");
    admin(
        http,
        base,
        admin_token,
        &format!("/tenants/{tenant}/grants"),
        json!({ "agent": agent_id, "connection": connection["id"] }),
    )
    .await;
    let token = admin(
        http,
        base,
        admin_token,
        &format!("/tenants/{tenant}/agents/{agent_id}/tokens"),
        json!({}),
    )
    .await;
    token["token"].as_str().expect("token").to_owned()
}

/// The gateway's own view of its upstream leg: (sum of seconds, count) from `/metrics`, to
/// split the added latency into "second hop" and "gateway work".
pub async fn upstream_leg(http: &reqwest::Client, base: &str) -> (f64, f64) {
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (
        metric("portcullis_upstream_latency_seconds_sum"),
        metric("portcullis_upstream_latency_seconds_count"),
    )
}

/// Percentiles of a run, in milliseconds, and its rate.
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub per_sec: f64,
}

pub fn stats(mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let pick =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e3;
    Stats {
        p50: pick(0.5),
        p99: pick(0.99),
        mean,
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

/// The number after `name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
