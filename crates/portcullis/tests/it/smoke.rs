//! The walkthrough in one test: read freely, send is held, approve, retry executes once.

use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_is_free_send_is_held_then_executes_once_after_approval() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        client.protocol_version(),
        rmcp::model::ProtocolVersion::V_2026_07_28
    );
    assert!(
        client
            .tool_names()
            .await
            .contains(&"crm__get_contact".to_owned())
    );

    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(status(&read), "ok");
    assert_eq!(structured(&read)["name"], "Ada Lovelace");

    let send = json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" });
    let held = client.call("crm__send_email", send.clone()).await;
    let id = approval_id(&held);
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "nothing executed before approval"
    );

    app.approve(&acme, &id).await;
    let executed = client.call("crm__send_email", send.clone()).await;
    assert_eq!(structured(&executed)["status"], "sent", "{executed:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);

    let again = client.call("crm__send_email", send).await;
    assert_ne!(approval_id(&again), id, "a used approval is not reused");
    assert_eq!(
        effect_lines(&acme.effect_log).len(),
        1,
        "executed exactly once"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    const METRICS_TOKEN: &str = "metrics-scraper-token-0001";
    let app = TestApp::spawn_with(|config| {
        config.metrics.token_sha256 = portcullis_core::sha256_hex(METRICS_TOKEN.as_bytes());
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    client
        .call(
            "crm__send_email",
            json!({ "to": "a@example.com", "subject": "s", "body": "b" }),
        )
        .await;

    let get_as = |path: &'static str, token: Option<String>| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let mut request = http.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("reachable");
            (response.status(), response.text().await.unwrap_or_default())
        }
    };
    let get = |path: &'static str| get_as(path, None);
    let (status, health) = get("/healthz").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let health: serde_json::Value = serde_json::from_str(&health).expect("health is JSON");
    assert_eq!(health["status"], "ok");
    // Anyone sees what the host gives launched programs, never which connections run.
    assert!(health["sandbox"]["host"]["active"].is_array(), "{health}");
    assert!(health["sandbox"].get("connections").is_none(), "{health}");
    let (status, ready) = get("/readyz").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("readiness is JSON");
    assert_eq!(ready["store"], "ok");
    // Metrics need their token on the main listener.
    for wrong in [
        None,
        Some("not-the-metrics-token".to_owned()),
        Some(acme.agent_token.clone()),
        Some(app.admin_token.clone()),
    ] {
        let (status, body) = get_as("/metrics", wrong).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("portcullis_decisions_total"), "{body}");
    }
    let (status, metrics) = get_as("/metrics", Some(METRICS_TOKEN.to_owned())).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    for expected in [
        "portcullis_decisions_total{outcome=\"allow\"} 1",
        "portcullis_decisions_total{outcome=\"hold\"} 1",
        "portcullis_holds_total 1",
        "portcullis_upstream_latency_seconds_count 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing `{expected}` in:\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_never_mint_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_str = data.display().to_string();
    for args in [
        &["public-key"][..],
        &["audit", "verify"][..],
        &["audit", "checkpoint"][..],
    ] {
        let run = run_cli(dir.path(), args, &[("PORTCULLIS_DATA__DIR", &data_str)]).await;
        assert!(!run.ok(), "{args:?} must fail without a key file");
        assert!(
            !data.join("keys.json").exists(),
            "{args:?} created a key file"
        );
    }
}
