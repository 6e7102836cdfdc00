//! How fast an audit trail verifies on one core. Run with
//! `cargo bench -p portcullis-verify --bench verify` (ENTRIES=n to change the size; default
//! one million).
//!
//! - chain+tree: what `portcullis audit verify` does per entry once it has read it from the
//!   database — recompute the entry's RFC 8785 hash, check the link, extend the Merkle tree,
//!   compare at checkpoints.
//! - verify-export: what `portcullis verify-export` does per line — parse the JSON line, then
//!   the same, plus the receipt of every execution.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_core::audit::{AuditDraft, AuditEvent, AuditKind, ChainVerifier, GENESIS_HASH};
use portcullis_core::id::TenantId;
use portcullis_core::keys::KeyRing;
use portcullis_core::note::{KEY_NAME, NoteVerifier};
use portcullis_verify::{FORMAT, Header, Line, VERSION};
use std::time::Instant;

fn main() {
    let n: i64 = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keys = KeyRing::generate();
    let tenant = TenantId::generate();
    let mut prev = GENESIS_HASH.to_owned();
    let events: Vec<AuditEvent> = (1..=n)
        .map(|seq| {
            let mut draft = AuditDraft::new(tenant.clone(), "agent:agt_01hzzzzzzzzzzzzzzzzzzzzzzz", AuditKind::ToolCall)
                .resource("tool:con_01hzzzzzzzzzzzzzzzzzzzzzzz/get_contact")
                .detail(serde_json::json!({ "effect": "read", "policy": { "hash": "ab12cd34", "points": [] }, "guardrail": null }));
            draft.decision = Some("allow".into());
            draft.session = Some("ses_1".into());
            draft.args_hash = Some("9f".repeat(32));
            let event = draft.seal(seq, 1_700_000_000_000 + seq, &prev);
            prev.clone_from(&event.hash);
            event
        })
        .collect();
    let trusted = [NoteVerifier {
        name: KEY_NAME.into(),
        key: keys.verifying_key(),
    }];

    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 1..rounds {
        let mut verifier = ChainVerifier::with_witness(tenant.clone(), &[], &[], &trusted).unwrap();
        for event in &events {
            verifier.push(event).unwrap();
        }
    }
    let start = Instant::now();
    let mut verifier = ChainVerifier::with_witness(tenant.clone(), &[], &[], &trusted).unwrap();
    for event in &events {
        verifier.push(event).unwrap();
    }
    let report = verifier.finish().unwrap();
    let took = start.elapsed();
    assert_eq!(report.entries, n);
    println!(
        "chain+tree     {n} entries in {:.3} s: {:.0} entries/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    if std::env::var_os("CHAIN_ONLY").is_some() {
        return;
    }
    let mut export = Vec::with_capacity(events.len() * 600);
    let header = Line::Header(Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: 0,
        complete: true,
        public_keys: vec![],
    });
    serde_json::to_writer(&mut export, &header).unwrap();
    export.push(b'\n');
    for event in events {
        serde_json::to_writer(&mut export, &Line::Entry(event)).unwrap();
        export.push(b'\n');
    }
    let start = Instant::now();
    let reports = portcullis_verify::verify(export.as_slice(), &trusted, &[]).unwrap();
    let took = start.elapsed();
    assert_eq!(reports[0].entries, n);
    println!(
        "verify-export  {n} entries ({} MB) in {:.3} s: {:.0} entries/s",
        export.len() / 1_000_000,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
