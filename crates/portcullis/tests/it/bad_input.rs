//! Bad input of any kind gets a clear error, changes nothing, and the process keeps serving.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn send_call(id: i64) -> Value {
    tools_call_2026(
        id,
        "crm__send_email",
        json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" }),
    )
}

/// The gateway still serves reads, and nothing was held or executed.
async fn assert_unharmed(app: &TestApp, tenant: &Tenant, client: &Client) {
    let read = client
        .call("crm__get_contact", json!({ "id": "c_3" }))
        .await;
    assert_eq!(structured(&read)["name"], "Alan Turing", "{read:?}");
    assert!(
        approvals_of(app, &tenant.name).await.is_empty(),
        "bad input created an approval"
    );
    assert!(
        effect_lines(&tenant.effect_log).is_empty(),
        "bad input reached the upstream"
    );
}

fn assert_jsonrpc_error(reply: &RawReply, status: StatusCode, code: i64, label: &str) {
    assert_eq!(reply.status, status, "{label}: {}", reply.text);
    assert_eq!(reply.error_code(), Some(code), "{label}: {}", reply.text);
    let message = reply
        .messages()
        .iter()
        .find_map(|m| m["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(!message.is_empty(), "{label}: the error says nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_and_json_rpc_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 4096).await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let url = app.mcp_url("acme");
    let token = Some(acme.agent_token.as_str());
    let mut headers_2026 = JSON_AND_SSE.to_vec();
    headers_2026.extend([
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "crm__send_email"),
    ]);

    let parse_errors: [(&str, Vec<u8>); 4] = [
        (
            "truncated",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"".to_vec(),
        ),
        ("not json", b"{not json".to_vec()),
        ("empty", Vec::new()),
        (
            "invalid utf-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec(),
        ),
    ];
    for (label, body) in parse_errors {
        let reply = raw_post(&app.http, &url, token, &headers_2026, body).await;
        assert_jsonrpc_error(&reply, StatusCode::BAD_REQUEST, -32700, label);
        assert_unharmed(&app, &acme, &client).await;
    }

    // JSON that is no single JSON-RPC request: batches (gone since 2025-06-18) and scalars.
    let invalid = [
        ("batch", json!([send_call(1), send_call(2)])),
        ("legacy batch", json!([initialize_request(1)])),
        ("empty batch", json!([])),
        ("number", json!(42)),
        ("string", json!("tools/call")),
    ];
    for (label, body) in invalid {
        let reply = raw_post(&app.http, &url, token, &headers_2026, body.to_string()).await;
        assert_jsonrpc_error(&reply, StatusCode::BAD_REQUEST, -32600, label);
        assert_unharmed(&app, &acme, &client).await;
    }

    // Wrong Content-Type, missing Accept: refused by the transport before anything is read.
    let mut text_plain = headers_2026.clone();
    text_plain[0] = ("content-type", "text/plain");
    let reply = raw_post(
        &app.http,
        &url,
        token,
        &text_plain,
        send_call(3).to_string(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("application/json"), "{}", reply.text);
    assert_unharmed(&app, &acme, &client).await;
    let no_accept: Vec<_> = headers_2026
        .iter()
        .copied()
        .filter(|(name, _)| *name != "accept")
        .collect();
    let reply = raw_post(&app.http, &url, token, &no_accept, send_call(4).to_string()).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE, "{}", reply.text);
    assert!(reply.text.contains("text/event-stream"), "{}", reply.text);
    assert_unharmed(&app, &acme, &client).await;

    // An oversized body, with a Content-Length and streamed without one.
    let mut huge = send_call(5);
    huge["params"]["arguments"]["body"] = json!("x".repeat(10 * 1024));
    let huge = huge.to_string();
    let reply = raw_post(&app.http, &url, token, &headers_2026, huge.clone()).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = huge
        .into_bytes()
        .chunks(1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let reply = raw_post(&app.http, &url, token, &headers_2026, streamed).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_unharmed(&app, &acme, &client).await;

    // A fresh client still connects, in both eras.
    for era in [Era::Discover, Era::Initialize] {
        let fresh = app.client("acme", &acme.agent_token, era).await;
        assert_eq!(fresh.tool_names().await.len(), 8);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_method_not_found_in_both_eras() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    // Legacy: inside an initialized session the answer is a JSON-RPC error (HTTP 200, SSE).
    let session = raw_legacy_session(&app, "acme", &acme.agent_token).await;
    let mut headers = JSON_AND_SSE.to_vec();
    headers.extend([
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    for body in [
        json!({ "jsonrpc": "2.0", "id": 5, "method": "foo/bar" }),
        json!({ "jsonrpc": "2.0", "id": 6, "method": "foo/bar", "params": { "x": 1 } }),
    ] {
        let reply = raw_post(
            &app.http,
            &app.mcp_url("acme"),
            Some(&acme.agent_token),
            &headers,
            body.to_string(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.error_code(), Some(-32601), "{}", reply.text);
        assert_eq!(
            reply
                .messages()
                .iter()
                .find(|m| m.get("error").is_some())
                .expect("error")["id"],
            body["id"]
        );
    }

    // 2026-07-28: HTTP 404 with the JSON-RPC error.
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "foo/bar", "params": { "_meta": meta_2026() } });
    let reply = post_2026(&app, "acme", &acme.agent_token, &body, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(reply.error_code(), Some(-32601), "{}", reply.text);
    assert_unharmed(&app, &acme, &client).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_and_non_object_arguments_are_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    for name in [
        "crm__nope",
        "nope__send_email",
        "send_email",
        "crm__",
        "__send_email",
        "crm____send_email",
    ] {
        let err = client.try_call(name, json!({})).await.expect_err(name);
        assert!(err.contains("unknown tool"), "{name}: {err}");
    }
    let reply = post_2026(
        &app,
        "acme",
        &acme.agent_token,
        &tools_call_2026(3, "crm__nope", json!({})),
        Some("crm__nope"),
    )
    .await;
    assert_eq!(reply.error_code(), Some(-32602), "{}", reply.text);
    assert_unharmed(&app, &acme, &client).await;

    // Arguments that are not an object, on an effect tool and a read tool.
    for tool in ["crm__send_email", "crm__get_contact"] {
        for arguments in [
            json!(["ada@example.com"]),
            json!("c_1"),
            json!(7),
            json!(true),
        ] {
            let reply = post_2026(
                &app,
                "acme",
                &acme.agent_token,
                &tools_call_2026(9, tool, arguments.clone()),
                Some(tool),
            )
            .await;
            assert_eq!(
                reply.error_code(),
                Some(-32602),
                "{tool} {arguments}: {}",
                reply.text
            );
            let error = reply
                .messages()
                .into_iter()
                .find(|m| m.get("error").is_some())
                .expect("error");
            assert_eq!(error["id"], 9);
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("object"),
                "{error}"
            );
        }
    }
    let session = raw_legacy_session(&app, "acme", &acme.agent_token).await;
    let mut headers = JSON_AND_SSE.to_vec();
    headers.extend([
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    let body = json!({ "jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": { "name": "crm__send_email", "arguments": [1, 2] } });
    let reply = raw_post(
        &app.http,
        &app.mcp_url("acme"),
        Some(&acme.agent_token),
        &headers,
        body.to_string(),
    )
    .await;
    assert_eq!(reply.error_code(), Some(-32602), "{}", reply.text);
    // Arguments the tool's schema does not accept reach only a read tool, which reports the error.
    let wrong = client.call("crm__get_contact", json!({ "nope": 1 })).await;
    assert_eq!(wrong.is_error, Some(true), "{wrong:?}");
    assert_unharmed(&app, &acme, &client).await;

    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let unknown: Vec<_> = events_of_kind(&events, "tool_call")
        .into_iter()
        .filter(|e| e["detail"]["reasons"][0] == "unknown tool")
        .collect();
    assert!(
        unknown.len() >= 3,
        "unknown tools are audited as denials: {unknown:?}"
    );
    assert!(events_of_kind(&events, "hold").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_malformed_json_unknown_fields_and_bad_ids() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let held = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "a@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    let before = audit_events_of(&app, &app.admin_token, "acme").await.len();
    let tenants_before = app.admin_api().list_tenants().await.expect("tenants");
    let admin_url = |path: &str| format!("{}/admin/v1{path}", app.base);

    // Malformed JSON.
    for path in [
        "/tenants",
        "/tenants/acme/agents",
        &format!("/tenants/acme/agents/{}/tokens", acme.agent_id),
        "/tenants/acme/grants",
    ] {
        let response = app
            .http
            .post(admin_url(path))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body("{name: 1")
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }

    // Unknown fields: refused, not silently dropped. A misspelt `scope` must not mint an
    // unrestricted token.
    let agent = acme.agent_id.as_str();
    let con = acme.connection_id.as_str();
    let unknown: [(&str, String, Value); 7] = [
        (
            "POST",
            "/tenants".into(),
            json!({ "name": "extra", "region": "eu" }),
        ),
        (
            "POST",
            "/tenants/acme/agents".into(),
            json!({ "name": "extra", "admin": true }),
        ),
        (
            "POST",
            format!("/tenants/acme/agents/{agent}/tokens"),
            json!({ "scopes": ["crm/get_contact"] }),
        ),
        (
            "POST",
            "/tenants/acme/grants".into(),
            json!({ "agent": agent, "connection": con, "tools": "get_contact" }),
        ),
        (
            "POST",
            "/admins".into(),
            json!({ "name": "extra", "role": "approver", "tenant": "acme", "tenants": ["other"] }),
        ),
        (
            "PUT",
            format!("/tenants/acme/connections/{con}/tools/send_email"),
            json!({ "effect": "send", "force": true }),
        ),
        (
            "POST",
            format!("/approvals/{held}/approve"),
            json!({ "reason": "ok", "as": "someone-else" }),
        ),
    ];
    for (method, path, body) in unknown {
        let method: Method = method.parse().expect("method");
        let (status, reply) = app
            .api(method, &path, &app.admin_token, Some(body.clone()))
            .await;
        assert!(
            status.is_client_error(),
            "{path} {body}: accepted with {status}: {reply}"
        );
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}");
    }
    // Values of the wrong type or shape.
    let (status, _) = app
        .api(
            Method::POST,
            "/tenants",
            &app.admin_token,
            Some(json!({ "name": 7 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app
        .api(
            Method::POST,
            "/tenants",
            &app.admin_token,
            Some(json!({ "name": "Not A Name" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{body}"
    );
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/tenants/acme/agents/{agent}/tokens"),
            &app.admin_token,
            Some(json!({ "scope": ["crm/"] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .api(
            Method::PUT,
            &format!("/tenants/acme/connections/{con}/tools/send_email"),
            &app.admin_token,
            Some(json!({ "effect": "harmless" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Ids of the wrong shape name nothing: 404, like ids that do not exist.
    let not_found = json!({ "code": "not_found", "detail": "not found" });
    let bad_ids: [(Method, String); 8] = [
        (Method::GET, "/approvals/not-an-id".into()),
        (Method::GET, format!("/approvals/{}", held.to_uppercase())),
        (Method::POST, format!("/approvals/{held}x/approve")),
        (
            Method::GET,
            format!("/approvals/{}", held.replace("apr_", "con_")),
        ),
        (
            Method::GET,
            "/tenants/acme/connections/con_short/tools".into(),
        ),
        (
            Method::POST,
            format!("/tenants/acme/connections/{agent}/revoke"),
        ),
        (
            Method::POST,
            "/tenants/acme/agents/..%2F..%2Fadmins/revoke".into(),
        ),
        (Method::POST, "/tenants/acme/tokens/tok_%00/revoke".into()),
    ];
    for (method, path) in bad_ids {
        let (status, body) = app
            .api(
                method.clone(),
                &path,
                &app.admin_token,
                Some(json!({ "reason": "r" })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body, not_found, "{method} {path}");
    }

    // Nothing changed: no events in the tenant's trail, no new tenant, the approval still pending.
    let after = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(
        after.len(),
        before,
        "bad admin input changed the trail: {:?}",
        &after[before..]
    );
    assert_eq!(
        app.admin_api().list_tenants().await.expect("tenants"),
        tenants_before
    );
    assert_eq!(app.approval(&held).await.status, ApprovalStatus::Pending);
    assert!(effect_lines(&acme.effect_log).is_empty());
    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(structured(&read)["name"], "Ada Lovelace");
    app.stop().await;
}
