//! What `portcullis audit verify` costs per entry on SQLite, database reads included. Run with
//! `cargo bench -p portcullis-server --bench audit_verify` (ENTRIES=n; default one million).
//! The trail is written straight into a fresh database (one transaction), checkpointed once
//! (a signed note, witnessed), then verified as the command does: every page read, every
//! entry's RFC 8785 hash recomputed, the chain and the Merkle tree checked against the
//! checkpoint in the database and in the witness log.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_core::audit::{AuditDraft, AuditKind, GENESIS_HASH};
use portcullis_core::id::TenantId;
use portcullis_core::keys::KeyRing;
use portcullis_core::note::{KEY_NAME, NoteVerifier};
use portcullis_server::audit::{Anchors, checkpoint_tenant, verify_trails};
use portcullis_store::{Store, StoreOptions};
use sqlx::Connection as _;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: i64 = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let tenant = TenantId::generate();

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut prev = GENESIS_HASH.to_owned();
    for seq in 1..=n {
        let mut draft = AuditDraft::new(
            tenant.clone(),
            "agent:agt_01hzzzzzzzzzzzzzzzzzzzzzzz",
            AuditKind::ToolCall,
        )
        .resource("tool:con_01hzzzzzzzzzzzzzzzzzzzzzzz/get_contact")
        .detail(serde_json::json!({ "effect": "read", "policy": { "hash": "ab12cd34", "points": [] }, "guardrail": null }));
        draft.decision = Some("allow".into());
        draft.session = Some("ses_1".into());
        draft.args_hash = Some("9f".repeat(32));
        let e = draft.seal(seq, 1_700_000_000_000 + seq, &prev);
        sqlx::query("INSERT INTO audit_events (tenant_id, seq, time, actor, session, kind, resource, decision, receipt_id, args_hash, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(tenant.as_str())
            .bind(e.seq)
            .bind(e.time)
            .bind(&e.draft.actor)
            .bind(&e.draft.session)
            .bind(e.draft.kind.as_str())
            .bind(&e.draft.resource)
            .bind(&e.draft.decision)
            .bind(&e.draft.receipt_id)
            .bind(&e.draft.args_hash)
            .bind(e.draft.detail.to_string())
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut *tx)
            .await
            .unwrap();
        prev = e.hash;
    }
    tx.commit().await.unwrap();

    let keys = KeyRing::generate();
    let witness = dir.path().join("audit-witness.log");
    let anchors = Anchors::new(&store, "portcullis/audit".into(), witness.clone(), 0);
    let start = Instant::now();
    checkpoint_tenant(&store, &keys, &anchors, &tenant, 0)
        .await
        .unwrap()
        .expect("a checkpoint");
    let took = start.elapsed();
    println!(
        "checkpoint      first checkpoint of {n} entries (tree from the start) in {:.3} s",
        took.as_secs_f64()
    );

    let trusted = [NoteVerifier {
        name: KEY_NAME.into(),
        key: keys.verifying_key(),
    }];
    let start = Instant::now();
    let verdicts = verify_trails(&store, &trusted, &[witness], Some(&tenant), &|_| {})
        .await
        .unwrap();
    let took = start.elapsed();
    let report = verdicts[0].outcome.as_ref().expect("the trail verifies");
    assert_eq!(report.entries, n);
    println!(
        "audit verify    {n} entries from SQLite in {:.3} s: {:.0} entries/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
