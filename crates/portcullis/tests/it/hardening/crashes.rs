//! A crash between redeeming a receipt and calling the upstream is visible: the approval is
//! reported `unknown` (list filter, metric, audit event at start-up) and never re-run.

use super::mail;
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

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
    let acme = seed_tenant_at(&http, &first.base, &admin, root.path(), "acme").await;
    let client = connect(&first.mcp_url("acme"), &acme.agent_token, Era::Discover)
        .await
        .expect("connect");
    let send = mail("ada@example.com", 1);
    let id = approval_id(&client.call("crm__send_email", send.clone()).await);
    let (code, body) = api_at(
        &http,
        &first.base,
        Method::POST,
        &format!("/approvals/{id}/approve"),
        &acme.approver_token,
        Some(json!({})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");

    // The upstream will hang in the middle of the call; the retry redeems the receipt.
    std::fs::write(&acme.hold_file, "hold").unwrap();
    let hanging = tokio::spawn(async move { client.try_call("crm__send_email", send).await });
    let status_of = |base: String| {
        let (http, admin, id) = (http.clone(), admin.clone(), id.clone());
        async move {
            api_at(
                &http,
                &base,
                Method::GET,
                &format!("/approvals/{id}"),
                &admin,
                None,
            )
            .await
            .1["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    eventually("the receipt to be redeemed", || async {
        status_of(first.base.clone()).await == "executed"
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
        status_of(second.base.clone()).await == "unknown"
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
    let events = audit_events_of_at(&http, &second.base, &admin, "acme").await;
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
    assert_eq!(status_of(second.base.clone()).await, "unknown");
}

/// Every audit event of `tenant` through a gateway's admin API at `base`.
async fn audit_events_of_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e["seq"].as_i64().unwrap_or(0));
        let (code, page) = api_at(
            http,
            base,
            Method::GET,
            &format!("/audit/events?tenant={tenant}&after={after}&limit=1000"),
            token,
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let page = page.as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}
