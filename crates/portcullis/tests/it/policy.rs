//! Tenant policy from outside: refused documents change nothing, tenant deny policies decide
//! at call time (and say so in the audit), approver rules (two for production, no
//! self-approval, one denial ends it), batch approval bound to exactly what was reviewed,
//! stale-state refusal, and the offline `portcullis policy` commands.

use crate::support::*;
use portcullis_core::policy::Point;
use portcullis_server::admin::agents::OwnerIn;
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::guardrails::GuardrailIn;
use portcullis_server::admin::humans::AdminIn;
use portcullis_server::admin::policy::PolicyView;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::tokens::TokenIn;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Mail may only go to example.com addresses (a tenant deny policy on arguments).
pub(crate) const MAIL_POLICY: &str = r#"
@id("mail-to-example-only")
@reason("mail may only go to example.com addresses")
forbid (principal, action == Portcullis::Action::"send", resource == Portcullis::Tool::"crm/send_email")
unless { context.args.hasTag("to") && context.args.getTag("to") like "*@example.com" };
"#;

pub(crate) fn email(to: &str) -> Value {
    json!({ "to": to, "subject": "Hello", "body": "A short note." })
}

pub(crate) fn refund(customer: &str, amount_cents: i64) -> Value {
    json!({ "customer_id": customer, "amount_cents": amount_cents, "reason": "damaged in transit" })
}

/// Create another tenant-scoped approver; returns its token.
pub(crate) async fn add_approver(app: &TestApp, tenant: &Tenant, name: &str) -> String {
    let approver = AdminIn {
        name: name.into(),
        role: "approver".into(),
        tenant: Some(tenant.name.clone()),
        ttl_secs: None,
    };
    let created = app
        .admin_api()
        .create_admin(&approver)
        .await
        .expect("create approver");
    created.token
}

/// Create another agent granted the tenant's CRM connection; returns its token.
pub(crate) async fn add_agent(app: &TestApp, tenant: &Tenant, name: &str) -> String {
    let api = app.admin_api();
    let agent = api
        .create_agent(&tenant.name, &NameIn { name: name.into() })
        .await
        .expect("create agent");
    let grant = GrantIn {
        agent: agent.id.to_string(),
        connection: tenant.connection_id.clone(),
        tool: "*".into(),
    };
    api.add_grant(&tenant.name, &grant).await.expect("grant");
    let token = api
        .create_token(&tenant.name, agent.id.as_str(), &TokenIn::default())
        .await
        .expect("create token");
    token.token
}

/// Set a CRM tool's profile (written as JSON) as the bootstrap admin.
pub(crate) async fn set_profile(app: &TestApp, tenant: &Tenant, tool: &str, profile: Value) {
    let profile = serde_json::from_value(profile).expect("a tool profile");
    let out = app
        .admin_api()
        .set_tool_profile(&tenant.name, &tenant.connection_id, tool, &profile)
        .await
        .expect("set profile");
    assert_eq!(out.name, tool, "{out:?}");
}

/// A tenant's policy in force, as the bootstrap admin reads it.
async fn policy_of(app: &TestApp, tenant: &str) -> PolicyView {
    app.admin_api().policy(tenant).await.expect("policy")
}

/// Vote on an approval as `token`; returns the status and body.
pub(crate) async fn vote(
    app: &TestApp,
    token: &str,
    id: &str,
    verdict: &str,
    reason: &str,
) -> (StatusCode, Value) {
    app.api(
        Method::POST,
        &format!("/approvals/{id}/{verdict}"),
        token,
        Some(json!({ "reason": reason })),
    )
    .await
}

async fn put_policy(app: &TestApp, tenant: &str, cedar: &str) -> (StatusCode, Value) {
    app.api(
        Method::PUT,
        &format!("/tenants/{tenant}/policy"),
        &app.admin_token,
        Some(json!({ "cedar": cedar, "settings": {} })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_refused_with_its_problem_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (code, body) = put_policy(&app, "acme", MAIL_POLICY).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    let before = policy_of(&app, "acme").await;
    let updates_before = events_of_kind(&app.audit_events("acme").await, "policy_updated").len();
    assert_eq!(updates_before, 1);

    let guarded =
        "context.args.hasTag(\"to\") && context.args.getTag(\"to\") like \"*@example.com\"";
    let invalid: [(&str, String, &[&str]); 5] = [
        (
            "syntax error",
            "forbid (principal, action, resource when { true };".to_owned(),
            &["syntax"],
        ),
        (
            "getTag without hasTag",
            r#"@id("unguarded")
forbid (principal, action == Portcullis::Action::"send", resource)
unless { context.args.getTag("to") like "*@example.com" };"#
                .to_owned(),
            &["unguarded", "tag"],
        ),
        (
            "reserved builtin. id",
            format!(
                "@id(\"builtin.mine\")\nforbid (principal, action == Portcullis::Action::\"send\", resource)\nunless {{ {guarded} }};"
            ),
            &["builtin.mine", "reserved"],
        ),
        (
            "unknown annotation",
            format!(
                "@id(\"loud\")\n@severity(\"high\")\nforbid (principal, action == Portcullis::Action::\"send\", resource)\nunless {{ {guarded} }};"
            ),
            &["loud", "@severity"],
        ),
        (
            "an attribute the schema does not have",
            r#"@id("typo")
forbid (principal, action, resource) when { resource.colour == "red" };"#
                .to_owned(),
            &["colour"],
        ),
    ];
    for (what, cedar, mentions) in invalid {
        let (code, body) = put_policy(&app, "acme", &cedar).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{what}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        for needle in mentions {
            assert!(
                detail.contains(needle),
                "{what}: the refusal should mention `{needle}`: {detail}"
            );
        }
        // Unchanged: same version, same hash, same text, and no audit entry for it.
        let now = policy_of(&app, "acme").await;
        assert_eq!(now, before, "{what} changed the policy in force");
    }
    assert_eq!(
        events_of_kind(&app.audit_events("acme").await, "policy_updated").len(),
        updates_before,
        "a refused document leaves no policy_updated event"
    );

    // Calls behave exactly as under version 1.
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    assert_eq!(
        status(&client.call("crm__send_email", email("eve@evil.test")).await),
        "denied"
    );
    assert_eq!(
        status(
            &client
                .call("crm__send_email", email("ada@example.com"))
                .await
        ),
        "pending_approval"
    );
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deny_policy_on_arguments_denies_at_call_time_and_names_itself() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let (code, body) = put_policy(&app, "acme", MAIL_POLICY).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let policy_hash = body["hash"].as_str().expect("policy hash").to_owned();
    assert!(
        body["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .any(|p| p["id"] == "mail-to-example-only" && p["kind"] == "deny"),
        "{body}"
    );

    for era in [Era::Discover, Era::Initialize] {
        let client = app.client("acme", &acme.agent_token, era).await;
        let denied = client.call("crm__send_email", email("eve@evil.test")).await;
        assert_eq!(status(&denied), "denied", "{era:?}: {denied:?}");
        assert_eq!(structured(&denied)["executed"], false);
        assert!(
            structured(&denied)["reasons"]
                .to_string()
                .contains("mail may only go to example.com addresses"),
            "{denied:?}"
        );
        // A call without the tested argument is denied too (the policy fails closed).
        let no_to = client
            .call(
                "crm__send_email",
                json!({ "subject": "no recipient", "body": "b" }),
            )
            .await;
        assert_eq!(status(&no_to), "denied", "{no_to:?}");
        // Inside the policy: the usual hold.
        let allowed_domain = client
            .call("crm__send_email", email("ada@example.com"))
            .await;
        assert_eq!(status(&allowed_domain), "pending_approval");
    }
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "nothing reached the upstream"
    );

    let events = app.audit_events("acme").await;
    let denials: Vec<&Value> = events_of_kind(&events, "tool_call")
        .into_iter()
        .filter(|e| e["decision"] == "deny")
        .collect();
    assert_eq!(denials.len(), 4, "{denials:#?}");
    for denial in &denials {
        assert_eq!(
            denial["detail"]["policy"]["policies"],
            json!(["mail-to-example-only"]),
            "{denial}"
        );
        assert_eq!(denial["detail"]["policy"]["policy_hash"], policy_hash);
    }
    // Holds carry the policy hash too (the built-in effect hold decided them).
    let holds = events_of_kind(&events, "hold");
    assert!(!holds.is_empty());
    for hold in holds {
        assert_eq!(hold["detail"]["policy"]["policy_hash"], policy_hash);
        assert_eq!(
            hold["detail"]["policy"]["policies"],
            json!(["builtin.effect"])
        );
    }

    // Another tenant's agent is untouched by acme's policy.
    let other = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    let held = other.call("crm__send_email", email("eve@evil.test")).await;
    assert_eq!(status(&held), "pending_approval", "{held:?}");
    let globex_policy = policy_of(&app, "globex").await;
    assert!(globex_policy.version.is_none(), "{globex_policy:?}");
    assert_ne!(globex_policy.hash, policy_hash);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_tool_needs_two_distinct_approvers_and_the_receipt_names_both() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let second = add_approver(&app, &acme, "second-approver").await;
    set_profile(
        &app,
        &acme,
        "update_contact",
        json!({ "tags": ["production"] }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let update = json!({ "id": "c_1", "company": "Difference Engines plc" });
    let held = client.call("crm__update_contact", update.clone()).await;
    let id = approval_id(&held);

    // The request carries the production rule (two approvers).
    let votes = app.admin_api().votes(&id).await.expect("votes");
    let rules = votes.rules.clone().expect("rules");
    assert!(
        rules
            .iter()
            .any(|(point, rule)| *point == Point::Production && rule.required == 2),
        "{votes:?}"
    );

    // First vote: recorded, still pending, nothing runs.
    let (code, body) = vote(&app, &acme.approver_token, &id, "approve", "looks fine").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert!(body["receipt"].is_null(), "{body}");
    let retry = client.call("crm__update_contact", update.clone()).await;
    assert_eq!(approval_id(&retry), id, "still the same pending request");
    assert!(effect_lines(&acme.effect_log).is_empty());

    // The same approver again: refused, nothing changes.
    let (code, body) = vote(&app, &acme.approver_token, &id, "approve", "again").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let votes = app.admin_api().votes(&id).await.expect("votes");
    assert_eq!(votes.votes.len(), 1, "{votes:?}");
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);

    // A second, distinct approver completes it.
    let (code, body) = vote(&app, &second, &id, "approve", "agreed").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    let approver = body["receipt"]["body"]["approver"]
        .as_str()
        .expect("receipt approver");
    let mut named: Vec<&str> = approver.split(',').collect();
    named.sort_unstable();
    assert_eq!(named, ["acme-approver", "second-approver"], "{approver}");

    let executed = client.call("crm__update_contact", update.clone()).await;
    assert_eq!(status(&executed), "ok", "{executed:?}");
    assert_eq!(structured(&executed)["company"], "Difference Engines plc");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);

    // One vote event and one approve event; the execute event names both approvers.
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "vote").len(), 1);
    assert_eq!(events_of_kind(&events, "approve").len(), 1);
    let execute = events_of_kind(&events, "execute");
    assert_eq!(execute.len(), 1);
    assert_eq!(execute[0]["detail"]["approver"], approver);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_owner_may_not_approve_its_actions() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let second = add_approver(&app, &acme, "second-approver").await;
    let owner = OwnerIn {
        owner: Some("acme-approver".into()),
    };
    let owner = app
        .admin_api()
        .set_agent_owner("acme", "agent", &owner)
        .await
        .expect("set owner");
    assert_eq!(owner.owner.as_deref(), Some("acme-approver"), "{owner:?}");
    // Only an admin records owners.
    let (code, _) = app
        .api(
            Method::PUT,
            "/tenants/acme/agents/agent/owner",
            &acme.approver_token,
            Some(json!({ "owner": null })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund("c_1", 1200)).await);
    let (code, body) = vote(&app, &acme.approver_token, &id, "approve", "mine").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains("owns"),
        "{body}"
    );
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);
    let votes = app.admin_api().votes(&id).await.expect("votes");
    assert!(votes.votes.is_empty(), "{votes:?}");

    // Nor inside a batch.
    let preview = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch/preview",
            &acme.approver_token,
            Some(json!({ "items": [id] })),
        )
        .await;
    assert_eq!(preview.0, StatusCode::OK, "{}", preview.1);
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch",
            &acme.approver_token,
            Some(json!({ "items": [id], "batch_hash": preview.1["batch_hash"] })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);

    let (code, body) = vote(&app, &second, &id, "approve", "fine").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_1", 1200)).await),
        "issued"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);

    // The owner may still stop their own agent.
    let other = approval_id(&client.call("crm__issue_refund", refund("c_2", 1300)).await);
    let (code, body) = vote(&app, &acme.approver_token, &other, "deny", "not like this").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "denied");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_ends_the_request_and_later_votes_change_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let second = add_approver(&app, &acme, "second-approver").await;
    let third = add_approver(&app, &acme, "third-approver").await;
    set_profile(
        &app,
        &acme,
        "update_contact",
        json!({ "tags": ["production"] }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let update = json!({ "id": "c_2", "name": "Rear Admiral Hopper" });
    let id = approval_id(&client.call("crm__update_contact", update.clone()).await);

    // One approve vote, then a denial by someone else: the denial ends it.
    let (code, _) = vote(&app, &acme.approver_token, &id, "approve", "ok").await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = vote(&app, &second, &id, "deny", "not in production").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "denied");
    let decided = app.approval(&id).await;

    for (token, verdict) in [
        (&third, "approve"),
        (&third, "deny"),
        (&acme.approver_token, "approve"),
        (&app.admin_token, "approve"),
        (&app.admin_token, "deny"),
    ] {
        let (code, body) = vote(&app, token, &id, verdict, "late").await;
        assert_eq!(code, StatusCode::CONFLICT, "late {verdict}: {body}");
    }
    assert_eq!(
        app.approval(&id).await,
        decided,
        "late votes changed the request"
    );
    let votes = app.admin_api().votes(&id).await.expect("votes");
    assert_eq!(votes.votes.len(), 2, "{votes:?}");

    let retry = client.call("crm__update_contact", update).await;
    assert_eq!(status(&retry), "denied", "{retry:?}");
    assert!(
        structured(&retry)["reasons"]
            .to_string()
            .contains("not in production"),
        "{retry:?}"
    );
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

async fn batch_preview(app: &TestApp, tenant: &Tenant, items: &[&str]) -> String {
    let (code, body) = app
        .api(
            Method::POST,
            &format!("/tenants/{}/approvals/batch/preview", tenant.name),
            &tenant.approver_token,
            Some(json!({ "items": items })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"].as_array().expect("items").len(),
        items.len(),
        "{body}"
    );
    body["batch_hash"].as_str().expect("batch hash").to_owned()
}

async fn batch_approve(
    app: &TestApp,
    tenant: &Tenant,
    items: &[&str],
    hash: &str,
) -> (StatusCode, Value) {
    app.api(
        Method::POST,
        &format!("/tenants/{}/approvals/batch", tenant.name),
        &tenant.approver_token,
        Some(json!({ "items": items, "batch_hash": hash, "reason": "reviewed" })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_approves_exactly_what_was_reviewed() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let refunds = [
        refund("c_1", 1100),
        refund("c_2", 2200),
        refund("c_3", 3300),
    ];
    let mut ids = Vec::new();
    for r in &refunds {
        ids.push(approval_id(
            &client.call("crm__issue_refund", r.clone()).await,
        ));
    }
    let extra = approval_id(&client.call("crm__issue_refund", refund("c_1", 4400)).await);
    let [a, b, c] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];

    let reviewed = batch_preview(&app, &acme, &[a, b, c]).await;
    let reversed = batch_preview(&app, &acme, &[c, b, a]).await;
    assert_ne!(reviewed, reversed, "order is part of the batch");

    let all_pending = || async {
        for id in [a, b, c, extra.as_str()] {
            assert_eq!(
                app.approval(id).await.status,
                ApprovalStatus::Pending,
                "{id}"
            );
        }
    };
    for (what, items, hash) in [
        (
            "the hash of another order",
            vec![a, b, c],
            reversed.as_str(),
        ),
        ("another order", vec![b, a, c], reviewed.as_str()),
        (
            "an added item",
            vec![a, b, c, extra.as_str()],
            reviewed.as_str(),
        ),
        ("a removed item", vec![a, b], reviewed.as_str()),
        ("a repeated item", vec![a, b, c, a], reviewed.as_str()),
    ] {
        let (code, body) = batch_approve(&app, &acme, &items, hash).await;
        assert_eq!(code, StatusCode::CONFLICT, "{what}: {body}");
        all_pending().await;
    }
    assert!(
        events_of_kind(&app.audit_events("acme").await, "approve").is_empty(),
        "a refused batch approves nothing"
    );

    let (code, body) = batch_approve(&app, &acme, &[a, b, c], &reviewed).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let approved = body.as_array().expect("approved items");
    assert_eq!(approved.len(), 3);
    assert!(approved.iter().all(|x| x["status"] == "approved"), "{body}");
    assert_eq!(app.approval(&extra).await.status, ApprovalStatus::Pending);

    // Each identical retry runs once; a second retry of each is a new hold.
    for (i, r) in refunds.iter().enumerate() {
        let executed = client.call("crm__issue_refund", r.clone()).await;
        assert_eq!(status(&executed), "issued", "{executed:?}");
        assert_eq!(effect_lines(&acme.effect_log).len(), i + 1);
    }
    for (r, id) in refunds.iter().zip(&ids) {
        let again = client.call("crm__issue_refund", r.clone()).await;
        assert_ne!(&approval_id(&again), id, "an executed item is spent");
        assert_eq!(app.approval(id).await.status, ApprovalStatus::Executed);
    }
    // One cent more is not in the batch.
    let more = client.call("crm__issue_refund", refund("c_1", 1101)).await;
    assert!(!ids.contains(&approval_id(&more)));
    let effects = effect_lines(&acme.effect_log);
    assert_eq!(effects.len(), 3, "{effects:#?}");
    let amounts: Vec<i64> = effects
        .iter()
        .map(|e| e["arguments"]["amount_cents"].as_i64().expect("amount"))
        .collect();
    assert_eq!(amounts, [1100, 2200, 3300]);
    assert_eq!(
        events_of_kind(&app.audit_events("acme").await, "execute").len(),
        3
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_create_whose_target_changed_is_refused_as_stale() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "create_contact",
        json!({ "preview": { "tool": "get_contact", "arguments": { "id": "id" } } }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let contact = |name: &str| json!({ "id": "c_9", "name": name, "email": "new@example.com", "company": "New Co" });
    let first = approval_id(&client.call("crm__create_contact", contact("Kay")).await);
    let second = approval_id(&client.call("crm__create_contact", contact("Lin")).await);
    assert_ne!(first, second);

    // Both requests show the approver the (empty) target as it was when held.
    let before_first = app
        .approval(&first)
        .await
        .before_state
        .expect("before-state");
    let before_second = app
        .approval(&second)
        .await
        .before_state
        .expect("before-state");
    assert_eq!(before_first["tool"], "get_contact", "{before_first}");
    assert_eq!(before_first["arguments"], json!({ "id": "c_9" }));
    assert_eq!(before_first["value"]["is_error"], true, "{before_first}");
    assert_eq!(before_first["hash"], before_second["hash"]);

    app.approve(&acme, &first).await;
    app.approve(&acme, &second).await;

    let created = client.call("crm__create_contact", contact("Kay")).await;
    assert_eq!(status(&created), "ok", "{created:?}");
    assert_eq!(structured(&created)["name"], "Kay");

    let stale = client.call("crm__create_contact", contact("Lin")).await;
    assert_eq!(status(&stale), "stale", "{stale:?}");
    assert_eq!(structured(&stale)["executed"], false);
    assert_eq!(structured(&stale)["approval_id"], second);

    let effects = effect_lines(&acme.effect_log);
    assert_eq!(
        effects.len(),
        1,
        "the upstream never saw the stale create: {effects:#?}"
    );
    assert_eq!(effects[0]["tool"], "create_contact");
    assert_eq!(effects[0]["arguments"]["name"], "Kay");
    let read = client
        .call("crm__get_contact", json!({ "id": "c_9" }))
        .await;
    assert_eq!(structured(&read)["name"], "Kay");

    // The refusal is on the record, naming the request.
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "deny")
            .iter()
            .any(|e| e["detail"]["approval"] == second
                && e["detail"]["reasons"].to_string().contains("stale")),
        "{events:#?}"
    );
    assert_eq!(events_of_kind(&events, "execute").len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_validate_test_and_explain_work_offline_on_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    };
    let good = write("mail.cedar", MAIL_POLICY);
    let bad = write(
        "bad.cedar",
        "@id(\"builtin.sneaky\")\nforbid (principal, action, resource);\n",
    );
    let passing = write(
        "pass.table",
        r#"# expect agent connection/tool effect args options
deny  agent crm/send_email   send  {"to": "eve@evil.test", "subject": "s", "body": "b"}  by=mail-to-example-only
hold  agent crm/send_email   send  {"to": "ada@example.com", "subject": "s", "body": "b"}  by=builtin.effect
allow agent crm/get_contact  read  {"id": "c_1"}  by=builtin.reads
hold  agent crm/issue_refund spend {"amount_cents": 20000}  cost_arg=amount_cents by=builtin.money
hold  agent crm/update_contact write {"id": "c_1"}  tags=production by=builtin.production
"#,
    );
    let failing = write(
        "fail.table",
        r#"allow agent crm/get_contact read {"id": "c_1"}
allow agent crm/send_email  send {"to": "eve@evil.test", "subject": "s", "body": "b"}
"#,
    );
    let cwd = dir.path();

    let ok = run_cli(cwd, &["policy", "validate", &good], &[]).await;
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(ok.stdout.contains("mail-to-example-only"), "{ok:?}");
    let invalid = run_cli(cwd, &["policy", "validate", &bad], &[]).await;
    assert_eq!(invalid.code, Some(1), "{invalid:?}");
    assert!(
        invalid.stderr.contains("builtin.sneaky") && invalid.stderr.contains("reserved"),
        "{invalid:?}"
    );

    let pass = run_cli(cwd, &["policy", "test", &good, &passing], &[]).await;
    assert_eq!(pass.code, Some(0), "{pass:?}");
    assert!(pass.stdout.contains("5 cases, 0 failed"), "{pass:?}");
    assert!(!pass.stdout.contains("FAIL"), "{pass:?}");

    let fail = run_cli(cwd, &["policy", "test", &good, &failing], &[]).await;
    assert_eq!(fail.code, Some(1), "{fail:?}");
    let fail_lines: Vec<&str> = fail
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(fail_lines.len(), 1, "{fail:?}");
    assert!(
        fail_lines[0].contains("line   2") && fail_lines[0].contains("got deny"),
        "{fail:?}"
    );
    assert!(fail.stdout.contains("2 cases, 1 failed"), "{fail:?}");

    let explain = run_cli(
        cwd,
        &[
            "policy",
            "explain",
            &good,
            "--call",
            r#"agent crm/send_email send {"to": "eve@evil.test", "subject": "s", "body": "b"}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(explain.code, Some(0), "{explain:?}");
    assert!(explain.stdout.starts_with("DENY"), "{explain:?}");
    assert!(
        explain.stdout.contains("policy mail-to-example-only")
            && explain
                .stdout
                .contains("mail may only go to example.com addresses"),
        "{explain:?}"
    );
    let held = run_cli(
        cwd,
        &[
            "policy",
            "explain",
            &good,
            "--call",
            r#"agent crm/issue_refund spend {"amount_cents": 20000} cost_arg=amount_cents"#,
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(held.code, Some(0), "{held:?}");
    let out: Value = serde_json::from_str(&held.stdout).expect("explain --json is JSON");
    assert_eq!(out["evaluation"]["outcome"], "hold", "{out}");
    let deciding: Vec<&str> = out["deciding"]
        .as_array()
        .expect("deciding")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(deciding.contains(&"builtin.money"), "{out}");

    // A table against an invalid policy is an error, not a pass.
    let broken = run_cli(cwd, &["policy", "test", &bad, &passing], &[]).await;
    assert_ne!(broken.code, Some(0), "{broken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_policy_documents_in_two_tenants_keep_the_tenants_apart() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    // One document for every tenant (as an operator might roll out), with a rule for one.
    let shared = r#"
@id("globex-no-mail")
@reason("globex sends no mail")
forbid (principal in Portcullis::Tenant::"globex", action == Portcullis::Action::"send", resource);
"#;
    for tenant in ["acme", "globex"] {
        let (code, body) = put_policy(&app, tenant, shared).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let a = app.client("acme", &acme.agent_token, Era::Discover).await;
    let g = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    // acme decides first, then globex: each must be judged as a member of its own tenant.
    let acme_send = a.call("crm__send_email", email("ada@example.com")).await;
    assert_eq!(status(&acme_send), "pending_approval", "{acme_send:?}");
    let globex_send = g.call("crm__send_email", email("ada@example.com")).await;
    assert_eq!(status(&globex_send), "denied", "{globex_send:?}");
    // And the other way round, with another tool of the same class.
    let globex_again = g.call("crm__send_email", email("bob@example.com")).await;
    assert_eq!(status(&globex_again), "denied", "{globex_again:?}");
    let acme_again = a.call("crm__send_email", email("bob@example.com")).await;
    assert_eq!(status(&acme_again), "pending_approval", "{acme_again:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_errors_at_evaluation_denies_and_names_itself() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // Valid against the schema, but overflows for large amounts: Cedar would skip the
    // erroring forbid (and so allow); the gateway must deny instead.
    let cedar = r#"
@id("refund-scaled")
@hold
forbid (principal, action == Portcullis::Action::"spend", resource)
when { context.numbers.hasTag("amount_cents") && context.numbers.getTag("amount_cents") * 1000000000000 > 5 };
"#;
    let (code, body) = put_policy(&app, "acme", cedar).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    set_profile(
        &app,
        &acme,
        "issue_refund",
        json!({ "cost_argument": "amount_cents" }),
    )
    .await;
    let guardrail: GuardrailIn =
        serde_json::from_value(json!({ "name": "refunds", "mode": "auto", "spec": {
            "connection": "crm", "tool": "issue_refund", "max_per_day": 10,
            "max_cost_cents_per_day": 1_000_000_000i64,
            "expires_at": app.clock.now() + 3_600_000,
        }}))
        .expect("a guardrail");
    app.admin_api()
        .create_guardrail("acme", &guardrail)
        .await
        .expect("create guardrail");
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    // Small: evaluates, held by the tenant's hold despite the guardrail.
    let small = client.call("crm__issue_refund", refund("c_1", 100)).await;
    assert_eq!(status(&small), "pending_approval", "{small:?}");
    // Large: the multiplication overflows; denied, not allowed, not held.
    let large = client
        .call("crm__issue_refund", refund("c_1", 100_000_000))
        .await;
    assert_eq!(status(&large), "denied", "{large:?}");
    assert!(effect_lines(&acme.effect_log).is_empty());
    let events = app.audit_events("acme").await;
    let denial = events_of_kind(&events, "tool_call")
        .into_iter()
        .find(|e| e["decision"] == "deny")
        .expect("the denial is audited");
    assert_eq!(
        denial["detail"]["policy"]["policies"],
        json!(["refund-scaled"]),
        "{denial}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_hold_on_a_read_is_approved_and_runs_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let cedar = r#"
@id("vip-contact")
@hold
@reason("reading the VIP contact needs a person")
forbid (principal, action == Portcullis::Action::"read", resource == Portcullis::Tool::"crm/get_contact")
when { context.args.hasTag("id") && context.args.getTag("id") == "c_3" };
"#;
    let (code, body) = put_policy(&app, "acme", cedar).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let held = client
        .call("crm__get_contact", json!({ "id": "c_3" }))
        .await;
    let id = approval_id(&held);
    assert!(app.approval(&id).await.reasons.join(" ").contains("VIP"),);
    app.approve(&acme, &id).await;
    let read = client
        .call("crm__get_contact", json!({ "id": "c_3" }))
        .await;
    assert_eq!(structured(&read)["name"], "Alan Turing", "{read:?}");
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Executed);
    let again = client
        .call("crm__get_contact", json!({ "id": "c_3" }))
        .await;
    assert_ne!(
        approval_id(&again),
        id,
        "a held read is approved once, like an effect"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_votes_complete_a_two_approver_request_exactly_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut tokens = vec![acme.approver_token.clone()];
    for n in 0..5 {
        tokens.push(add_approver(&app, &acme, &format!("approver-{n}")).await);
    }
    set_profile(
        &app,
        &acme,
        "update_contact",
        json!({ "tags": ["production"] }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let update = json!({ "id": "c_3", "company": "GCHQ" });
    let id = approval_id(&client.call("crm__update_contact", update.clone()).await);

    let app = std::sync::Arc::new(app);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(tokens.len()));
    let mut tasks = Vec::new();
    for token in tokens {
        let (app, start, id) = (app.clone(), start.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            vote(&app, &token, &id, "approve", "ok").await.0
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.expect("vote task"));
    }
    let ok = codes.iter().filter(|c| **c == StatusCode::OK).count();
    let conflicts = codes.iter().filter(|c| **c == StatusCode::CONFLICT).count();
    assert_eq!((ok, conflicts), (2, 4), "{codes:?}");

    let approval = app.approval(&id).await;
    assert_eq!(approval.status, ApprovalStatus::Approved);
    let approver = approval.receipt.expect("a receipt").body.approver;
    assert_eq!(approver.split(',').count(), 2, "{approver}");
    let votes = app.admin_api().votes(&id).await.expect("votes");
    assert_eq!(votes.votes.len(), 2, "{votes:?}");
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "approve").len(), 1);
    assert_eq!(events_of_kind(&events, "vote").len(), 1);

    assert_eq!(
        status(&client.call("crm__update_contact", update).await),
        "ok"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_never_runs_an_effect_and_only_admins_change_policy_or_profiles() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // A profile whose "preview" names an effect tool: the gateway must not call it.
    set_profile(
        &app,
        &acme,
        "update_contact",
        json!({ "preview": { "tool": "send_email", "arguments": { "to": "id", "subject": "id", "body": "id" } } }),
    )
    .await;
    // And one naming a tool that does not exist.
    set_profile(
        &app,
        &acme,
        "create_contact",
        json!({ "preview": { "tool": "no_such_tool", "arguments": { "id": "id" } } }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let update = json!({ "id": "c_1", "name": "Ada" });
    let id = approval_id(&client.call("crm__update_contact", update.clone()).await);
    assert!(app.approval(&id).await.before_state.is_none());
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "the preview sent mail"
    );
    let create = json!({ "id": "c_8", "name": "N", "email": "n@example.com", "company": "C" });
    let created_id = approval_id(&client.call("crm__create_contact", create.clone()).await);
    assert!(app.approval(&created_id).await.before_state.is_none());
    app.approve(&acme, &id).await;
    app.approve(&acme, &created_id).await;
    assert_eq!(
        status(&client.call("crm__update_contact", update).await),
        "ok"
    );
    assert_eq!(
        status(&client.call("crm__create_contact", create).await),
        "ok"
    );
    let tools: Vec<String> = effect_lines(&acme.effect_log)
        .iter()
        .map(|e| e["tool"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(tools, ["update_contact", "create_contact"]);

    // Approvers may not change what decides: policy, settings, profiles, owners.
    let (code, _) = app
        .api(
            Method::PUT,
            "/tenants/acme/policy",
            &acme.approver_token,
            Some(
                json!({ "cedar": "", "settings": { "points": { "money": { "enabled": false } } } }),
            ),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = app
        .api(
            Method::PUT,
            &format!(
                "/tenants/acme/connections/{}/tools/update_contact/profile",
                acme.connection_id
            ),
            &acme.approver_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // Settings that cannot be honoured are refused like bad Cedar.
    for settings in [
        json!({ "points": { "effect": { "enabled": false } } }),
        json!({ "points": { "production": { "approvers": { "required": 0 } } } }),
        json!({ "money": { "per_action_cents": -1, "per_day_cents": 1 } }),
        json!({ "surprise": true }),
    ] {
        let (code, body) = app
            .api(
                Method::PUT,
                "/tenants/acme/policy",
                &app.admin_token,
                Some(json!({ "cedar": "", "settings": settings })),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{settings}: {body}");
    }
    let policy = policy_of(&app, "acme").await;
    assert!(policy.version.is_none(), "{policy:?}");
    app.stop().await;
}

/// A stored policy this binary cannot compile (written behind the API's back, or by another
/// version) fails closed: every call of that tenant is denied with the reason, reads too,
/// while other tenants keep working.
#[tokio::test]
async fn a_stored_policy_that_no_longer_compiles_denies_every_call_of_its_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    app.raw_sql(&format!(
        "INSERT INTO policy_versions (tenant_id, version, cedar, settings, hash, created_by, created_at) \
         VALUES ('{}', 1, 'permit (principal, action, resource', '{{}}', 'forged', 'mallory', 1)",
        acme.id
    ))
    .await
    .expect("insert a broken policy version");
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let read = client.call("crm__get_contact", json!({"id": "c_1"})).await;
    assert_eq!(status(&read), "denied", "{read:?}");
    assert!(
        structured(&read)["reasons"][0]
            .as_str()
            .unwrap()
            .contains("cannot be used"),
        "{read:?}"
    );
    let other = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    let fine = other.call("crm__get_contact", json!({"id": "c_1"})).await;
    assert_eq!(structured(&fine)["id"], "c_1");
    let (code, _) = app
        .api(Method::GET, "/tenants/acme/policy", &app.admin_token, None)
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
}
