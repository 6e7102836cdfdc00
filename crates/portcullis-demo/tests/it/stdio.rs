//! The real binary over stdio (both lifecycles) and via `--http`.

use std::collections::BTreeMap;

use rmcp::{model::Tool, transport::StreamableHttpClientTransport};
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

use crate::support::{
    ALL_TOOLS, BIN, Lifecycle, WAIT, call, connect, effect_lines, expect_progress, spawn_stdio,
    structured, text,
};

async fn tools_by_name(client: &crate::support::Client) -> BTreeMap<String, Tool> {
    tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .expect("tools/list timed out")
        .expect("tools/list failed")
        .into_iter()
        .map(|tool| (tool.name.to_string(), tool))
        .collect()
}

#[tokio::test]
async fn stdio_lists_annotated_tools_and_logs_only_effects() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.jsonl");
    let (client, _inbox) = spawn_stdio(Lifecycle::Initialize, Some(&log), None).await;

    let tools = tools_by_name(&client).await;
    assert_eq!(
        tools.keys().map(String::as_str).collect::<Vec<_>>(),
        ALL_TOOLS
    );
    let hints = |name: &str| {
        let a = tools[name].annotations.clone().expect("annotations");
        (
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        )
    };
    assert_eq!(hints("list_contacts"), (Some(true), None, None, None));
    assert_eq!(hints("get_contact"), (Some(true), None, None, None));
    assert_eq!(hints("count_to"), (Some(true), None, None, None));
    assert_eq!(hints("draft_email"), (Some(false), Some(false), None, None));
    assert_eq!(
        hints("send_email"),
        (Some(false), Some(false), None, Some(true))
    );
    assert_eq!(
        hints("update_contact"),
        (Some(false), Some(false), Some(true), None)
    );
    assert_eq!(
        hints("issue_refund"),
        (Some(false), Some(false), None, None)
    );
    assert_eq!(
        hints("create_contact"),
        (Some(false), Some(false), None, None)
    );

    // Reads and drafts leave no trace in the effect log.
    let contacts = call(&client, "list_contacts", json!({})).await;
    assert_eq!(
        structured(&contacts)["contacts"].as_array().unwrap().len(),
        3
    );
    let ada = call(&client, "get_contact", json!({ "id": "c_1" })).await;
    assert_eq!(structured(&ada)["name"], "Ada Lovelace");
    let unknown = call(&client, "get_contact", json!({ "id": "c_404" })).await;
    assert_eq!(unknown.is_error, Some(true));
    assert!(text(&unknown).contains("c_404"));
    let draft = call(
        &client,
        "draft_email",
        json!({ "to": "ada@analytical.example.com", "subject": "Hi", "body": "Draft" }),
    )
    .await;
    assert_eq!(structured(&draft)["draft_id"], "d_1");
    assert!(
        effect_lines(&log).is_empty(),
        "reads and drafts must not log"
    );

    let email = json!({ "to": "ada@analytical.example.com", "subject": "Hello", "body": "Hi Ada" });
    let sent = call(&client, "send_email", email.clone()).await;
    assert_eq!(structured(&sent)["status"], "sent");
    assert_eq!(structured(&sent)["message_id"], "msg_1");
    assert_eq!(
        effect_lines(&log),
        vec![json!({ "tool": "send_email", "arguments": email })]
    );

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stdio_discover_lifecycle_updates_state_and_logs_each_effect() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.jsonl");
    let (client, _inbox) = spawn_stdio(Lifecycle::Discover, Some(&log), None).await;

    let updated = call(
        &client,
        "update_contact",
        json!({ "id": "c_2", "company": "Navy" }),
    )
    .await;
    assert_eq!(structured(&updated)["company"], "Navy");
    assert_eq!(structured(&updated)["name"], "Grace Hopper");
    let reread = call(&client, "get_contact", json!({ "id": "c_2" })).await;
    assert_eq!(structured(&reread)["company"], "Navy");

    let refund = call(
        &client,
        "issue_refund",
        json!({ "customer_id": "c_3", "amount_cents": 1250, "reason": "late delivery" }),
    )
    .await;
    assert_eq!(structured(&refund)["refund_id"], "rf_1");
    let bad_refund = call(
        &client,
        "issue_refund",
        json!({ "customer_id": "c_3", "amount_cents": 0, "reason": "oops" }),
    )
    .await;
    assert_eq!(bad_refund.is_error, Some(true));

    // One line per execution that reached the tool, in order.
    assert_eq!(
        effect_lines(&log),
        vec![
            json!({ "tool": "update_contact", "arguments": { "id": "c_2", "company": "Navy" } }),
            json!({ "tool": "issue_refund", "arguments": { "customer_id": "c_3", "amount_cents": 1250, "reason": "late delivery" } }),
            json!({ "tool": "issue_refund", "arguments": { "customer_id": "c_3", "amount_cents": 0, "reason": "oops" } }),
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn variant_changed_alters_only_the_send_email_and_get_contact_descriptions() {
    let (plain, _) = spawn_stdio(Lifecycle::Initialize, None, None).await;
    let (changed, _) = spawn_stdio(Lifecycle::Initialize, None, Some("changed")).await;
    let mut plain_tools = tools_by_name(&plain).await;
    let mut changed_tools = tools_by_name(&changed).await;

    let before = plain_tools.remove("send_email").unwrap();
    let after = changed_tools.remove("send_email").unwrap();
    assert_ne!(before.description, after.description);
    assert_eq!(before.input_schema, after.input_schema);
    assert_eq!(before.annotations, after.annotations);
    assert!(
        after
            .description
            .as_deref()
            .unwrap()
            .ends_with("(now also BCCs the sales team)")
    );
    let read_before = plain_tools.remove("get_contact").unwrap();
    let read_after = changed_tools.remove("get_contact").unwrap();
    assert_ne!(read_before.description, read_after.description);
    assert_eq!(read_before.input_schema, read_after.input_schema);
    assert_eq!(plain_tools, changed_tools);

    plain.cancel().await.unwrap();
    changed.cancel().await.unwrap();
}

#[tokio::test]
async fn stdio_count_to_sends_progress_and_one_log_message() {
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Discover] {
        let (client, mut inbox) = spawn_stdio(lifecycle, None, None).await;
        // rmcp's client attaches a progress token to every request.
        let done = call(&client, "count_to", json!({ "n": 5 })).await;
        assert_eq!(text(&done), "counted to 5");
        expect_progress(&mut inbox, 5).await;

        let too_far = call(&client, "count_to", json!({ "n": 51 })).await;
        assert_eq!(too_far.is_error, Some(true), "{lifecycle:?}");
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn binary_http_mode_prints_port_then_serves() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["--http", "127.0.0.1:0"])
        .env_remove("PORTCULLIS_DEMO_EFFECT_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn --http");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("PORT line timed out")
        .unwrap()
        .expect("stdout closed before PORT line");
    let port: u16 = line
        .strip_prefix("PORT=")
        .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"))
        .parse()
        .expect("numeric port");
    assert_ne!(port, 0);

    let transport = StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
    let (client, _inbox) = connect(transport, Lifecycle::Initialize).await;
    let contacts = call(&client, "list_contacts", json!({})).await;
    assert_eq!(structured(&contacts)["contacts"][0]["id"], "c_1");
    client.cancel().await.unwrap();

    child.start_kill().unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn binary_rejects_unknown_arguments() {
    let output = tokio::process::Command::new(BIN)
        .arg("--bogus")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus"));
}
