//! Signed approval receipts: an insider with database access can neither forge, stretch, move
//! nor outlive one; an agent cannot approve itself; anyone can verify a receipt offline.

use crate::support::*;
use portcullis_core::action::{Action, canonical_json};
use portcullis_core::receipt::{ReceiptError, SignedReceipt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn refund(amount_cents: i64) -> Value {
    json!({ "customer_id": "c_3", "amount_cents": amount_cents, "reason": "goodwill" })
}

/// Hold a refund and approve it; returns the approval id.
async fn approved_refund(
    app: &TestApp,
    tenant: &Tenant,
    client: &Client,
    amount_cents: i64,
) -> String {
    let id = approval_id(&client.call("crm__issue_refund", refund(amount_cents)).await);
    app.approve(tenant, &id).await;
    id
}

/// An insider's edit of approval `id`'s stored receipt (JSON text): SQLite's `json_set`
/// arguments after the column, or PostgreSQL's `jsonb_set` ones.
fn edit_receipt(app: &TestApp, id: &str, sqlite: &str, postgres: &str) -> String {
    match app.backend() {
        Backend::Sqlite => {
            format!("UPDATE approvals SET receipt = json_set(receipt, {sqlite}) WHERE id = '{id}'")
        }
        Backend::Postgres => format!(
            "UPDATE approvals SET receipt = jsonb_set(receipt::jsonb, {postgres})::text WHERE id = '{id}'"
        ),
    }
}

/// A retry that the gateway refused because of its receipt.
fn assert_receipt_refused(result: &rmcp::model::CallToolResult, why: &str) {
    assert_eq!(status(result), "denied", "{result:?}");
    assert_eq!(structured(result)["executed"], false);
    let reasons = structured(result)["reasons"].to_string();
    assert!(
        reasons.contains("receipt") && reasons.contains(why),
        "{reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_receipt_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    // Stretch the signed expiry by a day.
    let id = approved_refund(&app, &acme, &client, 900).await;
    let edited = app
        .raw_sql(&edit_receipt(
            &app,
            &id,
            "'$.body.expires_at', json_extract(receipt, '$.body.expires_at') + 86400000",
            "'{body,expires_at}', to_jsonb((receipt::jsonb #>> '{body,expires_at}')::bigint + 86400000)",
        ))
        .await
        .expect("insider edit");
    assert_eq!(edited, 1);
    let retry = client.call("crm__issue_refund", refund(900)).await;
    assert_receipt_refused(&retry, "signature is invalid");
    assert!(effect_lines(&acme.effect_log).is_empty());

    // Name another approver.
    let id2 = approved_refund(&app, &acme, &client, 901).await;
    app.raw_sql(&edit_receipt(
        &app,
        &id2,
        "'$.body.approver', 'mallory'",
        "'{body,approver}', '\"mallory\"'",
    ))
    .await
    .unwrap();
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(901)).await,
        "signature is invalid",
    );

    // Garble the signature itself.
    let id3 = approved_refund(&app, &acme, &client, 902).await;
    app.raw_sql(&edit_receipt(
        &app,
        &id3,
        "'$.signature', 'zz'",
        "'{signature}', '\"zz\"'",
    ))
    .await
    .unwrap();
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(902)).await,
        "signature is invalid",
    );

    // Remove it.
    let id4 = approved_refund(&app, &acme, &client, 903).await;
    app.raw_sql(&format!(
        "UPDATE approvals SET receipt = NULL WHERE id = '{id4}'"
    ))
    .await
    .unwrap();
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(903)).await,
        "no receipt",
    );

    // Mark a pending request approved without any receipt.
    let id5 = approval_id(&client.call("crm__issue_refund", refund(904)).await);
    app.raw_sql(&format!(
        "UPDATE approvals SET status = 'approved', decided_by = 'mallory' WHERE id = '{id5}'"
    ))
    .await
    .unwrap();
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(904)).await,
        "no receipt",
    );

    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "no tampered approval executed anything"
    );
    for id in [&id, &id2, &id3, &id4, &id5] {
        assert_eq!(
            app.approval(id).await.status,
            ApprovalStatus::Approved,
            "a refused receipt is not consumed"
        );
    }
    let events = app.audit_events("acme").await;
    let refusals = events
        .iter()
        .filter(|e| e["kind"] == "deny" && e["detail"]["reasons"].to_string().contains("receipt"))
        .count();
    assert_eq!(refusals, 5, "every refusal is audited");
    assert!(!kinds(&events).contains(&"execute".to_owned()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_swapped_from_another_approval_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    // X: a small refund, approved. Y: a big refund, approved too but its receipt swapped for X's.
    let x = approved_refund(&app, &acme, &client, 100).await;
    let y = approved_refund(&app, &acme, &client, 999_999).await;
    app.raw_sql(&format!("UPDATE approvals SET receipt = (SELECT receipt FROM approvals WHERE id = '{x}') WHERE id = '{y}'")).await.unwrap();
    let retry = client.call("crm__issue_refund", refund(999_999)).await;
    assert_receipt_refused(&retry, "does not cover this action");
    assert!(effect_lines(&acme.effect_log).is_empty());

    // Z: pending, never approved, given X's receipt and X's status.
    let z = approval_id(&client.call("crm__issue_refund", refund(5_000)).await);
    app.raw_sql(&format!(
        "UPDATE approvals SET status = 'approved', receipt = (SELECT receipt FROM approvals WHERE id = '{x}') WHERE id = '{z}'"
    ))
    .await
    .unwrap();
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(5_000)).await,
        "does not cover this action",
    );
    assert!(effect_lines(&acme.effect_log).is_empty());

    // A receipt from another tenant does not transfer either.
    let globex = app.seed_tenant("globex").await;
    let globex_client = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    let g = approval_id(&globex_client.call("crm__issue_refund", refund(100)).await);
    app.raw_sql(&format!("UPDATE approvals SET status = 'approved', receipt = (SELECT receipt FROM approvals WHERE id = '{x}') WHERE id = '{g}'"))
        .await
        .unwrap();
    assert_receipt_refused(
        &globex_client.call("crm__issue_refund", refund(100)).await,
        "another tenant",
    );
    assert!(effect_lines(&globex.effect_log).is_empty());

    // X itself still executes, once: its own receipt was copied, not consumed.
    assert_eq!(
        status(&client.call("crm__issue_refund", refund(100)).await),
        "issued"
    );
    let effects = effect_lines(&acme.effect_log);
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0]["arguments"]["amount_cents"], 100);
    // Replaying X's used receipt on a new request for exactly X's action: its nonce is spent.
    let w = approval_id(&client.call("crm__issue_refund", refund(100)).await);
    app.raw_sql(&format!("UPDATE approvals SET status = 'approved', receipt = (SELECT receipt FROM approvals WHERE id = '{x}') WHERE id = '{w}'"))
        .await
        .unwrap();
    let replay = client.call("crm__issue_refund", refund(100)).await;
    assert_eq!(status(&replay), "already_executed", "{replay:?}");
    assert_eq!(structured(&replay)["executed"], false);
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_receipt_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    // Approved, then the hour passes: nothing executes, the retry is a new request.
    let id = approved_refund(&app, &acme, &client, 300).await;
    app.clock.advance(3_600_000 + 1);
    let retry = client.call("crm__issue_refund", refund(300)).await;
    assert_ne!(approval_id(&retry), id);
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Expired);

    // An insider extends the request's expiry column; the signed receipt still says expired.
    let id2 = approved_refund(&app, &acme, &client, 301).await;
    app.clock.advance(3_600_000 + 1);
    app.raw_sql(&format!(
        "UPDATE approvals SET expires_at = expires_at + 86400000 WHERE id = '{id2}'"
    ))
    .await
    .unwrap();
    assert_eq!(app.approval(&id2).await.status, ApprovalStatus::Approved);
    assert_receipt_refused(
        &client.call("crm__issue_refund", refund(301)).await,
        "expired",
    );
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesting_agent_cannot_approve() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(50)).await);

    for path in [
        format!("/approvals/{id}/approve"),
        format!("/approvals/{id}/deny"),
    ] {
        let (code, body) = app
            .api(
                Method::POST,
                &path,
                &acme.agent_token,
                Some(json!({ "reason": "I approve of myself" })),
            )
            .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (code, _) = app
        .api(
            Method::GET,
            &format!("/approvals/{id}"),
            &acme.agent_token,
            None,
        )
        .await;
    assert_eq!(
        code,
        StatusCode::UNAUTHORIZED,
        "agents cannot even read approvals"
    );
    // The agent token presented as an admin token's shape is still not a human.
    let disguised = acme.agent_token.replacen("pca_", "pcadm_", 1);
    let (code, _) = app
        .api(
            Method::POST,
            &format!("/approvals/{id}/approve"),
            &disguised,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    let approval = app.approval(&id).await;
    assert_eq!(approval.status, ApprovalStatus::Pending);
    assert!(approval.receipt.is_none());
    let retry = client.call("crm__issue_refund", refund(50)).await;
    assert_eq!(approval_id(&retry), id, "still held");
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert!(!kinds(&app.audit_events("acme").await).contains(&"approve".to_owned()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_verifies_offline_with_the_printed_public_key() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(4_321)).await);
    let approval = app.approve(&acme, &id).await;

    // The public key, from the binary, reading only the data folder (env and --config forms).
    let printed = app.cli_local(&["public-key"]).await;
    assert!(printed.ok(), "{printed:?}");
    let config = app.dir.path().join("offline.toml");
    std::fs::write(
        &config,
        format!("[data]\ndir = {:?}\n", app.data_dir().display().to_string()),
    )
    .unwrap();
    let with_config = run_cli(
        app.dir.path(),
        &["public-key", "--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(with_config.ok(), "{with_config:?}");
    assert_eq!(printed.stdout, with_config.stdout);
    let key = portcullis_core::keys::parse_verifying_key(printed.stdout.trim())
        .expect("a hex Ed25519 public key");
    assert_eq!(key, app.state.keys.verifying_key());

    // Verify by hand: Ed25519 over the RFC 8785 canonical body, bound to the action's hash.
    let receipt: SignedReceipt = approval.receipt.clone().expect("a receipt");
    let action: Action = approval.action.clone();
    assert_eq!(receipt.body.approval_id.as_str(), id);
    assert_eq!(receipt.body.tenant.as_str(), acme.id);
    assert_eq!(receipt.body.approver, "acme-approver");
    assert_eq!(receipt.body.action_hash, action.hash().unwrap());
    assert_eq!(receipt.body.action_hash, approval.action_hash);
    assert_eq!(action.arguments, refund(4_321));
    let body = canonical_json(&receipt.body).unwrap();
    let signature =
        ed25519_dalek::Signature::from_slice(&hex::decode(&receipt.signature).unwrap()).unwrap();
    key.verify_strict(&body, &signature)
        .expect("signature verifies offline");

    // And with the library's verifier: valid now, refused when anything differs.
    let now = receipt.body.approved_at;
    portcullis_core::decision::verify(&receipt, &key, hashed(action.clone()), now)
        .expect("valid receipt");
    let mut other = action.clone();
    other.arguments["amount_cents"] = json!(4_322);
    assert_eq!(
        portcullis_core::decision::verify(&receipt, &key, hashed(other), now).unwrap_err(),
        ReceiptError::ActionMismatch
    );
    let mut stretched = receipt.clone();
    stretched.body.expires_at += 1;
    assert_eq!(
        portcullis_core::decision::verify(&stretched, &key, hashed(action.clone()), now)
            .unwrap_err(),
        ReceiptError::BadSignature
    );
    assert_eq!(
        portcullis_core::decision::verify(
            &receipt,
            &key,
            hashed(action.clone()),
            receipt.body.expires_at
        )
        .unwrap_err(),
        ReceiptError::Expired
    );
    let stranger = portcullis_core::keys::KeyRing::generate();
    assert_eq!(
        portcullis_core::decision::verify(&receipt, &stranger.verifying_key(), hashed(action), now)
            .unwrap_err(),
        ReceiptError::BadSignature
    );
    app.stop().await;
}

fn hashed(action: portcullis_core::action::Action) -> portcullis_core::action::HashedAction {
    portcullis_core::action::HashedAction::new(action).expect("canonical")
}
