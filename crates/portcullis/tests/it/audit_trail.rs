//! The audit trail: append-only in the database, every edit or truncation named by
//! `portcullis audit verify`, fail-closed when an entry cannot be written, no argument values
//! or tokens in it, and exports that honour their filters.

use crate::support::*;
use portcullis_server::admin::common::TenantQuery;
use portcullis_server::admin::connections::ClassifyIn;
use reqwest::Method;
use serde_json::{Value, json};

/// `?tenant=acme`.
fn acme_only() -> TenantQuery {
    TenantQuery {
        tenant: Some("acme".into()),
    }
}

/// The insider's SQL in the dialect of the backend under test.
fn dialect(app: &TestApp, sqlite: String, postgres: String) -> String {
    match app.backend() {
        Backend::Sqlite => sqlite,
        Backend::Postgres => postgres,
    }
}

/// SQL that creates trigger `name`, which makes every insert of an audit event of `kind` fail.
fn fail_inserts_of(app: &TestApp, name: &str, kind: &str) -> String {
    dialect(
        app,
        format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON audit_events WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'forced'); END"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION pc_test_forced() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'forced'; END $$;; \
             CREATE TRIGGER {name} BEFORE INSERT ON audit_events FOR EACH ROW WHEN (NEW.kind = '{kind}') EXECUTE FUNCTION pc_test_forced()"
        ),
    )
}

/// SQL that drops a trigger on `audit_events`.
fn drop_audit_trigger(app: &TestApp, name: &str) -> String {
    dialect(
        app,
        format!("DROP TRIGGER {name}"),
        format!("DROP TRIGGER {name} ON audit_events"),
    )
}

/// The seq of the first event of `kind` in a tenant's chain.
async fn seq_of(app: &TestApp, tenant: &str, kind: &str) -> i64 {
    let events = app.audit_events(tenant).await;
    events
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:#?}"))["seq"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_refuses_to_rewrite_history() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    app.admin_api()
        .checkpoint_audit(&acme_only())
        .await
        .expect("checkpoint");

    let tenant = &acme.id;
    for sql in [
        format!("UPDATE audit_events SET decision = 'allow' WHERE tenant_id = '{tenant}'"),
        format!("DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 1"),
        format!("DELETE FROM audit_events WHERE tenant_id = '{tenant}'"),
        format!("UPDATE audit_checkpoints SET size = 1 WHERE tenant_id = '{tenant}'"),
        format!("DELETE FROM audit_checkpoints WHERE tenant_id = '{tenant}'"),
    ] {
        let error = app.raw_sql(&sql).await.expect_err(&sql);
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    let verify = app
        .cli_local(&["audit", "verify", "--tenant", "acme"])
        .await;
    assert!(verify.ok(), "nothing changed: {verify:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_trail_verifies() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    traffic(&app, &acme).await;
    traffic(&app, &globex).await;
    app.admin_api()
        .checkpoint_audit(&TenantQuery::default())
        .await
        .expect("checkpoint");
    traffic(&app, &acme).await;

    let verify = app.cli_local(&["audit", "verify"]).await;
    assert!(verify.ok(), "{verify:?}");
    for name in ["acme", "globex", "system"] {
        assert!(
            verify.stdout.contains(&format!("OK    {name} (")),
            "{name}: {}",
            verify.stdout
        );
    }
    let json = app
        .cli_local(&["audit", "verify", "--json", "--tenant", "acme"])
        .await;
    assert!(json.ok(), "{json:?}");
    let report: Value = serde_json::from_str(&json.stdout).expect("verify --json prints JSON");
    assert_eq!(report["ok"], true);
    let entries = app.audit_events("acme").await.len() as i64;
    assert_eq!(report["tenants"][0]["entries"], entries);
    // The one asked for, and those every approval and execution wrote.
    assert!(
        report["tenants"][0]["checkpoints"].as_u64().unwrap() >= 1,
        "{report}"
    );

    // With the published key given explicitly; and a stranger's key cannot vouch for checkpoints.
    let key = app
        .cli_local(&["public-key"])
        .await
        .stdout
        .trim()
        .to_owned();
    assert!(
        app.cli_local(&["audit", "verify", "--public-key", &key])
            .await
            .ok()
    );
    let stranger = hex::encode(
        portcullis_core::keys::KeyRing::generate()
            .verifying_key()
            .as_bytes(),
    );
    let forged = app
        .cli_local(&[
            "audit",
            "verify",
            "--tenant",
            "acme",
            "--public-key",
            &stranger,
        ])
        .await;
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(
        forged.stdout.contains("signature is invalid"),
        "{}",
        forged.stdout
    );

    let api = app
        .admin_api()
        .verify_audit(&TenantQuery::default())
        .await
        .expect("verify");
    assert!(api.ok, "{api:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_entry_is_named_by_verify() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    traffic(&app, &acme).await;
    traffic(&app, &globex).await;
    let seq = seq_of(&app, "acme", "hold").await;

    // An insider who can drop the trigger turns the hold into an allow (on PostgreSQL one
    // trigger refuses both updates and deletes).
    let edited = app
        .raw_sql(&format!(
            "{};; UPDATE audit_events SET decision = 'allow' WHERE tenant_id = '{}' AND seq = {seq}",
            drop_audit_trigger(&app, "audit_events_no_update"),
            acme.id
        ))
        .await
        .expect("insider edit");
    assert_eq!(edited, 1);

    let verify = app.cli_local(&["audit", "verify"]).await;
    assert_eq!(verify.code, Some(1), "{verify:?}");
    let line = verify
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("{}", verify.stdout));
    assert!(line.contains("acme") && line.contains(&acme.id), "{line}");
    assert!(
        line.contains(&format!("entry {seq}:")) && line.contains("edited"),
        "{line}"
    );
    assert!(
        verify.stdout.contains("OK    globex ("),
        "other tenants still verify: {}",
        verify.stdout
    );
    assert_eq!(
        verify
            .stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .count(),
        1
    );

    let only_globex = app
        .cli_local(&["audit", "verify", "--tenant", "globex"])
        .await;
    assert!(only_globex.ok(), "{only_globex:?}");
    let json = app
        .cli_local(&["audit", "verify", "--tenant", &acme.id, "--json"])
        .await;
    assert_eq!(json.code, Some(1));
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["tenants"][0]["problem"]
            .as_str()
            .unwrap()
            .contains(&format!("entry {seq}:"))
    );
    let api = app
        .admin_api()
        .verify_audit(&acme_only())
        .await
        .expect("verify");
    assert!(!api.ok, "{api:?}");

    // Re-hashing the edited row does not help: the next entry no longer follows it.
    app.raw_sql(&format!(
        "UPDATE audit_events SET hash = 'ab' || substr(hash, 3) WHERE tenant_id = '{}' AND seq = {seq}",
        acme.id
    ))
    .await
    .unwrap();
    let verify = app
        .cli_local(&["audit", "verify", "--tenant", "acme"])
        .await;
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(
        verify.stdout.contains(&format!("entry {seq}:")),
        "{}",
        verify.stdout
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_entries_are_detected() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    // Checkpointed at its current size (here, or already by the execution's own checkpoint).
    app.admin_api()
        .checkpoint_audit(&acme_only())
        .await
        .expect("checkpoint");
    let size = app.audit_events("acme").await.len() as i64;
    assert!(
        app.cli_local(&["audit", "verify", "--tenant", "acme"])
            .await
            .ok()
    );

    // Drop the newest two entries: the chain that remains is internally consistent, but the
    // signed checkpoint says it was longer.
    // (On PostgreSQL the superuser switches the refusing trigger off instead of dropping it.)
    let switch_off = dialect(
        &app,
        "DROP TRIGGER audit_events_no_delete".into(),
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update".into(),
    );
    let deleted = app
        .raw_sql(&format!(
            "{switch_off};; DELETE FROM audit_events WHERE tenant_id = '{}' AND seq > {}",
            acme.id,
            size - 2
        ))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let verify = app.cli_local(&["audit", "verify"]).await;
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(
        verify.stdout.contains(&format!(
            "FAIL  acme ({}): truncated: a checkpoint at size {size} was witnessed but only {} entries remain",
            acme.id,
            size - 2
        )),
        "{}",
        verify.stdout
    );

    // Deleting an entry in the middle breaks the sequence at the next one.
    app.raw_sql(&format!(
        "DELETE FROM audit_events WHERE tenant_id = '{}' AND seq = 3",
        acme.id
    ))
    .await
    .unwrap();
    let verify = app
        .cli_local(&["audit", "verify", "--tenant", "acme"])
        .await;
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(verify.stdout.contains("entry 4:"), "{}", verify.stdout);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_fails_closed_when_its_audit_entry_cannot_be_written() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__send_email", confidential_email()).await);
    app.approve(&acme, &id).await;

    app.raw_sql(&fail_inserts_of(&app, "fail_exec", "execute"))
        .await
        .unwrap();
    for _ in 0..2 {
        match client
            .try_call("crm__send_email", confidential_email())
            .await
        {
            Err(error) => assert!(error.contains("nothing was done"), "{error}"),
            Ok(result) => {
                assert_eq!(result.is_error, Some(true), "{result:?}");
                assert_ne!(status(&result), "sent", "{result:?}");
            }
        }
    }
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "nothing reached the upstream"
    );
    assert_eq!(
        app.approval(&id).await.status,
        ApprovalStatus::Approved,
        "the nonce was not consumed"
    );
    assert!(!kinds(&app.audit_events("acme").await).contains(&"execute".to_owned()));

    app.raw_sql(&drop_audit_trigger(&app, "fail_exec"))
        .await
        .unwrap();
    let executed = client.call("crm__send_email", confidential_email()).await;
    assert_eq!(status(&executed), "sent", "{executed:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Executed);
    assert!(app.cli_local(&["audit", "verify"]).await.ok());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_holds_fail_closed_when_their_audit_entry_cannot_be_written() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // Make a tool that leaves a trace upstream count as a read. A read's audit commit
    // overlaps its upstream call, so the call may reach the upstream — but its result must
    // never reach the agent without a durable audit entry.
    let read = ClassifyIn {
        effect: "read".into(),
    };
    app.admin_api()
        .classify_tool("acme", &acme.connection_id, "update_contact", &read)
        .await
        .expect("classify");
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let update = json!({ "id": "c_2", "company": "Analytical Engines" });

    app.raw_sql(&fail_inserts_of(&app, "fail_read", "tool_call"))
        .await
        .unwrap();
    for (tool, args) in [
        ("crm__update_contact", update.clone()),
        ("crm__get_contact", json!({ "id": "c_2" })),
    ] {
        match client.try_call(tool, args).await {
            Err(error) => assert!(error.contains("nothing was done"), "{error}"),
            Ok(result) => panic!("{tool} answered without an audit entry: {result:?}"),
        }
    }
    assert!(
        !kinds(&app.audit_events("acme").await)
            .iter()
            .any(|k| k == "tool_call"),
        "no call was recorded, and none was answered"
    );

    // A hold whose audit entry cannot be written is not stored either.
    app.raw_sql(&fail_inserts_of(&app, "fail_hold", "hold"))
        .await
        .unwrap();
    assert!(
        client
            .try_call("crm__send_email", confidential_email())
            .await
            .is_err()
    );
    let listed = approvals_of(&app, "acme").await;
    assert_eq!(listed.len(), 0, "{listed:?}");

    app.raw_sql(&format!(
        "{};; {}",
        drop_audit_trigger(&app, "fail_read"),
        drop_audit_trigger(&app, "fail_hold")
    ))
    .await
    .unwrap();
    let read = client.call("crm__update_contact", update).await;
    assert_eq!(
        structured(&read)["company"],
        "Analytical Engines",
        "{read:?}"
    );
    // The unanswered call above did reach the upstream: a tool classified `read` is trusted
    // to change nothing, so its audit commit overlaps the call (only its result waits).
    assert_eq!(effect_lines(&acme.effect_log).len(), 2);
    assert_eq!(
        structured(
            &client
                .call("crm__get_contact", json!({ "id": "c_2" }))
                .await
        )["company"],
        "Analytical Engines"
    );
    approval_id(&client.call("crm__send_email", confidential_email()).await);
    assert!(app.cli_local(&["audit", "verify"]).await.ok());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_holds_no_argument_values_and_no_tokens() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    traffic(&app, &acme).await;
    // Failed authentications are audited too: with the real token of another shape, and junk.
    let wrong_tenant = connect(&app.mcp_url("nosuch"), &acme.agent_token, Era::Discover).await;
    assert!(wrong_tenant.is_err());
    let (code, _) = app
        .api(Method::GET, "/approvals", &acme.agent_token, None)
        .await;
    assert_eq!(code, reqwest::StatusCode::UNAUTHORIZED);

    let jsonl = app
        .cli_local(&["audit", "export", "--format", "jsonl"])
        .await;
    assert!(jsonl.ok(), "{jsonl:?}");
    let csv = app.cli_local(&["audit", "export", "--format", "csv"]).await;
    assert!(csv.ok(), "{csv:?}");
    assert!(
        kinds(&app.audit_events("acme").await).contains(&"auth_failed".to_owned())
            || jsonl.stdout.contains("auth_failed")
    );
    // The trail's entries (a complete JSON-lines export also carries the receipts and the
    // approved actions they cover, for offline verification — by design, not the trail).
    let entries: String = jsonl
        .stdout
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"entry\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!entries.is_empty());
    for export in [&entries, &csv.stdout] {
        for value in [
            "zelda.quartermain-7731",
            "example.org",
            "XK-99",
            "Strictly confidential",
        ] {
            assert!(
                !export.contains(value),
                "argument value `{value}` leaked into the audit"
            );
        }
        for token in [&acme.agent_token, &acme.approver_token, &app.admin_token] {
            assert!(
                !export.contains(token.as_str()),
                "a token leaked into the audit"
            );
            // Not even its secret part.
            assert!(
                !export.contains(&token[token.len() - 32..]),
                "a token leaked into the audit"
            );
        }
    }
    // Calls are recognisable by keyed hash instead: the hold and the execution of one action
    // carry the same hash, and the plain SHA-256 of the arguments is not it.
    let events = app.audit_events("acme").await;
    let hash_of = |kind: &str| {
        events.iter().find(|e| e["kind"] == kind).unwrap()["args_hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(hash_of("hold"), hash_of("execute"));
    let plain = portcullis_core::sha256_hex(
        &portcullis_core::action::canonical_json(&confidential_email()).unwrap(),
    );
    assert_ne!(hash_of("hold"), plain);
    assert!(!jsonl.stdout.contains(&plain));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_filters_by_kind_tenant_and_time() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    traffic(&app, &acme).await;
    traffic(&app, &acme).await;
    traffic(&app, &globex).await;
    let acme_events = app.audit_events("acme").await;
    let globex_events = app.audit_events("globex").await;
    let count = |events: &[Value], kind: &str| events.iter().filter(|e| e["kind"] == kind).count();

    // CSV, one tenant, one kind.
    let csv = app
        .cli_local(&[
            "audit", "export", "--format", "csv", "--tenant", "acme", "--kind", "hold",
        ])
        .await;
    assert!(csv.ok(), "{csv:?}");
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
            "tenant",
            "seq",
            "time",
            "actor",
            "session",
            "kind",
            "resource",
            "decision",
            "receipt_id",
            "args_hash",
            "detail",
            "prev_hash",
            "hash"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), count(&acme_events, "hold"));
    assert_eq!(
        rows.len(),
        2,
        "two held sends (the second traffic round is a new request)"
    );
    for row in &rows {
        assert_eq!(&row[0], acme.id.as_str());
        assert_eq!(&row[5], "hold");
        assert_eq!(&row[7], "hold");
        let detail: Value = serde_json::from_str(&row[10]).expect("detail column is JSON");
        assert_eq!(detail["effect"], "send");
    }
    assert!(
        csv.stderr
            .contains(&format!("exported {} events", rows.len())),
        "{}",
        csv.stderr
    );

    // JSON lines, every tenant, one kind; then one tenant, every kind, to a file.
    let jsonl = app
        .cli_local(&["audit", "export", "--format", "jsonl", "--kind", "execute"])
        .await;
    assert!(jsonl.ok(), "{jsonl:?}");
    let lines: Vec<Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .collect();
    // A filtered export: its header says it is not complete, then the matching entries.
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["complete"], false);
    let lines: Vec<Value> = lines.into_iter().skip(1).collect();
    assert!(lines.iter().all(|l| l["type"] == "entry"));
    assert_eq!(
        lines.len(),
        count(&acme_events, "execute") + count(&globex_events, "execute")
    );
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] == "execute" && l["time_rfc3339"].is_string())
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["tenant"] == globex.id.as_str())
            .count(),
        1
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["tenant"] == acme.id.as_str())
            .count(),
        2
    );

    let file = app.dir.path().join("globex.jsonl");
    let out = app
        .cli_local(&[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--tenant",
            "globex",
            "--output",
            file.to_str().unwrap(),
        ])
        .await;
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.is_empty());
    // A whole tenant: its checkpoints and receipts, then every entry from the first.
    let exported: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "entry")
        .collect();
    assert_eq!(exported.len(), globex_events.len());
    for (line, event) in exported.iter().zip(&globex_events) {
        assert_eq!(line["seq"], event["seq"]);
        assert_eq!(line["hash"], event["hash"]);
        assert_eq!(line["tenant"], globex.id.as_str());
    }

    // Time window: only what happened after the clock moved a day.
    app.clock.advance(86_400_000);
    let from = portcullis_server::clock::rfc3339(app.clock.now());
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    let recent = app
        .cli_local(&[
            "audit", "export", "--format", "jsonl", "--tenant", "acme", "--from", &from,
        ])
        .await;
    assert!(recent.ok(), "{recent:?}");
    let recent: Vec<Value> = recent
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "entry")
        .collect();
    assert_eq!(recent.len(), 1, "{recent:#?}");
    assert_eq!(recent[0]["kind"], "tool_call");
    let before = app
        .cli_local(&[
            "audit", "export", "--format", "jsonl", "--tenant", "acme", "--to", &from,
        ])
        .await;
    // The header, then the entries.
    assert_eq!(before.stdout.lines().count(), 1 + acme_events.len());

    // Bad filters are refused with a clear message.
    let bad = app
        .cli_local(&["audit", "export", "--format", "csv", "--kind", "coffee"])
        .await;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--kind `coffee`"), "{}", bad.stderr);
    let bad = app
        .cli_local(&["audit", "export", "--format", "csv", "--tenant", "nosuch"])
        .await;
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("no tenant named `nosuch`"),
        "{}",
        bad.stderr
    );
    app.stop().await;
}
