//! A crash between redeeming a receipt and calling the upstream is visible: the approval is
//! reported `unknown` (list filter, metric, audit event at start-up) and never re-run.

use super::mail;
use crate::support::*;
use portcullis_server::admin::approvals::VerdictIn;

const METRICS_TOKEN: &str = "metrics-token-for-the-crash-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_redeemed_but_never_finished_is_reported_unknown_and_not_rerun() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let http = reqwest::Client::new();
    let db = TestDatabase::create(Backend::from_env()).await;
    let db_env = db.env();
    let mut env: Vec<(&str, &str)> = db_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = ServeProcess::start_with(root.path(), &data, None, &env).await;
    let admin = first.admin_token.clone().expect("first start");
    let first_api = AdminClient::with_http(http.clone(), &first.base, &admin);
    let acme = seed_tenant_at(&first_api, root.path(), "acme").await;
    let client = connect(&first.mcp_url("acme"), &acme.agent_token, Era::Discover)
        .await
        .expect("connect");
    let send = mail("ada@example.com", 1);
    let id = approval_id(&client.call("crm__send_email", send.clone()).await);
    first_api
        .as_token(&acme.approver_token)
        .approve(&id, &VerdictIn::default())
        .await
        .expect("approve");

    // The upstream will hang in the middle of the call; the retry redeems the receipt.
    std::fs::write(&acme.hold_file, "hold").unwrap();
    let hanging = tokio::spawn(async move { client.try_call("crm__send_email", send).await });
    // The approval's status through the gateway at `base` (none while it cannot answer).
    let status_of = |base: String| {
        let api = AdminClient::with_http(http.clone(), &base, admin.clone());
        let id = id.clone();
        async move { api.approval(&id).await.ok().map(|a| a.status) }
    };
    eventually("the receipt to be redeemed", || async {
        status_of(first.base.clone()).await == Some(ApprovalStatus::Executed)
    })
    .await;
    first.kill().await;
    drop(hanging);

    // A new process: it reports the execution as unknown and runs nothing again.
    let hash = portcullis_core::sha256_hex(METRICS_TOKEN.as_bytes());
    env.push(("PORTCULLIS_METRICS__TOKEN_SHA256", &hash));
    env.push(("PORTCULLIS_UPSTREAM__CALL_TIMEOUT_SECS", "1"));
    let second = ServeProcess::start_with(root.path(), &data, None, &env).await;
    eventually("the approval to be reported unknown", || async {
        status_of(second.base.clone()).await == Some(ApprovalStatus::Unknown)
    })
    .await;
    let listed = run_cli(
        root.path(),
        &[
            "approvals",
            "list",
            "--tenant",
            "acme",
            "--state",
            "unknown",
        ],
        &[
            ("PORTCULLIS_URL", second.base.as_str()),
            ("PORTCULLIS_ADMIN_TOKEN", admin.as_str()),
        ],
    )
    .await;
    assert!(listed.ok() && listed.stdout.contains(&id), "{listed:?}");
    let second_api = AdminClient::with_http(http.clone(), &second.base, &admin);
    let events = audit_events_through(&second_api, "acme").await;
    let unknown = events_of_kind(&events, "execution_unknown");
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0]["detail"]["approval"], id.as_str());
    let metrics = http
        .get(format!("{}/metrics", second.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_executions_unknown_total 1"),
        "{metrics}"
    );

    // Retrying the call is a new request, not a second run of the old one.
    let client = connect(&second.mcp_url("acme"), &acme.agent_token, Era::Discover)
        .await
        .expect("connect");
    let retry = client
        .call("crm__send_email", mail("ada@example.com", 1))
        .await;
    assert_ne!(approval_id(&retry), id, "{retry:?}");
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert_eq!(
        status_of(second.base.clone()).await,
        Some(ApprovalStatus::Unknown)
    );
}
