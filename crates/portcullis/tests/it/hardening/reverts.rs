//! Reverts are actions like any other: the same policy, approval points and approver rules as
//! the forward call, refused while suspended, charged, at most once per original, and stale
//! when their target changed since they were proposed.

use super::{effects_of, human};
use crate::policy::{set_profile, vote};
use crate::support::*;
use portcullis_core::policy::Point;
use portcullis_server::admin::policy::PolicyIn;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Replace acme's policy as the bootstrap admin (built-in settings).
async fn put_policy(app: &TestApp, cedar: &str) {
    let body = PolicyIn {
        cedar: cedar.into(),
        settings: json!({}),
    };
    app.admin_api()
        .put_policy("acme", &body)
        .await
        .expect("put policy");
}

/// A profile for `update_contact` that previews, reverts and (optionally) touches production
/// and costs a fixed amount.
fn revertible(production: bool, cost_cents: i64) -> Value {
    let mut profile = json!({
        "preview": { "tool": "get_contact", "arguments": { "id": "id" } },
        "revert": { "tool": "update_contact",
                    "arguments": { "id": "id", "name": "name", "email": "email", "company": "company" } },
        "cost_cents": cost_cents,
    });
    if production {
        profile["tags"] = json!(["production"]);
    }
    profile
}

/// The agent updates c_2's company; `approvers` approve it; it runs. Returns its approval id.
async fn executed_update(
    app: &TestApp,
    client: &Client,
    acme: &Tenant,
    company: &str,
    approvers: &[&str],
) -> String {
    let change = json!({ "id": "c_2", "company": company });
    let id = approval_id(&client.call("crm__update_contact", change.clone()).await);
    for token in approvers {
        let (code, body) = vote(app, token, &id, "approve", "fine").await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let done = client.call("crm__update_contact", change).await;
    assert_eq!(structured(&done)["company"], company, "{done:?}");
    assert!(effects_of(acme, "update_contact") > 0);
    id
}

async fn propose(app: &TestApp, original: &str) -> (StatusCode, Value) {
    app.api(
        Method::POST,
        &format!("/approvals/{original}/revert"),
        &app.admin_token,
        None,
    )
    .await
}

async fn company_of_c2(client: &Client) -> String {
    let contact = client
        .call("crm__get_contact", json!({ "id": "c_2" }))
        .await;
    structured(&contact)["company"]
        .as_str()
        .expect("company")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_revert_needs_two_approvers_is_charged_and_runs_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (_, second) = human(&app, "second", "approver", Some("acme")).await;
    set_profile(&app, &acme, "update_contact", revertible(true, 250)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(
        &app,
        &client,
        &acme,
        "Navy",
        &[&acme.approver_token, &second],
    )
    .await;

    let (code, proposal) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::OK, "{proposal}");
    let revert = proposal["id"].as_str().expect("revert id").to_owned();
    let votes = app.admin_api().votes(&revert).await.expect("votes");
    assert!(
        votes
            .rules
            .iter()
            .flatten()
            .any(|(point, rule)| *point == Point::Production && rule.required == 2),
        "the revert carries the forward call's production rule: {votes:?}"
    );

    // One approval is not enough for a production write, revert or not.
    let (code, body) = vote(&app, &acme.approver_token, &revert, "approve", "undo").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    assert_eq!(effects_of(&acme, "update_contact"), 1);
    assert_eq!(company_of_c2(&client).await, "Navy");

    let (code, body) = vote(&app, &second, &revert, "approve", "agreed").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "executed", "{body}");
    assert_eq!(effects_of(&acme, "update_contact"), 2);
    assert_eq!(company_of_c2(&client).await, "Compiler Corp");

    // Charged like the forward call.
    let spend = app
        .admin_api()
        .spend("acme", &Default::default())
        .await
        .expect("spend");
    let charged: Vec<_> = spend
        .entries
        .iter()
        .filter(|e| e.approval.as_ref().is_some_and(|a| a.as_str() == revert))
        .collect();
    assert_eq!(charged.len(), 1, "{spend:?}");
    assert_eq!(charged[0].cost_cents, 250);

    // At most one revert per original.
    let (code, again) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::CONFLICT, "{again}");
    assert!(
        again["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most once"),
        "{again}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_make_one_revert() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;
    let attempts = (0..8).map(|_| propose(&app, &original));
    let answers = futures::future::join_all(attempts).await;
    let made = answers.iter().filter(|(c, _)| *c == StatusCode::OK).count();
    assert_eq!(made, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(c, _)| *c == StatusCode::OK || *c == StatusCode::CONFLICT),
        "{answers:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_refuses_the_revert_as_it_would_the_forward_write() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;
    let policy = r#"
@id("no-compiler-corp")
@reason("contacts may not be moved to Compiler Corp")
forbid (principal, action == Portcullis::Action::"write", resource == Portcullis::Tool::"crm/update_contact")
when { context.args.hasTag("company") && context.args.getTag("company") == "Compiler Corp" };
"#;
    put_policy(&app, policy).await;
    // The forward write is denied…
    let forward = client
        .call(
            "crm__update_contact",
            json!({ "id": "c_1", "company": "Compiler Corp" }),
        )
        .await;
    assert_eq!(status(&forward), "denied", "{forward:?}");
    // …and so is the revert that would write the same.
    let before = approvals_of(&app, "acme").await.len();
    let (code, refused) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Compiler Corp"),
        "{refused}"
    );
    assert_eq!(
        approvals_of(&app, "acme").await.len(),
        before,
        "nothing held"
    );
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "deny")
            .iter()
            .any(|e| e["detail"]["revert_of"] == original.as_str()),
        "the refusal is audited"
    );
    assert_eq!(company_of_c2(&client).await, "Navy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_agent_or_tenant_stops_reverts() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;

    app.admin_api()
        .suspend_agent("acme", "agent")
        .await
        .expect("suspend agent");
    let (code, body) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    app.admin_api()
        .resume_agent("acme", "agent")
        .await
        .expect("resume agent");
    let (code, proposal) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::OK, "{proposal}");
    let revert = proposal["id"].as_str().expect("id").to_owned();

    // Suspended between proposal and approval: the approved revert does not reach upstream.
    app.admin_api()
        .suspend_tenant("acme")
        .await
        .expect("suspend tenant");
    let (code, body) = vote(&app, &acme.approver_token, &revert, "approve", "undo").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(effects_of(&acme, "update_contact"), 1);
    app.admin_api()
        .resume_tenant("acme")
        .await
        .expect("resume tenant");
    assert_eq!(company_of_c2(&client).await, "Navy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_whose_target_changed_since_it_was_proposed_is_stale() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;
    let (code, proposal) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::OK, "{proposal}");
    let revert = proposal["id"].as_str().expect("id").to_owned();
    assert_eq!(
        proposal["before_state"]["value"]["structured"]["company"], "Navy",
        "the revert captured its own before-state: {proposal}"
    );

    // The target moves on before the revert is approved.
    executed_update(&app, &client, &acme, "Army", &[&acme.approver_token]).await;
    let (code, body) = vote(&app, &acme.approver_token, &revert, "approve", "undo").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("stale"),
        "{body}"
    );
    assert_eq!(
        company_of_c2(&client).await,
        "Army",
        "the stale revert did not run"
    );
    assert_eq!(effects_of(&acme, "update_contact"), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_added_after_the_proposal_stops_the_approved_revert() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;
    let (code, proposal) = propose(&app, &original).await;
    assert_eq!(code, StatusCode::OK, "{proposal}");
    let revert = proposal["id"].as_str().expect("id").to_owned();
    let policy = r#"
@id("freeze-contacts")
@reason("contacts are frozen for the audit")
forbid (principal, action == Portcullis::Action::"write", resource == Portcullis::Tool::"crm/update_contact");
"#;
    put_policy(&app, policy).await;
    let (code, body) = vote(&app, &acme.approver_token, &revert, "approve", "undo").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("frozen"),
        "{body}"
    );
    assert_eq!(effects_of(&acme, "update_contact"), 1);
    assert_eq!(company_of_c2(&client).await, "Navy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_is_recorded_as_the_approvers_doing() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(&app, &acme, "update_contact", revertible(false, 0)).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let original = executed_update(&app, &client, &acme, "Navy", &[&acme.approver_token]).await;
    let (_, proposal) = propose(&app, &original).await;
    let revert = proposal["id"].as_str().expect("id").to_owned();
    let (code, body) = vote(&app, &acme.approver_token, &revert, "approve", "undo").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let events = app.audit_events("acme").await;
    let run: Vec<_> = events_of_kind(&events, "execute")
        .into_iter()
        .filter(|e| e["detail"]["approval"] == revert.as_str())
        .collect();
    assert_eq!(run.len(), 1);
    assert_eq!(run[0]["actor"], "admin:acme-approver", "{:?}", run[0]);
    app.stop().await;
}
