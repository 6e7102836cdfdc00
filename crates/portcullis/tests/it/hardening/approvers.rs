//! Approvers see everything they approve: summaries never drop an argument, and a batch is
//! approved only under the hash of what the approver reviewed.

use crate::policy::set_profile;
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn hidden_recipient() -> serde_json::Value {
    json!({
        "body": format!("Dear customer, {}", "please read this carefully. ".repeat(15)),
        "to": "mallory@evil.test",
        "subject": "Your invoice",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_value_cannot_hide_the_recipient_from_approvers() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let arguments = hidden_recipient();
    assert!(arguments["body"].as_str().unwrap().len() > 400);
    let id = approval_id(&client.call("crm__send_email", arguments).await);

    let approval = app.approval(&id).await;
    let summary = &approval.summary;
    assert!(summary.contains(r#"to="mallory@evil.test""#), "{summary}");
    assert!(summary.contains(r#"subject="Your invoice""#), "{summary}");
    assert!(
        summary.contains("chars)"),
        "the long body is elided on its own: {summary}"
    );

    let listed = app
        .cli_as(&acme.approver_token, &["approvals", "list"])
        .await;
    assert!(listed.ok(), "{listed:?}");
    assert!(listed.stdout.contains("mallory@evil.test"), "{listed:?}");
    let preview = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch/preview",
            &acme.approver_token,
            Some(json!({ "items": [id] })),
        )
        .await
        .1;
    assert!(
        preview["items"][0]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("mallory@evil.test"),
        "{preview}"
    );

    // The profile's important keys come first.
    set_profile(&app, &acme, "send_email", json!({ "summary_keys": ["to"] })).await;
    let next = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "body": "x".repeat(500), "to": "eve@evil.test", "subject": "s" }),
            )
            .await,
    );
    let summary = app.approval(&next).await.summary;
    assert!(
        summary.starts_with(r#"send: crm.send_email to="eve@evil.test" body="#),
        "{summary}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_approved_only_under_the_hash_the_approver_reviewed() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let first = approval_id(&client.call("crm__send_email", hidden_recipient()).await);
    let second = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "ada@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );

    // First invocation: shows the batch and its hash, approves nothing.
    let shown = app
        .cli_as(
            &acme.approver_token,
            &["batch", "--tenant", "acme", &first, &second],
        )
        .await;
    assert!(shown.ok(), "{shown:?}");
    assert!(shown.stdout.contains("mallory@evil.test"), "{shown:?}");
    let hash = shown
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("batch hash "))
        .expect("the batch hash is shown")
        .trim()
        .to_owned();
    for id in [&first, &second] {
        assert_eq!(app.approval(id).await.status, ApprovalStatus::Pending);
    }

    // A wrong hash is refused without handing out the right one.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch",
            &acme.approver_token,
            Some(json!({ "items": [first, second], "batch_hash": "0".repeat(64) })),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains(&hash), "{body}");

    // Second invocation with the reviewed hash: approved, both run.
    let approved = app
        .cli_as(
            &acme.approver_token,
            &[
                "batch",
                "--tenant",
                "acme",
                &first,
                &second,
                "--batch-hash",
                &hash,
            ],
        )
        .await;
    assert!(approved.ok(), "{approved:?}");
    for id in [&first, &second] {
        assert_eq!(app.approval(id).await.status, ApprovalStatus::Approved);
    }
    app.stop().await;
}
