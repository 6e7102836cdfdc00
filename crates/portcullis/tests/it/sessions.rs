//! Short-lived agent sessions: exchanged for the agent's token, at most 15 minutes, never
//! wider than the parent, and dead on their next request once the parent is revoked.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn exchange(app: &TestApp, tenant: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/t/{tenant}/sessions", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn list_status(app: &TestApp, tenant: &str, token: &str) -> StatusCode {
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": { "_meta": meta_2026() } });
    post_2026(app, tenant, token, &list, None).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_short_narrow_and_ends_with_its_parent() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let all_tools = app
        .client("acme", &acme.agent_token, Era::Discover)
        .await
        .tool_names()
        .await;
    assert!(all_tools.len() > 1, "{all_tools:?}");
    let one = all_tools[0].clone();
    let (connection, tool) = one.split_once("__").unwrap();

    // Longer than 15 minutes is refused; the default is 15 minutes.
    let (status, _) = exchange(&app, "acme", &acme.agent_token, json!({ "ttl_secs": 901 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let now = app.clock.now();
    let (status, session) = exchange(
        &app,
        "acme",
        &acme.agent_token,
        json!({ "scope": [format!("{connection}/{tool}")] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    assert!(session["expires_at"].as_i64().unwrap() <= now + 15 * 60 * 1000);

    // Scoped to the one tool it asked for.
    let tools = app
        .client("acme", &token, Era::Discover)
        .await
        .tool_names()
        .await;
    assert_eq!(tools, vec![one.clone()]);

    // A session cannot open sessions, nor widen, nor cross tenants.
    let (status, _) = exchange(&app, "acme", &token, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let globex = app.seed_tenant("globex").await;
    let (status, _) = exchange(&app, "acme", &globex.agent_token, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        list_status(&app, "globex", &token).await,
        StatusCode::UNAUTHORIZED
    );

    // Fifteen minutes later it is refused; the parent still works.
    app.clock.advance(15 * 60 * 1000 + 1);
    assert_eq!(
        list_status(&app, "acme", &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        list_status(&app, "acme", &acme.agent_token).await,
        StatusCode::OK
    );

    // A live session dies on its next request once the parent is revoked.
    let (_, session) = exchange(&app, "acme", &acme.agent_token, json!({ "ttl_secs": 600 })).await;
    let token = session["token"].as_str().unwrap().to_owned();
    assert_eq!(list_status(&app, "acme", &token).await, StatusCode::OK);
    let parent = app
        .audit_events("acme")
        .await
        .iter()
        .filter(|e| e["kind"] == "token_created")
        .find_map(|e| e["detail"]["session_of"].as_str().map(str::to_owned))
        .expect("the session's creation names its parent");
    app.admin_api()
        .revoke_token("acme", &parent)
        .await
        .expect("revoke the parent");
    assert_eq!(
        list_status(&app, "acme", &token).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = exchange(&app, "acme", &acme.agent_token, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_never_wider_than_a_scoped_parent() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let scoped = app
        .admin_api()
        .create_token(
            "acme",
            &acme.agent_id,
            &portcullis_server::admin::tokens::TokenIn {
                scope: vec!["crm/search_contacts".into()],
                ttl_secs: Some(60),
            },
        )
        .await
        .unwrap()
        .token;
    for wider in [
        json!(["crm"]),
        json!(["billing"]),
        json!(["crm/send_email"]),
    ] {
        let (status, body) = exchange(&app, "acme", &scoped, json!({ "scope": wider })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wider}: {body}");
    }
    // Asking for nothing gets the parent's scope, and never outlives the parent (60 s).
    let now = app.clock.now();
    let (status, session) = exchange(&app, "acme", &scoped, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(session["scope"], json!(["crm/search_contacts"]));
    assert!(session["expires_at"].as_i64().unwrap() <= now + 60_000);
}
