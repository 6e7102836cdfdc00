//! The vault: write-only secrets, credentials injected into upstream requests and never
//! shown, the egress policy at connection creation, no plaintext on disk, and a deleted
//! tenant's keys destroyed.

use crate::support::*;
use portcullis_server::admin::connections::ConnectionIn;
use portcullis_server::admin::humans::AdminIn;
use portcullis_server::admin::secrets::SecretIn;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::upstream::{ConnectionSpec, Credential, Transport};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A random value that must never show up anywhere but inside an upstream request.
fn canary() -> String {
    format!(
        "canary-{}",
        &portcullis_core::id::TenantId::generate().as_str()[4..]
    )
}

fn secret_in(value: &str) -> SecretIn {
    SecretIn {
        value: value.to_owned().into(),
        rotate_every_days: None,
    }
}

async fn create_tenant(app: &TestApp, name: &str) {
    app.admin_api()
        .create_tenant(&NameIn { name: name.into() })
        .await
        .unwrap_or_else(|e| panic!("tenant {name}: {e}"));
}

/// A tenant-scoped human with `role`; returns the token.
async fn human(app: &TestApp, name: &str, role: &str, tenant: &str) -> String {
    app.admin_api()
        .create_admin(&AdminIn {
            name: name.into(),
            role: role.into(),
            tenant: Some(tenant.into()),
            ttl_secs: None,
        })
        .await
        .unwrap_or_else(|e| panic!("admin {name}: {e}"))
        .token
}

fn http_connection(name: &str, url: String, auth: Option<Credential>) -> ConnectionIn {
    ConnectionIn {
        name: name.into(),
        spec: ConnectionSpec::new(Transport::Http { url, auth }, Default::default()),
        redaction: Default::default(),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw bytes of every file under `dir`, with their paths.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Assert no file of the data folder holds any of `needles`; the database must be there.
fn assert_not_on_disk(app: &TestApp, needles: &[&str]) {
    let files = files_under(&app.data_dir());
    assert!(
        files
            .iter()
            .any(|(p, b)| p.ends_with("portcullis.db") && !b.is_empty()),
        "the database file is in the data folder: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, bytes) in &files {
        for needle in needles {
            assert!(
                !contains(bytes, needle),
                "`{needle}` in plain text in {path}"
            );
        }
    }
}

/// `SELECT count(*)` on the SQLite file, read-only.
async fn sqlite_count(app: &TestApp, sql: &str, bind: &str) -> i64 {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.db_path())
        .read_only(true)
        .busy_timeout(WAIT)
        .connect()
        .await
        .expect("open the database read-only");
    sqlx::query_scalar::<_, i64>(sql)
        .bind(bind)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// One loopback HTTP server recording the head of every request it gets (answered 500).
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !contains(&head, "\r\n\r\n") && head.len() < 65536 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}/mcp"), heads)
}

/// The values of header `name` in a recorded request head.
fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// Wait until the server saw a request carrying `name: value`.
async fn wait_for_header(heads: &Arc<Mutex<Vec<String>>>, name: &str, value: &str) {
    eventually_within(&format!("a request with `{name}`"), WAIT, || async {
        let heads = heads.lock().expect("lock").clone();
        if heads
            .iter()
            .any(|h| header_values(h, name).iter().any(|v| v == value))
        {
            Ok(())
        } else {
            Err(format!(
                "{} requests, `{name}` values: {:?}",
                heads.len(),
                heads
                    .iter()
                    .map(|h| header_values(h, name).len())
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_listed_and_audited() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "other").await;
    let value = canary();
    let path = "/tenants/acme/secrets/stripe-key";

    // First version, over the wire: the answer names it and does not echo the value.
    let (status, body) = app
        .api(
            Method::PUT,
            path,
            &app.admin_token,
            Some(json!({ "value": value })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "stripe-key", "{body}");
    assert_eq!(body["version"], 1, "{body}");
    assert!(!body.to_string().contains(&value), "{body}");

    // Second version through the typed client.
    let second = app
        .admin_api()
        .put_secret("acme", "stripe-key", &secret_in(&format!("{value}-2")))
        .await
        .expect("put version 2");
    assert_eq!(second.version, 2);

    // Listed by name and version, the value nowhere in the JSON.
    let (status, listed) = app
        .api(Method::GET, "/tenants/acme/secrets", &app.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let items = listed.as_array().expect("a list");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["name"], "stripe-key");
    assert_eq!(items[0]["version"], 2);
    assert!(items[0].get("value").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&value), "{listed}");
    let typed = app.admin_api().list_secrets("acme").await.expect("list");
    assert_eq!(typed.len(), 1);
    assert_eq!(
        (typed[0].name.as_str(), typed[0].version),
        ("stripe-key", 2)
    );

    // Someone else's admin, and this tenant's approver: neither lists nor writes.
    let stranger = app.api_as(&human(&app, "other-admin", "admin", "other").await);
    for refused in [
        stranger.list_secrets("acme").await.map(drop),
        stranger
            .put_secret("acme", "stripe-key", &secret_in("overwritten"))
            .await
            .map(drop),
        stranger.delete_secret("acme", "stripe-key").await,
    ] {
        let status = refused
            .expect_err("another tenant's admin is refused")
            .status();
        assert!(
            matches!(status, Some(StatusCode::NOT_FOUND | StatusCode::FORBIDDEN)),
            "{status:?}"
        );
    }
    let approver = app.api_as(&human(&app, "acme-approver", "approver", "acme").await);
    let refused = approver
        .put_secret("acme", "stripe-key", &secret_in("overwritten"))
        .await
        .expect_err("an approver cannot put");
    assert_eq!(refused.status(), Some(StatusCode::FORBIDDEN), "{refused}");
    let refused = approver
        .delete_secret("acme", "stripe-key")
        .await
        .expect_err("an approver cannot delete");
    assert_eq!(refused.status(), Some(StatusCode::FORBIDDEN), "{refused}");
    let still = app.admin_api().list_secrets("acme").await.expect("list");
    assert_eq!(still[0].version, 2, "nothing was overwritten: {still:?}");

    // Names that are not names.
    let long = "a".repeat(65);
    for name in ["..%2Fx", "%2E%2E%2Fx", "%20", ".hidden", long.as_str()] {
        let (status, body) = app
            .api(
                Method::PUT,
                &format!("/tenants/acme/secrets/{name}"),
                &app.admin_token,
                Some(json!({ "value": "v" })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "`{name}`: {body}");
    }
    // The empty name does not reach the handler at all.
    let (status, body) = app
        .api(
            Method::PUT,
            "/tenants/acme/secrets/",
            &app.admin_token,
            Some(json!({ "value": "v" })),
        )
        .await;
    assert!(status.is_client_error(), "empty name: {status} {body}");
    // 64 characters is still a name.
    let (status, body) = app
        .api(
            Method::PUT,
            &format!("/tenants/acme/secrets/{}", "a".repeat(64)),
            &app.admin_token,
            Some(json!({ "value": "v" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "64 characters: {body}");
    let names: Vec<String> = app
        .admin_api()
        .list_secrets("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), 2, "only the valid names are stored: {names:?}");

    // Delete, then a second delete is a 404.
    app.admin_api()
        .delete_secret("acme", "stripe-key")
        .await
        .expect("delete");
    let again = app
        .admin_api()
        .delete_secret("acme", "stripe-key")
        .await
        .expect_err("deleted already");
    assert_eq!(again.status(), Some(StatusCode::NOT_FOUND), "{again}");
    assert!(
        app.admin_api()
            .list_secrets("acme")
            .await
            .expect("list")
            .iter()
            .all(|s| s.name != "stripe-key")
    );

    let events = app.audit_events("acme").await;
    let puts: Vec<_> = events_of_kind(&events, "secret_put")
        .into_iter()
        .filter(|e| e.to_string().contains("stripe-key"))
        .collect();
    assert_eq!(puts.len(), 2, "{:?}", kinds(&events));
    assert_eq!(
        events_of_kind(&events, "secret_deleted").len(),
        1,
        "{:?}",
        kinds(&events)
    );
    let text = serde_json::to_string(&events).expect("events serialise");
    assert!(!text.contains(&value), "the value is in the audit trail");
    assert!(!text.contains("overwritten"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_urls_are_refused_naming_the_rule() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let own = format!("http://127.0.0.1:{}/t/x/mcp", app.addr.port());
    let cases: Vec<(String, &str)> = [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://0xa9fea9fe/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[::ffff:127.0.0.1]/", "ipv4-mapped"),
        ("http://0x7f000002/", "loopback"),
        ("http://2130706434/", "loopback"),
        ("http://127.2/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[64:ff9b::a9fe:a9fe]/", "nat64"),
        ("http://[2002:a9fe:a9fe::]/", "6to4"),
        ("http://user:pw@example.com/", "userinfo"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://100.64.0.1/", "carrier-grade-nat"),
        ("http://[fe80::1]/", "link-local"),
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
    ]
    .into_iter()
    .map(|(url, rule)| (url.to_owned(), rule))
    .chain([(own, "own-address")])
    .collect();
    let before = app
        .admin_api()
        .list_connections("acme")
        .await
        .expect("list");

    for (i, (url, rule)) in cases.iter().enumerate() {
        let refused = app
            .admin_api()
            .create_connection(
                "acme",
                &http_connection(&format!("c{i}"), url.clone(), None),
            )
            .await
            .expect_err(&format!("{url} must be refused"));
        assert_eq!(
            refused.status(),
            Some(StatusCode::BAD_REQUEST),
            "{url}: {refused}"
        );
        let detail = refused.detail().unwrap_or_default();
        assert!(
            detail.contains(&format!("({rule})")),
            "{url}: expected rule `{rule}` in `{detail}`"
        );
    }

    let after = app
        .admin_api()
        .list_connections("acme")
        .await
        .expect("list");
    assert_eq!(
        serde_json::to_value(&before).unwrap(),
        serde_json::to_value(&after).unwrap(),
        "nothing is stored"
    );
    let events = app.audit_events("acme").await;
    let mut audited: Vec<String> = events_of_kind(&events, "egress_refused")
        .iter()
        .map(|e| e["detail"]["rule"].as_str().unwrap_or("?").to_owned())
        .collect();
    let mut expected: Vec<String> = cases.iter().map(|(_, r)| (*r).to_owned()).collect();
    audited.sort();
    expected.sort();
    assert_eq!(audited, expected, "one egress_refused event per refusal");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("pw@"), "the URL's password is not audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstreams_credential_is_injected_and_never_shown() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let (bearer_value, key_value) = (canary(), canary());
    let api = app.admin_api();
    api.put_secret("acme", "upstream-token", &secret_in(&bearer_value))
        .await
        .expect("put");
    api.put_secret("acme", "api-key", &secret_in(&key_value))
        .await
        .expect("put");

    let (bearer_url, bearer_heads) = recording_upstream().await;
    let (key_url, key_heads) = recording_upstream().await;
    api.create_connection(
        "acme",
        &http_connection(
            "bearer",
            bearer_url,
            Some(Credential::Bearer {
                secret: "upstream-token".into(),
            }),
        ),
    )
    .await
    .expect("create bearer connection");
    api.create_connection(
        "acme",
        &http_connection(
            "keyed",
            key_url.clone(),
            Some(Credential::Header {
                name: "X-Api-Key".into(),
                secret: "api-key".into(),
            }),
        ),
    )
    .await
    .expect("create api-key connection");

    wait_for_header(
        &bearer_heads,
        "authorization",
        &format!("Bearer {bearer_value}"),
    )
    .await;
    wait_for_header(&key_heads, "x-api-key", &key_value).await;
    // The key connection sent no bearer token, and the bearer one no API key.
    for head in key_heads.lock().unwrap().iter() {
        assert!(header_values(head, "authorization").is_empty(), "{head}");
    }
    for head in bearer_heads.lock().unwrap().iter() {
        assert!(header_values(head, "x-api-key").is_empty(), "{head}");
    }

    // A credential naming a secret that is not there: refused, nothing stored.
    let missing = api
        .create_connection(
            "acme",
            &http_connection(
                "missing",
                key_url,
                Some(Credential::Bearer {
                    secret: "no-such-secret".into(),
                }),
            ),
        )
        .await
        .expect_err("a missing secret is refused");
    assert_eq!(missing.status(), Some(StatusCode::BAD_REQUEST), "{missing}");

    let listed = api.list_connections("acme").await.expect("list");
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"missing"), "{names:?}");
    let (status, raw) = app
        .api(
            Method::GET,
            "/tenants/acme/connections",
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, secrets) = app
        .api(Method::GET, "/tenants/acme/secrets", &app.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = app.audit_events("acme").await;
    let audit = serde_json::to_string(&events).unwrap();
    for value in [&bearer_value, &key_value] {
        assert!(!raw.to_string().contains(value.as_str()), "{raw}");
        assert!(!secrets.to_string().contains(value.as_str()), "{secrets}");
        assert!(
            !audit.contains(value.as_str()),
            "a value in the audit trail"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_holds_no_plaintext_on_disk() {
    let app = TestApp::spawn().await;
    if app.backend() != Backend::Sqlite {
        // The raw files are SQLite's; PostgreSQL keeps its own.
        return;
    }
    let tenant = app.seed_tenant("acme").await;
    let value = canary();
    app.admin_api()
        .put_secret("acme", "mail-password", &secret_in(&value))
        .await
        .expect("put");

    // The upstream runs with its environment revealed from the vault: it answers, and a
    // write it performs after approval lands in the effect log its environment names.
    let client = app
        .client("acme", &tenant.agent_token, Era::Initialize)
        .await;
    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(structured(&read)["name"], "Ada Lovelace", "{read:?}");
    let send = json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" });
    let held = client.call("crm__send_email", send.clone()).await;
    app.approve(&tenant, &approval_id(&held)).await;
    let executed = client.call("crm__send_email", send).await;
    assert_eq!(structured(&executed)["status"], "sent", "{executed:?}");
    assert_eq!(
        effect_lines(&tenant.effect_log).len(),
        1,
        "the upstream wrote to the effect log its environment names"
    );

    // The stored transport names secrets only.
    let stored = sqlite_count(
        &app,
        "SELECT count(*) FROM connections WHERE id = ? AND transport LIKE '%\"secret\"%'",
        &tenant.connection_id,
    )
    .await;
    assert_eq!(stored, 1, "the environment is stored by secret name");
    let plain = [
        tenant.effect_log.display().to_string(),
        tenant.variant_file.display().to_string(),
        tenant.hold_file.display().to_string(),
    ];
    let mut needles: Vec<&str> = plain.iter().map(String::as_str).collect();
    needles.push(&value);
    assert_not_on_disk(&app, &needles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_destroys_its_keys() {
    let app = TestApp::spawn().await;
    let doomed = app.seed_tenant("doomed").await;
    create_tenant(&app, "survivor").await;
    let api = app.admin_api();
    let (doomed_value, survivor_value) = (canary(), canary());
    api.put_secret("doomed", "token", &secret_in(&doomed_value))
        .await
        .expect("put");
    api.put_secret("survivor", "token", &secret_in(&survivor_value))
        .await
        .expect("put");

    // Before: the doomed tenant has keys and secrets (the queries can see them).
    let keys_sql = "SELECT count(*) FROM tenant_keys WHERE tenant_id = ?";
    let secrets_sql = "SELECT count(*) FROM secrets WHERE tenant_id = ?";
    let pg_rows = |table: &str| {
        format!(
            "SELECT 1 FROM {table} WHERE tenant_id = '{}'",
            doomed.id.replace('\'', "")
        )
    };
    match app.backend() {
        Backend::Sqlite => {
            assert!(sqlite_count(&app, keys_sql, &doomed.id).await >= 1);
            assert!(sqlite_count(&app, secrets_sql, &doomed.id).await >= 2);
        }
        Backend::Postgres => {
            assert!(app.raw_sql(&pg_rows("tenant_keys")).await.expect("sql") >= 1);
            assert!(app.raw_sql(&pg_rows("secrets")).await.expect("sql") >= 2);
        }
    }

    // A tenant-scoped admin (even of that tenant) cannot delete it.
    let scoped = app.api_as(&human(&app, "doomed-admin", "admin", "doomed").await);
    let refused = scoped
        .delete_tenant("doomed")
        .await
        .expect_err("a tenant-scoped admin is refused");
    assert_eq!(refused.status(), Some(StatusCode::FORBIDDEN), "{refused}");
    let approver = app.api_as(&doomed.approver_token);
    assert!(approver.delete_tenant("doomed").await.is_err());
    assert!(
        api.list_tenants()
            .await
            .expect("tenants")
            .iter()
            .any(|t| t.name == "doomed"),
        "still there after the refusals"
    );

    api.delete_tenant("doomed").await.expect("delete tenant");

    // Gone: not listed, not found, its MCP endpoint refuses its agent.
    assert!(
        api.list_tenants()
            .await
            .expect("tenants")
            .iter()
            .all(|t| t.name != "doomed")
    );
    let gone = api
        .list_secrets("doomed")
        .await
        .expect_err("a deleted tenant");
    assert_eq!(gone.status(), Some(StatusCode::NOT_FOUND), "{gone}");
    let again = api
        .delete_tenant("doomed")
        .await
        .expect_err("deleted already");
    assert_eq!(again.status(), Some(StatusCode::NOT_FOUND), "{again}");
    let reply = post_2026(
        &app,
        "doomed",
        &doomed.agent_token,
        &tools_call_2026(1, "crm__get_contact", json!({ "id": "c_1" })),
        Some("crm__get_contact"),
    )
    .await;
    assert!(
        matches!(
            reply.status,
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
        ),
        "{} {}",
        reply.status,
        reply.text
    );
    assert!(
        connect(&app.mcp_url("doomed"), &doomed.agent_token, Era::Discover)
            .await
            .is_err(),
        "an MCP client of the deleted tenant connects"
    );

    // Its keys and secrets are gone from the database and from the files.
    match app.backend() {
        Backend::Sqlite => {
            assert_eq!(sqlite_count(&app, keys_sql, &doomed.id).await, 0);
            assert_eq!(sqlite_count(&app, secrets_sql, &doomed.id).await, 0);
            assert_not_on_disk(&app, &[&doomed_value, &survivor_value]);
        }
        Backend::Postgres => {
            assert_eq!(app.raw_sql(&pg_rows("tenant_keys")).await.expect("sql"), 0);
            assert_eq!(app.raw_sql(&pg_rows("secrets")).await.expect("sql"), 0);
        }
    }

    // The other tenant's vault still works: its credential reaches its upstream.
    let (url, heads) = recording_upstream().await;
    api.create_connection(
        "survivor",
        &http_connection(
            "remote",
            url,
            Some(Credential::Header {
                name: "X-Api-Key".into(),
                secret: "token".into(),
            }),
        ),
    )
    .await
    .expect("create the survivor's connection");
    wait_for_header(&heads, "x-api-key", &survivor_value).await;
    assert_eq!(
        api.list_secrets("survivor").await.expect("list").len(),
        1,
        "the survivor's secret is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_host_allow_list_only_narrows() {
    use portcullis_server::admin::tenants::EgressHosts;
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let api = app.admin_api();
    let set = |hosts: &[&str]| EgressHosts {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
    };
    // Invalid patterns are refused; a list is stored and shown.
    let refused = api
        .set_tenant_egress("acme", &set(&["*."]))
        .await
        .expect_err("not a host");
    assert_eq!(refused.status(), Some(StatusCode::BAD_REQUEST));
    api.set_tenant_egress("acme", &set(&["*.example.com", "127.0.0.1"]))
        .await
        .expect("set");
    assert_eq!(
        api.tenant_egress("acme").await.unwrap().hosts,
        vec!["*.example.com".to_owned(), "127.0.0.1".to_owned()]
    );
    // A host off the list is refused, naming the rule; one on it passes the list (and is then
    // judged by the operator's policy as before: 127.0.0.1 is allowed in tests).
    let refused = api
        .create_connection(
            "acme",
            &http_connection("other", "http://api.other.test/mcp".into(), None),
        )
        .await
        .expect_err("not on the list");
    assert!(
        refused.to_string().contains("(host-not-allowed)"),
        "{refused}"
    );
    let refused = api
        .create_connection(
            "acme",
            &http_connection("meta", "http://169.254.169.254/".into(), None),
        )
        .await
        .expect_err("the list never admits a refused address");
    assert_eq!(refused.status(), Some(StatusCode::BAD_REQUEST));
    // An approver cannot change the list.
    let approver = app.seed_tenant("globex").await;
    let refused = app
        .api_as(&approver.approver_token)
        .set_tenant_egress("globex", &set(&[]))
        .await
        .expect_err("approvers cannot widen");
    assert_eq!(refused.status(), Some(StatusCode::FORBIDDEN));
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "config_changed")
            .iter()
            .any(|e| e["detail"]["egress_hosts"].is_array())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_master_key_rewraps_every_tenant_key_from_the_cli() {
    let app = TestApp::spawn().await;
    if app.backend() != Backend::Sqlite {
        // The CLI reads the configured database directly; the logic is the same on both
        // backends and the vault suite covers it (`vault::service` tests).
        return;
    }
    let acme = app.seed_tenant("acme").await;
    app.seed_tenant("globex").await;
    let before = sqlite_count(
        &app,
        "SELECT count(*) FROM tenant_keys WHERE master_id = ?1",
        "k1",
    )
    .await;
    assert_eq!(before, 2, "both tenants sealed their environments under k1");
    let run = app.cli_local(&["vault", "rotate-master"]).await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("master key `k2` is current; 2 tenant key(s) rewrapped"),
        "{}",
        run.stdout
    );
    for master in ["k1", "k2"] {
        let count = sqlite_count(
            &app,
            "SELECT count(*) FROM tenant_keys WHERE master_id = ?1",
            master,
        )
        .await;
        assert_eq!(count, if master == "k2" { 2 } else { 0 }, "{master}");
    }
    let keys = std::fs::read_to_string(app.data_dir().join("keys.json")).unwrap();
    assert!(keys.contains("\"k2\""));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(app.data_dir().join("keys.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second run makes k3 and rewraps again; nothing was lost on the way.
    let run = app.cli_local(&["vault", "rotate-master"]).await;
    assert!(run.stdout.contains("`k3`"), "{}", run.stdout);
    // The running gateway still starts the tenant's upstream (its environment unsealed).
    app.admin_api()
        .restart_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    app.wait_ready(&acme.connection_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_environments_from_before_the_vault_are_sealed_by_migrate() {
    let app = TestApp::spawn().await;
    if app.backend() != Backend::Sqlite {
        // On PostgreSQL `migrate` runs as the schema owner (replicas seal at start-up too).
        return;
    }
    let acme = app.seed_tenant("acme").await;
    // A row as an earlier version stored it: the environment in plain text.
    let plain = format!(
        "sk_live_{}",
        hex::encode(portcullis_core::random_bytes::<12>())
    );
    let transport = json!({
        "kind": "stdio",
        "program": "demo",
        "env": { "PORTCULLIS_DEMO_CANARY": plain },
    });
    app.raw_sql(&format!(
        "UPDATE connections SET transport = '{}' WHERE id = '{}'",
        transport, acme.connection_id
    ))
    .await
    .expect("write an old-style row");

    let run = app.cli_local(&["migrate"]).await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.contains("1 plain environment value(s) sealed"),
        "{}",
        run.stdout
    );
    // The row now names a secret, which the vault lists.
    let secrets = app.admin_api().list_secrets("acme").await.unwrap();
    assert!(
        secrets
            .iter()
            .any(|s| s.name == "crm.PORTCULLIS_DEMO_CANARY"),
        "{secrets:?}"
    );
    let again = app.cli_local(&["migrate"]).await;
    assert!(
        again.stdout.contains("0 plain environment value(s) sealed"),
        "idempotent: {}",
        again.stdout
    );
    // Rewritten and its log emptied: the plain text is in no file of the data folder.
    for entry in std::fs::read_dir(app.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "the plain value survives in {}",
            path.display()
        );
    }
    // The connection still starts, its environment now from the vault.
    app.admin_api()
        .restart_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    app.wait_ready(&acme.connection_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_duplicate_connection_leaves_the_live_ones_secrets_alone() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let before = app.admin_api().list_secrets("acme").await.unwrap();
    // The seeded connection is `crm`; another `crm` with a plain value for one of its
    // variables must not replace `crm.PORTCULLIS_DEMO_HOLD_FILE` before failing on the name.
    let mut again = demo_connection(app.dir.path(), "acme");
    if let Transport::Stdio { env, .. } = &mut again.spec.transport {
        env.insert(
            "PORTCULLIS_DEMO_HOLD_FILE".into(),
            portcullis_server::upstream::EnvValue::Plain(
                app.dir.path().join("elsewhere").display().to_string(),
            ),
        );
    }
    let refused = app
        .admin_api()
        .create_connection("acme", &again)
        .await
        .expect_err("the name is taken");
    assert_eq!(refused.status(), Some(StatusCode::CONFLICT), "{refused}");
    let after = app.admin_api().list_secrets("acme").await.unwrap();
    assert_eq!(before, after, "no secret was replaced");
    // The live connection still starts with its own values.
    app.admin_api()
        .restart_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    app.wait_ready(&acme.connection_id).await;
}
