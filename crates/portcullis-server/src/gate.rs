//! The gate: what an agent may see and call, and what happens to each call — allow and
//! forward, hold as a durable approval request, execute an approved action exactly once, or
//! deny. Also the approvers' side: approve (signing a receipt) or deny.
//!
//! INVARIANT: the audit event for a decision is durable before anything reaches the upstream
//! and before the agent gets an answer; if it cannot be written, nothing is sent upstream.

use crate::auth::{AdminContext, AgentContext};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upstream::{AgentSide, UpstreamError};
use portcullis_core::action::{Action, canonical_json};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::decision::{Decision, DecisionInput, DefinitionStatus, Permit, decide};
use portcullis_core::id::{ApprovalId, ReceiptId};
use portcullis_core::receipt::{self, ReceiptBody, SignedReceipt};
use portcullis_store::{
    Approval, ApprovalStatus, Connection, NewApproval, StoreError, ToolRecord, Verdict,
};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock as Content, JsonObject, Tool, ToolAnnotations,
};
use serde_json::json;
use std::sync::Arc;

/// Separator between connection and tool in the names agents see: `crm__send_email`.
/// Connection names cannot contain `_`, so the first `__` splits unambiguously.
pub const NAMESPACE_SEPARATOR: &str = "__";

fn store_error(e: StoreError) -> McpError {
    tracing::error!(error = %e, "store error on the MCP path");
    McpError::internal_error("the gateway cannot reach its store; nothing was done", None)
}

/// Every (connection, tool) this agent may see: active connection, granted, in token scope.
async fn visible_tools(
    state: &AppState,
    ctx: &AgentContext,
) -> Result<Vec<(Connection, ToolRecord)>, StoreError> {
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for connection in state
        .cache
        .connections(&state.store, &ctx.tenant)
        .await?
        .iter()
    {
        if connection.revoked_at.is_some() {
            continue;
        }
        let granted: Vec<&str> = grants
            .iter()
            .filter(|g| g.connection == connection.id)
            .map(|g| g.tool.as_str())
            .collect();
        if granted.is_empty() {
            continue;
        }
        for tool in state
            .cache
            .tools(&state.store, &ctx.tenant, &connection.id)
            .await?
            .iter()
        {
            if (granted.contains(&"*") || granted.contains(&tool.name.as_str()))
                && ctx.scope_covers(&connection.name, &tool.name)
            {
                out.push((connection.clone(), tool.clone()));
            }
        }
    }
    Ok(out)
}

fn agent_tool(connection: &Connection, tool: &ToolRecord) -> Tool {
    let schema = match &tool.definition.input_schema {
        serde_json::Value::Object(map) => map.clone(),
        _ => JsonObject::new(),
    };
    let mut out = Tool::new_with_raw(
        format!("{}{NAMESPACE_SEPARATOR}{}", connection.name, tool.name),
        tool.definition.description.clone().map(Into::into),
        Arc::new(schema),
    );
    // Agents see the gateway's classification, not the upstream's claims.
    let read_only = !tool.effect.is_effect() && !tool.definition_changed();
    out = out.with_annotations(ToolAnnotations::new().read_only(read_only));
    out
}

/// `tools/list`: only granted tools, namespaced per connection. Audited.
pub async fn list_tools(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<String>,
) -> Result<Vec<Tool>, McpError> {
    let visible = visible_tools(state, ctx).await.map_err(store_error)?;
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolsListed)
        .detail(json!({ "count": visible.len() }));
    draft.session = session;
    state
        .store
        .append_audit(draft, state.clock.now())
        .await
        .map_err(store_error)?;
    Ok(visible.iter().map(|(c, t)| agent_tool(c, t)).collect())
}

/// One agent tool call.
pub struct CallRequest {
    /// The client declared the tasks extension: answer holds with a task.
    pub tasks: bool,
    pub name: String,
    pub arguments: Option<JsonObject>,
    pub session: Option<String>,
    pub agent: AgentSide,
}

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

fn denied(reasons: &[String]) -> CallToolResult {
    result_json(
        json!({ "status": "denied", "executed": false, "reasons": reasons }),
        true,
    )
}

/// The answer to a held call: an MCP task when the client supports the tasks extension (the
/// task is the approval request), otherwise a structured `pending_approval` result.
fn held(approval: &Approval, tasks: bool, now: i64) -> CallToolResponse {
    if tasks {
        CallToolResponse::Task(crate::tasks::created(approval, now))
    } else {
        pending(approval).into()
    }
}

fn pending(approval: &Approval) -> CallToolResult {
    result_json(
        json!({
            "status": "pending_approval",
            "executed": false,
            "approval_id": approval.id,
            "expires_at": crate::clock::rfc3339(approval.expires_at),
            "summary": approval.summary,
            "message": format!(
                "Not executed: this action is held for human approval ({}). Re-send the identical call after it is approved to execute it once; a call with any changed argument is a new request.",
                approval.id
            ),
        }),
        true,
    )
}

/// The audit skeleton shared by every event about one call.
fn call_draft(
    state: &AppState,
    ctx: &AgentContext,
    session: &Option<String>,
    action: &Action,
    kind: AuditKind,
) -> AuditDraft {
    let canonical = canonical_json(&action.arguments).unwrap_or_default();
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), kind)
        .resource(format!("tool:{}/{}", action.connection, action.tool));
    draft.session.clone_from(session);
    draft.args_hash = Some(state.keys.keyed_hash(&ctx.tenant, &canonical));
    draft
}

fn summary(
    effect: portcullis_core::effect::EffectClass,
    connection: &str,
    tool: &str,
    arguments: &serde_json::Value,
) -> String {
    let mut args = serde_json::to_string(arguments).unwrap_or_default();
    if args.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        args.truncate(cut);
        args.push('…');
    }
    format!("{effect}: {connection}.{tool} {args}")
}

/// `tools/call`.
pub async fn call_tool(
    state: &AppState,
    ctx: &AgentContext,
    req: CallRequest,
) -> Result<CallToolResponse, McpError> {
    let now = state.clock.now();
    let tasks = req.tasks;
    let Some((connection_name, tool_name)) = req.name.split_once(NAMESPACE_SEPARATOR) else {
        return Err(McpError::invalid_params(
            format!("unknown tool `{}`", req.name),
            None,
        ));
    };
    // Resolve among what this agent may see; anything else is unknown (not "forbidden"), so
    // ids and names of other tenants or ungranted tools leak nothing.
    let connections = state
        .cache
        .connections(&state.store, &ctx.tenant)
        .await
        .map_err(store_error)?;
    let connection = connections
        .iter()
        .find(|c| c.name == connection_name && c.revoked_at.is_none())
        .cloned();
    let tool = match &connection {
        Some(c) => {
            let tools = state
                .cache
                .tools(&state.store, &ctx.tenant, &c.id)
                .await
                .map_err(store_error)?;
            tools.iter().find(|t| t.name == tool_name).cloned()
        }
        None => None,
    };
    let (Some(connection), Some(tool)) = (connection, tool) else {
        let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolCall)
            .resource(format!("tool:{}", req.name));
        draft.session.clone_from(&req.session);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "reasons": ["unknown tool"] });
        state
            .store
            .append_audit(draft, now)
            .await
            .map_err(store_error)?;
        state.metrics.decision("deny");
        return Err(McpError::invalid_params(
            format!("unknown tool `{}`", req.name),
            None,
        ));
    };
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await
        .map_err(store_error)?;
    let granted = grants
        .iter()
        .any(|g| g.connection == connection.id && (g.tool == "*" || g.tool == tool.name));
    let action = Action {
        tenant: ctx.tenant.clone(),
        connection: connection.id.clone(),
        tool: tool.name.clone(),
        tool_definition_hash: tool.current_hash.clone(),
        arguments: serde_json::Value::Object(req.arguments.clone().unwrap_or_default()),
    };
    let action_hash = action.hash().map_err(|e| {
        McpError::invalid_params(format!("arguments cannot be canonicalised: {e}"), None)
    })?;
    let input = DecisionInput {
        granted,
        in_token_scope: ctx.scope_covers(&connection.name, &tool.name),
        connection_active: connection.revoked_at.is_none(),
        effect: tool.effect,
        definition: if tool.definition_changed() {
            DefinitionStatus::Changed
        } else {
            DefinitionStatus::Accepted
        },
    };
    let decision = decide(action.clone(), &input);
    state.metrics.decision(decision.outcome().as_str());
    match decision {
        Decision::Deny { reasons } => {
            let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.detail = json!({ "effect": tool.effect, "reasons": reasons });
            state
                .store
                .append_audit(draft, now)
                .await
                .map_err(store_error)?;
            Ok(denied(&reasons).into())
        }
        Decision::Allow(permit) => {
            let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
            draft.decision = Some("allow".into());
            draft.detail = json!({ "effect": tool.effect });
            state
                .store
                .append_audit(draft, now)
                .await
                .map_err(store_error)?;
            Ok(forward(state, permit, req.agent).await.into())
        }
        Decision::Hold { effect, reasons } => {
            let live = state
                .store
                .live_approval_for(&ctx.tenant, &ctx.agent, &action_hash, now)
                .await
                .map_err(store_error)?;
            match live {
                None => {
                    let expires_at = now
                        + (state.config.approvals.default_ttl_secs as i64 * 1000)
                            .min(portcullis_core::MAX_APPROVAL_TTL_MS);
                    let id = ApprovalId::generate();
                    let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::Hold);
                    draft.decision = Some("hold".into());
                    draft.detail = json!({ "effect": effect, "reasons": reasons, "approval": id, "action_hash": action_hash });
                    let new = NewApproval {
                        id,
                        tenant: ctx.tenant.clone(),
                        agent: ctx.agent.clone(),
                        session: req.session.clone(),
                        summary: summary(effect, &connection.name, &tool.name, &action.arguments),
                        action,
                        action_hash,
                        effect,
                        reasons,
                        expires_at,
                    };
                    let (approval, _) = state
                        .store
                        .create_approval(new, draft, now)
                        .await
                        .map_err(store_error)?;
                    state.metrics.holds.inc();
                    tracing::info!(approval = %approval.id, tenant = %ctx.tenant_name, "action held for approval");
                    Ok(held(&approval, tasks, now))
                }
                Some(approval) if approval.status == ApprovalStatus::Pending => {
                    let mut draft =
                        call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
                    draft.decision = Some("hold".into());
                    draft.detail =
                        json!({ "effect": effect, "approval": approval.id, "status": "pending" });
                    state
                        .store
                        .append_audit(draft, now)
                        .await
                        .map_err(store_error)?;
                    Ok(held(&approval, tasks, now))
                }
                Some(approval) if approval.status == ApprovalStatus::Denied => {
                    let reason = format!(
                        "denied by {}: {}",
                        approval.decided_by.as_deref().unwrap_or("an approver"),
                        approval
                            .decision_reason
                            .as_deref()
                            .unwrap_or("no reason given")
                    );
                    let mut draft =
                        call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
                    draft.decision = Some("deny".into());
                    draft.detail =
                        json!({ "effect": effect, "approval": approval.id, "status": "denied" });
                    state
                        .store
                        .append_audit(draft, now)
                        .await
                        .map_err(store_error)?;
                    Ok(denied(&[reason]).into())
                }
                Some(approval) => execute_approved(state, ctx, req, action, approval)
                    .await
                    .map(Into::into),
            }
        }
    }
}

/// An approved action: verify its receipt, consume the nonce together with the `execute`
/// audit event, then call the upstream exactly once.
async fn execute_approved(
    state: &AppState,
    ctx: &AgentContext,
    req: CallRequest,
    action: Action,
    approval: Approval,
) -> Result<CallToolResult, McpError> {
    let now = state.clock.now();
    let refuse = |reason: String| {
        let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [reason.clone()] });
        (draft, reason)
    };
    let Some(signed) = approval.receipt.as_ref() else {
        let (draft, reason) = refuse("approved request has no receipt".into());
        state
            .store
            .append_audit(draft, now)
            .await
            .map_err(store_error)?;
        return Ok(denied(&[reason]));
    };
    let permit = match receipt::verify(signed, &state.keys.verifying_key(), action.clone(), now) {
        Ok(permit) => permit,
        Err(e) => {
            tracing::warn!(approval = %approval.id, error = %e, "receipt refused");
            let (draft, reason) = refuse(format!("approval receipt refused: {e}"));
            state
                .store
                .append_audit(draft, now)
                .await
                .map_err(store_error)?;
            state
                .metrics
                .executions
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "refused" })
                .inc();
            return Ok(denied(&[reason]));
        }
    };
    let approved_by = permit
        .approval()
        .expect("verified permits carry their receipt")
        .clone();
    // Redeeming spends the approval; with no upstream to send to (crashed, restarting) that
    // would burn it without executing anything. Keep it for a retry instead.
    if !matches!(
        state.upstreams.status(&action.connection),
        crate::upstream::Status::Ready { .. }
    ) {
        let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
        draft.decision = Some("hold".into());
        draft.detail = json!({ "approval": approval.id, "status": "upstream_unavailable" });
        state
            .store
            .append_audit(draft, now)
            .await
            .map_err(store_error)?;
        return Ok(result_json(
            json!({ "status": "upstream_unavailable", "executed": false, "approval_id": approval.id,
                    "message": "The upstream is not connected; nothing was done and the approval is kept. Re-send the identical call once it is back." }),
            true,
        ));
    }
    let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::Execute);
    draft.decision = Some("allow".into());
    draft.receipt_id = Some(approved_by.receipt_id.to_string());
    draft.detail = json!({ "approval": approval.id, "approver": approved_by.approver });
    match state
        .store
        .redeem_receipt(
            &ctx.tenant,
            &approval.id,
            &approved_by.receipt_id,
            &approved_by.nonce,
            draft,
            now,
        )
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            // Another request redeemed it first (or it is no longer redeemable): this call is
            // refused, and like every decision that refusal is recorded before the answer.
            let mut draft = call_draft(state, ctx, &req.session, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.receipt_id = Some(approved_by.receipt_id.to_string());
            draft.detail = json!({ "approval": approval.id, "status": "already_executed" });
            state
                .store
                .append_audit(draft, state.clock.now())
                .await
                .map_err(store_error)?;
            return Ok(result_json(
                json!({ "status": "already_executed", "executed": false, "approval_id": approval.id,
                        "message": "This approval was already used; an approval executes its action once. Send the call again to request a new approval." }),
                true,
            ));
        }
        Err(e) => return Err(store_error(e)),
    }
    let session = req.session;
    let result = forward(state, permit, req.agent).await;
    let mut draft = call_draft(state, ctx, &session, &action, AuditKind::ExecutionResult);
    draft.receipt_id = Some(approved_by.receipt_id.to_string());
    draft.detail =
        json!({ "approval": approval.id, "upstream_error": result.is_error.unwrap_or(false) });
    if let Err(e) = state.store.append_audit(draft, state.clock.now()).await {
        // The `execute` event is already durable; the outcome event is best effort.
        tracing::error!(error = %e, "could not audit an execution result");
    }
    Ok(result)
}

/// Run an approved request reached through its task (`tasks/get`) rather than a retried call.
/// The stored action must still be callable exactly as approved: its connection active, the
/// tool's current definition the approved one, the agent still granted and in scope.
pub async fn execute_held(
    state: &AppState,
    ctx: &AgentContext,
    approval: Approval,
    agent: AgentSide,
    session: Option<String>,
) -> Result<CallToolResult, McpError> {
    let action = approval.action.clone();
    let connection = state
        .store
        .connection(&ctx.tenant, &action.connection)
        .await;
    let tool = state
        .store
        .tool(&ctx.tenant, &action.connection, &action.tool)
        .await;
    let grants = state
        .store
        .grants_for_agent(&ctx.tenant, &ctx.agent)
        .await
        .map_err(store_error)?;
    let problem = match (&connection, &tool) {
        (Err(StoreError::NotFound), _) | (_, Err(StoreError::NotFound)) => {
            Some("the tool no longer exists")
        }
        (Err(_), _) | (_, Err(_)) => {
            return Err(store_error(StoreError::Unavailable("lookup failed".into())));
        }
        (Ok(c), _) if c.revoked_at.is_some() => Some("the connection was revoked"),
        (_, Ok(t)) if t.current_hash != action.tool_definition_hash => {
            Some("the tool's definition changed since approval")
        }
        (Ok(c), Ok(t))
            if !grants
                .iter()
                .any(|g| g.connection == c.id && (g.tool == "*" || g.tool == t.name)) =>
        {
            Some("the tool is no longer granted to this agent")
        }
        (Ok(c), Ok(t)) if !ctx.scope_covers(&c.name, &t.name) => {
            Some("the tool is outside this token's scope")
        }
        _ => None,
    };
    if let Some(problem) = problem {
        let mut draft = call_draft(state, ctx, &session, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [problem] });
        state
            .store
            .append_audit(draft, state.clock.now())
            .await
            .map_err(store_error)?;
        return Ok(denied(&[format!(
            "the approved action cannot run as approved: {problem}"
        )]));
    }
    let request = CallRequest {
        tasks: true,
        name: String::new(),
        arguments: None,
        session,
        agent,
    };
    execute_approved(state, ctx, request, action, approval).await
}

/// Send a permitted action upstream and turn any failure into a tool error the agent can read.
async fn forward(state: &AppState, permit: Permit, agent: AgentSide) -> CallToolResult {
    let started = std::time::Instant::now();
    let outcome = state.upstreams.call(permit, agent).await;
    state
        .metrics
        .upstream_latency
        .observe(started.elapsed().as_secs_f64());
    let label = |outcome: &'static str| {
        state
            .metrics
            .executions
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc()
    };
    match outcome {
        Ok(mut result) => {
            label(if result.is_error == Some(true) {
                "tool_error"
            } else {
                "ok"
            });
            // Results from an upstream on an older protocol lack `resultType`; agents on
            // 2026-07-28 need it (rmcp strips it again for older agents).
            result.result_type = Some(rmcp::model::ResultType::COMPLETE);
            result
        }
        Err(e) => {
            label(match e {
                UpstreamError::Timeout => "timeout",
                UpstreamError::Cancelled => "cancelled",
                _ => "error",
            });
            result_json(
                json!({ "status": "upstream_error", "detail": e.to_string() }),
                true,
            )
        }
    }
}

fn require_approver(ctx: &AdminContext) -> Result<(), ApiError> {
    // Both roles may decide; agents never reach this code (their tokens are refused by the
    // admin API), so a requesting agent cannot approve its own action.
    match ctx.admin.role {
        portcullis_store::AdminRole::Admin | portcullis_store::AdminRole::Approver => Ok(()),
    }
}

/// Approve a pending request: sign a receipt over its action hash and store it with the
/// `approve` audit event.
pub async fn approve(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
    reason: Option<String>,
) -> Result<Approval, ApiError> {
    require_approver(ctx)?;
    let now = state.clock.now();
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "approval is {}",
            approval.status.as_str()
        )));
    }
    let body = ReceiptBody {
        receipt_id: ReceiptId::generate(),
        approval_id: approval.id.clone(),
        tenant: approval.tenant.clone(),
        action_hash: approval.action_hash.clone(),
        approver: ctx.admin.name.clone(),
        approved_at: now,
        expires_at: approval.expires_at,
        nonce: SignedReceipt::new_nonce(),
    };
    let receipt = SignedReceipt::sign(state.keys.signing_key(), body);
    let mut draft = AuditDraft::new(approval.tenant.clone(), ctx.actor(), AuditKind::Approve)
        .resource(format!("approval:{}", approval.id));
    draft.decision = Some("approve".into());
    draft.receipt_id = Some(receipt.body.receipt_id.to_string());
    draft.detail = json!({ "action_hash": approval.action_hash, "reason_given": reason.is_some() });
    let (approval, _) = state
        .store
        .decide_approval(
            &approval.tenant,
            &approval.id,
            Verdict::Approve { receipt, reason },
            &ctx.admin.name,
            draft,
            now,
        )
        .await?;
    state
        .metrics
        .approvals
        .get_or_create(&crate::metrics::OutcomeLabel {
            outcome: "approved",
        })
        .inc();
    tracing::info!(approval = %approval.id, approver = %ctx.admin.name, "approved");
    Ok(approval)
}

/// Deny a pending request with a reason.
pub async fn deny(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
    reason: String,
) -> Result<Approval, ApiError> {
    require_approver(ctx)?;
    let now = state.clock.now();
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "approval is {}",
            approval.status.as_str()
        )));
    }
    let mut draft = AuditDraft::new(approval.tenant.clone(), ctx.actor(), AuditKind::Deny)
        .resource(format!("approval:{}", approval.id));
    draft.decision = Some("deny".into());
    draft.detail = json!({ "action_hash": approval.action_hash });
    let (approval, _) = state
        .store
        .decide_approval(
            &approval.tenant,
            &approval.id,
            Verdict::Deny { reason },
            &ctx.admin.name,
            draft,
            now,
        )
        .await?;
    state
        .metrics
        .approvals
        .get_or_create(&crate::metrics::OutcomeLabel { outcome: "denied" })
        .inc();
    Ok(approval)
}
