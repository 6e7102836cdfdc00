//! Nothing is lost on a crash: the real binary is SIGKILLed with approvals pending and approved,
//! and a new process on the same data folder carries on exactly where the old one stopped.

use crate::support::*;
use portcullis_server::admin::approvals::VerdictIn;
use serde_json::{Value, json};

fn refund(amount_cents: i64) -> Value {
    json!({ "customer_id": "c_2", "amount_cents": amount_cents, "reason": "crash-test-reason-5521" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_approved_actions_survive_sigkill() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let http = reqwest::Client::new();
    // Both processes (and the verifier) on the backend under test.
    let db = TestDatabase::create(Backend::from_env()).await;
    let db_env = db.env();
    let db_env: Vec<(&str, &str)> = db_env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The first process logs at debug level, the second at the shipped default.
    let mut first = ServeProcess::start_with(root.path(), &data, Some("debug"), &db_env).await;
    let admin = first
        .admin_token
        .clone()
        .expect("first start prints the bootstrap admin token");
    let first_api = AdminClient::with_http(http.clone(), &first.base, &admin);
    let acme = seed_tenant_at(&first_api, root.path(), "acme").await;
    let client = connect(&first.mcp_url("acme"), &acme.agent_token, Era::Discover)
        .await
        .expect("connect");
    // A: held and still pending at the crash. B: held and approved, not yet executed.
    let pending = approval_id(&client.call("crm__issue_refund", refund(1_000)).await);
    let approved = approval_id(&client.call("crm__issue_refund", refund(2_000)).await);
    first_api
        .as_token(&acme.approver_token)
        .approve(&approved, &VerdictIn::default())
        .await
        .expect("approve before the crash");
    drop(client);
    first.kill().await;

    let mut second = ServeProcess::start_with(root.path(), &data, None, &db_env).await;
    assert!(
        second.admin_token.is_none(),
        "not a first start: no new bootstrap token"
    );
    let second_api = AdminClient::with_http(http.clone(), &second.base, &admin);
    wait_connection_ready(&second_api, "acme", &acme.connection_id).await;
    let status_of = |id: String| {
        let api = second_api.clone();
        async move { api.approval(&id).await.expect("approval").status }
    };
    assert_eq!(status_of(pending.clone()).await, ApprovalStatus::Pending);
    assert_eq!(status_of(approved.clone()).await, ApprovalStatus::Approved);
    assert!(
        effect_lines(&acme.effect_log).is_empty(),
        "nothing executed across the crash"
    );

    let client = connect(&second.mcp_url("acme"), &acme.agent_token, Era::Discover)
        .await
        .expect("connect after restart");
    // The pending request is the same request: the identical call names it again.
    assert_eq!(
        approval_id(&client.call("crm__issue_refund", refund(1_000)).await),
        pending
    );
    second_api
        .as_token(&acme.approver_token)
        .approve(&pending, &VerdictIn::default())
        .await
        .expect("approve after the crash");

    for amount in [1_000, 2_000] {
        let executed = client.call("crm__issue_refund", refund(amount)).await;
        assert_eq!(status(&executed), "issued", "{executed:?}");
        assert_eq!(structured(&executed)["amount_cents"], amount);
    }
    assert_eq!(effect_lines(&acme.effect_log).len(), 2);
    for amount in [1_000, 2_000] {
        let again = client.call("crm__issue_refund", refund(amount)).await;
        assert!(
            ![pending.clone(), approved.clone()].contains(&approval_id(&again)),
            "used approvals are not reused"
        );
    }
    assert_eq!(
        effect_lines(&acme.effect_log).len(),
        2,
        "each executed exactly once"
    );
    assert_eq!(status_of(pending.clone()).await, ApprovalStatus::Executed);
    assert_eq!(status_of(approved.clone()).await, ApprovalStatus::Executed);
    drop(client);

    // The trail written by both processes verifies (the killed one wrote no final checkpoint).
    let data_env = data.display().to_string();
    let mut cli_env = vec![("PORTCULLIS_DATA__DIR", data_env.as_str())];
    cli_env.extend(db_env.iter().copied());
    let verify = run_cli(
        root.path(),
        &["audit", "verify", "--tenant", "acme"],
        &cli_env,
    )
    .await;
    assert!(verify.ok(), "{verify:?}");
    second.kill().await;
    let verify = run_cli(root.path(), &["audit", "verify"], &cli_env).await;
    assert!(verify.ok(), "{verify:?}");

    // Neither process logged a token, even at debug level; at the default level no argument
    // values either.
    let (debug, default) = (first.logs(), second.logs());
    assert!(
        debug.contains("upstream ready") && default.contains("upstream ready"),
        "the logs were captured: {debug}\n----\n{default}"
    );
    for logs in [&debug, &default] {
        for token in [&acme.agent_token, &acme.approver_token, &admin] {
            assert!(
                !logs.contains(token.as_str()),
                "a token leaked into the logs"
            );
            assert!(
                !logs.contains(&token[token.len() - 32..]),
                "part of a token leaked into the logs"
            );
        }
    }
    assert!(
        !default.contains("crash-test-reason-5521"),
        "argument values logged at the default level: {default}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_retried_while_the_upstream_is_down_is_kept() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(3_000)).await);
    app.approve(&acme, &id).await;

    // The upstream process is gone (crashed, or not yet restarted after a gateway restart).
    let connection_id = acme.connection_id.parse().unwrap();
    app.state.upstreams.stop(&connection_id);
    let retry = client.try_call("crm__issue_refund", refund(3_000)).await;
    match &retry {
        Err(_) => {}
        Ok(result) => {
            assert_eq!(result.is_error, Some(true), "{result:?}");
            assert_ne!(status(result), "issued");
        }
    }
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert_eq!(
        app.approval(&id).await.status,
        ApprovalStatus::Approved,
        "the approval is kept for when the upstream is back: {retry:?}"
    );

    let tenant_id = acme.id.parse().unwrap();
    let connection = app
        .state
        .store
        .connection(&tenant_id, &connection_id)
        .await
        .unwrap();
    app.state.upstreams.start(connection);
    app.wait_ready(&acme.connection_id).await;
    let executed = client.call("crm__issue_refund", refund(3_000)).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}
