//! Lockout that works behind a proxy and cannot be dodged: the client behind a trusted proxy
//! is counted (not the proxy, and not whatever an untrusted peer claims), IPv6 per /64, the
//! session table is bounded, and on PostgreSQL a failure that cannot be counted fails closed.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;

/// One raw 2026-07-28 read with `token`, from behind a proxy that says the client is `header`.
async fn read_as(app_url: &str, token: &str, header: Option<(&str, &str)>) -> StatusCode {
    read_as_with(app_url, token, header.as_slice()).await
}

/// [`read_as`] with any extra headers.
async fn read_as_with(app_url: &str, token: &str, extra: &[(&str, &str)]) -> StatusCode {
    let http = reqwest::Client::new();
    let mut headers = JSON_AND_SSE.to_vec();
    headers.push(("mcp-protocol-version", "2026-07-28"));
    headers.push(("mcp-method", "tools/call"));
    headers.push(("mcp-name", "crm__get_contact"));
    headers.extend_from_slice(extra);
    raw_post(
        &http,
        app_url,
        Some(token),
        &headers,
        tools_call_2026(1, "crm__get_contact", json!({ "id": "c_1" })).to_string(),
    )
    .await
    .status
}

const BAD: &str = "pca_0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_client_is_locked_out_not_the_proxy() {
    let app = TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    let xff = |ip: &'static str| Some(("x-forwarded-for", ip));
    for _ in 0..10 {
        // The client wrote its own left-most hop; the proxy appended what it saw.
        assert_eq!(
            read_as(
                &url,
                BAD,
                Some(("x-forwarded-for", "10.9.9.9, 198.51.100.7"))
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The client is locked out…
    assert_eq!(
        read_as(&url, &acme.agent_token, xff("198.51.100.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // …and a `Forwarded` header of its own (which this proxy passes through untouched)
    // names nobody: only the header the proxy writes counts.
    let spoofed = [
        ("x-forwarded-for", "198.51.100.7"),
        ("forwarded", "for=198.51.100.8"),
    ];
    assert_eq!(
        read_as_with(&url, &acme.agent_token, &spoofed).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let framed = [
        ("x-forwarded-for", "198.51.100.8"),
        ("forwarded", "for=198.51.100.7"),
    ];
    assert_eq!(
        read_as_with(&url, &acme.agent_token, &framed).await,
        StatusCode::OK,
        "a client cannot lock out another by naming it in `Forwarded`"
    );
    // Other clients behind the same proxy, and the proxy itself, are not locked out.
    assert_eq!(
        read_as(&url, &acme.agent_token, xff("198.51.100.9")).await,
        StatusCode::OK
    );
    assert_eq!(read_as(&url, &acme.agent_token, None).await, StatusCode::OK);
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "locked_out")
            .iter()
            .any(|e| e["detail"]["counted_as"] == "198.51.100.7"),
        "the lockout names the client"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_proxy_forwarding_headers_cannot_dodge_a_lockout() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    for i in 0..10 {
        let claimed = format!("203.0.113.{i}");
        assert_eq!(
            read_as(&url, BAD, Some(("x-forwarded-for", &claimed))).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        read_as(
            &url,
            &acme.agent_token,
            Some(("x-forwarded-for", "203.0.113.200"))
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_counted_per_64() {
    let app = TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    // Ten addresses of one /64, each failing once.
    for i in 1..=10 {
        let hop = format!("2001:db8:1:2::{i:x}");
        assert_eq!(
            read_as(&url, BAD, Some(("x-forwarded-for", &hop))).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        read_as(
            &url,
            &acme.agent_token,
            Some(("x-forwarded-for", "2001:db8:1:2:ffff::1"))
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "another address of the same /64 is the same client"
    );
    assert_eq!(
        read_as(
            &url,
            &acme.agent_token,
            Some(("x-forwarded-for", "2001:db8:1:3::1"))
        )
        .await,
        StatusCode::OK,
        "the next /64 is another client"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_writes_forwarded_is_read_from_forwarded_only() {
    let app = TestApp::spawn_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
        c.server.forwarded_header = portcullis_server::config::ForwardedHeader::Forwarded;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    for _ in 0..10 {
        let both = [
            ("forwarded", "for=\"[2001:db8:9::5]:4711\";proto=https"),
            ("x-forwarded-for", "203.0.113.50"),
        ];
        assert_eq!(
            read_as_with(&url, BAD, &both).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        read_as(
            &url,
            &acme.agent_token,
            Some(("forwarded", "for=\"[2001:db8:9::77]\""))
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        read_as(
            &url,
            &acme.agent_token,
            Some(("x-forwarded-for", "2001:db8:9::77"))
        )
        .await,
        StatusCode::OK,
        "X-Forwarded-For is not read when the proxy writes Forwarded"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_opening_sessions_in_a_loop_only_crowds_out_its_own() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut sessions = Vec::new();
    for _ in 0..(portcullis_server::mcp::MAX_SESSIONS_PER_AGENT + 6) {
        sessions.push(raw_legacy_session(&app, "acme", &acme.agent_token).await);
    }
    let list = |session: String| {
        let app = &app;
        let token = acme.agent_token.clone();
        async move {
            let mut headers = JSON_AND_SSE.to_vec();
            headers.push(("mcp-session-id", &session));
            headers.push(("mcp-protocol-version", "2025-11-25"));
            raw_post(
                &app.http,
                &app.mcp_url("acme"),
                Some(&token),
                &headers,
                json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }).to_string(),
            )
            .await
            .status
        }
    };
    // The oldest sessions were closed to make room; the newest still work.
    assert_eq!(list(sessions[0].clone()).await, StatusCode::NOT_FOUND);
    assert_eq!(list(sessions.last().unwrap().clone()).await, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_failure_that_cannot_be_counted_fails_closed() {
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
    let admin = gateway.admin_token.clone().expect("first start");
    let acme = seed_tenant_at(
        &AdminClient::with_http(http.clone(), &gateway.base, &admin),
        root.path(),
        "acme",
    )
    .await;
    // The shared counters can no longer be written.
    {
        use sqlx::Connection as _;
        let mut owner = sqlx::PgConnection::connect(&db.owner_url().unwrap())
            .await
            .unwrap();
        sqlx::query("REVOKE INSERT, UPDATE ON auth_failures FROM portcullis_app")
            .execute(&mut owner)
            .await
            .unwrap();
    }
    let url = gateway.mcp_url("acme");
    let first = read_as(&url, BAD, None).await;
    assert_eq!(
        first,
        StatusCode::SERVICE_UNAVAILABLE,
        "a failure that cannot be counted is not waved through as a plain 401"
    );
    for _ in 1..10 {
        let _ = read_as(&url, BAD, None).await;
    }
    assert_eq!(
        read_as(&url, &acme.agent_token, None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the failures were still counted (in memory) and lock the client out"
    );
}
