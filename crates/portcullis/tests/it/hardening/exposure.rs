//! Nothing readable that should not be: private database files, arguments and results kept
//! out of debug logs, upstream error bodies kept from tenant admins, metrics behind a token or
//! their own listener, and readiness that does not echo store errors.

use super::mail;
use crate::support::*;
use portcullis_server::admin::connections::{ConnectionIn, ConnectionState};
use portcullis_server::upstream::{ConnectionSpec, Transport};
use reqwest::StatusCode;
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_are_private_and_an_open_data_folder_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut first = ServeProcess::start(root.path(), &data).await;
    let admin = first.admin_token.clone().expect("first start");
    let http = reqwest::Client::new();
    seed_tenant_at(
        &AdminClient::with_http(http.clone(), &first.base, &admin),
        root.path(),
        "acme",
    )
    .await;
    for name in [
        "portcullis.db",
        "portcullis.db-wal",
        "portcullis.db-shm",
        "keys.json",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&data), 0o700);
    first.kill().await;

    // A data folder others can read: refused, with what to do about it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = run_cli(
        root.path(),
        &["serve"],
        &[
            ("PORTCULLIS_DATA__DIR", data.to_str().unwrap()),
            ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    assert!(!refused.ok(), "{refused:?}");
    assert!(
        refused.stderr.contains("chmod 700") && refused.stderr.contains("allow_open_permissions"),
        "{refused:?}"
    );
    // A database file others can read: refused too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        data.join("portcullis.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let refused = run_cli(
        root.path(),
        &["serve"],
        &[
            ("PORTCULLIS_DATA__DIR", data.to_str().unwrap()),
            ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    assert!(!refused.ok(), "{refused:?}");
    assert!(refused.stderr.contains("chmod 600"), "{refused:?}");
    // The explicit override starts with a warning.
    let second = ServeProcess::start_with(
        root.path(),
        &data,
        None,
        &[("PORTCULLIS_DATA__ALLOW_OPEN_PERMISSIONS", "true")],
    )
    .await;
    assert!(
        second
            .logs()
            .contains("readable or writable by group or others")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_and_results_never_reach_the_log_even_at_trace_level() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let db = TestDatabase::create(Backend::from_env()).await;
    let env = db.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gateway = ServeProcess::start_with(root.path(), &data, Some("trace"), &env).await;
    let admin = gateway.admin_token.clone().expect("first start");
    let http = reqwest::Client::new();
    let acme = seed_tenant_at(
        &AdminClient::with_http(http.clone(), &gateway.base, &admin),
        root.path(),
        "acme",
    )
    .await;
    const CANARY: &str = "canary-7f3a9b1c";
    for era in [Era::Initialize, Era::Discover] {
        let client = connect(&gateway.mcp_url("acme"), &acme.agent_token, era)
            .await
            .expect("connect");
        // In the arguments of a read and of a held effect, and echoed back in a result.
        let draft = client
            .call(
                "crm__draft_email",
                json!({ "to": format!("{CANARY}@example.com"), "subject": CANARY, "body": CANARY }),
            )
            .await;
        assert_eq!(status(&draft), "drafted", "{draft:?}");
        let held = client
            .call("crm__send_email", mail(&format!("{CANARY}@example.com"), 1))
            .await;
        assert_eq!(status(&held), "pending_approval");
        let found = client
            .call("crm__get_contact", json!({ "id": CANARY }))
            .await;
        assert_eq!(found.is_error, Some(true), "{found:?}");
    }
    let logs = gateway.logs();
    assert!(
        logs.contains("DEBUG") && logs.contains("tool call decided"),
        "the log really is at trace level"
    );
    assert!(
        !logs.contains(CANARY),
        "an argument or result reached the log: {}",
        logs.lines()
            .find(|l| l.contains(CANARY))
            .unwrap_or_default()
    );
    gateway.kill().await;
}

/// A plain HTTP server that answers every request with a 500 carrying a secret body.
async fn leaky_http_server(secret: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = format!("internal configuration: {secret}");
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_bodies_are_not_reflected_to_tenant_admins() {
    const SECRET: &str = "db-password-hunter2";
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let url = leaky_http_server(SECRET).await;
    let internal = ConnectionIn {
        name: "internal".into(),
        spec: ConnectionSpec::new(Transport::Http { url, auth: None }, Default::default()),
        redaction: Default::default(),
    };
    let created = app
        .admin_api()
        .create_connection("acme", &internal)
        .await
        .expect("create connection");
    // The connection's status as a tenant admin reads it.
    let status_of = || async {
        app.admin_api()
            .list_connections("acme")
            .await
            .expect("list connections")
            .into_iter()
            .find(|c| c.id == created.id)
            .map(|c| c.status)
    };
    eventually("the connection to report it is down", || async {
        matches!(status_of().await, Some(ConnectionState::Down { .. }))
    })
    .await;
    let reason = serde_json::to_string(&status_of().await).expect("status serialises");
    assert!(
        !reason.contains(SECRET),
        "the upstream's body leaked: {reason}"
    );
    assert!(
        reason.contains("HTTP 500"),
        "the status code is kept: {reason}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_their_own_listener_and_none_on_the_main_one_without_a_token() {
    let root = tempfile::tempdir().expect("temp dir");
    let config = portcullis_server::config::Config {
        data: portcullis_server::config::DataConfig {
            dir: root.path().join("data"),
            ..portcullis_server::config::Config::defaults().data
        },
        metrics: portcullis_server::config::MetricsConfig {
            listen: "127.0.0.1:0".into(),
            token_sha256: String::new(),
        },
        ..portcullis_server::config::Config::defaults()
    };
    let app = portcullis_server::Application::build(config, Default::default())
        .await
        .expect("build");
    let metrics = app.metrics_addr().expect("a metrics listener");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let open = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    assert!(
        open.text()
            .await
            .unwrap()
            .contains("portcullis_holds_total")
    );
    let refused = http
        .get(format!("http://{main}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_echo_store_errors() {
    let Some(db) = TestDatabase::postgres_if_configured().await else {
        println!("{POSTGRES_URL_VAR} is not set: this attack needs PostgreSQL; skipped");
        return;
    };
    let root = tempfile::tempdir().expect("temp dir");
    let env = db.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway =
        ServeProcess::start_with(root.path(), &root.path().join("data"), None, &env).await;
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // Take the database away under the running gateway.
    let name = db.database_name().expect("a PostgreSQL database");
    let mut owner = sqlx::PgConnection::connect(&postgres_server_url().unwrap())
        .await
        .expect("connect as the owner");
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut owner)
        .await
        .expect("drop the database");
    let down = http
        .get(format!("{}/readyz", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = down.text().await.unwrap();
    for secret in [
        name.as_str(),
        "portcullis_app",
        "127.0.0.1",
        "5432",
        "does not exist",
    ] {
        assert!(
            !body.contains(secret),
            "readiness echoed `{secret}`: {body}"
        );
    }
}

use sqlx::Connection as _;
