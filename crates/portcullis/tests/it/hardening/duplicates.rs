//! One live approval request per action: concurrent identical calls join one request, and a
//! retry storm after an execution opens exactly one new request. (Across three replicas:
//! `replicas::identical_calls_on_three_replicas_join_one_request`.)

use super::{effects_of, mail};
use crate::support::*;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Run `n` identical calls at once; returns each call's status and approval id (if any).
async fn storm(
    client: &Arc<Client>,
    tool: &'static str,
    arguments: serde_json::Value,
    n: usize,
) -> Vec<(String, Option<String>)> {
    let calls = (0..n).map(|_| {
        let (client, arguments) = (client.clone(), arguments.clone());
        tokio::spawn(async move {
            let result = client.call(tool, arguments).await;
            let id = structured(&result)["approval_id"]
                .as_str()
                .map(str::to_owned);
            (status(&result), id)
        })
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("call task"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_calls_join_one_request() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = Arc::new(app.client("acme", &acme.agent_token, Era::Discover).await);
    let send = mail("grace@navy.example.com", 1);

    let answers = storm(&client, "crm__send_email", send.clone(), 50).await;
    let ids: BTreeSet<_> = answers.iter().filter_map(|(_, id)| id.clone()).collect();
    assert!(
        answers
            .iter()
            .all(|(status, _)| status == "pending_approval"),
        "{answers:?}"
    );
    assert_eq!(
        ids.len(),
        1,
        "every identical call names one request: {ids:?}"
    );
    let approvals = approvals_of(&app, "acme").await;
    assert_eq!(
        approvals.len(),
        1,
        "one request in the store: {approvals:?}"
    );

    // Approved once, the email goes out once however many retries race for it.
    let id = ids.into_iter().next().expect("one id");
    app.approve(&acme, &id).await;
    let retries = storm(&client, "crm__send_email", send, 20).await;
    assert_eq!(
        retries.iter().filter(|(s, _)| s == "sent").count(),
        1,
        "{retries:?}"
    );
    assert_eq!(effects_of(&acme, "send_email"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_retries_after_an_execution_open_one_new_request() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = Arc::new(app.client("acme", &acme.agent_token, Era::Discover).await);
    let send = mail("grace@navy.example.com", 2);
    let first = approval_id(&client.call("crm__send_email", send.clone()).await);
    app.approve(&acme, &first).await;
    assert_eq!(
        status(&client.call("crm__send_email", send.clone()).await),
        "sent"
    );

    let retries = storm(&client, "crm__send_email", send, 100).await;
    let new_ids: BTreeSet<_> = retries.iter().filter_map(|(_, id)| id.clone()).collect();
    assert!(
        retries.iter().all(|(s, _)| s == "pending_approval"),
        "{retries:?}"
    );
    assert_eq!(new_ids.len(), 1, "{new_ids:?}");
    assert!(
        !new_ids.contains(&first),
        "the executed request is not reused"
    );
    let approvals = approvals_of(&app, "acme").await;
    let pending = approvals
        .iter()
        .filter(|a| a.status == ApprovalStatus::Pending)
        .count();
    assert_eq!(
        (approvals.len(), pending),
        (2, 1),
        "one executed, one new pending: {approvals:?}"
    );
    assert_eq!(effects_of(&acme, "send_email"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_gives_way_to_a_new_one_that_can_be_approved() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let send = mail("ada@example.com", 3);
    let first = approval_id(&client.call("crm__send_email", send.clone()).await);
    // After its expiry, the identical call opens a fresh request (the old one is superseded
    // and can never be approved now).
    app.clock.advance(2 * 3_600_000);
    let second = approval_id(&client.call("crm__send_email", send.clone()).await);
    assert_ne!(first, second);
    assert_eq!(app.approval(&first).await.status, ApprovalStatus::Expired);
    let (code, body) = app
        .api(
            reqwest::Method::POST,
            &format!("/approvals/{first}/approve"),
            &acme.approver_token,
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::CONFLICT, "{body}");
    app.approve(&acme, &second).await;
    let ran = client.call("crm__send_email", send).await;
    assert_eq!(status(&ran), "sent", "{ran:?}");
    assert_eq!(effects_of(&acme, "send_email"), 1);
    app.stop().await;
}
