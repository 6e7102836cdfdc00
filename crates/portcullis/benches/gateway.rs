//! Side-by-side benchmark: allowed read calls through Portcullis versus directly against the
//! same upstream (the shipped demo server over streamable HTTP). Both are real processes on
//! loopback; every gateway call writes a durable audit event (SQLite WAL, synchronous=FULL).
//!
//! Run: `cargo bench -p portcullis --bench gateway` (options: `-- --calls N --concurrency C`).
//! Prints a Markdown table for BENCHMARKS.md.

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt as _, RoleClient};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

type Client = rmcp::service::RunningService<RoleClient, ()>;

struct Proc {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Proc {
    async fn spawn(args: &[&str], env: &[(&str, String)]) -> Self {
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
    async fn line_after(&mut self, prefix: &str) -> String {
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

    fn peak_rss_kib(&self) -> u64 {
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

async fn client(url: &str, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("client connects")
}

async fn call(client: &Client, tool: &str) -> Duration {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(json!({ "id": "c_1" }).as_object().cloned().expect("object"));
    let started = Instant::now();
    let result = client.call_tool(params).await.expect("call succeeds");
    let elapsed = started.elapsed();
    assert_ne!(
        result.is_error,
        Some(true),
        "read must be allowed: {result:?}"
    );
    elapsed
}

struct Stats {
    p50: f64,
    p99: f64,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let pick =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    Stats {
        p50: pick(0.5),
        p99: pick(0.99),
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

async fn sequential(client: &Client, tool: &str, calls: usize) -> Stats {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        samples.push(call(client, tool).await);
    }
    stats(samples, started.elapsed())
}

/// `concurrency` clients spread round-robin over `urls` (one URL, or one per replica).
async fn concurrent(
    urls: &[String],
    token: Option<&str>,
    tool: &'static str,
    calls: usize,
    concurrency: usize,
) -> Stats {
    let mut clients = Vec::new();
    for i in 0..concurrency {
        clients.push(std::sync::Arc::new(
            client(&urls[i % urls.len()], token).await,
        ));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let per = calls / concurrency;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per);
            for _ in 0..per {
                samples.push(call(&c, tool).await);
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("task"));
    }
    stats(samples, started.elapsed())
}

async fn admin(http: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) -> Value {
    let response = http
        .post(format!("{base}/admin/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("admin api");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

/// The bearer token the bench's gateways accept on `/metrics`.
const METRICS_TOKEN: &str = "bench-metrics-token";

/// The gateway's own view of its upstream leg: (sum of seconds, count) from `/metrics`, to
/// split the added latency into "second hop" and "gateway work".
async fn upstream_leg(http: &reqwest::Client, base: &str) -> (f64, f64) {
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

/// A throw-away PostgreSQL database (`--postgres`), migrated by the real binary and dropped
/// at the end; its owner is the superuser in `PORTCULLIS_TEST_POSTGRES_URL`.
struct ScratchDatabase {
    admin: sqlx::postgres::PgConnectOptions,
    name: String,
    app_url: String,
}

impl ScratchDatabase {
    async fn create() -> Self {
        use sqlx::{ConnectOptions, Executor};
        use std::str::FromStr;
        let url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
            .expect("--postgres needs PORTCULLIS_TEST_POSTGRES_URL");
        let admin = sqlx::postgres::PgConnectOptions::from_str(&url).expect("postgres url");
        let name = format!("pc_bench_gw_{}", std::process::id());
        let mut conn = admin.connect().await.expect("postgres reachable");
        conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await
            .expect("drop");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create");
        let owner = admin.clone().database(&name);
        let migrate = std::process::Command::new(BIN)
            .args(["migrate", "--database-url", owner.to_url_lossy().as_ref()])
            .output()
            .expect("portcullis migrate");
        assert!(
            migrate.status.success(),
            "{}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let app_url = owner
            .username("portcullis_app")
            .password("")
            .to_url_lossy()
            .to_string();
        Self {
            admin,
            name,
            app_url,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Best effort, after the processes are gone: the benchmark ends here anyway.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sqlx::{ConnectOptions, Executor};
                if let Ok(mut conn) = admin.connect().await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let calls = arg("--calls", 3000);
    let concurrency = arg("--concurrency", 16);
    let replicas = arg("--replicas", 1).max(1);
    let postgres = std::env::args().any(|a| a == "--postgres");
    let dir = tempfile::tempdir().expect("tempdir");
    let database = if postgres {
        Some(ScratchDatabase::create().await)
    } else {
        None
    };
    if replicas > 1 && database.is_none() {
        panic!("--replicas needs --postgres (replicas share one PostgreSQL)");
    }

    let mut upstream = Proc::spawn(&["demo-upstream", "--http", "127.0.0.1:0"], &[]).await;
    let upstream_port = upstream.line_after("PORT=").await;
    let upstream_url = format!("http://127.0.0.1:{upstream_port}/mcp");

    let data_dir = |replica: usize| dir.path().join(format!("replica-{replica}"));
    let mut env = vec![
        ("PORTCULLIS_DATA__DIR", data_dir(1).display().to_string()),
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
    ];
    if let Some(database) = &database {
        env.push(("PORTCULLIS_DATA__DATABASE_URL", database.app_url.clone()));
    }
    let mut gateway = Proc::spawn(&["serve"], &env).await;
    let admin_token = gateway.line_after("export PORTCULLIS_ADMIN_TOKEN=").await;
    let base = gateway.line_after("portcullis listening on").await;
    // Further replicas: same database, same key file (receipts verify anywhere).
    let mut others = Vec::new();
    let mut bases = vec![base.clone()];
    for replica in 2..=replicas {
        std::fs::create_dir_all(data_dir(replica)).expect("replica dir");
        let keys = data_dir(replica).join("keys.json");
        std::fs::copy(data_dir(1).join("keys.json"), &keys).expect("copy keys");
        let mut replica_env = env.clone();
        replica_env[0].1 = data_dir(replica).display().to_string();
        let mut process = Proc::spawn(&["serve"], &replica_env).await;
        bases.push(process.line_after("portcullis listening on").await);
        others.push(process);
    }

    let http = reqwest::Client::new();
    admin(
        &http,
        &base,
        &admin_token,
        "/tenants",
        json!({ "name": "bench" }),
    )
    .await;
    let connection = admin(
        &http,
        &base,
        &admin_token,
        "/tenants/bench/connections",
        json!({ "name": "crm", "kind": "http", "url": upstream_url, "classify": { "get_contact": "read" } }),
    )
    .await;
    let agent = admin(
        &http,
        &base,
        &admin_token,
        "/tenants/bench/agents",
        json!({ "name": "bench" }),
    )
    .await;
    let agent_id = agent["id"].as_str().expect("id");
    admin(
        &http,
        &base,
        &admin_token,
        "/tenants/bench/grants",
        json!({ "agent": agent_id, "connection": connection["id"] }),
    )
    .await;
    let token = admin(
        &http,
        &base,
        &admin_token,
        &format!("/tenants/bench/agents/{agent_id}/tokens"),
        json!({}),
    )
    .await;
    let token = token["token"].as_str().expect("token").to_owned();
    let gateway_url = format!("{base}/t/bench/mcp");
    let gateway_urls: Vec<String> = bases.iter().map(|b| format!("{b}/t/bench/mcp")).collect();

    let direct = client(&upstream_url, None).await;
    let through = client(&gateway_url, Some(&token)).await;
    // The connection comes up asynchronously: wait until the tool is visible.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !through
        .list_all_tools()
        .await
        .expect("tools/list")
        .iter()
        .any(|t| t.name == "crm__get_contact")
    {
        assert!(
            Instant::now() < deadline,
            "gateway never listed the upstream's tools"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for url in &gateway_urls[1..] {
        let other = client(url, Some(&token)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !other
            .list_all_tools()
            .await
            .expect("tools/list")
            .iter()
            .any(|t| t.name == "crm__get_contact")
        {
            assert!(
                Instant::now() < deadline,
                "a replica never listed the upstream's tools"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    for _ in 0..200 {
        call(&direct, "get_contact").await;
        call(&through, "crm__get_contact").await;
    }

    let d_seq = sequential(&direct, "get_contact", calls).await;
    let leg_before = upstream_leg(&http, &base).await;
    let g_seq = sequential(&through, "crm__get_contact", calls).await;
    let leg_after = upstream_leg(&http, &base).await;
    let upstream_mean_ms = (leg_after.0 - leg_before.0) / (leg_after.1 - leg_before.1) * 1e3;
    let d_con = concurrent(
        std::slice::from_ref(&upstream_url),
        None,
        "get_contact",
        calls,
        concurrency,
    )
    .await;
    let g_con = concurrent(
        &gateway_urls,
        Some(&token),
        "crm__get_contact",
        calls,
        concurrency,
    )
    .await;

    let verify = std::process::Command::new(BIN)
        .args(["audit", "verify", "--tenant", "bench"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("audit verify");
    let verify_out = String::from_utf8_lossy(&verify.stdout);

    let backend = if postgres {
        format!("PostgreSQL, {replicas} replica(s)")
    } else {
        "SQLite".to_owned()
    };
    println!(
        "store: {backend}; calls per run: {calls}, concurrency: {concurrency} clients (spread over the replicas)"
    );
    println!();
    println!(
        "| run | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 | direct calls/s | gateway calls/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, d, g) in [
        ("sequential", &d_seq, &g_seq),
        ("concurrent", &d_con, &g_con),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.0} | {:.0} |",
            d.p50,
            g.p50,
            g.p50 - d.p50,
            d.p99,
            g.p99,
            g.p99 - d.p99,
            d.per_sec,
            g.per_sec
        );
    }
    println!();
    println!(
        "peak RSS: gateway {} KiB, upstream {} KiB",
        gateway.peak_rss_kib(),
        upstream.peak_rss_kib()
    );
    println!(
        "gateway -> upstream leg in the sequential run (mean, as the gateway measured it): {upstream_mean_ms:.3} ms"
    );
    println!("audit: {}", verify_out.trim());
    assert!(
        verify.status.success(),
        "audit trail must verify after the run"
    );
}
