//! The console's management pages over plain HTTP: connections and the access review,
//! agents and tokens with the kill switches, guardrails, webhooks and policies. Each change
//! is tried the way it can go wrong too: without the CSRF token, by a role that only reads,
//! by an approver where the API wants an admin, and against another tenant by URL.

use crate::console::{Page, Session, Web, create_human, enroll, set_console_totp, set_password};
use crate::support::*;
use crate::webhooks::Receiver;
use portcullis_server::admin::webhooks::EndpointIn;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A signed-in human of `tenant` with `role`.
async fn signed_in(app: &TestApp, web: &Web, name: &str, role: &str, tenant: &str) -> Session {
    let (name, token) = create_human(app, name, role, tenant).await;
    let human = enroll(app, &name, &token).await;
    web.sign_in(app, &human).await
}

fn ok(page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::OK, "{what}: {}", page.text);
    crate::console::assert_secure(page, what);
}

fn mail(n: usize) -> Value {
    json!({ "to": "ada@example.com", "subject": format!("Update {n}"), "body": "All good." })
}

/// The first `pca_` token on a page.
fn token_in(html: &str) -> Option<String> {
    regex::Regex::new(r"pca_[A-Za-z0-9_-]{20,}")
        .expect("regex")
        .find(html)
        .map(|m| m.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_tokens_and_kill_switches_work_from_the_console_within_each_role() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let admin = signed_in(&app, &web, "acme-admin", "admin", "acme").await;
    let approver = signed_in(&app, &web, "acme-appr", "approver", "acme").await;
    let viewer = signed_in(&app, &web, "acme-viewer", "viewer", "acme").await;
    let base = "/console/t/acme";

    let page = web.get(&format!("{base}/agents"), Some(&admin)).await;
    ok(&page, "agents page");
    assert!(
        page.text.contains(&acme.agent_id),
        "the seeded agent is listed"
    );
    assert!(token_in(&page.text).is_none(), "no token secret on a list");

    // Minting shows the token once; it works at the gateway; the list never shows it again.
    let once = regex::Regex::new(r#"name="once" value="([0-9a-f]{32})""#)
        .unwrap()
        .captures(&page.text)
        .expect("the mint form carries a one-time value")[1]
        .to_owned();
    let mint_form = [
        ("csrf", admin.csrf.as_str()),
        ("scope", "crm"),
        ("days", "2"),
        ("once", once.as_str()),
    ];
    let mint_url = format!("{base}/agents/{}/tokens", acme.agent_id);
    let minted = web.post(&mint_url, Some(&admin), &mint_form).await;
    ok(&minted, "minted");
    // Reloading that page sends the form again: refused, nothing minted.
    let tokens_before = app.admin_api().tokens("acme").await.expect("tokens").len();
    let reload = web.post(&mint_url, Some(&admin), &mint_form).await;
    assert_eq!(reload.status, StatusCode::BAD_REQUEST, "{}", reload.text);
    assert!(token_in(&reload.text).is_none());
    assert_eq!(
        app.admin_api().tokens("acme").await.expect("tokens").len(),
        tokens_before,
        "a reload mints nothing"
    );
    let token = token_in(&minted.text).expect("the new token is shown");
    let agent = app.client("acme", &token, Era::Discover).await;
    assert!(
        agent
            .tool_names()
            .await
            .contains(&"crm__get_contact".to_owned())
    );
    let again = web.get(&format!("{base}/agents"), Some(&admin)).await;
    assert!(!again.text.contains(&token), "shown once only");
    let listed = app.admin_api().tokens("acme").await.expect("tokens");
    let new = listed
        .iter()
        .find(|t| t.scope == vec!["crm".to_owned()])
        .expect("the minted token is listed");
    assert!(new.expires_at - new.created_at <= 2 * 86_400_000);

    // Changes without the session's CSRF token, or by a role that reads, change nothing.
    let switch = format!("{base}/agents/{}/switch/suspend", acme.agent_id);
    let forged = web
        .post(&switch, Some(&admin), &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let missing = web.post(&switch, Some(&admin), &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let read_only = web
        .post(&switch, Some(&viewer), &[("csrf", &viewer.csrf)])
        .await;
    assert_eq!(read_only.status, StatusCode::FORBIDDEN);
    assert_eq!(
        status(&agent.call("crm__get_contact", json!({"id": "c_1"})).await),
        "ok"
    );

    // The kill switch: an approver suspends (stricter), only an admin resumes.
    let thrown = web
        .post(&switch, Some(&approver), &[("csrf", &approver.csrf)])
        .await;
    thrown.assert_see_other(&format!("{base}/agents"), "suspended");
    let refused = agent
        .try_call("crm__get_contact", json!({"id": "c_1"}))
        .await;
    assert!(
        refused.is_err() || refused.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "a suspended agent's next call is refused: {refused:?}"
    );
    // A repeated click suspends again; it never flips the switch back.
    let twice = web
        .post(&switch, Some(&approver), &[("csrf", &approver.csrf)])
        .await;
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
    let resume = format!("{base}/agents/{}/switch/resume", acme.agent_id);
    let by_approver = web
        .post(&resume, Some(&approver), &[("csrf", &approver.csrf)])
        .await;
    assert_eq!(by_approver.status, StatusCode::FORBIDDEN);
    web.post(&resume, Some(&admin), &[("csrf", &admin.csrf)])
        .await
        .assert_see_other(&format!("{base}/agents"), "resumed");
    let agent = app.client("acme", &token, Era::Discover).await;
    assert_eq!(
        status(&agent.call("crm__get_contact", json!({"id": "c_1"})).await),
        "ok"
    );

    // The tenant's kill switch, the same way.
    web.post(
        &format!("{base}/kill-switch/suspend"),
        Some(&approver),
        &[("csrf", &approver.csrf)],
    )
    .await
    .assert_see_other(&format!("{base}/agents"), "tenant suspended");
    let tenants = app.admin_api().list_tenants().await.expect("tenants");
    let suspended = tenants
        .iter()
        .find(|t| t.name == "acme")
        .map(|t| t.suspended_at);
    assert!(matches!(suspended, Some(Some(_))), "{tenants:?}");
    web.post(
        &format!("{base}/kill-switch/resume"),
        Some(&admin),
        &[("csrf", &admin.csrf)],
    )
    .await
    .assert_see_other(&format!("{base}/agents"), "tenant resumed");

    // Revoking the token: an approver may not, an admin may; the gateway refuses it at once.
    let revoke = format!("{base}/tokens/{}/revoke", new.id);
    let denied = web
        .post(&revoke, Some(&approver), &[("csrf", &approver.csrf)])
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    web.post(&revoke, Some(&admin), &[("csrf", &admin.csrf)])
        .await
        .assert_see_other(&format!("{base}/agents"), "token revoked");
    assert!(
        connect(&app.mcp_url("acme"), &token, Era::Discover)
            .await
            .is_err()
    );

    // Creating an agent, with bad input refused clearly and changing nothing.
    let bad = web
        .post(
            &format!("{base}/agents/new"),
            Some(&admin),
            &[("csrf", &admin.csrf), ("name", "Not A Name!")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("must be 1-32"), "{}", bad.text);
    web.post(
        &format!("{base}/agents/new"),
        Some(&admin),
        &[("csrf", &admin.csrf), ("name", "report-bot")],
    )
    .await
    .assert_see_other(&format!("{base}/agents"), "agent created");
    let agents = app.admin_api().list_agents("acme").await.expect("agents");
    assert_eq!(agents.len(), 2, "{agents:?}");

    let events = app.audit_events("acme").await;
    for kind in [
        "token_created",
        "agent_suspended",
        "agent_resumed",
        "tenant_suspended",
        "tenant_resumed",
        "token_revoked",
        "agent_created",
    ] {
        assert!(!events_of_kind(&events, kind).is_empty(), "{kind} audited");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_pages_and_changes_are_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let web = Web::new(&app);
    let admin = signed_in(&app, &web, "acme-admin", "admin", "acme").await;
    for page in ["access", "agents", "guardrails", "webhooks", "policy"] {
        let seen = web
            .get(&format!("/console/t/globex/{page}"), Some(&admin))
            .await;
        assert_eq!(
            seen.status,
            StatusCode::NOT_FOUND,
            "globex {page}: {}",
            seen.text
        );
        assert!(!seen.text.contains(&globex.agent_id));
    }
    let tokens = app.admin_api().tokens("globex").await.expect("tokens");
    let changes = [
        format!(
            "/console/t/globex/agents/{}/switch/suspend",
            globex.agent_id
        ),
        format!("/console/t/globex/tokens/{}/revoke", tokens[0].id),
        format!(
            "/console/t/globex/connections/{}/revoke",
            globex.connection_id
        ),
        "/console/t/globex/kill-switch/suspend".to_owned(),
        // Another tenant's ids under this human's own tenant are not found either.
        format!("/console/t/acme/agents/{}/switch/suspend", globex.agent_id),
        format!("/console/t/acme/tokens/{}/revoke", tokens[0].id),
        format!(
            "/console/t/acme/connections/{}/revoke",
            globex.connection_id
        ),
    ];
    for path in &changes {
        let answer = web.post(path, Some(&admin), &[("csrf", &admin.csrf)]).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.text
        );
    }
    let globex_agent = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    assert_eq!(
        status(
            &globex_agent
                .call("crm__get_contact", json!({"id": "c_1"}))
                .await
        ),
        "ok"
    );
    assert!(
        app.admin_api().tokens("globex").await.expect("tokens")[0]
            .revoked_at
            .is_none()
    );
    let _ = acme;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_review_shows_use_and_revokes_a_connection_in_one_action() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let agent = app.client("acme", &acme.agent_token, Era::Discover).await;
    agent.call("crm__get_contact", json!({"id": "c_1"})).await;
    // A month without use: the review recommends revoking the connection.
    app.clock.advance(31 * 86_400_000);
    let admin = signed_in(&app, &web, "acme-admin", "admin", "acme").await;
    let auditor = signed_in(&app, &web, "acme-auditor", "auditor", "acme").await;

    let page = web.get("/console/t/acme/access", Some(&auditor)).await;
    ok(&page, "access page");
    assert!(page.text.contains("revoke connection"), "{}", page.text);
    assert!(page.text.contains("unused for 31 days"), "{}", page.text);
    assert!(
        !page.text.contains("Revoke crm"),
        "no revoke button for an auditor"
    );
    let revoke = format!("/console/t/acme/connections/{}/revoke", acme.connection_id);
    let by_auditor = web
        .post(&revoke, Some(&auditor), &[("csrf", &auditor.csrf)])
        .await;
    assert_eq!(by_auditor.status, StatusCode::FORBIDDEN);
    let recent = web
        .get("/console/t/acme/access?unused_days=60", Some(&auditor))
        .await;
    assert!(
        !recent.text.contains("revoke connection"),
        "{}",
        recent.text
    );

    let page = web.get("/console/t/acme/access", Some(&admin)).await;
    assert!(page.text.contains("Revoke crm"), "{}", page.text);
    web.post(&revoke, Some(&admin), &[("csrf", &admin.csrf)])
        .await
        .assert_see_other("/console/t/acme/access", "revoked");
    let connections = app
        .admin_api()
        .list_connections("acme")
        .await
        .expect("list");
    assert!(connections[0].revoked_at.is_some());
    let after = agent
        .try_call("crm__get_contact", json!({"id": "c_1"}))
        .await;
    assert!(
        after.is_err() || after.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "a revoked connection's tools are gone: {after:?}"
    );
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "connection_revoked").len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_is_created_from_a_suggestion_and_reverted_to_approve_each() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let admin = signed_in(&app, &web, "acme-admin", "admin", "acme").await;
    let approver = signed_in(&app, &web, "acme-appr", "approver", "acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    for n in 0..5 {
        let id = approval_id(&client.call("crm__send_email", mail(n)).await);
        app.approve(&acme, &id).await;
        assert_eq!(
            status(&client.call("crm__send_email", mail(n)).await),
            "sent"
        );
    }
    let page = web.get("/console/t/acme/guardrails", Some(&approver)).await;
    ok(&page, "guardrails page");
    assert!(page.text.contains("crm.send_email"), "{}", page.text);
    assert!(
        !page.text.contains("Create this guardrail"),
        "approvers do not create"
    );

    let page = web.get("/console/t/acme/guardrails", Some(&admin)).await;
    let spec = regex::Regex::new(r#"name="spec" value="([^"]+)""#)
        .expect("regex")
        .captures(&page.text)
        .expect("a suggestion's form")[1]
        .replace("&quot;", "\"");
    // A forged spec naming another tenant's connection is checked like any API spec.
    let forged = spec.replace("\"crm\"", "\"nothere\"");
    let refused = web
        .post(
            "/console/t/acme/guardrails/new",
            Some(&admin),
            &[
                ("csrf", &admin.csrf),
                ("name", "mail"),
                ("spec", &forged),
                ("mode", "auto"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    web.post(
        "/console/t/acme/guardrails/new",
        Some(&admin),
        &[
            ("csrf", &admin.csrf),
            ("name", "mail"),
            ("spec", &spec),
            ("mode", "auto"),
        ],
    )
    .await
    .assert_see_other("/console/t/acme/guardrails", "created");
    assert_eq!(
        status(&client.call("crm__send_email", mail(77)).await),
        "sent",
        "auto runs it"
    );

    let page = web.get("/console/t/acme/guardrails", Some(&approver)).await;
    let id = regex::Regex::new(r"/guardrails/(grd_[A-Za-z0-9]+)/approve-each")
        .expect("regex")
        .captures(&page.text)
        .expect("a revert button")[1]
        .to_owned();
    web.post(
        &format!("/console/t/acme/guardrails/{id}/approve-each"),
        Some(&approver),
        &[("csrf", &approver.csrf)],
    )
    .await
    .assert_see_other("/console/t/acme/guardrails", "reverted");
    let held = client.call("crm__send_email", mail(78)).await;
    assert_eq!(
        status(&held),
        "pending_approval",
        "approve-each holds again"
    );
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "guardrail_created").len(), 1);
    assert_eq!(events_of_kind(&events, "guardrail_changed").len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_listed_and_redelivered_with_the_same_id() {
    let app = TestApp::spawn_with(|c| c.webhooks.poll_interval_ms = 20).await;
    let acme = app.seed_tenant("acme").await;
    let receiver = Receiver::start().await;
    let created = app
        .admin_api()
        .create_webhook(
            "acme",
            &EndpointIn {
                url: receiver.url("/hook/secret-path-token"),
                events: vec!["action.held".into()],
                description: "ops".into(),
            },
        )
        .await
        .expect("endpoint");
    let web = Web::new(&app);
    let admin = signed_in(&app, &web, "acme-admin", "admin", "acme").await;
    let approver = signed_in(&app, &web, "acme-appr", "approver", "acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client.call("crm__send_email", mail(1)).await;
    let first = receiver.wait_for("/hook/secret-path-token", 1).await;

    let list = web.get("/console/t/acme/webhooks", Some(&admin)).await;
    ok(&list, "webhooks page");
    assert!(list.text.contains(&receiver.base), "{}", list.text);
    assert!(
        !list.text.contains("secret-path-token"),
        "a URL's path never shows"
    );
    assert!(!list.text.contains("whsec_"), "no secret");
    let not_admin = web.get("/console/t/acme/webhooks", Some(&approver)).await;
    assert_eq!(
        not_admin.status,
        StatusCode::FORBIDDEN,
        "admins only, as on the API"
    );

    let endpoint = created.endpoint.endpoint.id.to_string();
    let log = web
        .get(
            &format!("/console/t/acme/webhooks/{endpoint}"),
            Some(&admin),
        )
        .await;
    ok(&log, "deliveries page");
    assert!(
        log.text.contains(first[0].id()),
        "the webhook-id: {}",
        log.text
    );
    assert!(
        log.text.contains("action.held") && log.text.contains("success"),
        "{}",
        log.text
    );
    let delivery = regex::Regex::new(r"/deliveries/(dlv_[A-Za-z0-9]+)/redeliver")
        .expect("regex")
        .captures(&log.text)
        .expect("a redeliver button")[1]
        .to_owned();
    let path = format!("/console/t/acme/deliveries/{delivery}/redeliver");
    let forged = web.post(&path, Some(&admin), &[("csrf", "nope")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    web.post(&path, Some(&admin), &[("csrf", &admin.csrf)])
        .await
        .assert_see_other(
            &format!("/console/t/acme/webhooks/{endpoint}"),
            "redelivered",
        );
    let both = receiver.wait_for("/hook/secret-path-token", 2).await;
    assert_eq!(both[1].id(), first[0].id(), "the same webhook-id");
    assert_eq!(both.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_page_shows_checks_and_explains_without_changing_anything() {
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let viewer = signed_in(&app, &web, "acme-viewer", "viewer", "acme").await;
    let base = "/console/t/acme/policy";
    let page = web.get(base, Some(&viewer)).await;
    ok(&page, "policy page");
    assert!(page.text.contains("builtin.effects"), "{}", page.text);
    let before = app.admin_api().policy("acme").await.expect("policy");

    let invalid = web
        .post(
            &format!("{base}/validate"),
            Some(&viewer),
            &[
                ("csrf", &viewer.csrf),
                (
                    "cedar",
                    "permit(principal, action == Action::\"nope\", resource);",
                ),
                ("settings", "{}"),
            ],
        )
        .await;
    ok(&invalid, "checked");
    assert!(invalid.text.contains("Not valid"), "{}", invalid.text);
    let valid = web
        .post(
            &format!("{base}/validate"),
            Some(&viewer),
            &[("csrf", &viewer.csrf), ("cedar", "@id(\"no-deletes\")\nforbid(principal, action == Portcullis::Action::\"delete\", resource);"), ("settings", "")],
        )
        .await;
    assert!(
        valid.text.contains(">Valid<") && valid.text.contains("no-deletes"),
        "{}",
        valid.text
    );
    let without = web
        .post(&format!("{base}/validate"), Some(&viewer), &[("cedar", "")])
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN, "CSRF on every POST");

    let explained = web
        .post(
            &format!("{base}/explain"),
            Some(&viewer),
            &[
                ("csrf", &viewer.csrf),
                (
                    "call",
                    r#"bot crm/issue_refund spend {"amount_cents": 20000} cost_arg=amount_cents"#,
                ),
            ],
        )
        .await;
    ok(&explained, "explained");
    assert!(explained.text.contains("HOLD"), "{}", explained.text);
    assert!(
        explained.text.contains("policy builtin."),
        "{}",
        explained.text
    );
    let nonsense = web
        .post(
            &format!("{base}/explain"),
            Some(&viewer),
            &[("csrf", &viewer.csrf), ("call", "what")],
        )
        .await;
    assert!(
        nonsense.text.contains("Cannot explain"),
        "{}",
        nonsense.text
    );
    let after = app.admin_api().policy("acme").await.expect("policy");
    assert_eq!(
        before.hash, after.hash,
        "checking and explaining change nothing"
    );
    app.stop().await;
}

/// Drafts built to overflow Cedar's recursive parser, or to occupy the runtime, are refused
/// or checked off the runtime: a viewer cannot take the gateway down through "check".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policy_drafts_are_answered_and_the_gateway_keeps_serving() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let viewer = signed_in(&app, &web, "acme-viewer", "viewer", "acme").await;
    let check = |cedar: String| {
        let (web, viewer) = (&web, &viewer);
        async move {
            web.post(
                "/console/t/acme/policy/validate",
                Some(viewer),
                &[("csrf", &viewer.csrf), ("cedar", &cedar), ("settings", "")],
            )
            .await
        }
    };
    let depth = 20_000;
    let nested = format!(
        "permit(principal, action, resource) when {{ {}true{} }};",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let answer = check(nested.clone()).await;
    ok(&answer, "deeply nested");
    assert!(
        answer.text.contains("Not valid") && answer.text.contains("brackets deep"),
        "{}",
        answer.text
    );
    // A long chain without brackets builds a deep tree too.
    let chain = format!(
        "permit(principal, action, resource) when {{ {} }};",
        vec!["principal.name == \"x\""; 20_000].join(" || ")
    );
    let answer = check(chain).await;
    ok(&answer, "a long chain");
    assert!(answer.text.contains("chains more than"), "{}", answer.text);
    // The same through the admin API's upload.
    let (code, body) = app
        .api(
            reqwest::Method::PUT,
            "/tenants/acme/policy",
            &app.admin_token,
            Some(json!({ "cedar": nested })),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    // The longest chain allowed (12 names: 11 `||` and 12 `.`, under 24 operators) is
    // stored, compiled for the next call, evaluated, and explained on the policy page.
    let longest = format!(
        "permit(principal, action, resource) when {{ {} }};",
        ["principal.name == \"x\""; 12].join(" || ")
    );
    let (code, body) = app
        .api(
            reqwest::Method::PUT,
            "/tenants/acme/policy",
            &app.admin_token,
            Some(json!({ "cedar": longest })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Still serving agents and pages.
    let agent = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(&agent.call("crm__get_contact", json!({"id": "c_1"})).await),
        "ok"
    );
    ok(
        &web.get("/console/t/acme/policy", Some(&viewer)).await,
        "policy page after",
    );
    app.stop().await;
}

/// Where a tenant lets humans without an authenticator sign in with a password, such a
/// session may make the gateway stricter, never let more through, and it ends when the
/// tenant requires the code again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_only_session_cannot_widen_access_and_ends_when_codes_are_required() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_console_totp(&app, &app.admin_token, "acme", "optional")
        .await
        .expect("optional");
    let web = Web::new(&app);
    let (name, token) = create_human(&app, "acme-admin", "admin", "acme").await;
    let password = format!("{name} correct horse battery");
    set_password(&app, &token, &password).await;
    let page = web.try_sign_in(&name, &password, "").await;
    page.assert_see_other("/console", "password-only sign-in");
    let session = web.session(crate::console::cookie_of(&page)).await;
    let base = "/console/t/acme";
    let widening = [
        (
            format!("{base}/agents/{}/tokens", acme.agent_id),
            vec![("scope", "")],
        ),
        (format!("{base}/agents/new"), vec![("name", "sneaky")]),
        (format!("{base}/kill-switch/resume"), vec![]),
        (
            format!("{base}/agents/{}/switch/resume", acme.agent_id),
            vec![],
        ),
        (
            format!("{base}/guardrails/new"),
            vec![
                ("name", "all"),
                ("mode", "auto"),
                ("spec", r#"{"connection":"crm","tool":"send_email"}"#),
            ],
        ),
    ];
    for (path, extra) in &widening {
        let mut fields = vec![("csrf", session.csrf.as_str())];
        fields.extend(extra.iter().copied());
        let answer = web.post(path, Some(&session), &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.text
        );
        assert!(
            answer.text.contains("authenticator"),
            "{path}: {}",
            answer.text
        );
    }
    assert_eq!(
        app.admin_api().tokens("acme").await.expect("tokens").len(),
        1
    );
    assert_eq!(
        app.admin_api()
            .list_agents("acme")
            .await
            .expect("agents")
            .len(),
        1
    );
    // Stricter is fine: suspend the agent.
    web.post(
        &format!("{base}/agents/{}/switch/suspend", acme.agent_id),
        Some(&session),
        &[("csrf", &session.csrf)],
    )
    .await
    .assert_see_other(&format!("{base}/agents"), "suspended without a code");
    assert!(web.alive(&session, "acme").await);
    set_console_totp(&app, &app.admin_token, "acme", "required")
        .await
        .expect("required");
    assert!(
        !web.alive(&session, "acme").await,
        "the session ends with the rule"
    );
    app.stop().await;
}

/// A refused or unauthenticated write must not flush the access cache (every agent call
/// would then go to the database); a change that happened does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_do_not_flush_the_access_cache() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let viewer = signed_in(&app, &web, "acme-viewer", "viewer", "acme").await;
    let before = app.state.cache.invalidations();
    // Twice each: more would trip the address's lockout, which the last step needs open.
    for _ in 0..2 {
        web.post(
            "/console/login",
            None,
            &[("name", "nobody"), ("password", "x"), ("code", "1")],
        )
        .await;
        web.post("/console/nowhere", None, &[]).await;
        web.post(
            &format!("/console/t/acme/agents/{}/switch/suspend", acme.agent_id),
            Some(&viewer),
            &[("csrf", &viewer.csrf)],
        )
        .await;
        let (code, _) = app
            .api(
                reqwest::Method::POST,
                "/tenants",
                "pcadm_not-a-token",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
    // On PostgreSQL a refused sign-in records its failure in the shared access state (the
    // lockout that replicas share), and every replica rightly drops its cache for it; the
    // single-process store keeps that state out of the cache's generation.
    if app.backend() != Backend::Postgres {
        assert_eq!(
            app.state.cache.invalidations(),
            before,
            "nothing changed, nothing flushed"
        );
    }
    app.admin_api()
        .create_tenant(&portcullis_server::admin::tenants::NameIn {
            name: "globex".into(),
        })
        .await
        .expect("create");
    assert!(app.state.cache.invalidations() > before, "a change flushes");
    app.stop().await;
}
