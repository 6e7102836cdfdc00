//! Side-by-side benchmark: allowed read calls through Portcullis versus directly against the
//! same upstream (the shipped demo server over streamable HTTP). Both are real processes on
//! loopback; every gateway call writes a durable audit event (SQLite WAL, synchronous=FULL).
//!
//! Run: `cargo bench -p portcullis --bench gateway` (options: `-- --calls N --concurrency C`).
//! Prints a Markdown table for BENCHMARKS.md.

mod common;

use common::{
    BIN, Client, Proc, Stats, arg, client, gateway_env, seed_tenant, stats, upstream_leg,
    wait_for_tool,
};
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use std::time::{Duration, Instant};

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
    let mut env = gateway_env(&data_dir(1));
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
    let token = seed_tenant(
        &http,
        &base,
        &admin_token,
        "bench",
        &upstream_url,
        json!({ "get_contact": "read" }),
    )
    .await;
    let gateway_url = format!("{base}/t/bench/mcp");
    let gateway_urls: Vec<String> = bases.iter().map(|b| format!("{b}/t/bench/mcp")).collect();

    let direct = client(&upstream_url, None).await;
    let through = client(&gateway_url, Some(&token)).await;
    // The connection comes up asynchronously: wait until the tool is visible.
    wait_for_tool(&through, "crm__get_contact", "gateway").await;

    for url in &gateway_urls[1..] {
        let other = client(url, Some(&token)).await;
        wait_for_tool(&other, "crm__get_contact", "a replica").await;
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
