//! Edits to the audit trail: a correction or redaction is a new entry, proposed by one human
//! and approved by another; the original entry is never rewritten and the chain verifies.

use crate::support::*;
use portcullis_server::admin::amendments::{AmendmentStatus, ProposalIn};
use portcullis_server::admin::common::TenantQuery;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn audit_amendments_are_new_entries_approved_by_someone_else() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client.call("crm__get_contact", json!({"id": "c_1"})).await;
    let before = app.audit_events("acme").await;
    let target = before
        .iter()
        .find(|e| e["kind"] == "tool_call")
        .expect("a tool call entry")
        .clone();
    let seq = target["seq"].as_i64().unwrap();

    // Approvers cannot propose; bad kinds, empty notes and unknown entries are refused.
    let path = format!("/tenants/acme/audit/{seq}/amendments");
    let body = json!({"kind": "correction", "note": "the call was a test, not a customer request"});
    let (status, _) = app
        .api(
            Method::POST,
            &path,
            &acme.approver_token,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"kind": "rewrite", "note": "x"}),
        json!({"kind": "redaction", "note": "  "}),
    ] {
        let (status, _) = app
            .api(Method::POST, &path, &app.admin_token, Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _) = app
        .api(
            Method::POST,
            "/tenants/acme/audit/999999/amendments",
            &app.admin_token,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let proposal = ProposalIn {
        kind: "correction".into(),
        note: "the call was a test, not a customer request".into(),
    };
    let proposal = app
        .admin_api()
        .propose_amendment("acme", seq, &proposal)
        .await
        .expect("propose");
    let proposal_seq = proposal.proposal;
    let approve = format!("/tenants/acme/audit/amendments/{proposal_seq}/approve");
    // The proposer may not approve their own edit.
    let (status, _) = app
        .api(Method::POST, &approve, &app.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another human may, once.
    let (status, decided) = app
        .api(Method::POST, &approve, &acme.approver_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (status, _) = app
        .api(Method::POST, &approve, &acme.approver_token, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let reject = format!("/tenants/acme/audit/amendments/{proposal_seq}/reject");
    let (status, _) = app
        .api(Method::POST, &reject, &acme.approver_token, None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a decided proposal stays decided"
    );

    let list = app
        .admin_api()
        .list_amendments("acme")
        .await
        .expect("list amendments");
    assert_eq!(list[0].status, AmendmentStatus::Approved);
    assert_eq!(list[0].decided_in, decided["entry"].as_i64());

    // Nothing was rewritten: the original entry is byte-for-byte the same and the chain
    // verifies; the amendment references it by sequence number and hash.
    let after = app.audit_events("acme").await;
    let original = after.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(original, &target);
    let amended = events_of_kind(&after, "audit_amended");
    assert_eq!(amended.len(), 1);
    assert_eq!(amended[0]["detail"]["target_hash"], target["hash"]);
    assert_eq!(amended[0]["detail"]["decided_by"], "acme-approver");
    let verify = app
        .admin_api()
        .verify_audit(&TenantQuery {
            tenant: Some("acme".into()),
        })
        .await
        .expect("verify");
    assert!(verify.ok, "{verify:?}");
}

/// Revert: from an executed write whose before-state was captured, an approver proposes the
/// inverse action; another person approves it and the gateway runs it once.
#[tokio::test]
async fn an_executed_write_is_reverted_from_its_before_state_by_a_second_person() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    crate::policy::set_profile(
        &app,
        &acme,
        "update_contact",
        json!({
            "preview": {"tool": "get_contact", "arguments": {"id": "id"}},
            "revert": {"tool": "update_contact",
                       "arguments": {"id": "id", "name": "name", "email": "email", "company": "company"}}
        }),
    )
    .await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let change = json!({"id": "c_2", "company": "Navy"});
    let id = approval_id(&client.call("crm__update_contact", change.clone()).await);

    // Nothing to revert before it ran.
    let revert = format!("/approvals/{id}/revert");
    let (status, _) = app.api(Method::POST, &revert, &app.admin_token, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.approve(&acme, &id).await;
    let done = client.call("crm__update_contact", change).await;
    assert_eq!(structured(&done)["company"], "Navy");

    let (status, proposal) = app.api(Method::POST, &revert, &app.admin_token, None).await;
    assert_eq!(status, StatusCode::OK, "{proposal}");
    assert_eq!(proposal["status"], "pending");
    assert_eq!(proposal["action"]["arguments"]["company"], "Compiler Corp");
    assert!(
        proposal["summary"]
            .as_str()
            .unwrap()
            .starts_with("revert of")
    );
    let pid = proposal["id"].as_str().unwrap().to_owned();
    let approve = format!("/approvals/{pid}/approve");
    let (status, _) = app
        .api(Method::POST, &approve, &app.admin_token, None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the proposer may not approve"
    );
    let (status, ran) = app
        .api(
            Method::POST,
            &approve,
            &acme.approver_token,
            Some(json!({"reason": "undo"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ran}");
    assert_eq!(ran["status"], "executed");

    let back = client.call("crm__get_contact", json!({"id": "c_2"})).await;
    assert_eq!(structured(&back)["company"], "Compiler Corp");
    let updates: Vec<_> = effect_lines(&acme.effect_log)
        .into_iter()
        .filter(|e| e["tool"] == "update_contact")
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1]["arguments"]["company"], "Compiler Corp");
    // Executed once: approving again changes nothing.
    let (status, _) = app
        .api(Method::POST, &approve, &acme.approver_token, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A write without a captured before-state cannot be reverted.
    let send = json!({"to": "a@example.com", "subject": "s", "body": "b"});
    let sid = approval_id(&client.call("crm__send_email", send.clone()).await);
    app.approve(&acme, &sid).await;
    client.call("crm__send_email", send).await;
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/approvals/{sid}/revert"),
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
