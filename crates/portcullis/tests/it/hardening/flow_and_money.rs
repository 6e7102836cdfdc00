//! Flow escalation follows the agent across sessions and protocol eras; the money caps hold
//! only calls that cost money; a used-up guardrail names itself.

use super::{effects_of, mail};
use crate::policy::set_profile;
use crate::support::*;
use portcullis_server::admin::guardrails::GuardrailIn;
use portcullis_server::admin::policy::PolicyIn;
use serde_json::{Value, json};

/// A guardrail letting the agent send mail to example.com addresses without asking.
async fn mail_guardrail(app: &TestApp, tenant: &Tenant, max_per_day: u32) {
    let guardrail: GuardrailIn = serde_json::from_value(json!({
        "name": "mail",
        "spec": {
            "connection": "crm", "tool": "send_email", "agent": "agent",
            "conditions": [{ "argument": "to", "op": "suffix", "value": "@example.com" }],
            "max_per_day": max_per_day, "max_cost_cents_per_day": 0,
            "expires_at": app.clock.now() + 24 * 3_600_000,
        },
        "mode": "auto",
    }))
    .expect("a guardrail");
    app.admin_api()
        .create_guardrail(&tenant.name, &guardrail)
        .await
        .expect("create guardrail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_does_not_wash_away_a_private_read() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "get_contact",
        json!({ "data_classes": ["private"] }),
    )
    .await;
    mail_guardrail(&app, &acme, 50).await;
    // Read in one era, send from a fresh session of every era: each send is held.
    for (read_era, send_era) in [
        (Era::Initialize, Era::Initialize),
        (Era::Initialize, Era::Discover),
        (Era::Discover, Era::Initialize),
    ] {
        let reader = app.client("acme", &acme.agent_token, read_era).await;
        let read = reader
            .call("crm__get_contact", json!({ "id": "c_1" }))
            .await;
        assert_eq!(status(&read), "ok");
        drop(reader);
        let sender = app.client("acme", &acme.agent_token, send_era).await;
        let send = sender
            .call("crm__send_email", mail("ada@example.com", 1))
            .await;
        assert_eq!(
            status(&send),
            "pending_approval",
            "{read_era:?} read, {send_era:?} send: {send:?}"
        );
        let approval = app.approval(&approval_id(&send)).await;
        assert!(
            approval.reasons.join("; ").contains("private"),
            "{approval:?}"
        );
        // Past the window the agent's reads in other sessions no longer count.
        app.clock.advance(3_600_001);
    }
    assert_eq!(effects_of(&acme, "send_email"), 0);
    let fresh = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let ran = fresh
        .call("crm__send_email", mail("ada@example.com", 2))
        .await;
    assert_eq!(status(&ran), "sent", "{ran:?}");
    app.stop().await;
}

fn refund(customer: &str, amount_cents: i64) -> Value {
    json!({ "customer_id": customer, "amount_cents": amount_cents, "reason": "caps" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_call_still_runs_after_the_days_money_is_spent() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "issue_refund",
        json!({ "cost_argument": "amount_cents" }),
    )
    .await;
    let caps = PolicyIn {
        cedar: String::new(),
        settings: json!({ "money": { "per_action_cents": 10_000, "per_day_cents": 5_000 } }),
    };
    app.admin_api()
        .put_policy("acme", &caps)
        .await
        .expect("put policy");
    mail_guardrail(&app, &acme, 50).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    // Spend more than the day's cap (approved by a person).
    let id = approval_id(&client.call("crm__issue_refund", refund("c_1", 6_000)).await);
    app.approve(&acme, &id).await;
    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_1", 6_000)).await),
        "issued"
    );
    // A $0 send under its guardrail is not "money over the cap".
    let send = client
        .call("crm__send_email", mail("ada@example.com", 7))
        .await;
    assert_eq!(status(&send), "sent", "{send:?}");
    // A call that costs something is held by the money point.
    let more = client.call("crm__issue_refund", refund("c_2", 1)).await;
    let held = app.approval(&approval_id(&more)).await;
    assert!(held.reasons.join("; ").contains("money over"), "{held:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_guardrail_names_itself_in_the_hold() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    mail_guardrail(&app, &acme, 1).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let first = client
        .call("crm__send_email", mail("ada@example.com", 1))
        .await;
    assert_eq!(status(&first), "sent", "{first:?}");
    let second = client
        .call("crm__send_email", mail("ada@example.com", 2))
        .await;
    let reasons = structured(&second)["reasons"].to_string();
    assert!(
        reasons.contains("guardrail `mail`") && reasons.contains("today's 1 runs"),
        "the agent is told which guardrail ran out: {second:?}"
    );
    let approval = app.approval(&approval_id(&second)).await;
    assert!(
        approval.reasons.join("; ").contains("guardrail `mail`"),
        "and so are the approvers: {approval:?}"
    );
    assert_eq!(effects_of(&acme, "send_email"), 1);
    app.stop().await;
}
