//! Only the operator chooses what runs on the host: tenant admins pick a catalog entry and
//! fill in only what it allows.

use super::human;
use crate::support::*;
use portcullis_server::admin::connections::ConnectionState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_choose_what_runs_on_the_host() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (_, tenant_admin) = human(&app, "acme-admin", "admin", Some("acme")).await;
    // What the shell would leave behind if anything below ever ran.
    let canary = app.dir.path().join("host-was-reached");
    let shell = format!("cat keys.json > {}", canary.display());
    let inside = |name: &str| app.dir.path().join(name).display().to_string();
    let attempts: Vec<(&str, Value)> = vec![
        (
            "a command line",
            json!({ "name": "pwn", "kind": "stdio", "command": "/bin/sh", "args": ["-c", shell] }),
        ),
        (
            "a command next to a program",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "command": "/bin/sh" }),
        ),
        (
            "a program outside the catalog",
            json!({ "name": "pwn", "kind": "stdio", "program": "sh", "args": ["-c", shell] }),
        ),
        (
            "an interpreter flag",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "args": ["-c", shell] }),
        ),
        (
            "a loader variable",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "env": { "LD_PRELOAD": inside("evil.so") } }),
        ),
        (
            "a path outside the entry's pattern",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "env": { "PORTCULLIS_DEMO_EFFECT_LOG": "/etc/passwd" } }),
        ),
        (
            "a path that climbs out",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "env": { "PORTCULLIS_DEMO_EFFECT_LOG": inside("..") } }),
        ),
        (
            "a control character",
            json!({ "name": "pwn", "kind": "stdio", "program": "demo", "env": { "PORTCULLIS_DEMO_EFFECT_LOG": format!("{}\n", inside("x")) } }),
        ),
    ];
    for (what, body) in &attempts {
        let (code, answer) = app
            .api(
                Method::POST,
                "/tenants/acme/connections",
                &tenant_admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{what}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{what}: a clear reason: {answer}");
        assert!(
            !detail.contains("keys.json") && !detail.contains("/etc/passwd"),
            "{what}: refusals never echo values: {detail}"
        );
    }
    // Nothing was created, nothing ran, and every refusal is on the record.
    let connections = app
        .admin_api()
        .list_connections("acme")
        .await
        .expect("list connections");
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert!(!canary.exists(), "a tenant's command line reached the host");
    let events = app.audit_events("acme").await;
    let refused = events_of_kind(&events, "config_refused");
    assert_eq!(refused.len(), attempts.len(), "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| e["actor"] == "admin:acme-admin" && e["detail"]["reason"].is_string())
    );

    // What the entry allows works: its own environment variable, inside its pattern.
    let (code, ok) = app
        .api(
            Method::POST,
            "/tenants/acme/connections",
            &tenant_admin,
            Some(json!({
                "name": "crm2", "kind": "stdio", "program": "demo",
                "env": { "PORTCULLIS_DEMO_EFFECT_LOG": inside("crm2-effects.jsonl") },
                "classify": demo_classification(),
            })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{ok}");
    app.wait_ready(ok["id"].as_str().expect("id")).await;

    // The catalog as a tenant admin sees it: names and what may be set, never the command.
    let (code, programs) = app.api(Method::GET, "/programs", &tenant_admin, None).await;
    assert_eq!(code, StatusCode::OK, "{programs}");
    assert_eq!(programs[0]["name"], "demo", "{programs}");
    assert!(
        !programs.to_string().contains(BIN),
        "the catalog never shows the operator's command line: {programs}"
    );
    assert!(acme.connection_id.starts_with("con_"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_command_line_is_never_launched() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // A connection row written before the catalog existed (or by an insider): it names a
    // command line of its own.
    let canary = app.dir.path().join("stored-command-ran");
    let transport = json!({
        "kind": "stdio", "command": "/bin/sh",
        "args": ["-c", format!("touch {}", canary.display())],
    });
    let id = "con_01jz0000000000000000000000";
    app.raw_sql(&format!(
        "INSERT INTO connections (id, tenant_id, name, transport, created_at) VALUES ('{id}', '{}', 'old', '{}', 0)",
        acme.id,
        transport.to_string().replace('\'', "''")
    ))
    .await
    .expect("insert a legacy connection");
    let tenant_id = acme.id.parse().unwrap();
    let connection = app
        .state
        .store
        .connection(&tenant_id, &id.parse().unwrap())
        .await
        .expect("legacy connection");
    app.state.upstreams.start(connection);
    eventually("the legacy connection to be refused", || async {
        let list = app.admin_api().list_connections("acme").await;
        list.is_ok_and(|cs| {
            cs.iter().any(|c| {
                c.id.as_str() == id
                    && matches!(&c.status, ConnectionState::Down { reason, .. } if reason.contains("re-create"))
            })
        })
    })
    .await;
    assert!(!canary.exists(), "a stored command line was launched");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_offers_programs_not_command_lines() {
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let old = app
        .cli_as(
            &app.admin_token,
            &[
                "connections",
                "add",
                "--tenant",
                "acme",
                "pwn",
                "--command",
                "/bin/sh",
            ],
        )
        .await;
    assert!(!old.ok(), "{old:?}");
    let refused = app
        .cli_as(
            &app.admin_token,
            &[
                "connections",
                "add",
                "--tenant",
                "acme",
                "pwn",
                "--program",
                "demo",
                "--arg",
                "-c",
            ],
        )
        .await;
    assert!(!refused.ok(), "{refused:?}");
    assert!(
        refused.stderr.contains("program `demo`"),
        "a clear reason: {refused:?}"
    );
    let listed = app.cli_as(&app.admin_token, &["programs"]).await;
    assert!(listed.ok(), "{listed:?}");
    assert!(listed.stdout.contains("demo"), "{listed:?}");
    assert!(
        listed.stdout.contains("PORTCULLIS_DEMO_EFFECT_LOG"),
        "{listed:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_entry_serves_only_the_tenants_it_names_and_their_own_paths() {
    let files = tempfile::tempdir().expect("temp dir");
    let root = files.path().display().to_string();
    let app = TestApp::spawn_with(|config| {
        let mut entry = demo_program(files.path());
        entry.tenants = vec!["globex".into(), "acme".into()];
        entry.tenant_env = [(
            "PORTCULLIS_DEMO_EFFECT_LOG".to_owned(),
            format!("{}/{{tenant}}/[a-z.]+", regex::escape(&root)),
        )]
        .into();
        config.programs.insert("files".into(), entry);
        let mut private = demo_program(files.path());
        private.tenants = vec!["globex".into()];
        config.programs.insert("globex-only".into(), private);
    })
    .await;
    app.seed_tenant("acme").await;
    app.seed_tenant("globex").await;
    let (_, acme_admin) = human(&app, "acme-admin", "admin", Some("acme")).await;
    let add = |body: Value| {
        let (app, token) = (&app, acme_admin.clone());
        async move {
            app.api(
                Method::POST,
                "/tenants/acme/connections",
                &token,
                Some(body),
            )
            .await
        }
    };
    // Not offered to acme: the same answer as a program that does not exist.
    let (code, body) = add(json!({ "name": "g", "kind": "stdio", "program": "globex-only" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not in this server's catalog")
    );
    // `{tenant}` admits acme's own folder only.
    let theirs = format!("{root}/globex/effects.jsonl");
    let (code, body) = add(json!({ "name": "f", "kind": "stdio", "program": "files",
                                   "env": { "PORTCULLIS_DEMO_EFFECT_LOG": theirs } }))
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let mine = format!("{root}/acme/effects.jsonl");
    let (code, body) = add(json!({ "name": "f", "kind": "stdio", "program": "files",
                                   "env": { "PORTCULLIS_DEMO_EFFECT_LOG": mine } }))
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // The catalog a tenant admin sees lists only what is offered to it, and never whom else.
    let (_, listed) = app.api(Method::GET, "/programs", &acme_admin, None).await;
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"files") && !names.contains(&"globex-only"),
        "{listed}"
    );
    assert!(listed[0].get("tenants").is_none(), "{listed}");
    app.stop().await;
}
