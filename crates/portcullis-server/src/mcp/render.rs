//! Rendering the gate's typed answers as MCP: tools as agents see them, a [`CallOutcome`] as a
//! tool result (or a task, for clients of the tasks extension), a [`GateError`] as a JSON-RPC
//! error. Nothing outside this module writes agent-facing MCP JSON for a call.

use crate::clock::rfc3339;
use crate::gate::resolve::Listed;
use crate::gate::{CallOutcome, GateError};
use portcullis_store::Approval;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock as Content, CreateTaskResult, DetailedTask,
    GetTaskResult, JsonObject, Task, TaskPayload, TaskStatus, Tool, ToolAnnotations,
};
use serde_json::json;
use std::sync::Arc;

/// The `_meta` key under which agents find the gateway's own view of a tool.
pub const CLASSIFICATION_META_KEY: &str = "io.portcullis/classification";

/// A tool as an agent sees it: under the name it was listed with, with the upstream's title,
/// schemas, annotations and `_meta` intact — except that a tool the gateway treats as an
/// effect is never `readOnlyHint: true` — and the gateway's classification, the one that
/// decides, under its own `_meta` key: `{"effect": …, "held": …}` (`held`: a call is held for
/// approval unless a guardrail covers it).
pub fn tool(listed: &Listed) -> Tool {
    let definition = &listed.target.tool.definition;
    let object = |value: &serde_json::Value| match value {
        serde_json::Value::Object(map) => Some(map.clone()),
        _ => None,
    };
    let effect = listed.target.tool.classification().effective();
    let mut meta = definition
        .meta
        .as_ref()
        .and_then(object)
        .unwrap_or_default();
    meta.insert(
        CLASSIFICATION_META_KEY.to_owned(),
        json!({ "effect": effect.as_str(), "held": effect.is_effect() }),
    );
    let mut tool = Tool::new_with_raw(
        listed.name.clone(),
        definition.description.clone().map(Into::into),
        Arc::new(object(&definition.input_schema).unwrap_or_default()),
    );
    tool.title = definition.title.clone();
    tool.output_schema = definition
        .output_schema
        .as_ref()
        .and_then(object)
        .map(Arc::new);
    let mut annotations = definition
        .annotations
        .clone()
        .and_then(|a| serde_json::from_value::<ToolAnnotations>(a).ok());
    // One correction, towards caution: an upstream never gets to tell agents that a call the
    // gateway treats as an effect (and may hold) is read-only.
    if effect.is_effect() {
        let hints = annotations.take().unwrap_or_default();
        annotations = Some(hints.read_only(false));
    }
    tool.annotations = annotations;
    tool.meta = Some(rmcp::model::MetaObject(meta));
    tool
}

/// A structured tool result whose text content is the same JSON, pretty-printed.
fn result_json(value: serde_json::Value, is_error: bool) -> CallToolResult {
    let text = Content::text(serde_json::to_string_pretty(&value).unwrap_or_default());
    let mut result = if is_error {
        CallToolResult::error(vec![text])
    } else {
        CallToolResult::success(vec![text])
    };
    result.structured_content = Some(value);
    result
}

/// The answer to one call. A held call is an MCP task when the client declared the tasks
/// extension (the task is the approval request), otherwise a structured `pending_approval`
/// result with `isError: true`, so no client mistakes it for success.
pub fn outcome(outcome: CallOutcome, tasks: bool, now: i64) -> CallToolResponse {
    match outcome {
        CallOutcome::Held(approval) if tasks => CallToolResponse::Task(created(&approval, now)),
        CallOutcome::InputRequired {
            request_state,
            requests,
        } => CallToolResponse::InputRequired(rmcp::model::InputRequiredResult::new(
            Some(requests),
            Some(request_state),
        )),
        other => result(other).into(),
    }
}

/// The answer to one call as a tool result.
pub fn result(outcome: CallOutcome) -> CallToolResult {
    match outcome {
        CallOutcome::Completed(mut result) => {
            // Results from an upstream on an older protocol lack `resultType`; agents on
            // 2026-07-28 need it (rmcp strips it again for older agents).
            result.result_type = Some(rmcp::model::ResultType::COMPLETE);
            result
        }
        CallOutcome::UpstreamFailed(detail) => result_json(
            json!({ "status": "upstream_error", "detail": detail }),
            true,
        ),
        CallOutcome::Denied(reasons) => result_json(
            json!({ "status": "denied", "executed": false, "reasons": reasons }),
            true,
        ),
        CallOutcome::Held(approval) => result_json(
            json!({
                "status": "pending_approval",
                "executed": false,
                "approval_id": approval.id,
                "expires_at": crate::clock::rfc3339(approval.expires_at),
                "summary": approval.summary,
                "reasons": approval.reasons,
                "message": format!(
                    "Not executed: this action is held for human approval ({}). Re-send the identical call after it is approved to execute it once; a call with any changed argument is a new request.",
                    approval.id
                ),
            }),
            true,
        ),
        // Only ever produced for a call `outcome` renders; as a plain result it is a failure
        // (a task's or a revert's run is never bridged).
        CallOutcome::InputRequired { .. } => result_json(
            json!({ "status": "upstream_error", "detail": "the upstream asked for input this call cannot give" }),
            true,
        ),
        CallOutcome::NotRun { approval, why } => {
            let message = match &why {
                crate::gate::NotRun::AlreadyExecuted => {
                    "This approval was already used; an approval executes its action once. Send the call again to request a new approval."
                }
                crate::gate::NotRun::UpstreamUnavailable => {
                    "The upstream is not connected; nothing was done and the approval is kept. Re-send the identical call once it is back."
                }
                crate::gate::NotRun::Stale(_) => {
                    "Not executed: the target changed since this action was approved. Send the call again to request a fresh approval once this one expires."
                }
            };
            let mut value = json!({
                "status": why.as_str(),
                "executed": false,
                "approval_id": approval,
                "message": message,
            });
            if let crate::gate::NotRun::Stale(reason) = why {
                value["reasons"] = json!([reason]);
            }
            result_json(value, true)
        }
    }
}

/// A resource read as agents get it. Results from an upstream on the earlier revision lack
/// `resultType`, which 2026-07-28 clients require (rmcp strips it again for older agents).
pub fn complete_read(
    mut result: rmcp::model::ReadResourceResult,
) -> rmcp::model::ReadResourceResult {
    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
    result
}

/// A prompt as agents get it (see [`complete_read`]).
pub fn complete_prompt(mut result: rmcp::model::GetPromptResult) -> rmcp::model::GetPromptResult {
    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
    result
}

/// A call that could not be decided.
pub fn error(error: GateError) -> McpError {
    match error {
        GateError::UnknownTool(name) => {
            McpError::invalid_params(format!("unknown tool `{name}`"), None)
        }
        GateError::BadArguments(detail) => McpError::invalid_params(detail, None),
        GateError::UnknownResource(uri) => {
            McpError::resource_not_found(format!("resource not found: {uri}"), None)
        }
        GateError::UnknownPrompt(name) => {
            McpError::invalid_params(format!("unknown prompt `{name}`"), None)
        }
        GateError::Upstream(detail) => McpError::internal_error(detail, None),
        GateError::Refused(reasons) => McpError::invalid_request(
            format!("denied by policy: {}", reasons.join("; ")),
            Some(serde_json::json!({ "status": "denied", "reasons": reasons })),
        ),
        GateError::Store(e) => store_error(e),
    }
}

/// The store failed: nothing was done, and the agent is told only that.
pub fn store_error(e: portcullis_store::StoreError) -> McpError {
    tracing::error!(error = %e, "store error on the MCP path");
    McpError::internal_error("the gateway cannot reach its store; nothing was done", None)
}

/// How often clients should poll a held call's task.
const POLL_INTERVAL_MS: u64 = 1000;

/// A held call's task: the approval request, its id the task id.
pub(super) fn task(approval: &Approval, status: TaskStatus, message: &str, now: i64) -> Task {
    Task::new(
        approval.id.to_string(),
        status,
        rfc3339(approval.created_at),
        rfc3339(approval.decided_at.unwrap_or(approval.created_at)),
    )
    .with_status_message(message)
    .with_ttl_ms(u64::try_from(approval.expires_at - now).unwrap_or(0))
    .with_poll_interval_ms(POLL_INTERVAL_MS)
}

/// The task answer to a held call.
pub fn created(approval: &Approval, now: i64) -> CreateTaskResult {
    CreateTaskResult::new(task(
        approval,
        TaskStatus::Working,
        &format!("held for human approval: {}", approval.summary),
        now,
    ))
}

/// A task that ended without running its action.
pub(super) fn failed(approval: &Approval, message: &str, now: i64) -> GetTaskResult {
    let mut error = JsonObject::new();
    error.insert("code".into(), (-32000).into());
    error.insert("message".into(), message.into());
    GetTaskResult::new(DetailedTask::new(
        task(approval, TaskStatus::Failed, message, now),
        TaskPayload::Failed { error },
    ))
}
