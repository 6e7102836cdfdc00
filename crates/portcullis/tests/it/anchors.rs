//! The audit trail's anchors outside the database: an insider who can rewrite every table (but
//! not the witness log) cannot rewrite, truncate, roll back or delete a trail unnoticed.

use crate::support::*;
use portcullis_core::audit::{AuditEvent, GENESIS_HASH};
use portcullis_server::admin::common::TenantQuery;
use serde_json::{Value, json};

/// Reads only: no approval or execution, so nothing checkpoints them at once.
async fn reads(app: &TestApp, tenant: &Tenant, n: usize) {
    let client = app
        .client(&tenant.name, &tenant.agent_token, Era::Discover)
        .await;
    for _ in 0..n {
        client
            .call("crm__get_contact", json!({ "id": "c_1" }))
            .await;
    }
}

/// SQL that lets the insider rewrite the audit tables.
fn unlock(app: &TestApp) -> String {
    match app.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_update;; DROP TRIGGER audit_events_no_delete;; \
                            DROP TRIGGER audit_checkpoints_no_update;; DROP TRIGGER audit_checkpoints_no_delete"
            .into(),
        Backend::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER USER;; \
                              ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"
            .into(),
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn checkpoint(app: &TestApp, tenant: &str) {
    app.admin_api()
        .checkpoint_audit(&TenantQuery {
            tenant: Some(tenant.into()),
        })
        .await
        .expect("checkpoint");
}

async fn verify(app: &TestApp, extra: &[&str]) -> CliRun {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    app.cli_local(&args).await
}

fn fail_line<'a>(run: &'a CliRun, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(&format!("FAIL  {name} (")))
        .unwrap_or_else(|| panic!("no FAIL line for {name}: {run:?}"))
}

/// The attack run's first finding: with write access to the database and no key, edit an
/// entry, recompute the whole chain (plain SHA-256) and drop the checkpoints. The database
/// alone now looks intact; the witness log does not agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_and_rechained_trail_without_checkpoints_is_caught_by_the_witness_log() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    assert!(verify(&app, &[]).await.ok());

    let events: Vec<AuditEvent> = app
        .audit_events("acme")
        .await
        .into_iter()
        .map(|e| serde_json::from_value(e).expect("an audit event"))
        .collect();
    let hold = events
        .iter()
        .position(|e| e.draft.decision.as_deref() == Some("hold"))
        .expect("a hold");
    let mut sql = vec![unlock(&app)];
    let mut prev = if hold == 0 {
        GENESIS_HASH.to_owned()
    } else {
        events[hold - 1].hash.clone()
    };
    for (i, event) in events.iter().enumerate().skip(hold) {
        let mut draft = event.draft.clone();
        if i == hold {
            draft.decision = Some("allow".into());
        }
        let resealed = draft.seal(event.seq, event.time, &prev);
        sql.push(format!(
            "UPDATE audit_events SET decision = {}, prev_hash = {}, hash = {} WHERE tenant_id = {} AND seq = {}",
            resealed.draft.decision.as_deref().map_or("NULL".into(), quote),
            quote(&resealed.prev_hash),
            quote(&resealed.hash),
            quote(&acme.id),
            event.seq
        ));
        prev = resealed.hash;
    }
    sql.push(format!(
        "DELETE FROM audit_checkpoints WHERE tenant_id = {}",
        quote(&acme.id)
    ));
    app.raw_sql(&sql.join(";; "))
        .await
        .expect("the insider's rewrite");

    // The database alone is consistent again (what `verify` used to accept)...
    let nowhere = app.dir.path().join("empty-witness.log");
    std::fs::write(&nowhere, "").unwrap();
    let alone = verify(&app, &["--witness", nowhere.to_str().unwrap()]).await;
    assert!(alone.ok(), "the rewrite is self-consistent: {alone:?}");
    // ...but the witness log outside it names the checkpoint the database lost.
    let run = verify(&app, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let line = fail_line(&run, "acme");
    assert!(
        line.contains("witnessed checkpoint at size") && line.contains("missing from the database"),
        "{line}"
    );
    app.stop().await;
}

/// The attack run's second finding: a tenant whose events were all deleted was never looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_trail_was_deleted_is_named() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    traffic(&app, &acme).await;
    traffic(&app, &globex).await;
    checkpoint(&app, "acme").await;
    app.raw_sql(&format!(
        "{};; DELETE FROM audit_events WHERE tenant_id = {id};; DELETE FROM audit_checkpoints WHERE tenant_id = {id}",
        unlock(&app),
        id = quote(&acme.id)
    ))
    .await
    .expect("the insider's delete");
    let run = verify(&app, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    // (On PostgreSQL the chain's head row survives the insider's delete, so the trail is read
    // and found short of what was witnessed.)
    let line = fail_line(&run, "acme");
    assert!(
        line.contains("no entries (deleted)") || line.contains("missing from the database"),
        "{run:?}"
    );
    assert!(run.stdout.contains("OK    globex ("), "{run:?}");

    // Without the witness log the tenants table still names it.
    let nowhere = app.dir.path().join("empty-witness.log");
    std::fs::write(&nowhere, "").unwrap();
    let run = verify(&app, &["--witness", nowhere.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        fail_line(&run, "acme").contains("its trail has no entries"),
        "{run:?}"
    );

    app.stop().await;
}

/// Approvals and executions are anchored as they happen: cutting the tail that holds an
/// execution, before anyone asked for a checkpoint, is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_witnessed_at_once_so_cutting_it_off_is_caught() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    let events = app.audit_events("acme").await;
    let executed = events
        .iter()
        .filter(|e| e["kind"] == "execution_result")
        .map(|e| e["seq"].as_i64().unwrap())
        .max()
        .expect("an execution result");
    // The execution's own checkpoint reaches the witness log (polled, never slept for).
    let witness = app.data_dir().join("audit-witness.log");
    let tenant = acme.id.clone();
    eventually("the execution is witnessed", || {
        let (witness, tenant) = (witness.clone(), tenant.clone());
        async move {
            let witnessed = std::fs::read_to_string(&witness)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["tenant"] == tenant.as_str())
                .filter_map(|l| l["size"].as_i64())
                .max()
                .unwrap_or(0);
            witnessed >= executed
        }
    })
    .await;
    app.raw_sql(&format!(
        "{};; DELETE FROM audit_events WHERE tenant_id = {id} AND seq >= {executed};; \
         DELETE FROM audit_checkpoints WHERE tenant_id = {id} AND size >= {executed}",
        unlock(&app),
        id = quote(&acme.id)
    ))
    .await
    .expect("the insider's cut");
    let run = verify(&app, &["--tenant", "acme"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(fail_line(&run, "acme").contains("witnessed"), "{run:?}");
    app.stop().await;
}

/// Rolling the database back to an older checkpoint (entries and checkpoints after it
/// removed: a consistent older state) is caught by the newer witnessed one; entries past the
/// last witnessed checkpoint are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_an_older_checkpoint_is_caught_and_the_unwitnessed_tail_reported() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    let older = app.audit_events("acme").await.len() as i64;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    reads(&app, &acme, 3).await;
    let all = app.audit_events("acme").await.len() as i64;

    let run = verify(&app, &["--tenant", "acme", "--json"]).await;
    assert!(run.ok(), "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let tenant = &report["tenants"][0];
    assert_eq!(tenant["entries"], all);
    assert!(tenant["unwitnessed"].as_i64().unwrap() >= 3, "{tenant}");
    assert_eq!(
        tenant["witnessed"].as_i64().unwrap() + tenant["unwitnessed"].as_i64().unwrap(),
        all
    );

    app.raw_sql(&format!(
        "{};; DELETE FROM audit_events WHERE tenant_id = {id} AND seq > {older};; \
         DELETE FROM audit_checkpoints WHERE tenant_id = {id} AND size > {older}",
        unlock(&app),
        id = quote(&acme.id)
    ))
    .await
    .expect("the insider's rollback");
    // A witness log that vanished is noticed: the database's checkpoints say there was one.
    let witness = app.data_dir().join("audit-witness.log");
    let moved = app.dir.path().join("moved-witness.log");
    std::fs::rename(&witness, &moved).unwrap();
    let alone = verify(&app, &["--tenant", "acme"]).await;
    assert_eq!(alone.code, Some(1), "{alone:?}");
    assert!(
        fail_line(&alone, "acme").contains("no witness log"),
        "{alone:?}"
    );
    std::fs::rename(&moved, &witness).unwrap();
    let run = verify(&app, &["--tenant", "acme"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let line = fail_line(&run, "acme");
    assert!(line.contains("witnessed checkpoint at size"), "{line}");
    app.stop().await;
}

/// A forged line in the witness log (signed by a stranger) fails verification by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_witness_line_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    let witness = app.data_dir().join("audit-witness.log");
    let text = std::fs::read_to_string(&witness).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let stranger = portcullis_core::keys::KeyRing::generate();
    let head = portcullis_core::note::parse_checkpoint(last["note"].as_str().unwrap()).unwrap();
    let forged = portcullis_core::note::sign_checkpoint(
        stranger.signing_key(),
        portcullis_core::note::KEY_NAME,
        &portcullis_core::note::TreeHead {
            size: head.size + 5,
            ..head
        },
    );
    let line = json!({ "tenant": acme.id, "size": last["size"].as_i64().unwrap() + 5, "time": 0, "note": forged });
    std::fs::write(&witness, format!("{text}{line}\n")).unwrap();
    let run = verify(&app, &["--tenant", "acme"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        fail_line(&run, "acme").contains("signature is invalid"),
        "{run:?}"
    );
    app.stop().await;
}

async fn verify_export(
    app: &TestApp,
    witness: &std::path::Path,
    file: impl AsRef<std::path::Path>,
    key: impl AsRef<str>,
) -> CliRun {
    app.cli_local(&[
        "verify-export",
        file.as_ref().to_str().unwrap(),
        "--public-key",
        key.as_ref(),
        "--checkpoint",
        witness.to_str().unwrap(),
    ])
    .await
}

/// An auditor with the export and the public key alone proves every execution's receipt and
/// every guardrail run, and that the export agrees with the witnessed checkpoints; each
/// tampering with the export is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_tampering_with_it_is_named() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    traffic(&app, &acme).await;
    traffic(&app, &globex).await;
    // A guardrail lets one send through on its own.
    let spec = json!({
        "connection": "crm", "tool": "send_email", "agent": "agent",
        "conditions": [{ "argument": "to", "op": "suffix", "value": "@example.com" }],
        "max_per_day": 5, "max_cost_cents_per_day": 0,
        "expires_at": app.clock.now() + 86_400_000,
    });
    let body: portcullis_server::admin::guardrails::GuardrailIn =
        serde_json::from_value(json!({ "name": "mail", "spec": spec, "mode": "auto" })).unwrap();
    app.admin_api()
        .create_guardrail("acme", &body)
        .await
        .expect("guardrail");
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let sent = client
        .call(
            "crm__send_email",
            json!({ "to": "bo@example.com", "subject": "Auto", "body": "x" }),
        )
        .await;
    assert_eq!(status(&sent), "sent", "{sent:?}");
    checkpoint(&app, "acme").await;
    checkpoint(&app, "globex").await;

    let dir = app.dir.path();
    let export = dir.join("export.jsonl");
    let run = app
        .cli_local(&[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--output",
            export.to_str().unwrap(),
        ])
        .await;
    assert!(run.ok(), "{run:?}");
    let key = app
        .cli_local(&["public-key"])
        .await
        .stdout
        .trim()
        .to_owned();
    let note_key = app
        .cli_local(&["public-key", "--note"])
        .await
        .stdout
        .trim()
        .to_owned();
    assert!(note_key.starts_with("portcullis-audit+"), "{note_key}");
    let witness = app.data_dir().join("audit-witness.log");
    let ok = verify_export(&app, &witness, export.clone(), key.clone()).await;
    assert!(ok.ok(), "{ok:?}");
    let acme_line = ok
        .stdout
        .lines()
        .find(|l| l.contains(&acme.id))
        .unwrap_or_else(|| panic!("{ok:?}"));
    assert!(
        acme_line.contains("1 executions each covered"),
        "{acme_line}"
    );
    assert!(
        acme_line.contains("1 effects run under a guardrail"),
        "{acme_line}"
    );
    assert!(
        verify_export(&app, &witness, export.clone(), note_key)
            .await
            .ok()
    );

    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let write = |name: &str, lines: &[Value]| {
        let path = dir.join(name);
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, body).unwrap();
        path
    };
    let expect_fail = |run: CliRun, needle: &str| {
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stdout.starts_with("FAIL") && run.stdout.contains(needle),
            "{needle}: {run:?}"
        );
    };

    // A stranger's key vouches for nothing.
    let stranger = hex::encode(
        portcullis_core::keys::KeyRing::generate()
            .verifying_key()
            .as_bytes(),
    );
    expect_fail(
        verify_export(&app, &witness, export.clone(), stranger).await,
        "signature is invalid",
    );

    // The receipt's action changed (another recipient): the receipt no longer covers it.
    let mut changed = lines.clone();
    let receipt = changed
        .iter_mut()
        .find(|l| l["type"] == "receipt" && l["tenant"] == acme.id.as_str())
        .unwrap();
    receipt["action"]["arguments"]["to"] = json!("mallory@example.com");
    expect_fail(
        verify_export(
            &app,
            &witness,
            write("changed.jsonl", &changed),
            key.clone(),
        )
        .await,
        "does not cover",
    );

    // The receipt removed: the execution stands without one.
    let removed: Vec<Value> = lines
        .iter()
        .filter(|l| !(l["type"] == "receipt" && l["tenant"] == acme.id.as_str()))
        .cloned()
        .collect();
    expect_fail(
        verify_export(
            &app,
            &witness,
            write("removed.jsonl", &removed),
            key.clone(),
        )
        .await,
        "no receipt",
    );

    // The guardrail's creation removed: the chain breaks there, named with the tenant.
    let mut no_guardrail = lines.clone();
    no_guardrail.retain(|l| l["kind"] != "guardrail_created");
    expect_fail(
        verify_export(
            &app,
            &witness,
            write("no-guardrail.jsonl", &no_guardrail),
            key.clone(),
        )
        .await,
        &acme.id,
    );

    // The last entries cut off: the witnessed checkpoint says there were more.
    let last_acme = lines
        .iter()
        .rposition(|l| l["type"] == "entry" && l["tenant"] == acme.id.as_str())
        .unwrap();
    let mut cut = lines.clone();
    cut.remove(last_acme);
    expect_fail(
        verify_export(&app, &witness, write("cut.jsonl", &cut), key.clone()).await,
        "witnessed",
    );

    // A filtered export says it cannot be verified.
    let filtered = dir.join("filtered.jsonl");
    assert!(
        app.cli_local(&[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--kind",
            "execute",
            "--output",
            filtered.to_str().unwrap()
        ])
        .await
        .ok()
    );
    expect_fail(
        verify_export(&app, &witness, filtered, key.clone()).await,
        "filtered",
    );

    // Garbage is refused with the line that is wrong, not a crash.
    let garbage = dir.join("garbage.jsonl");
    std::fs::write(&garbage, "{\"type\":\"header\"\nnot json\n").unwrap();
    let run = verify_export(&app, &witness, garbage, key).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("line 1"), "{run:?}");
    app.stop().await;
}

/// `audit prove` and `audit consistency` print proofs that check against the signed
/// checkpoints they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_check_against_the_signed_checkpoints() {
    use portcullis_core::merkle::{self, parse_hash};
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    let older = app.audit_events("acme").await.len() as i64;
    reads(&app, &acme, 5).await;
    checkpoint(&app, "acme").await;
    let key = app
        .cli_local(&["public-key", "--note"])
        .await
        .stdout
        .trim()
        .to_owned();
    let trusted = [portcullis_core::note::parse_vkey(&key).unwrap()];
    let hashes = |v: &Value| -> Vec<merkle::Hash> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| parse_hash(h.as_str().unwrap()).unwrap())
            .collect()
    };

    for seq in [1, 3, older] {
        let run = app
            .cli_local(&["audit", "prove", &seq.to_string(), "--tenant", "acme"])
            .await;
        assert!(run.ok(), "{run:?}");
        let proof: Value = serde_json::from_str(&run.stdout).unwrap();
        let head = portcullis_core::note::verify_checkpoint(
            proof["checkpoint"].as_str().unwrap(),
            &trusted,
        )
        .expect("a checkpoint signed by the gateway");
        let entry = app
            .audit_events("acme")
            .await
            .into_iter()
            .find(|e| e["seq"] == seq)
            .unwrap();
        let leaf = portcullis_core::audit::leaf_of(entry["hash"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(
            &leaf,
            (seq - 1) as u64,
            head.size,
            &hashes(&proof["inclusion_path"]),
            &head.root,
        )
        .expect("the entry is in the signed tree");
    }
    let run = app
        .cli_local(&["audit", "prove", "9999", "--tenant", "acme"])
        .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("not in the newest checkpoint"),
        "{run:?}"
    );

    let run = app
        .cli_local(&[
            "audit",
            "consistency",
            "--tenant",
            "acme",
            "--from",
            &older.to_string(),
        ])
        .await;
    assert!(run.ok(), "{run:?}");
    let proof: Value = serde_json::from_str(&run.stdout).unwrap();
    let old = portcullis_core::note::verify_checkpoint(
        proof["old_checkpoint"].as_str().unwrap(),
        &trusted,
    )
    .unwrap();
    let new = portcullis_core::note::verify_checkpoint(
        proof["new_checkpoint"].as_str().unwrap(),
        &trusted,
    )
    .unwrap();
    assert!(new.size > old.size);
    merkle::verify_consistency(
        old.size,
        new.size,
        &hashes(&proof["consistency_path"]),
        &old.root,
        &new.root,
    )
    .expect("the older tree is a prefix of the newer");
    app.stop().await;
}

/// The right edge stored with a checkpoint is unsigned: an insider who rewrites it (and the
/// root column beside it) cannot make the gateway sign a tree that does not extend the one it
/// signed last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_stored_tree_edge_is_not_signed_into_the_next_checkpoint() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    checkpoint(&app, "acme").await;
    let size = app.audit_events("acme").await.len() as u64;
    let bogus = vec!["ab".repeat(32); size.count_ones() as usize].join(",");
    let root = portcullis_core::merkle::Frontier::from_hex(size, &bogus)
        .expect("a frontier of the right shape")
        .root();
    let rewritten = app
        .raw_sql(&format!(
            "{};; UPDATE audit_checkpoints SET frontier = {}, root_hash = {} WHERE tenant_id = {} AND size = {size}",
            unlock(&app),
            quote(&bogus),
            quote(&hex::encode(root)),
            quote(&acme.id)
        ))
        .await
        .expect("the insider's rewrite");
    assert_eq!(rewritten, 1, "the newest checkpoint's row was rewritten");
    reads(&app, &acme, 2).await;
    checkpoint(&app, "acme").await;
    let run = verify(&app, &["--tenant", "acme"]).await;
    assert!(run.ok(), "the new checkpoint signs the true tree: {run:?}");
    app.stop().await;
}
