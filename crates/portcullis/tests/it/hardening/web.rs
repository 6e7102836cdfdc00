//! The local endpoint is not a target for web pages (issue "A transparent MCP gateway"): ten
//! cross-site `text/plain` POSTs used to lock 127.0.0.1 out for 15 minutes. Requests a page
//! could send are refused before authentication counts them, and a lockout keeps a valid
//! credential out only briefly.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;

fn read_body() -> String {
    tools_call_2026(1, "crm__get_contact", json!({ "id": "c_1" })).to_string()
}

fn read_headers() -> Vec<(&'static str, &'static str)> {
    let mut headers = JSON_AND_SSE.to_vec();
    headers.extend([
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "crm__get_contact"),
    ]);
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_burst_leaves_a_valid_agent_able_to_call() {
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 3).await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    let admin_url = format!("{}/admin/v1/tenants", app.base);
    let http = reqwest::Client::new();
    let page = "https://attacker.example";
    // What a page may send without a preflight: a form or text body, with or without
    // credentials it cannot attach anyway; and loads that carry no Origin.
    for _ in 0..10 {
        for target in [&url, &admin_url] {
            let form = raw_post(
                &http,
                target,
                None,
                &[("content-type", "text/plain"), ("origin", page)],
                "{}",
            )
            .await;
            assert_eq!(form.status, StatusCode::FORBIDDEN, "{}", form.text);
            let no_origin = raw_post(
                &http,
                target,
                Some("pca_not_a_token"),
                &[("content-type", "application/x-www-form-urlencoded")],
                "a=b",
            )
            .await;
            assert_eq!(no_origin.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            let image = http
                .get(target.as_str())
                .header("sec-fetch-site", "cross-site")
                .send()
                .await
                .expect("get");
            assert_eq!(image.status(), StatusCode::FORBIDDEN);
            // DNS rebinding: the page's own name, resolved to this address.
            let rebound = raw_post(
                &http,
                target,
                Some("pca_not_a_token"),
                &[
                    ("content-type", "application/json"),
                    ("host", "attacker.example"),
                ],
                read_body(),
            )
            .await;
            assert_eq!(rebound.status, StatusCode::FORBIDDEN);
        }
    }
    // Nothing was counted: the agent on the same address is served…
    let reply = raw_post(
        &http,
        &url,
        Some(&acme.agent_token),
        &read_headers(),
        read_body(),
    )
    .await;
    assert_read_ok(&reply);
    // …and nothing reached the audit trail as a failed authentication.
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert!(
        events_of_kind(&events, "auth_failed").is_empty(),
        "{events:?}"
    );
    assert!(events_of_kind(&events, "locked_out").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_may_call() {
    let app = TestApp::spawn_with(|c| {
        c.server.allowed_origins = vec!["http://console.example:3000".into()];
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    let http = reqwest::Client::new();
    let with_origin = |origin: &'static str| {
        let mut headers = read_headers();
        headers.push(("origin", origin));
        headers
    };
    let listed = raw_post(
        &http,
        &url,
        Some(&acme.agent_token),
        &with_origin("http://console.example:3000"),
        read_body(),
    )
    .await;
    assert_read_ok(&listed);
    for origin in [
        "http://console.example:3001",
        "https://console.example:3000",
        "null",
    ] {
        let other = raw_post(
            &http,
            &url,
            Some(&acme.agent_token),
            &with_origin(origin),
            read_body(),
        )
        .await;
        assert_eq!(
            other.status,
            StatusCode::FORBIDDEN,
            "{origin}: {}",
            other.text
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_keeps_a_valid_token_out_only_briefly() {
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 3).await;
    let acme = app.seed_tenant("acme").await;
    let url = app.mcp_url("acme");
    // A local process sends wrong tokens from the agents' own address.
    let local = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .expect("client");
    let bad = format!("pca_{}", "1".repeat(64));
    for _ in 0..3 {
        let reply = raw_post(&local, &url, Some(&bad), &read_headers(), read_body()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Locked out: at first everyone at that address waits, told for how long.
    let locked = raw_post(
        &local,
        &url,
        Some(&acme.agent_token),
        &read_headers(),
        read_body(),
    )
    .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!(
        (1..=30).contains(&retry),
        "a valid token waits the short window: {retry}"
    );

    // After the short window the valid token is served, while wrong ones stay refused until
    // the lockout ends and are not counted or audited again.
    app.clock.advance(31_000);
    assert_read_ok(
        &raw_post(
            &local,
            &url,
            Some(&acme.agent_token),
            &read_headers(),
            read_body(),
        )
        .await,
    );
    for _ in 0..5 {
        let reply = raw_post(&local, &url, Some(&bad), &read_headers(), read_body()).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("secs");
        assert!(retry > 800, "a wrong token waits out the lockout: {retry}");
    }
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let failures = events_of_kind(&events, "auth_failed")
        .into_iter()
        .filter(|e| e["actor"] == "ip:127.0.0.3")
        .count();
    assert_eq!(
        failures, 3,
        "only the failures before the lockout are counted"
    );
    assert_eq!(events_of_kind(&events, "locked_out").len(), 1);

    // Once it ends, a wrong token is an ordinary failure again.
    app.clock.advance(900_000);
    let after = raw_post(&local, &url, Some(&bad), &read_headers(), read_body()).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
