//! The trust ladder from outside: guardrails (who may create, widen and narrow them, what they
//! let run, their daily count, cost cap, expiry and day boundary, instant revert, notices),
//! exact limits under concurrency, approval points that still hold under a guardrail,
//! flow-aware escalation, the kill switch, the spend report and guardrail suggestions.

use crate::policy::{add_agent, add_approver, email, refund, set_profile, vote};
use crate::support::*;
use portcullis_core::guardrail::GuardrailMode;
use portcullis_core::policy::Point;
use portcullis_server::admin::guardrails::{GuardrailIn, GuardrailView, SuggestionQuery};
use portcullis_server::admin::policy::PolicyIn;
use portcullis_server::admin::spend::{Caps, RunTotals, SpendReport};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Agent `agent` sending mail to example.com addresses.
fn send_spec(app: &TestApp, max_per_day: u32, life_ms: i64) -> Value {
    json!({
        "connection": "crm", "tool": "send_email", "agent": "agent",
        "conditions": [{ "argument": "to", "op": "suffix", "value": "@example.com" }],
        "max_per_day": max_per_day, "max_cost_cents_per_day": 0,
        "expires_at": app.clock.now() + life_ms,
    })
}

/// Create a guardrail as the bootstrap admin; returns it.
async fn create_guardrail(
    app: &TestApp,
    tenant: &Tenant,
    name: &str,
    spec: Value,
    mode: &str,
) -> GuardrailView {
    let body: GuardrailIn =
        serde_json::from_value(json!({ "name": name, "spec": spec, "mode": mode }))
            .expect("a guardrail");
    app.admin_api()
        .create_guardrail(&tenant.name, &body)
        .await
        .unwrap_or_else(|e| panic!("create guardrail {name}: {e}"))
}

async fn set_mode(
    app: &TestApp,
    tenant: &Tenant,
    token: &str,
    guardrail: &str,
    mode: &str,
) -> (StatusCode, Value) {
    app.api(
        Method::POST,
        &format!("/tenants/{}/guardrails/{guardrail}/mode", tenant.name),
        token,
        Some(json!({ "mode": mode })),
    )
    .await
}

async fn set_spec(
    app: &TestApp,
    tenant: &Tenant,
    token: &str,
    guardrail: &str,
    spec: &Value,
) -> (StatusCode, Value) {
    app.api(
        Method::PUT,
        &format!("/tenants/{}/guardrails/{guardrail}", tenant.name),
        token,
        Some(spec.clone()),
    )
    .await
}

async fn guardrail_named(app: &TestApp, tenant: &Tenant, name: &str) -> GuardrailView {
    let list = app
        .admin_api()
        .list_guardrails(&tenant.name)
        .await
        .expect("list guardrails");
    list.iter()
        .find(|g| g.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no guardrail {name}: {list:?}"))
}

/// A matching mail (a distinct action per `n`).
fn mail(n: usize) -> Value {
    json!({ "to": "ada@example.com", "subject": format!("Update {n}"), "body": "All good." })
}

fn sends(tenant: &Tenant) -> usize {
    effect_lines(&tenant.effect_log)
        .iter()
        .filter(|e| e["tool"] == "send_email")
        .count()
}

async fn spend(app: &TestApp, tenant: &Tenant) -> SpendReport {
    app.admin_api()
        .spend(&tenant.name, &Default::default())
        .await
        .expect("spend")
}

/// Replace acme's money caps (no tenant policies).
async fn set_money(app: &TestApp, money: Value) {
    let body = PolicyIn {
        cedar: String::new(),
        settings: json!({ "money": money }),
    };
    app.admin_api()
        .put_policy("acme", &body)
        .await
        .expect("put policy");
}

fn runs(runs: i64, cents: i64) -> RunTotals {
    RunTotals { runs, cents }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_is_created_by_an_admin_at_approve_each_and_auto_runs_only_matching_calls() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let other_agent = add_agent(&app, &acme, "other").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    // Creating one needs an admin.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/guardrails",
            &acme.approver_token,
            Some(json!({ "name": "mail", "spec": send_spec(&app, 10, DAY_MS) })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/guardrails",
            &app.admin_token,
            Some(json!({ "name": "mail", "spec": send_spec(&app, 10, DAY_MS) })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "approve_each", "a guardrail starts inactive");
    let id = body["id"].as_str().expect("guardrail id").to_owned();
    assert!(
        body["english"]
            .as_str()
            .unwrap_or_default()
            .contains("crm.send_email"),
        "{body}"
    );

    // At approve-each nothing changes: matching calls are held.
    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "pending_approval"
    );
    assert_eq!(sends(&acme), 0);

    // Moving it up needs an admin.
    let (code, _) = set_mode(&app, &acme, &acme.approver_token, "mail", "auto").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status(&client.call("crm__send_email", mail(2)).await),
        "pending_approval"
    );
    let (code, body) = set_mode(&app, &acme, &app.admin_token, "mail", "auto").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "auto");

    // Matching calls now run without approval, and reach the upstream.
    let ran = client.call("crm__send_email", mail(3)).await;
    assert_eq!(status(&ran), "sent", "{ran:?}");
    assert_eq!(sends(&acme), 1);
    // Not matching: another domain, a missing argument, another agent.
    for args in [
        email("eve@evil.test"),
        json!({ "subject": "s", "body": "b", "cc": "ada@example.com" }),
    ] {
        let held = client.call("crm__send_email", args.clone()).await;
        assert_eq!(status(&held), "pending_approval", "{args}: {held:?}");
    }
    let other = app.client("acme", &other_agent, Era::Discover).await;
    assert_eq!(
        status(&other.call("crm__send_email", mail(4)).await),
        "pending_approval",
        "the guardrail names agent `agent` only"
    );
    assert_eq!(sends(&acme), 1);

    let events = app.audit_events("acme").await;
    let created = events_of_kind(&events, "guardrail_created");
    assert_eq!(created.len(), 1);
    let actor = created[0]["actor"].as_str().unwrap_or_default();
    assert!(
        actor.starts_with("admin:") && actor != "admin:acme-approver",
        "{actor}"
    );
    let changed = events_of_kind(&events, "guardrail_changed");
    assert_eq!(changed.len(), 1, "only the accepted change is recorded");
    assert_eq!(changed[0]["detail"]["from"], "approve_each");
    assert_eq!(changed[0]["detail"]["to"], "auto");
    let runs: Vec<&Value> = events_of_kind(&events, "tool_call")
        .into_iter()
        .filter(|e| e["decision"] == "allow" && e["detail"]["guardrail"] == id)
        .collect();
    assert_eq!(runs.len(), 1, "the run names its guardrail");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_counts_runs_per_utc_day() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    create_guardrail(&app, &acme, "mail", send_spec(&app, 2, 7 * DAY_MS), "auto").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "sent"
    );
    assert_eq!(
        status(&client.call("crm__send_email", mail(2)).await),
        "sent"
    );
    let third = client.call("crm__send_email", mail(3)).await;
    assert_eq!(status(&third), "pending_approval", "{third:?}");
    assert_eq!(sends(&acme), 2);

    // The last millisecond of the same UTC day: still used up.
    let now = app.clock.now();
    let next_day = now - now.rem_euclid(DAY_MS) + DAY_MS;
    app.clock.advance(next_day - 1 - now);
    assert_eq!(
        status(&client.call("crm__send_email", mail(4)).await),
        "pending_approval"
    );
    // The next UTC day starts a new count.
    app.clock.advance(1);
    assert_eq!(
        status(&client.call("crm__send_email", mail(5)).await),
        "sent"
    );
    assert_eq!(
        status(&client.call("crm__send_email", mail(6)).await),
        "sent"
    );
    assert_eq!(
        status(&client.call("crm__send_email", mail(7)).await),
        "pending_approval"
    );
    assert_eq!(sends(&acme), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_caps_the_declared_cost_per_day() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "issue_refund",
        json!({ "cost_argument": "amount_cents" }),
    )
    .await;
    let spec = json!({
        "connection": "crm", "tool": "issue_refund", "max_per_day": 10,
        "max_cost_cents_per_day": 5000, "expires_at": app.clock.now() + DAY_MS,
    });
    let guardrail = create_guardrail(&app, &acme, "refunds", spec, "auto").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    for (amount, expected) in [
        (3000, "issued"),
        (1500, "issued"),
        (1000, "pending_approval"), // 4500 + 1000 > 5000
        (500, "issued"),            // exactly 5000
        (1, "pending_approval"),
    ] {
        let result = client
            .call("crm__issue_refund", refund("c_1", amount))
            .await;
        assert_eq!(status(&result), expected, "{amount}: {result:?}");
    }
    let refunds: Vec<i64> = effect_lines(&acme.effect_log)
        .iter()
        .map(|e| e["arguments"]["amount_cents"].as_i64().expect("amount"))
        .collect();
    assert_eq!(refunds, [3000, 1500, 500]);
    let report = spend(&app, &acme).await;
    assert_eq!(report.total_cents, 5000, "{report:?}");
    // The report names workflows by guardrail name.
    let gid = format!("guardrail {}", guardrail.name);
    assert_eq!(
        report.by_workflow.get(&gid),
        Some(&runs(3, 5000)),
        "{report:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_guardrail_covers_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    create_guardrail(&app, &acme, "mail", send_spec(&app, 10, HOUR_MS), "auto").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "sent"
    );
    app.clock.advance(HOUR_MS - 1);
    assert_eq!(
        status(&client.call("crm__send_email", mail(2)).await),
        "sent"
    );
    app.clock.advance(1);
    let held = client.call("crm__send_email", mail(3)).await;
    assert_eq!(status(&held), "pending_approval", "{held:?}");
    assert_eq!(sends(&acme), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_narrow_at_once_but_only_admins_widen() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let spec = send_spec(&app, 5, 7 * DAY_MS);
    let created = create_guardrail(&app, &acme, "mail", spec.clone(), "auto").await;
    let id = created.id.to_string();
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "sent"
    );

    // Instant revert by an approver: the very next call is held.
    let (code, body) = set_mode(&app, &acme, &acme.approver_token, "mail", "approve_each").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let held = client.call("crm__send_email", mail(2)).await;
    assert_eq!(status(&held), "pending_approval", "{held:?}");
    assert_eq!(sends(&acme), 1);

    // Up the ladder again: not by an approver (by id this time), by an admin.
    for mode in ["auto_with_notice", "auto"] {
        let (code, body) = set_mode(&app, &acme, &acme.approver_token, &id, mode).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{mode}: {body}");
    }
    assert_eq!(
        guardrail_named(&app, &acme, "mail").await.mode,
        GuardrailMode::ApproveEach
    );
    let (code, _) = set_mode(&app, &acme, &app.admin_token, &id, "auto").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        status(&client.call("crm__send_email", mail(3)).await),
        "sent"
    );

    // Widening the spec: refused for an approver, whatever the widening.
    let mut more = spec.clone();
    more["max_per_day"] = json!(50);
    let mut longer = spec.clone();
    longer["expires_at"] = json!(spec["expires_at"].as_i64().expect("expiry") + DAY_MS);
    let mut unconditional = spec.clone();
    unconditional["conditions"] = json!([]);
    let mut any_agent = spec.clone();
    any_agent["agent"] = Value::Null;
    let mut costly = spec.clone();
    costly["max_cost_cents_per_day"] = json!(100);
    for (what, wider) in [
        ("more runs", &more),
        ("a later expiry", &longer),
        ("no conditions", &unconditional),
        ("any agent", &any_agent),
        ("a cost budget", &costly),
    ] {
        let (code, body) = set_spec(&app, &acme, &acme.approver_token, "mail", wider).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    let unchanged = guardrail_named(&app, &acme, "mail").await.spec;
    assert_eq!(serde_json::to_value(&unchanged).expect("a spec"), spec);
    let (code, body) = set_spec(&app, &acme, &app.admin_token, "mail", &more).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["max_per_day"], 50);

    // Narrowing is open to approvers and takes effect on the next call.
    let mut one = more.clone();
    one["max_per_day"] = json!(2);
    let (code, body) = set_spec(&app, &acme, &acme.approver_token, "mail", &one).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let held = client.call("crm__send_email", mail(4)).await;
    assert_eq!(
        status(&held),
        "pending_approval",
        "two ran today already: {held:?}"
    );

    // Revoking is narrowing too.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/guardrails/mail/revoke",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let held = client.call("crm__send_email", mail(5)).await;
    assert_eq!(status(&held), "pending_approval", "{held:?}");
    // A revoked guardrail is gone: it cannot be moved back up.
    let (code, _) = set_mode(&app, &acme, &app.admin_token, &id, "auto").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(sends(&acme), 2);

    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "guardrail_created").len(), 1);
    // approve_each (approver), auto (admin), spec 50 (admin), spec 2 (approver).
    let changes = events_of_kind(&events, "guardrail_changed");
    assert_eq!(changes.len(), 4, "{changes:#?}");
    assert_eq!(changes[0]["actor"], "admin:acme-approver");
    assert_eq!(changes[0]["detail"]["to"], "approve_each");
    assert_eq!(changes[2]["detail"]["widened"], true);
    assert_eq!(changes[3]["detail"]["widened"], false);
    assert_eq!(changes[3]["actor"], "admin:acme-approver");
    assert_eq!(events_of_kind(&events, "guardrail_revoked").len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_notice_leaves_one_notice_per_run() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let created = create_guardrail(
        &app,
        &acme,
        "mail",
        send_spec(&app, 10, DAY_MS),
        "auto_with_notice",
    )
    .await;
    let id = created.id.as_str();
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    for n in 0..3 {
        assert_eq!(
            status(&client.call("crm__send_email", mail(n)).await),
            "sent"
        );
    }
    // Held calls leave no notice.
    assert_eq!(
        status(&client.call("crm__send_email", email("eve@evil.test")).await),
        "pending_approval"
    );
    let notices = events_of_kind(&app.audit_events("acme").await, "notice")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(notices.len(), 3, "{notices:#?}");
    for notice in &notices {
        assert_eq!(notice["detail"]["guardrail"], id);
        assert_eq!(notice["detail"]["guardrail_name"], "mail");
        assert!(
            notice["detail"]["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("crm.send_email"),
            "{notice}"
        );
    }
    // At plain auto the runs are quiet.
    set_mode(&app, &acme, &app.admin_token, "mail", "auto").await;
    assert_eq!(
        status(&client.call("crm__send_email", mail(9)).await),
        "sent"
    );
    assert_eq!(
        events_of_kind(&app.audit_events("acme").await, "notice").len(),
        3
    );
    assert_eq!(sends(&acme), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_never_exceed_the_daily_count() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let created = create_guardrail(&app, &acme, "mail", send_spec(&app, 3, DAY_MS), "auto").await;
    let gid = format!("guardrail {}", created.name);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(Arc::new(
            app.client("acme", &acme.agent_token, Era::Discover).await,
        ));
    }
    let start = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for n in 0..10 {
        let client = clients[n % clients.len()].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            client.try_call("crm__send_email", mail(n)).await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task").expect("every call is answered");
        outcomes.push(status(&answer));
    }
    let sent = outcomes.iter().filter(|s| *s == "sent").count();
    let held = outcomes.iter().filter(|s| *s == "pending_approval").count();
    assert_eq!((sent, held), (3, 7), "{outcomes:?}");
    assert_eq!(sends(&acme), 3, "exactly three reached the upstream");
    let report = spend(&app, &acme).await;
    assert_eq!(report.by_workflow[&gid].runs, 3, "{report:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_over_the_cap_is_held_even_under_an_auto_guardrail() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "issue_refund",
        json!({ "cost_argument": "amount_cents" }),
    )
    .await;
    let spec = json!({
        "connection": "crm", "tool": "issue_refund", "max_per_day": 10,
        "max_cost_cents_per_day": 1_000_000, "expires_at": app.clock.now() + DAY_MS,
    });
    create_guardrail(&app, &acme, "refunds", spec, "auto").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;

    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_1", 2000)).await),
        "issued"
    );
    // Over the per-action cap (10000 cents by default): held by the money point.
    let held = client
        .call("crm__issue_refund", refund("c_2", 15_000))
        .await;
    let id = approval_id(&held);
    let approval = app.approval(&id).await;
    assert!(
        approval.reasons.join("; ").contains("money over"),
        "{approval:?}"
    );
    assert_eq!(approval.cost_cents, 15_000);
    let votes = app.admin_api().votes(&id).await.expect("votes");
    assert!(
        votes
            .rules
            .iter()
            .flatten()
            .any(|(point, _)| *point == Point::Money),
        "{votes:?}"
    );
    // Exactly at the cap it is not over.
    assert_eq!(
        status(
            &client
                .call("crm__issue_refund", refund("c_3", 10_000))
                .await
        ),
        "issued"
    );
    // A cost argument that is not whole cents is refused, not guessed.
    let bad = client
        .call(
            "crm__issue_refund",
            json!({ "customer_id": "c_1", "amount_cents": -5, "reason": "r" }),
        )
        .await;
    assert_eq!(status(&bad), "denied", "{bad:?}");
    let refunds: Vec<i64> = effect_lines(&acme.effect_log)
        .iter()
        .map(|e| e["arguments"]["amount_cents"].as_i64().expect("amount"))
        .collect();
    assert_eq!(refunds, [2000, 10_000]);

    // The per-day cap counts what already ran today (12000 so far).
    set_money(
        &app,
        json!({ "per_action_cents": 10_000, "per_day_cents": 13_000 }),
    )
    .await;
    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_1", 1000)).await),
        "issued"
    );
    let over_day = client.call("crm__issue_refund", refund("c_1", 1001)).await;
    assert_eq!(status(&over_day), "pending_approval", "{over_day:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 3);

    // A per-agent daily cap: this agent has spent 13000 today, a fresh agent nothing.
    set_money(
        &app,
        json!({ "per_action_cents": 10_000, "per_day_cents": 100_000, "per_agent_day_cents": 13_500 }),
    )
    .await;
    let over_agent = client.call("crm__issue_refund", refund("c_2", 600)).await;
    assert_eq!(status(&over_agent), "pending_approval", "{over_agent:?}");
    let second_token = add_agent(&app, &acme, "second").await;
    let second = app.client("acme", &second_token, Era::Discover).await;
    assert_eq!(
        status(&second.call("crm__issue_refund", refund("c_2", 600)).await),
        "issued"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_a_private_read_in_the_session_is_held_despite_a_guardrail() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "get_contact",
        json!({ "data_classes": ["private"] }),
    )
    .await;
    create_guardrail(&app, &acme, "mail", send_spec(&app, 10, DAY_MS), "auto").await;

    let reader = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        status(
            &reader
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let held = reader.call("crm__send_email", mail(1)).await;
    let id = approval_id(&held);
    let approval = app.approval(&id).await;
    let reasons = approval.reasons.join("; ");
    assert!(
        reasons.contains("private") && reasons.contains("untrusted"),
        "{approval:?}"
    );
    assert_eq!(
        approval.evidence["read_classes"],
        json!(["private"]),
        "{approval:?}"
    );
    assert_eq!(
        approval.evidence["reads"][0]["tool"], "crm.get_contact",
        "{approval:?}"
    );
    assert_eq!(sends(&acme), 0);

    // A fresh session does not wash the read away: the agent's reads in any session count
    // for an hour (escalation follows the agent, not the connection).
    let fresh = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        status(&fresh.call("crm__list_contacts", json!({})).await),
        "ok"
    );
    let held = fresh.call("crm__send_email", mail(2)).await;
    assert_eq!(status(&held), "pending_approval", "{held:?}");
    assert_eq!(sends(&acme), 0);

    // An hour later, a fresh session that read nothing private runs under the guardrail.
    app.clock.advance(HOUR_MS + 1);
    let later = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let ran = later.call("crm__send_email", mail(3)).await;
    assert_eq!(status(&ran), "sent", "{ran:?}");
    assert_eq!(sends(&acme), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_send_after_a_private_read_is_held_despite_a_guardrail() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    set_profile(
        &app,
        &acme,
        "get_contact",
        json!({ "data_classes": ["private"] }),
    )
    .await;
    create_guardrail(&app, &acme, "mail", send_spec(&app, 10, DAY_MS), "auto").await;

    // 2026-07-28 clients have no session: the agent's recent reads count instead.
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "sent"
    );
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let held = client.call("crm__send_email", mail(2)).await;
    assert_eq!(
        status(&held),
        "pending_approval",
        "a private read an instant ago must escalate the send: {held:?}"
    );
    assert_eq!(sends(&acme), 1);

    // Sessionless reads count for an hour.
    app.clock.advance(HOUR_MS + 1);
    let ran = client.call("crm__send_email", mail(3)).await;
    assert_eq!(status(&ran), "sent", "{ran:?}");
    assert_eq!(sends(&acme), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_stops_an_agent_or_a_tenant_until_an_admin_resumes() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let second = add_agent(&app, &acme, "second").await;
    let read = |n: i64| tools_call_2026(n, "crm__get_contact", json!({ "id": "c_1" }));
    let raw = |tenant: &'static str, token: String, n: i64| {
        let app = &app;
        async move { post_2026(app, tenant, &token, &read(n), Some("crm__get_contact")).await }
    };
    let legacy = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        raw("acme", acme.agent_token.clone(), 1).await.status,
        StatusCode::OK
    );

    // An approver may pull the switch on one agent.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/agents/agent/suspend",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let refused = raw("acme", acme.agent_token.clone(), 2).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.text.contains("suspended"), "{}", refused.text);
    // Its open legacy session is refused too, even for an approved action.
    let send = email("ada@example.com");
    assert!(
        legacy
            .try_call("crm__send_email", send.clone())
            .await
            .is_err(),
        "a suspended agent's session still works"
    );
    assert_eq!(raw("acme", second.clone(), 3).await.status, StatusCode::OK);
    assert_eq!(
        raw("globex", globex.agent_token.clone(), 4).await.status,
        StatusCode::OK
    );

    // Another tenant's approver cannot reach it.
    let (code, _) = app
        .api(
            Method::POST,
            "/tenants/acme/agents/second/suspend",
            &globex.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(raw("acme", second.clone(), 30).await.status, StatusCode::OK);

    // Only an admin lifts it.
    let (code, _) = app
        .api(
            Method::POST,
            "/tenants/acme/agents/agent/resume",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        raw("acme", acme.agent_token.clone(), 5).await.status,
        StatusCode::FORBIDDEN
    );
    app.admin_api()
        .resume_agent("acme", &acme.agent_id)
        .await
        .expect("resume agent");
    assert_eq!(
        raw("acme", acme.agent_token.clone(), 6).await.status,
        StatusCode::OK
    );

    // The whole tenant: every agent of it, and no other tenant.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/suspend",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for (n, token) in [acme.agent_token.clone(), second.clone()]
        .into_iter()
        .enumerate()
    {
        let reply = raw("acme", token, 10 + n as i64).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    }
    assert_eq!(
        raw("globex", globex.agent_token.clone(), 20).await.status,
        StatusCode::OK
    );
    let (code, _) = app
        .api(
            Method::POST,
            "/tenants/acme/resume",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        raw("acme", second.clone(), 21).await.status,
        StatusCode::FORBIDDEN
    );
    app.admin_api()
        .resume_tenant("acme")
        .await
        .expect("resume tenant");
    assert_eq!(
        raw("acme", acme.agent_token.clone(), 22).await.status,
        StatusCode::OK
    );
    assert_eq!(raw("acme", second.clone(), 23).await.status, StatusCode::OK);
    let fresh = app.client("acme", &acme.agent_token, Era::Initialize).await;
    assert_eq!(
        status(&fresh.call("crm__send_email", send).await),
        "pending_approval"
    );
    assert!(effect_lines(&acme.effect_log).is_empty());

    let k = kinds(&app.audit_events("acme").await);
    let count = |kind: &str| k.iter().filter(|x| *x == kind).count();
    assert_eq!(
        (
            count("agent_suspended"),
            count("agent_resumed"),
            count("tenant_suspended"),
            count("tenant_resumed")
        ),
        (1, 1, 1, 1),
        "{k:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spend_report_lists_guardrail_runs_and_approved_charges() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let second = add_agent(&app, &acme, "second").await;
    set_profile(
        &app,
        &acme,
        "issue_refund",
        json!({ "cost_argument": "amount_cents" }),
    )
    .await;
    let spec = json!({
        "connection": "crm", "tool": "issue_refund", "agent": "agent",
        "conditions": [{ "argument": "amount_cents", "op": "le", "value": 2500 }],
        "max_per_day": 10, "max_cost_cents_per_day": 10_000,
        "expires_at": app.clock.now() + DAY_MS,
    });
    let guardrail = create_guardrail(&app, &acme, "small-refunds", spec, "auto").await;
    // The report names workflows by guardrail name.
    let gid = format!("guardrail {}", guardrail.name);
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let other = app.client("acme", &second, Era::Discover).await;

    // Two guardrail runs, one approved refund of the same agent, one of another agent.
    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_1", 2000)).await),
        "issued"
    );
    assert_eq!(
        status(&client.call("crm__issue_refund", refund("c_2", 2500)).await),
        "issued"
    );
    let big = refund("c_3", 4000);
    let id = approval_id(&client.call("crm__issue_refund", big.clone()).await);
    app.approve(&acme, &id).await;
    assert_eq!(
        status(&client.call("crm__issue_refund", big).await),
        "issued"
    );
    let theirs = refund("c_1", 700);
    let id2 = approval_id(&other.call("crm__issue_refund", theirs.clone()).await);
    app.approve(&acme, &id2).await;
    assert_eq!(
        status(&other.call("crm__issue_refund", theirs).await),
        "issued"
    );
    // Held and not executed: no charge.
    approval_id(&client.call("crm__issue_refund", refund("c_2", 9000)).await);

    let report = spend(&app, &acme).await;
    assert_eq!(report.total_cents, 9200, "{report:?}");
    assert_eq!(report.entries.len(), 4);
    assert_eq!(
        report.by_agent.get("agent"),
        Some(&runs(3, 8500)),
        "{report:?}"
    );
    assert_eq!(
        report.by_agent.get("second"),
        Some(&runs(1, 700)),
        "{report:?}"
    );
    assert_eq!(
        report.by_workflow.get(&gid),
        Some(&runs(2, 4500)),
        "{report:?}"
    );
    assert_eq!(
        report.by_workflow.get("approved"),
        Some(&runs(2, 4700)),
        "{report:?}"
    );
    assert!(
        matches!(&report.caps, Caps::Limits(money) if money.per_action_cents == 10_000),
        "{report:?}"
    );
    let approved_entries = report
        .entries
        .iter()
        .filter_map(|e| e.approval.as_ref())
        .filter(|a| a.as_str() == id || a.as_str() == id2)
        .count();
    assert_eq!(approved_entries, 2, "{report:?}");

    // The CLI prints the same ledger.
    let cli = app
        .cli_as(&app.admin_token, &["spend", "--tenant", "acme", "--json"])
        .await;
    assert!(cli.ok(), "{cli:?}");
    let printed: Value = serde_json::from_str(&cli.stdout).expect("spend --json is JSON");
    assert_eq!(printed["total_cents"], 9200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_follow_runs_of_approvals_and_a_denial_suppresses_them() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let suggestions = || async {
        let query = SuggestionQuery { threshold: Some(5) };
        app.admin_api()
            .guardrail_suggestions("acme", &query)
            .await
            .expect("suggestions")
    };
    for n in 0..5 {
        let args = mail(n);
        let id = approval_id(&client.call("crm__send_email", args.clone()).await);
        app.approve(&acme, &id).await;
        assert_eq!(status(&client.call("crm__send_email", args).await), "sent");
        let found = suggestions().await;
        if n < 4 {
            assert!(found.is_empty(), "after {} approvals: {found:?}", n + 1);
        }
    }
    let found = suggestions().await;
    assert_eq!(found.len(), 1, "{found:?}");
    let english = &found[0].english;
    assert!(english.contains("crm.send_email"), "{english}");
    assert_eq!(found[0].approvals, 5);
    let spec = &serde_json::to_value(&found[0].spec).expect("a spec");
    assert_eq!(spec["tool"], "send_email");
    assert_eq!(spec["agent"], "agent");
    assert!(
        spec["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["argument"] == "to" && c["op"] == "eq" && c["value"] == "ada@example.com"),
        "{spec}"
    );

    // The suggestion is a valid guardrail as proposed.
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/guardrails",
            &app.admin_token,
            Some(json!({ "name": "suggested", "spec": spec, "mode": "approve_each" })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(suggestions().await.is_empty(), "already a guardrail");
    app.admin_api()
        .revoke_guardrail("acme", "suggested")
        .await
        .expect("revoke guardrail");
    assert_eq!(
        suggestions().await.len(),
        1,
        "a revoked guardrail no longer counts"
    );

    // One denial of the same shape suppresses it.
    let id = approval_id(&client.call("crm__send_email", mail(99)).await);
    let (code, _) = vote(&app, &acme.approver_token, &id, "deny", "not this one").await;
    assert_eq!(code, StatusCode::OK);
    assert!(suggestions().await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cannot_carry_a_request_that_needs_two_approvers() {
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
    let plain = approval_id(&client.call("crm__issue_refund", refund("c_1", 100)).await);
    let prod = approval_id(
        &client
            .call(
                "crm__update_contact",
                json!({ "id": "c_1", "name": "A. Lovelace" }),
            )
            .await,
    );
    let (code, preview) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch/preview",
            &second,
            Some(json!({ "items": [plain, prod] })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{preview}");
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch",
            &second,
            Some(json!({ "items": [plain, prod], "batch_hash": preview["batch_hash"] })),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(app.approval(&plain).await.status, ApprovalStatus::Pending);
    assert_eq!(app.approval(&prod).await.status, ApprovalStatus::Pending);
    // After one vote, a request is not batchable either (its votes would be bypassed).
    let (code, _) = vote(&app, &second, &prod, "approve", "ok").await;
    assert_eq!(code, StatusCode::OK);
    let (code, preview) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch/preview",
            &acme.approver_token,
            Some(json!({ "items": [prod] })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{preview}");
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/approvals/batch",
            &acme.approver_token,
            Some(json!({ "items": [prod], "batch_hash": preview["batch_hash"] })),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(app.approval(&prod).await.status, ApprovalStatus::Pending);
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_naming_its_agent_by_id_is_refused_rather_than_never_matching() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut spec = send_spec(&app, 10, DAY_MS);
    spec["agent"] = json!(acme.agent_id);
    let (code, body) = app
        .api(
            Method::POST,
            "/tenants/acme/guardrails",
            &app.admin_token,
            Some(json!({ "name": "mail", "spec": spec, "mode": "auto" })),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("by name"),
        "{body}"
    );
    let list = app
        .admin_api()
        .list_guardrails("acme")
        .await
        .expect("list guardrails");
    assert!(list.is_empty(), "{list:?}");

    // By name it is accepted, and covers exactly that agent.
    create_guardrail(&app, &acme, "mail", send_spec(&app, 10, DAY_MS), "auto").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(&client.call("crm__send_email", mail(1)).await),
        "sent"
    );
    // A spec change to an id is refused the same way.
    let (code, _) = set_spec(&app, &acme, &app.admin_token, "mail", &spec).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    app.stop().await;
}
