//! What confinement costs a stdio upstream: start-up (spawn, MCP handshake, `tools/list`)
//! and the latency of one `tools/call`, for the shipped demo server launched by the sandbox
//! with every protection this host gives, side by side with the same program spawned plainly
//! (a cleared environment, nothing else: how the gateway launched programs before the
//! sandbox). Both legs talk to the real process over its stdin/stdout with the rmcp client.
//!
//! Run: `cargo bench -p portcullis --bench sandbox` (options: `-- --starts N --calls M`).
//! Prints a Markdown table for BENCHMARKS.md.

mod common;

use common::{BIN, stats};
use portcullis_server::programs::{Catalog, ProgramConfig};
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type Client = RunningService<RoleClient, ()>;

/// A started upstream and whatever keeps it alive.
enum Held {
    Plain(#[allow(dead_code)] tokio::process::Child),
    Confined(#[allow(dead_code)] portcullis_server::sandbox::Process),
}

async fn plain() -> (Client, Held) {
    let mut child = tokio::process::Command::new(BIN)
        .arg("demo-upstream")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let transport = AsyncRwTransport::new_client(
        child.stdout.take().expect("stdout"),
        child.stdin.take().expect("stdin"),
    );
    let client = ().serve(transport).await.expect("handshake");
    (client, Held::Plain(child))
}

async fn confined(
    sandbox: &portcullis_server::sandbox::Sandbox,
    launch: &portcullis_server::programs::Launch,
) -> (Client, Held) {
    let connection = portcullis_core::id::ConnectionId::generate();
    let Ok(launched) = sandbox.launch(&connection, launch, None) else {
        panic!("the confined launch failed");
    };
    let transport = AsyncRwTransport::new_client(launched.stdout, launched.stdin);
    let client = ().serve(transport).await.expect("handshake");
    (client, Held::Confined(launched.process))
}

async fn call(client: &Client) -> Duration {
    let params = CallToolRequestParams::new("get_contact".to_owned()).with_arguments(
        serde_json::json!({ "id": "c_1" })
            .as_object()
            .cloned()
            .expect("object"),
    );
    let started = Instant::now();
    let result = client.call_tool(params).await.expect("call");
    assert_ne!(result.is_error, Some(true));
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let starts = common::arg("--starts", 30);
    let calls = common::arg("--calls", 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = portcullis_server::config::Config::defaults();
    config.data.dir = dir.path().join("data");
    config.sandbox.rooms = dir.path().join("rooms").display().to_string();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
    }
    let sandbox = portcullis_server::sandbox::Sandbox::new(&config, Some(BIN.as_ref()), None)
        .expect("sandbox");
    let report = sandbox.host_report();
    let entry = ProgramConfig {
        command: BIN.into(),
        args: vec!["demo-upstream".into()],
        tenants: vec!["*".into()],
        sandbox: portcullis_server::programs::SandboxEntry {
            allow_missing: report.missing.iter().map(|p| p.name().to_owned()).collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    let catalog =
        Catalog::build(&BTreeMap::from([("demo".to_owned(), entry)]), None).expect("catalog");
    let launch = catalog
        .resolve("bench", "demo", &[], &BTreeMap::new())
        .expect("launch");

    // Start-up, interleaved so both legs see the same machine.
    let (mut plain_starts, mut confined_starts) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        for confine in [false, true] {
            let started = Instant::now();
            let (client, held) = if confine {
                confined(&sandbox, &launch).await
            } else {
                plain().await
            };
            let tools = client.list_all_tools().await.expect("tools");
            assert!(!tools.is_empty());
            let took = started.elapsed();
            if confine {
                confined_starts.push(took);
            } else {
                plain_starts.push(took);
            }
            let _ = client.cancel().await;
            drop(held);
        }
    }

    // Per-call latency on one live process each.
    let mut rows = Vec::new();
    for confine in [false, true] {
        let (client, _held) = if confine {
            confined(&sandbox, &launch).await
        } else {
            plain().await
        };
        for _ in 0..100 {
            call(&client).await;
        }
        let wall = Instant::now();
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            samples.push(call(&client).await);
        }
        rows.push((confine, stats(samples, wall.elapsed())));
        let _ = client.cancel().await;
    }

    let active: Vec<&str> = report.active.iter().map(|p| p.name()).collect();
    println!("protections: {}", active.join(", "));
    println!(
        "\n| stdio upstream (demo server) | start-up p50 | start-up p99 | call p50 | call p99 | calls/s |"
    );
    println!("|---|---|---|---|---|---|");
    for (confine, row) in rows {
        let starts = stats(
            if confine {
                confined_starts.clone()
            } else {
                plain_starts.clone()
            },
            Duration::from_secs(1),
        );
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.3} ms | {:.3} ms | {:.0} |",
            if confine {
                "confined (sandbox)"
            } else {
                "plain spawn"
            },
            starts.p50,
            starts.p99,
            row.p50,
            row.p99,
            row.per_sec
        );
    }
}
