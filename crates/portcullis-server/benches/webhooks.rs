//! Webhook deliveries per second to a receiver on loopback, end to end: audit entries
//! appended, made into messages by the outbox, signed (Standard Webhooks) and sent through the
//! egress client by the worker, each answered 200. Run with
//! `cargo bench -p portcullis-server --bench webhooks` (MESSAGES=n, default 20000;
//! CONCURRENCY=n, default the shipped `webhooks.concurrency`). SQLite, embedded defaults,
//! `egress.allow_private = ["127.0.0.1/32"]` (the operator's loopback setting).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_server::admin::client::AdminClient;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::webhooks::EndpointIn;
use portcullis_server::config::Config;
use portcullis_server::{Application, BuildOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let n = env("MESSAGES").unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.data.dir = dir.path().join("data");
    config.audit.checkpoint_interval_secs = 0;
    config.audit.checkpoint_every_entries = 0;
    config.egress.allow_private = vec!["127.0.0.1/32".into()];
    if let Some(c) = env("CONCURRENCY") {
        config.webhooks.concurrency = c;
    }
    let concurrency = config.webhooks.concurrency;

    // The receiver: counts and answers 200 at once.
    let got = Arc::new(AtomicU64::new(0));
    let counter = got.clone();
    let receiver = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut app = Application::build(config, BuildOptions::default())
        .await
        .unwrap();
    let token = app
        .first_start
        .admin_token
        .take()
        .unwrap()
        .expose()
        .to_owned();
    let state = app.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(app.serve(listener, std::future::pending()));
    let api = AdminClient::new(&base, token);
    let tenant = api
        .create_tenant(&NameIn {
            name: "bench".into(),
        })
        .await
        .unwrap();
    api.create_webhook(
        "bench",
        &EndpointIn {
            url: hook,
            events: vec!["connection.revoked".into()],
            description: String::new(),
        },
    )
    .await
    .unwrap();

    let start = Instant::now();
    // Appended from 32 tasks at once, as concurrent calls would.
    let mut tasks = Vec::new();
    for t in 0..32 {
        let state = state.clone();
        let tenant = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(32) {
                let draft =
                    AuditDraft::new(tenant.clone(), "admin:bench", AuditKind::ConnectionRevoked)
                        .resource(format!("connection:c{i}"));
                state
                    .store
                    .append_audit(draft, state.clock.now())
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let appended = start.elapsed();
    while got.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    println!(
        "webhooks        {n} messages delivered in {:.3} s: {:.0} deliveries/s (appends done after {:.3} s; concurrency {concurrency})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        appended.as_secs_f64(),
    );
}
