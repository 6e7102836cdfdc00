//! Held effects: approve, execute once, never twice; changes, denials and expiry; concurrent
//! redemption; and the approvals CLI against a live gateway.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

fn refund(amount_cents: i64) -> Value {
    json!({ "customer_id": "c_1", "amount_cents": amount_cents, "reason": "damaged in transit" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_effect_executes_once_and_never_again() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    let held = client.call("crm__issue_refund", refund(2500)).await;
    assert_eq!(
        held.is_error,
        Some(true),
        "a hold is not a success: {held:?}"
    );
    assert_eq!(structured(&held)["executed"], false);
    let id = approval_id(&held);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);

    // Re-sending before approval: the same request, still held, nothing executed.
    let again = client.call("crm__issue_refund", refund(2500)).await;
    assert_eq!(
        approval_id(&again),
        id,
        "an identical pending call names the same request"
    );
    assert!(effect_lines(&acme.effect_log).is_empty());

    app.approve(&acme, &id).await;
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Approved);
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "approval alone executes nothing"
    );

    let executed = client.call("crm__issue_refund", refund(2500)).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    assert_eq!(structured(&executed)["amount_cents"], 2500);
    let effects = effect_lines(&acme.effect_log);
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0]["tool"], "issue_refund");
    assert_eq!(effects[0]["arguments"]["amount_cents"], 2500);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Executed);

    // The used approval does not cover another execution: a further identical call is a new hold.
    let replay = client.call("crm__issue_refund", refund(2500)).await;
    assert_ne!(approval_id(&replay), id);
    assert_eq!(
        effect_lines(&acme.effect_log).len(),
        1,
        "executed exactly once"
    );

    // A decided approval cannot be decided again.
    let (code, body) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/approve"),
            &acme.approver_token,
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_argument_after_approval_is_a_new_hold() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;

    let id = approval_id(&client.call("crm__issue_refund", refund(2500)).await);
    app.approve(&acme, &id).await;

    for changed in [
        refund(2501),
        json!({ "customer_id": "c_2", "amount_cents": 2500, "reason": "damaged in transit" }),
        json!({ "customer_id": "c_1", "amount_cents": 2500, "reason": "damaged in transit", "extra": true }),
    ] {
        let held = client.call("crm__issue_refund", changed.clone()).await;
        assert_ne!(approval_id(&held), id, "{changed} is not what was approved");
        assert!(
            effect_lines(&acme.effect_log).is_empty(),
            "{changed} must not execute"
        );
    }
    // The same approval on another tool with the same arguments does not carry over either.
    let other = client
        .call(
            "crm__send_email",
            json!({ "to": "ada@example.com", "subject": "s", "body": "b" }),
        )
        .await;
    assert_ne!(approval_id(&other), id);

    // The approved action itself is untouched by the changed attempts.
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Approved);
    let executed = client.call("crm__issue_refund", refund(2500)).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_retries_execute_exactly_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let first = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&first.call("crm__issue_refund", refund(4200)).await);
    app.approve(&acme, &id).await;

    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(Arc::new(
            app.client("acme", &acme.agent_token, Era::Discover).await,
        ));
    }
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = clients[i % clients.len()].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            client.try_call("crm__issue_refund", refund(4200)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("task")
                .expect("every retry gets an answer"),
        );
    }

    let executed: Vec<_> = answers.iter().filter(|a| status(a) == "issued").collect();
    assert_eq!(
        executed.len(),
        1,
        "exactly one answer is the executed result: {answers:#?}"
    );
    assert_eq!(executed[0].is_error, Some(false));
    for answer in answers.iter().filter(|a| status(a) != "issued") {
        // Late arrivals are told the approval was used, or (after it was used) get a new hold.
        assert!(
            matches!(
                status(answer).as_str(),
                "already_executed" | "pending_approval"
            ),
            "{answer:?}"
        );
        assert_eq!(structured(answer)["executed"], false, "{answer:?}");
    }
    assert_eq!(
        effect_lines(&acme.effect_log).len(),
        1,
        "the upstream saw the refund exactly once"
    );
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Executed);

    let executes = kinds(&app.audit_events("acme").await)
        .iter()
        .filter(|k| *k == "execute")
        .count();
    assert_eq!(executes, 1, "one execute event");
    // Every refused late arrival is on the record too.
    let refused = answers
        .iter()
        .filter(|a| status(a) == "already_executed")
        .count();
    let recorded = app
        .audit_events("acme")
        .await
        .iter()
        .filter(|e| e["detail"]["status"] == "already_executed")
        .count();
    assert_eq!(
        recorded, refused,
        "one audit event per already_executed answer"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_approval_is_reported_and_nothing_executes() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let email = json!({ "to": "grace@example.com", "subject": "Offer", "body": "50% off" });
    let id = approval_id(&client.call("crm__send_email", email.clone()).await);

    // A denial needs a reason.
    let (code, _) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/deny"),
            &acme.approver_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    let (code, body) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/deny"),
            &acme.approver_token,
            Some(json!({ "reason": "no" })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "denied");

    for _ in 0..2 {
        let retry = client.call("crm__send_email", email.clone()).await;
        assert_eq!(status(&retry), "denied", "{retry:?}");
        assert_eq!(structured(&retry)["executed"], false);
        let reasons = structured(&retry)["reasons"].to_string();
        assert!(
            reasons.contains("denied by acme-approver") && reasons.contains("no"),
            "{reasons}"
        );
    }
    assert!(effect_lines(&acme.effect_log).is_empty());

    // A denied request cannot be approved afterwards.
    let (code, _) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/approve"),
            &acme.approver_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert!(kinds(&app.audit_events("acme").await).contains(&"deny".to_owned()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_twice_is_a_conflict() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(100)).await);
    let first = app.approve(&acme, &id).await;
    let receipt = first.receipt.clone().expect("a receipt");
    assert!(!receipt.signature.is_empty(), "{first:?}");

    let (code, body) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/approve"),
            &app.admin_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let (code, _) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/deny"),
            &acme.approver_token,
            Some(json!({ "reason": "changed my mind" })),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "a decision is final");
    let after = app.approval(&id).await;
    assert_eq!(after.status, ApprovalStatus::Approved);
    assert_eq!(
        after.receipt,
        Some(receipt),
        "the second approval did not replace the receipt"
    );
    let approvals = kinds(&app.audit_events("acme").await)
        .iter()
        .filter(|k| *k == "approve")
        .count();
    assert_eq!(approvals, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_expires_after_its_ttl() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(700)).await);

    // Just before the hour it is still pending; at the hour it has expired.
    app.clock.advance(3_600_000 - 1);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);
    app.clock.advance(1);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Expired);

    let (code, body) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/approve"),
            &acme.approver_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Expired);

    let retry = client.call("crm__issue_refund", refund(700)).await;
    let fresh = approval_id(&retry);
    assert_ne!(fresh, id, "an expired request is not revived");
    assert!(effect_lines(&acme.effect_log).is_empty());

    // The fresh request works as usual.
    app.approve(&acme, &fresh).await;
    assert_eq!(
        status(&client.call("crm__issue_refund", refund(700)).await),
        "issued"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_approved_before_expiry_cannot_execute_after_it() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(800)).await);
    app.approve(&acme, &id).await;
    app.clock.advance(3_600_000 + 1);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Expired);
    let retry = client.call("crm__issue_refund", refund(800)).await;
    assert_ne!(approval_id(&retry), id);
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_cli_lists_shows_and_approves() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(1234)).await);

    let list = app
        .cli_as(&acme.approver_token, &["approvals", "list", "--json"])
        .await;
    assert!(list.ok(), "{list:?}");
    let rows: Value = serde_json::from_str(&list.stdout).expect("list --json prints JSON");
    let row = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("the held request is listed");
    assert_eq!(row["status"], "pending");
    assert_eq!(row["tool"], "issue_refund");

    let pending = app
        .cli_as(
            &acme.approver_token,
            &["approvals", "list", "--status", "pending"],
        )
        .await;
    assert!(pending.ok(), "{pending:?}");
    assert!(
        pending.stdout.contains(&id) && pending.stdout.contains("pending"),
        "{}",
        pending.stdout
    );
    let executed = app
        .cli_as(
            &acme.approver_token,
            &["approvals", "list", "--status", "executed"],
        )
        .await;
    assert!(
        executed.ok() && executed.stdout.contains("no approval requests"),
        "{executed:?}"
    );

    let show = app
        .cli_as(&acme.approver_token, &["approvals", "show", &id])
        .await;
    assert!(show.ok(), "{show:?}");
    assert!(
        show.stdout.contains(&format!("approval   {id}")),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("status     pending"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("tool       issue_refund"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("1234"),
        "the approver sees the amount: {}",
        show.stdout
    );

    // Without a token, or with the agent's token, the CLI refuses and changes nothing.
    let anonymous = run_cli(
        app.dir.path(),
        &["approvals", "approve", &id],
        &[("PORTCULLIS_URL", &app.base)],
    )
    .await;
    assert_eq!(anonymous.code, Some(2), "{anonymous:?}");
    assert!(
        anonymous.stderr.contains("no admin token"),
        "{}",
        anonymous.stderr
    );
    let agent = app
        .cli_as(&acme.agent_token, &["approvals", "approve", &id])
        .await;
    assert_eq!(agent.code, Some(2), "{agent:?}");
    assert!(agent.stderr.contains("401"), "{}", agent.stderr);
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);

    let approve = app
        .cli_as(
            &acme.approver_token,
            &["approvals", "approve", &id, "--reason", "checked the order"],
        )
        .await;
    assert!(approve.ok(), "{approve:?}");
    assert!(
        approve.stdout.contains("status     approved"),
        "{}",
        approve.stdout
    );
    assert!(
        approve
            .stdout
            .contains("decided by acme-approver: checked the order"),
        "{}",
        approve.stdout
    );
    assert!(
        approve.stdout.contains("receipt    rcp_"),
        "{}",
        approve.stdout
    );

    let twice = app
        .cli_as(&acme.approver_token, &["approvals", "approve", &id])
        .await;
    assert_eq!(twice.code, Some(2), "{twice:?}");
    assert!(
        twice.stderr.contains("409") && twice.stderr.contains("approved"),
        "{}",
        twice.stderr
    );

    let unknown = app
        .cli_as(
            &acme.approver_token,
            &["approvals", "show", "apr_doesnotexist"],
        )
        .await;
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(unknown.stderr.contains("404"), "{}", unknown.stderr);

    assert_eq!(
        status(&client.call("crm__issue_refund", refund(1234)).await),
        "issued"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    let shown = app
        .cli_as(&acme.approver_token, &["approvals", "show", &id, "--json"])
        .await;
    assert!(shown.ok(), "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).expect("show --json prints JSON");
    assert_eq!(shown["status"], "executed");
    app.stop().await;
}
