//! The tasks extension: a client that declares `io.modelcontextprotocol/tasks` gets an MCP task
//! for a held call. The task is the approval request: `tasks/get` reports it waiting, then
//! runs the approved action exactly once and returns its result.

use crate::support::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig,
    GetTaskParams, Implementation, ProtocolVersion, TaskPayload, TaskStatus,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient};
use serde_json::json;

/// A client that declares the tasks extension.
#[derive(Clone)]
struct TaskClient;

impl ClientHandler for TaskClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        let mut extensions = rmcp::model::ExtensionCapabilities::new();
        extensions.insert(
            rmcp::model::TASKS_EXTENSION_ID.to_owned(),
            Default::default(),
        );
        capabilities.extensions = Some(extensions);
        ClientConfig::new(capabilities, Implementation::new("task-client", "1"))
    }
}

async fn task_client(app: &TestApp, tenant: &Tenant) -> RunningService<RoleClient, TaskClient> {
    task_client_in(
        app,
        tenant,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
}

async fn task_client_in(
    app: &TestApp,
    tenant: &Tenant,
    lifecycle: ClientLifecycleMode,
) -> RunningService<RoleClient, TaskClient> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.mcp_url(&tenant.name))
            .auth_header(tenant.agent_token.clone()),
    );
    TaskClient
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("task client connects")
}

fn refund(amount: i64) -> CallToolRequestParams {
    CallToolRequestParams::new("crm__issue_refund").with_arguments(args(
        json!({ "customer_id": "c_1", "amount_cents": amount, "reason": "damaged" }),
    ))
}

async fn held_task(client: &RunningService<RoleClient, TaskClient>, amount: i64) -> String {
    match client
        .call_tool_once(refund(amount))
        .await
        .expect("tools/call")
    {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            created.task.task_id
        }
        other => panic!("a held call from a tasks client is a task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_is_a_task_that_completes_once_after_approval() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = task_client(&app, &acme).await;

    let task_id = held_task(&client, 1500).await;
    assert!(
        task_id.starts_with("apr_"),
        "the task is the approval request: {task_id}"
    );
    let waiting = client
        .get_task(GetTaskParams::new(task_id.clone()))
        .await
        .expect("tasks/get");
    assert_eq!(waiting.task.status(), TaskStatus::Working);
    assert!(effect_lines(&acme.effect_log).is_empty());

    app.approve(&acme, &task_id).await;
    let done = client
        .get_task(GetTaskParams::new(task_id.clone()))
        .await
        .expect("tasks/get");
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("completed after approval: {done:?}")
    };
    assert_eq!(
        result["structuredContent"]["amount_cents"], 1500,
        "{result:?}"
    );
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);

    // Polling again returns the same result and runs nothing more.
    let again = client
        .get_task(GetTaskParams::new(task_id.clone()))
        .await
        .expect("tasks/get");
    assert_eq!(again.task.status(), TaskStatus::Completed);
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    assert_eq!(
        app.approval(&task_id).await.status,
        ApprovalStatus::Executed
    );

    // A plain retry of the identical call after execution is a new request, not a rerun.
    let retry = held_task(&client, 1500).await;
    assert_ne!(retry, task_id);
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_cancelled_and_foreign_tasks_never_execute() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let other = app.seed_tenant("other").await;
    let client = task_client(&app, &acme).await;

    let denied = held_task(&client, 100).await;
    let (status, _) = app
        .api(
            reqwest::Method::POST,
            &format!("/approvals/{denied}/deny"),
            &acme.approver_token,
            Some(json!({ "reason": "not this one" })),
        )
        .await;
    assert!(status.is_success());
    let answer = client
        .get_task(GetTaskParams::new(denied))
        .await
        .expect("tasks/get");
    let TaskPayload::Failed { error } = &answer.task.payload else {
        panic!("denied is failed: {answer:?}")
    };
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("not this one"),
        "{error:?}"
    );

    let withdrawn = held_task(&client, 200).await;
    client
        .cancel_task(CancelTaskParams::new(withdrawn.clone()))
        .await
        .expect("tasks/cancel");
    assert_eq!(
        app.approval(&withdrawn).await.status,
        ApprovalStatus::Denied
    );
    let (status, _) = app
        .api(
            reqwest::Method::POST,
            &format!("/approvals/{withdrawn}/approve"),
            &acme.approver_token,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::CONFLICT,
        "a withdrawn request cannot be approved"
    );

    // Another tenant's agent cannot see or cancel acme's task: it is unknown.
    let mine = held_task(&client, 300).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.mcp_url("other"))
            .auth_header(other.agent_token.clone()),
    );
    let stranger = TaskClient
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connects");
    let err = stranger
        .get_task(GetTaskParams::new(mine.clone()))
        .await
        .expect_err("foreign task");
    assert!(err.to_string().contains("unknown task"), "{err}");
    assert!(
        stranger
            .cancel_task(CancelTaskParams::new(mine.clone()))
            .await
            .is_err()
    );
    assert_eq!(app.approval(&mine).await.status, ApprovalStatus::Pending);
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_tasks_keep_getting_the_structured_pending_result() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let held = client
        .call(
            "crm__issue_refund",
            json!({ "customer_id": "c_1", "amount_cents": 5, "reason": "x" }),
        )
        .await;
    assert_eq!(status(&held), "pending_approval");
    app.stop().await;
}

/// The MCP inspector in `legacy` mode declares the tasks extension in `initialize` and then
/// sends a plain `tools/call`; answered with a task, it printed the hold as an empty success.
/// On the earlier revision a hold is always an error result naming the approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_initialize_era_a_hold_is_an_error_result_even_for_a_tasks_client() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = task_client_in(&app, &acme, ClientLifecycleMode::Initialize).await;
    let response = client
        .call_tool_once(refund(1500))
        .await
        .expect("tools/call");
    let CallToolResponse::Complete(result) = response else {
        panic!("a hold on the initialize era is not a task: {response:?}");
    };
    assert_eq!(result.is_error, Some(true), "a hold is never success");
    let body = result.structured_content.expect("structured hold");
    assert_eq!(body["status"], "pending_approval");
    assert_eq!(body["executed"], false);
    assert!(
        body["approval_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("apr_"))
    );
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}
