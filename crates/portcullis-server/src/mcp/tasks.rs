//! MCP tasks (the `io.modelcontextprotocol/tasks` extension) for held calls. A held call's
//! task *is* its approval request: the task id is the approval id and every `tasks/get` reads
//! the request's state from the store, so a task survives restarts and works on any replica.
//! When the request is approved, the `tasks/get` that sees it runs the action through the same
//! verify-redeem-execute path as a retried call, exactly once.

use crate::gate::{CallOutcome, NotRun};
use crate::identity::AgentContext;
use crate::state::AppState;
use crate::upstream::AgentSide;
use portcullis_core::id::ApprovalId;
use portcullis_store::{Approval, ApprovalStatus, StoreError, Verdict};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResult, DetailedTask, GetTaskResult, JsonObject, TaskPayload, TaskStatus,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Results kept for repeated `tasks/get` after completion (per process, bounded).
const KEPT_RESULTS: usize = 1024;

/// Results of executed tasks, so a repeated `tasks/get` sees the same result. Losing one (a
/// restart) loses only the copy: the action ran once and its audit events are durable.
#[derive(Default)]
pub struct TaskResults {
    inner: Mutex<(HashMap<ApprovalId, JsonObject>, VecDeque<ApprovalId>)>,
}

impl TaskResults {
    fn get(&self, id: &ApprovalId) -> Option<JsonObject> {
        self.inner.lock().expect("lock poisoned").0.get(id).cloned()
    }

    fn put(&self, id: ApprovalId, result: JsonObject) {
        let mut guard = self.inner.lock().expect("lock poisoned");
        let (map, order) = &mut *guard;
        if map.insert(id.clone(), result).is_none() {
            order.push_back(id);
        }
        while order.len() > KEPT_RESULTS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

fn unknown_task() -> McpError {
    McpError::invalid_params("unknown task", None)
}

use super::render::{failed, store_error, task};

/// The approval behind a task id, if it belongs to this agent; anything else is unknown.
async fn approval_of(
    state: &AppState,
    ctx: &AgentContext,
    task_id: &str,
) -> Result<Approval, McpError> {
    let id = ApprovalId::parse(task_id).map_err(|_| unknown_task())?;
    match state
        .store
        .find_approval(Some(&ctx.tenant), &id, state.clock.now())
        .await
    {
        Ok(approval) if approval.agent == ctx.agent => Ok(approval),
        Ok(_) | Err(StoreError::NotFound) => Err(unknown_task()),
        Err(e) => Err(store_error(e)),
    }
}

fn as_object(result: &CallToolResult) -> JsonObject {
    match serde_json::to_value(result) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

/// `tasks/get`.
pub async fn get(
    state: &AppState,
    results: &TaskResults,
    ctx: &AgentContext,
    task_id: &str,
    agent: AgentSide,
    session: Option<String>,
) -> Result<GetTaskResult, McpError> {
    let approval = approval_of(state, ctx, task_id).await?;
    let now = state.clock.now();
    let working = |message: &str| {
        GetTaskResult::new(DetailedTask::new(
            task(&approval, TaskStatus::Working, message, now),
            TaskPayload::Working,
        ))
    };
    let completed = |result: JsonObject| {
        GetTaskResult::new(DetailedTask::new(
            task(&approval, TaskStatus::Completed, "executed", now),
            TaskPayload::Completed { result },
        ))
    };
    match approval.status {
        ApprovalStatus::Pending => Ok(working("waiting for human approval")),
        ApprovalStatus::NeedsReconnection => Ok(working(
            "held; its connection was revoked and needs reconnection",
        )),
        ApprovalStatus::Expired => Ok(failed(
            &approval,
            "the approval request expired; nothing was executed",
            now,
        )),
        ApprovalStatus::Denied => {
            let message = format!(
                "denied by {}: {}",
                approval.decided_by.as_deref().unwrap_or("an approver"),
                approval
                    .decision_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            );
            Ok(failed(&approval, &message, now))
        }
        ApprovalStatus::Unknown => Ok(failed(
            &approval,
            "the action was started but its outcome is unknown (the gateway stopped in between); it was not re-run",
            now,
        )),
        ApprovalStatus::Executed => Ok(match results.get(&approval.id) {
            Some(result) => completed(result),
            None => working("executed; the result was delivered to an earlier tasks/get"),
        }),
        ApprovalStatus::Approved => {
            let id = approval.id.clone();
            let outcome =
                crate::gate::execute::run_from_task(state, ctx, approval.clone(), agent, session)
                    .await
                    .map_err(store_error)?;
            match outcome {
                CallOutcome::NotRun {
                    why: NotRun::AlreadyExecuted,
                    ..
                } => {
                    // Another tasks/get (or a retried call) is running it right now.
                    Ok(match results.get(&id) {
                        Some(result) => completed(result),
                        None => working("executing"),
                    })
                }
                CallOutcome::Denied(reasons) => Ok(failed(
                    &approval,
                    &format!("refused at execution: {}", reasons.join("; ")),
                    now,
                )),
                other => {
                    let object = as_object(&super::render::result(other));
                    results.put(id, object.clone());
                    Ok(completed(object))
                }
            }
        }
    }
}

/// `tasks/cancel`: the requesting agent withdraws its own pending request (recorded as a
/// denial by the agent). Approved or finished requests cannot be withdrawn.
pub async fn cancel(state: &AppState, ctx: &AgentContext, task_id: &str) -> Result<(), McpError> {
    let approval = approval_of(state, ctx, task_id).await?;
    if approval.status != ApprovalStatus::Pending {
        return Err(McpError::invalid_params(
            format!(
                "the task is {} and cannot be cancelled",
                approval.status.as_str()
            ),
            None,
        ));
    }
    let mut draft = portcullis_core::audit::AuditDraft::new(
        ctx.tenant.clone(),
        ctx.actor(),
        portcullis_core::audit::AuditKind::Deny,
    )
    .resource(format!("approval:{}", approval.id));
    draft.decision = Some("deny".into());
    draft.detail = serde_json::json!({ "withdrawn_by_agent": true });
    let verdict = Verdict::Deny {
        reason: "withdrawn by the requesting agent".into(),
    };
    match state
        .store
        .decide_approval(
            &ctx.tenant,
            &approval.id,
            verdict,
            &ctx.actor(),
            draft,
            state.clock.now(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(conflict)) => {
            Err(McpError::invalid_params(conflict.to_string(), None))
        }
        Err(e) => Err(store_error(e)),
    }
}
