//! Tenant isolation: another tenant's tokens, approvals, audit, connections, agents and
//! effects are "not found" (or simply absent), never a leak, and answer exactly like ids that
//! do not exist.

use crate::support::*;
use portcullis_server::admin::connections::ConnectionIn;
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::humans::AdminIn;
use portcullis_server::admin::tokens::TokenIn;
use portcullis_server::upstream::{ConnectionSpec, Transport};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NO_APPROVAL: &str = "apr_00000000000000000000000000";
const NO_CONNECTION: &str = "con_00000000000000000000000000";
const NO_AGENT: &str = "agt_00000000000000000000000000";
const NO_TOKEN: &str = "tok_00000000000000000000000000";

fn send_args() -> Value {
    json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" })
}

/// `method path` as `token` must answer 404 exactly like the same call on `missing`.
async fn same_not_found(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    missing: &str,
    body: Option<Value>,
) {
    let (status, real) = app.api(method.clone(), path, token, body.clone()).await;
    let (missing_status, fake) = app.api(method.clone(), missing, token, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {real}");
    assert_eq!(
        missing_status,
        StatusCode::NOT_FOUND,
        "{method} {missing}: {fake}"
    );
    assert_eq!(
        real, fake,
        "{method} {path} answers differently from a missing id"
    );
    assert_eq!(real, json!({ "code": "not_found", "detail": "not found" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_agent_token_is_refused() {
    let app = TestApp::spawn().await;
    let a = app.seed_tenant("a").await;
    let b = app.seed_tenant("b").await;

    let body = tools_call_2026(1, "crm__get_contact", json!({ "id": "c_1" }));
    let cross = post_2026(&app, "a", &b.agent_token, &body, Some("crm__get_contact")).await;
    let unknown = post_2026(
        &app,
        "a",
        &format!("pca_{}", "f".repeat(64)),
        &body,
        Some("crm__get_contact"),
    )
    .await;
    assert_eq!(cross.status, StatusCode::UNAUTHORIZED, "{}", cross.text);
    assert_eq!(
        cross.text, unknown.text,
        "another tenant's token is told apart from an unknown one"
    );
    for era in [Era::Discover, Era::Initialize] {
        assert!(
            connect(&app.mcp_url("a"), &b.agent_token, era)
                .await
                .is_err(),
            "B's token connects to A ({era:?})"
        );
    }
    // A tenant that does not exist answers the same.
    let nowhere = post_2026(
        &app,
        "nowhere",
        &b.agent_token,
        &body,
        Some("crm__get_contact"),
    )
    .await;
    assert_eq!((nowhere.status, nowhere.text), (cross.status, cross.text));

    // Each token still works on its own tenant.
    let own = post_2026(&app, "b", &b.agent_token, &body, Some("crm__get_contact")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let events = audit_events_of(&app, &app.admin_token, "a").await;
    assert!(
        events_of_kind(&events, "auth_failed")
            .iter()
            .any(|e| e["detail"]["reason"] == "token belongs to another tenant"),
        "the cross-tenant attempt is in A's trail"
    );
    assert!(effect_lines(&a.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_approver_cannot_see_or_decide_its_approvals() {
    let app = TestApp::spawn().await;
    let a = app.seed_tenant("a").await;
    let b = app.seed_tenant("b").await;
    let client = app.client("a", &a.agent_token, Era::Discover).await;
    let held = approval_id(&client.call("crm__send_email", send_args()).await);

    let bt = &b.approver_token;
    same_not_found(
        &app,
        bt,
        Method::GET,
        "/approvals?tenant=a",
        "/approvals?tenant=nowhere",
        None,
    )
    .await;
    same_not_found(
        &app,
        bt,
        Method::GET,
        &format!("/approvals/{held}"),
        &format!("/approvals/{NO_APPROVAL}"),
        None,
    )
    .await;
    let reason = Some(json!({ "reason": "mine now" }));
    same_not_found(
        &app,
        bt,
        Method::POST,
        &format!("/approvals/{held}/approve"),
        &format!("/approvals/{NO_APPROVAL}/approve"),
        reason.clone(),
    )
    .await;
    same_not_found(
        &app,
        bt,
        Method::POST,
        &format!("/approvals/{held}/deny"),
        &format!("/approvals/{NO_APPROVAL}/deny"),
        reason,
    )
    .await;
    // B's own listing (no tenant named) holds nothing of A's.
    let (status, listed) = app.api(Method::GET, "/approvals", bt, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([]), "B's approver lists A's approvals");

    // B's approver cannot read or verify A's audit trail either.
    same_not_found(
        &app,
        bt,
        Method::GET,
        "/audit/events?tenant=a",
        "/audit/events?tenant=nowhere",
        None,
    )
    .await;
    same_not_found(
        &app,
        bt,
        Method::GET,
        "/audit/verify?tenant=a",
        "/audit/verify?tenant=nowhere",
        None,
    )
    .await;
    same_not_found(
        &app,
        bt,
        Method::POST,
        "/audit/checkpoint?tenant=a",
        "/audit/checkpoint?tenant=nowhere",
        None,
    )
    .await;
    let own = audit_events_of(&app, bt, "b").await;
    assert!(!own.is_empty());
    assert!(
        own.iter().all(|e| e["tenant"] == b.id.as_str()),
        "B's trail holds another tenant's events"
    );
    let (status, unnamed) = app.api(Method::GET, "/audit/events", bt, None).await;
    assert_eq!(status, StatusCode::OK, "{unnamed}");
    assert!(
        unnamed
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["tenant"] == b.id.as_str())
    );
    let (status, verify) = app.api(Method::GET, "/audit/verify", bt, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        verify["tenants"].as_array().map(Vec::len),
        Some(1),
        "{verify}"
    );
    assert!(
        !verify.to_string().contains(a.id.as_str()),
        "B's verify report names A: {verify}"
    );

    // Nothing happened to A's approval; A's own approver can still decide it.
    let (_, shown) = app
        .api(
            Method::GET,
            &format!("/approvals/{held}"),
            &a.approver_token,
            None,
        )
        .await;
    assert_eq!(shown["status"], "pending", "{shown}");
    assert!(effect_lines(&a.effect_log).is_empty());
    let a_events = audit_events_of(&app, &app.admin_token, "a").await;
    assert!(
        events_of_kind(&a_events, "approve").is_empty()
            && events_of_kind(&a_events, "deny").is_empty()
    );
    app.approve(&a, &held).await;
    let executed = client.call("crm__send_email", send_args()).await;
    assert_eq!(structured(&executed)["status"], "sent", "{executed:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_tools_and_effects() {
    let app = TestApp::spawn().await;
    let a = app.seed_tenant("a").await;
    let b = app.seed_tenant("b").await;
    // A second connection in A, with a name B does not have.
    let billing = ConnectionIn {
        name: "billing".into(),
        spec: ConnectionSpec::new(
            Transport::Stdio {
                program: "demo".into(),
                args: Vec::new(),
                env: Default::default(),
            },
            demo_classification(),
        ),
        redaction: Default::default(),
    };
    let billing = app
        .admin_api()
        .create_connection("a", &billing)
        .await
        .expect("create connection");
    let billing_id = billing.id.to_string();
    app.wait_ready(&billing_id).await;
    let grant = GrantIn {
        agent: a.agent_id.clone(),
        connection: billing_id.clone(),
        tool: "*".into(),
    };
    app.admin_api().add_grant("a", &grant).await.expect("grant");

    let a_client = app.client("a", &a.agent_token, Era::Discover).await;
    let b_client = app.client("b", &b.agent_token, Era::Initialize).await;
    let a_tools = a_client.tool_names().await;
    let b_tools = b_client.tool_names().await;
    assert_eq!(a_tools.len(), 16, "{a_tools:?}");
    assert_eq!(b_tools.len(), 8, "{b_tools:?}");
    assert!(
        b_tools.iter().all(|t| t.starts_with("crm__")),
        "B sees A's connection: {b_tools:?}"
    );
    let err = b_client
        .try_call("billing__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("B calls A's connection");
    assert!(err.contains("unknown tool"), "{err}");
    // B's admin side cannot grant A's connection (or A's agent) in B either.
    let (status, _) = app
        .api(
            Method::POST,
            "/tenants/b/grants",
            &app.admin_token,
            Some(json!({ "agent": b.agent_id, "connection": billing_id })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .api(
            Method::POST,
            "/tenants/b/grants",
            &app.admin_token,
            Some(json!({ "agent": a.agent_id, "connection": b.connection_id })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // B's effect runs in B's upstream only.
    let held = approval_id(&b_client.call("crm__send_email", send_args()).await);
    app.approve(&b, &held).await;
    let sent = b_client.call("crm__send_email", send_args()).await;
    assert_eq!(structured(&sent)["status"], "sent", "{sent:?}");
    assert_eq!(effect_lines(&b.effect_log).len(), 1);
    assert!(
        effect_lines(&a.effect_log).is_empty(),
        "B's send reached A's upstream"
    );
    // And A's identical held call is A's own approval, not B's.
    let a_held = approval_id(&a_client.call("crm__send_email", send_args()).await);
    assert_ne!(a_held, held);

    let a_events = audit_events_of(&app, &app.admin_token, "a").await;
    let a_text = serde_json::to_string(&a_events).expect("json");
    for foreign in [
        b.id.as_str(),
        b.agent_id.as_str(),
        b.connection_id.as_str(),
        held.as_str(),
    ] {
        assert!(
            !a_text.contains(foreign),
            "A's trail mentions B's {foreign}"
        );
    }
    assert!(a_events.iter().all(|e| e["tenant"] == a.id.as_str()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_are_not_found_to_a_tenant_scoped_admin() {
    let app = TestApp::spawn().await;
    let a = app.seed_tenant("a").await;
    let _b = app.seed_tenant("b").await;
    let b_admin = AdminIn {
        name: "b-admin".into(),
        role: "admin".into(),
        tenant: Some("b".into()),
        ttl_secs: None,
    };
    let bt = app
        .admin_api()
        .create_admin(&b_admin)
        .await
        .expect("create b-admin")
        .token;
    let a_token = app
        .admin_api()
        .create_token("a", &a.agent_id, &TokenIn::default())
        .await
        .expect("create token");
    let a_token_id = a_token.id.as_str();
    let con = &a.connection_id;

    // A's connection, agent and token, addressed through B: not found, like ids that do not exist.
    same_not_found(
        &app,
        &bt,
        Method::GET,
        &format!("/tenants/b/connections/{con}/tools"),
        &format!("/tenants/b/connections/{NO_CONNECTION}/tools"),
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        &format!("/tenants/b/connections/{con}/revoke"),
        &format!("/tenants/b/connections/{NO_CONNECTION}/revoke"),
        None,
    )
    .await;
    let classify = Some(json!({ "effect": "read" }));
    same_not_found(
        &app,
        &bt,
        Method::PUT,
        &format!("/tenants/b/connections/{con}/tools/send_email"),
        &format!("/tenants/b/connections/{NO_CONNECTION}/tools/send_email"),
        classify.clone(),
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        &format!("/tenants/b/agents/{}/revoke", a.agent_id),
        &format!("/tenants/b/agents/{NO_AGENT}/revoke"),
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        &format!("/tenants/b/agents/{}/tokens", a.agent_id),
        &format!("/tenants/b/agents/{NO_AGENT}/tokens"),
        Some(json!({})),
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        &format!("/tenants/b/tokens/{a_token_id}/revoke"),
        &format!("/tenants/b/tokens/{NO_TOKEN}/revoke"),
        None,
    )
    .await;
    // Tenant A by name: not found, like a tenant that does not exist.
    same_not_found(
        &app,
        &bt,
        Method::GET,
        "/tenants/a/connections",
        "/tenants/nowhere/connections",
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::GET,
        &format!("/tenants/a/connections/{con}/tools"),
        &format!("/tenants/nowhere/connections/{con}/tools"),
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        &format!("/tenants/a/connections/{con}/revoke"),
        &format!("/tenants/nowhere/connections/{con}/revoke"),
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::PUT,
        &format!("/tenants/a/connections/{con}/tools/send_email"),
        "/tenants/nowhere/connections/x/tools/y",
        classify,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::GET,
        "/tenants/a/agents",
        "/tenants/nowhere/agents",
        None,
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        "/tenants/a/agents",
        "/tenants/nowhere/agents",
        Some(json!({ "name": "mole" })),
    )
    .await;
    same_not_found(
        &app,
        &bt,
        Method::POST,
        "/admins",
        "/admins",
        Some(json!({ "name": "mole", "role": "approver", "tenant": "a" })),
    )
    .await;

    let (code, tenants) = app.api(Method::GET, "/tenants", &bt, None).await;
    assert_eq!(code, StatusCode::OK);
    let names: Vec<&str> = tenants
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["b"]);
    let (code, _) = app
        .api(Method::POST, "/tenants", &bt, Some(json!({ "name": "c" })))
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // Nothing of A changed: its connection, tool classification, agent and tokens all work.
    let client = app.client("a", &a.agent_token, Era::Discover).await;
    assert_eq!(client.tool_names().await.len(), 8);
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    assert_eq!(
        status(&client.call("crm__send_email", send_args()).await),
        "pending_approval",
        "the classification was changed"
    );
    let other = app.client("a", &a_token.token, Era::Discover).await;
    assert_eq!(other.tool_names().await.len(), 8);
    let a_events = audit_events_of(&app, &app.admin_token, "a").await;
    assert!(
        !a_events.iter().any(|e| e["actor"] == "admin:b-admin"),
        "B's admin acted in A"
    );
    app.stop().await;
}
