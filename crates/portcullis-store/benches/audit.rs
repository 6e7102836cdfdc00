//! Durable audit appends per second, with p50/p99 latency, on SQLite (WAL, synchronous=FULL,
//! group commit) and on PostgreSQL (one store, or two stores as two replicas appending to one
//! chain). Every append is committed before it is acknowledged.
//!
//! Run: `cargo bench -p portcullis-store --bench audit`; PostgreSQL joins when
//! `PORTCULLIS_TEST_POSTGRES_URL` names a superuser URL (a scratch database is created and
//! dropped). Options: `-- --appends N --concurrency C`.

use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_store::{Store, StoreOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(
    stores: &[Store],
    tenant: &portcullis_core::id::TenantId,
    appends: usize,
    concurrency: usize,
) -> Run {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let store = stores[worker % stores.len()].clone();
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(appends / concurrency);
            for i in 0..appends / concurrency {
                let draft = AuditDraft::new(
                    tenant.clone(),
                    format!("agent:{worker}"),
                    AuditKind::ToolCall,
                );
                let t = Instant::now();
                store.append_audit(draft, i as i64).await.expect("append");
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    let mut samples: Vec<Duration> = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("task"));
    }
    let wall = started.elapsed();
    samples.sort();
    let pick =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    Run {
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
    }
}

fn row(backend: &str, concurrency: usize, r: &Run) {
    println!(
        "| {backend} | {concurrency} | {:.0} | {:.3} ms | {:.3} ms |",
        r.per_sec, r.p50_ms, r.p99_ms
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let appends = arg("--appends", 4000);
    let concurrency = arg("--concurrency", 64);
    println!("| backend | concurrent appenders | appends/s | p50 | p99 |");
    println!("|---|---|---|---|---|");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&url, &StoreOptions::default())
        .await
        .expect("sqlite");
    let tenant = store
        .create_tenant("bench", "bench", 0)
        .await
        .expect("tenant")
        .id;
    row(
        "SQLite",
        1,
        &run(std::slice::from_ref(&store), &tenant, appends / 4, 1).await,
    );
    row(
        "SQLite",
        concurrency,
        &run(std::slice::from_ref(&store), &tenant, appends, concurrency).await,
    );

    let Ok(admin_url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") else {
        println!("\n(PostgreSQL skipped: PORTCULLIS_TEST_POSTGRES_URL is not set)");
        return;
    };
    let name = format!("pc_bench_{}", std::process::id());
    let admin = sqlx::postgres::PgConnectOptions::from_str(&admin_url).expect("url");
    let mut conn = admin.connect().await.expect("postgres reachable");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create");
    let owner = admin.clone().database(&name);
    let owner_url = owner.to_url_lossy().to_string();
    portcullis_store::migrate(&owner_url)
        .await
        .expect("migrate");
    let app_url = owner
        .username("portcullis_app")
        .password("")
        .to_url_lossy()
        .to_string();
    let pg = Store::open(&app_url, &StoreOptions::default())
        .await
        .expect("postgres store");
    let second = Store::open(&app_url, &StoreOptions::default())
        .await
        .expect("second replica");
    let tenant = pg
        .create_tenant("bench", "bench", 0)
        .await
        .expect("tenant")
        .id;
    row(
        "PostgreSQL",
        1,
        &run(std::slice::from_ref(&pg), &tenant, appends / 4, 1).await,
    );
    row(
        "PostgreSQL",
        concurrency,
        &run(std::slice::from_ref(&pg), &tenant, appends, concurrency).await,
    );
    row(
        "PostgreSQL, 2 replicas",
        concurrency,
        &run(&[pg.clone(), second.clone()], &tenant, appends, concurrency).await,
    );
    drop((pg, second));
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}
