//! Edits to the audit trail: a correction or redaction is a new entry, proposed by one human
//! and approved by another; the original entry is never rewritten and the chain verifies.

use crate::support::*;
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

    let proposal = app.admin(Method::POST, &path, Some(body)).await;
    let proposal_seq = proposal["proposal"].as_i64().unwrap();
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
        .admin(Method::GET, "/tenants/acme/audit/amendments", None)
        .await;
    assert_eq!(list[0]["status"], "approved");
    assert_eq!(list[0]["decided_in"], decided["entry"]);

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
        .admin(Method::GET, "/audit/verify?tenant=acme", None)
        .await;
    assert_eq!(verify["ok"], true, "{verify}");
}
