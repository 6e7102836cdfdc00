//! Who may reach what: grants, token scopes, revocation and expiry of tokens and agents,
//! lockout after repeated bad tokens, the per-token rate limit, and connection revocation.

use crate::support::*;
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::tokens::TokenIn;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A new agent in `tenant` with one grant (`tool`: a tool name or `*`) and a token.
async fn agent_with_grant(
    app: &TestApp,
    tenant: &Tenant,
    name: &str,
    tool: &str,
) -> (String, String) {
    let api = app.admin_api();
    let agent = api
        .create_agent(&tenant.name, &NameIn { name: name.into() })
        .await
        .expect("create agent");
    let grant = GrantIn {
        agent: agent.id.to_string(),
        connection: tenant.connection_id.clone(),
        tool: tool.into(),
    };
    api.add_grant(&tenant.name, &grant).await.expect("grant");
    let token = api
        .create_token(&tenant.name, agent.id.as_str(), &TokenIn::default())
        .await
        .expect("create token");
    (agent.id.to_string(), token.token)
}

/// A new token for the tenant's seeded agent: (secret, id).
async fn new_token(app: &TestApp, tenant: &Tenant, body: TokenIn) -> (String, String) {
    let token = app
        .admin_api()
        .create_token(&tenant.name, &tenant.agent_id, &body)
        .await
        .expect("create token");
    (token.token, token.id.to_string())
}

/// One raw 2026-07-28 read call; returns the reply.
async fn raw_read(app: &TestApp, tenant: &str, token: &str) -> RawReply {
    post_2026(
        app,
        tenant,
        token,
        &tools_call_2026(7, "crm__get_contact", json!({ "id": "c_1" })),
        Some("crm__get_contact"),
    )
    .await
}

fn assert_unauthenticated(reply: &RawReply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(reply.error_code(), Some(-32001), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sees_and_calls_only_granted_tools() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (_, token) = agent_with_grant(&app, &acme, "reader", "get_contact").await;

    for era in [Era::Discover, Era::Initialize] {
        let client = app.client("acme", &token, era).await;
        assert_eq!(
            client.tool_names().await,
            vec!["crm__get_contact".to_owned()],
            "{era:?}"
        );

        let read = client
            .call("crm__get_contact", json!({ "id": "c_2" }))
            .await;
        assert_eq!(status(&read), "ok", "{read:?}");
        assert_eq!(structured(&read)["name"], "Grace Hopper");

        // An ungranted tool of a granted connection is unknown, exactly like a tool that does
        // not exist: nothing held, nothing executed, nothing learnt.
        for name in ["crm__send_email", "crm__list_contacts", "crm__no_such_tool"] {
            let err = client
                .try_call(
                    name,
                    json!({ "to": "x@example.com", "subject": "s", "body": "b" }),
                )
                .await
                .expect_err("an ungranted tool is not callable");
            assert!(
                err.contains(&format!("unknown tool `{name}`")),
                "{era:?}: {err}"
            );
        }
    }
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "an ungranted send reached the upstream"
    );
    assert!(
        approvals_of(&app, "acme").await.is_empty(),
        "an ungranted call created an approval"
    );

    // On the wire, an ungranted tool and a tool that does not exist get the same answer.
    let answer = |name: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let reply = post_2026(
                app,
                "acme",
                token,
                &tools_call_2026(9, name, json!({})),
                Some(name),
            )
            .await;
            (reply.status, reply.text.replace(name, "NAME"))
        }
    };
    assert_eq!(
        answer("crm__send_email").await,
        answer("crm__nothing_here").await,
        "ungranted and nonexistent tools must be indistinguishable"
    );

    // The seeded agent (granted `*`) still sees everything: grants are per agent.
    let full = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(full.tool_names().await.len(), 8);

    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let denials: Vec<_> = events_of_kind(&events, "tool_call")
        .into_iter()
        .filter(|e| e["decision"] == "deny" && e["detail"]["reasons"][0] == "unknown tool")
        .collect();
    assert_eq!(
        denials.len(),
        8,
        "each call of an ungranted or unknown tool is audited as a denial"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_one_tool_sees_and_calls_only_that_tool() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (token, _) = new_token(
        &app,
        &acme,
        TokenIn {
            scope: vec!["crm/get_contact".into()],
            ..TokenIn::default()
        },
    )
    .await;

    let client = app.client("acme", &token, Era::Discover).await;
    assert_eq!(
        client.tool_names().await,
        vec!["crm__get_contact".to_owned()]
    );
    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(structured(&read)["name"], "Ada Lovelace");

    // Out of the token's scope, though granted (and read-only): unknown to this token.
    for name in ["crm__send_email", "crm__list_contacts"] {
        let err = client
            .try_call(
                name,
                json!({ "to": "x@example.com", "subject": "s", "body": "b" }),
            )
            .await
            .expect_err("an out-of-scope tool is not callable");
        assert!(err.contains(&format!("unknown tool `{name}`")), "{err}");
    }
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert!(approvals_of(&app, "acme").await.is_empty());

    // The agent's unscoped token still reaches everything.
    let full = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(full.tool_names().await.len(), 8);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_its_next_request() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (token, token_id) = new_token(&app, &acme, TokenIn::default()).await;
    let modern = app.client("acme", &token, Era::Discover).await;
    let legacy = app.client("acme", &token, Era::Initialize).await;
    assert_eq!(
        status(
            &modern
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    assert_eq!(
        status(
            &legacy
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );

    app.admin_api()
        .revoke_token("acme", &token_id)
        .await
        .expect("revoke token");

    let err = modern
        .try_call("crm__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("revoked token still served (2026-07-28)");
    assert!(!err.is_empty());
    legacy
        .try_call("crm__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("revoked token still served in its legacy session");
    assert_unauthenticated(&raw_read(&app, "acme", &token).await);
    assert!(
        connect(&app.mcp_url("acme"), &token, Era::Discover)
            .await
            .is_err(),
        "a revoked token connects"
    );

    // Other tokens of the same agent are unaffected.
    assert_read_ok(&raw_read(&app, "acme", &acme.agent_token).await);

    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(events_of_kind(&events, "token_revoked").len(), 1);
    assert!(
        events_of_kind(&events, "auth_failed")
            .iter()
            .any(|e| e["detail"]["reason"] == "token revoked"),
        "refusals of the revoked token are audited"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (token, _) = new_token(
        &app,
        &acme,
        TokenIn {
            ttl_secs: Some(60),
            ..TokenIn::default()
        },
    )
    .await;
    let client = app.client("acme", &token, Era::Discover).await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );

    app.clock.advance(59_000);
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok",
        "still valid before its expiry"
    );

    app.clock.advance(2_000);
    client
        .try_call("crm__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("expired token still served");
    assert_unauthenticated(&raw_read(&app, "acme", &token).await);
    assert!(
        connect(&app.mcp_url("acme"), &token, Era::Initialize)
            .await
            .is_err(),
        "an expired token connects"
    );

    // A fresh (30-day) token is unaffected by the clock move.
    assert_read_ok(&raw_read(&app, "acme", &acme.agent_token).await);
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert!(
        events_of_kind(&events, "auth_failed")
            .iter()
            .any(|e| e["detail"]["reason"] == "token expired")
    );

    // A token outliving the maximum is refused at creation.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/tenants/acme/agents/{}/tokens", acme.agent_id),
            &app.admin_token,
            Some(json!({ "ttl_secs": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (other_agent, other_token) = agent_with_grant(&app, &acme, "other", "*").await;
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );

    app.admin_api()
        .revoke_agent("acme", &acme.agent_id)
        .await
        .expect("revoke agent");

    client
        .try_call("crm__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("revoked agent still served");
    assert_unauthenticated(&raw_read(&app, "acme", &acme.agent_token).await);
    assert!(
        connect(&app.mcp_url("acme"), &acme.agent_token, Era::Discover)
            .await
            .is_err()
    );
    // A new token for a revoked agent is no way back in.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/tenants/acme/agents/{}/tokens", acme.agent_id),
            &app.admin_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a token was minted for a revoked agent: {body}"
    );

    // Only that agent is refused.
    assert!(other_agent != acme.agent_id);
    assert_read_ok(&raw_read(&app, "acme", &other_token).await);
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(events_of_kind(&events, "agent_revoked").len(), 1);
    assert!(
        events_of_kind(&events, "auth_failed")
            .iter()
            .any(|e| e["detail"]["reason"] == "agent revoked")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_tokens_lock_the_address_out_and_are_audited() {
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 3).await;
    let acme = app.seed_tenant("acme").await;
    // The prober comes from another loopback address, so the lockout can be told apart
    // from the admin's (and the honest agent's) requests from 127.0.0.1.
    let prober = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let url = app.mcp_url("acme");
    let body = tools_call_2026(1, "crm__get_contact", json!({ "id": "c_1" })).to_string();
    let unknown = format!("pca_{}", "0".repeat(64));
    let bad: [Option<&str>; 3] = [Some(&unknown), Some("not-a-token"), None];
    for token in bad {
        let reply = raw_post(&prober, &url, token, &JSON_AND_SSE, body.clone()).await;
        assert_unauthenticated(&reply);
    }

    // Now even the valid token is refused from that address, with a Retry-After.
    let mut headers = JSON_AND_SSE.to_vec();
    headers.extend([
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "crm__get_contact"),
    ]);
    let locked = raw_post(
        &prober,
        &url,
        Some(&acme.agent_token),
        &headers,
        body.clone(),
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
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=900).contains(&retry), "retry-after {retry}");
    assert_eq!(locked.error_code(), Some(-32001));

    // The lockout is per address: the same token from 127.0.0.1 is served.
    assert_read_ok(&raw_read(&app, "acme", &acme.agent_token).await);

    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let failures: Vec<_> = events_of_kind(&events, "auth_failed")
        .into_iter()
        .filter(|e| e["actor"] == "ip:127.0.0.2")
        .collect();
    assert_eq!(failures.len(), 3, "each bad token is audited: {failures:?}");
    let lockouts = events_of_kind(&events, "locked_out");
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(lockouts[0]["actor"], "ip:127.0.0.2");
    for event in events.iter().filter(|e| e["actor"] == "ip:127.0.0.2") {
        assert!(
            !event.to_string().contains(&unknown),
            "a presented token reached the audit trail"
        );
    }

    // After the lockout the address is served again.
    app.clock.advance(901_000);
    let after = raw_post(&prober, &url, Some(&acme.agent_token), &headers, body).await;
    assert_read_ok(&after);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_token_rate_limit_refuses_then_refills() {
    let app = TestApp::spawn_with(|c| {
        c.auth.rate_limit_burst = 3;
        c.auth.rate_limit_per_minute = 1;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    for _ in 0..3 {
        assert_read_ok(&raw_read(&app, "acme", &acme.agent_token).await);
    }
    for _ in 0..2 {
        let limited = raw_read(&app, "acme", &acme.agent_token).await;
        assert_eq!(
            limited.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            limited.text
        );
        let retry: u64 = limited
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=61).contains(&retry), "retry-after {retry}");
    }

    // Per token: another token of the same agent has its own bucket.
    let (other, _) = new_token(&app, &acme, TokenIn::default()).await;
    assert_read_ok(&raw_read(&app, "acme", &other).await);

    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let limited = events_of_kind(&events, "rate_limited");
    assert_eq!(limited.len(), 1, "one audit event per episode: {limited:?}");
    assert_eq!(limited[0]["actor"], format!("agent:{}", acme.agent_id));

    // One request per minute refills.
    app.clock.advance(60_000);
    assert_read_ok(&raw_read(&app, "acme", &acme.agent_token).await);
    let again = raw_read(&app, "acme", &acme.agent_token).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(
        events_of_kind(&events, "rate_limited").len(),
        2,
        "a new episode is audited again"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connection_hides_its_tools_and_pauses_pending_approvals() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(client.tool_names().await.len(), 8);
    let send = json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" });
    let held = approval_id(&client.call("crm__send_email", send.clone()).await);

    let revoked = app
        .admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .expect("revoke connection");
    assert_eq!(revoked.revoked.as_str(), acme.connection_id);

    assert!(
        client.tool_names().await.is_empty(),
        "a revoked connection's tools are still listed"
    );
    let approval = app.approval(&held).await;
    assert_eq!(
        approval.status,
        ApprovalStatus::NeedsReconnection,
        "{approval:?}"
    );
    let err = client
        .try_call("crm__get_contact", json!({ "id": "c_1" }))
        .await
        .expect_err("a revoked connection still serves");
    assert!(err.contains("unknown tool"), "{err}");

    // The paused approval cannot be approved into an execution either.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/approvals/{held}/approve"),
            &acme.approver_token,
            Some(json!({ "reason": "late" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    client
        .try_call("crm__send_email", send)
        .await
        .expect_err("a revoked connection still executes");
    assert!(effect_lines(&acme.effect_log).is_empty());

    let connections = app
        .admin_api()
        .list_connections("acme")
        .await
        .expect("list connections");
    assert!(connections[0].revoked_at.is_some(), "{connections:?}");
    // Revoking twice: the connection is no longer active, so there is nothing to revoke.
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/tenants/acme/connections/{}/revoke", acme.connection_id),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_belongs_to_the_agent_that_opened_it() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (_, other_token) = agent_with_grant(&app, &acme, "other", "*").await;
    let session = raw_legacy_session(&app, "acme", &acme.agent_token).await;
    let mut headers = JSON_AND_SSE.to_vec();
    headers.extend([
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    let send = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": { "name": "crm__send_email", "arguments": { "to": "a@example.com", "subject": "s", "body": "b" } } });

    // Another agent of the same tenant presenting the session id: as if it did not exist.
    let hijack = raw_post(
        &app.http,
        &app.mcp_url("acme"),
        Some(&other_token),
        &headers,
        send.to_string(),
    )
    .await;
    assert_eq!(hijack.status, StatusCode::NOT_FOUND, "{}", hijack.text);
    assert!(
        approvals_of(&app, "acme").await.is_empty(),
        "the hijacked session held an action"
    );

    // Its owner uses it normally.
    let own = raw_post(
        &app.http,
        &app.mcp_url("acme"),
        Some(&acme.agent_token),
        &headers,
        send.to_string(),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(
        own.result().expect("result")["structuredContent"]["status"],
        "pending_approval",
        "{}",
        own.text
    );
    let approvals = approvals_of(&app, "acme").await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].agent.as_str(), acme.agent_id);
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}
