//! The gate: what happens to one agent call, in the order it happens.
//!
//! 1. [`resolve`]: find the tool among those the agent may see (a live connection, granted,
//!    in the token's scope); any other name is an unknown tool.
//! 2. [`decide`]: gather what the policies need (engine, cost, the agent's reads, the day's
//!    spend, a covering guardrail, what an effect's arguments carry), let core decide, charge
//!    a guardrail-covered call.
//! 3. Allow: [`execute::forward`] the permit upstream; its answer passes [`scrub`] (redacted
//!    per the connection, read by the injection spotter) before anyone sees it. Hold:
//!    [`hold`] joins or opens the one live approval request for the action, and an approved
//!    one runs through [`execute::run_approved`] (verify the receipt, redeem it with the
//!    `execute` event, call once, record the outcome). Deny: record and refuse.
//!
//! The people's side — votes, denials, batches — is [`approve`]; reverts are [`revert`]. The
//! gate answers with a typed [`CallOutcome`]; only the MCP layer renders it.
//!
//! INVARIANT (audit before effect): the audit event of a decision that lets an effect run is
//! durable before anything reaches the upstream. For an allowed read or draft the event's
//! commit overlaps the upstream call, and the result is handed to the agent only after that
//! commit succeeded: a read whose audit event cannot be written is withheld.

pub mod approve;
pub mod decide;
pub mod execute;
pub mod hold;
pub mod offer;
pub mod preview;
pub mod resolve;
pub mod revert;
pub mod scrub;

use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::AgentSide;
use portcullis_core::action::{Action, HashedAction};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::decision::Decision;
use portcullis_core::guardrail::GuardrailMode;
use portcullis_core::id::ApprovalId;
use portcullis_store::{Approval, StoreError};
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::json;

pub use resolve::{NAMESPACE_SEPARATOR, Target};

/// The `_meta` key an agent states its reason or plan under.
pub const REASON_META_KEY: &str = "dev.portcullis/reason";

/// One agent tool call, as the MCP layer received it.
pub struct CallRequest {
    pub name: String,
    pub arguments: Option<JsonObject>,
    pub session: Option<String>,
    /// The agent's stated reason or plan (`_meta` `dev.portcullis/reason`), shown to approvers.
    pub stated_reason: Option<String>,
    /// The agent's MCP side (progress, cancellation, questions); none for an HTTP API call.
    pub agent: Option<AgentSide>,
    /// A retry after an input-required result: the echoed state and the agent's answers.
    pub resume: Option<Resume>,
}

/// A 2026-07-28 agent's retry of a call suspended on an upstream's question.
#[derive(Debug)]
pub struct Resume {
    pub request_state: String,
    pub responses: rmcp::model::InputResponses,
}

/// What became of one call. Only the MCP layer renders it (a tool result, a task, an error).
#[derive(Debug)]
pub enum CallOutcome {
    /// The upstream answered (its own tool errors included).
    Completed(CallToolResult),
    /// The call went upstream, but the upstream failed or could not be reached.
    UpstreamFailed(String),
    /// Held for people: the one live approval request for this action.
    Held(Box<Approval>),
    /// Refused, with the reasons: by policy, by an approver, or because an approved action
    /// can no longer run as approved.
    Denied(Vec<String>),
    /// Approved, but not run by this request.
    NotRun { approval: ApprovalId, why: NotRun },
    /// The upstream asked the agent (on 2026-07-28) something mid-call: answer and retry
    /// with `request_state` (see [`crate::bridge`]).
    InputRequired {
        request_state: String,
        requests: rmcp::model::InputRequests,
    },
}

/// Why an approved action did not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// Another request redeemed the approval first; an approval executes once.
    AlreadyExecuted,
    /// The upstream is not connected; the approval is kept for a retry.
    UpstreamUnavailable,
    /// The target changed since the action was approved.
    Stale(String),
}

impl NotRun {
    /// The status agents read.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AlreadyExecuted => "already_executed",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Stale(_) => "stale",
        }
    }
}

/// Why a call could not even be decided.
#[derive(Debug)]
pub enum GateError {
    /// The name is not a tool this agent may use (whatever the reason; see [`resolve`]).
    UnknownTool(String),
    /// The arguments cannot be put in canonical form.
    BadArguments(String),
    /// The URI is not a resource this agent may read (whatever the reason; see [`offer`]).
    UnknownResource(String),
    /// The name is not a prompt this agent may use.
    UnknownPrompt(String),
    /// The upstream could not serve a resource, prompt or completion (the tenant-facing
    /// reason).
    Upstream(String),
    /// The tenant's policies refuse this read of a resource or prompt, with their reasons.
    Refused(Vec<String>),
    Store(StoreError),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// `tools/call`: resolve, decide, then forward, hold or refuse.
pub async fn call_tool(
    state: &AppState,
    ctx: &crate::identity::AgentContext,
    req: CallRequest,
) -> Result<CallOutcome, GateError> {
    if let Some(resume) = req.resume {
        return execute::resume(state, ctx, &req.name, req.arguments, resume).await;
    }
    let now = state.clock.now();
    let target = resolve::target(state, ctx, &req.name, req.session.as_deref(), now).await?;
    let caller = Caller::of(ctx, req.session.clone(), req.stated_reason.is_some());
    let action = HashedAction::new(Action {
        tenant: ctx.tenant.clone(),
        connection: target.connection.id.clone(),
        tool: target.tool.name.clone(),
        tool_definition_hash: target.tool.current_hash.clone(),
        arguments: serde_json::Value::Object(req.arguments.unwrap_or_default()),
    })
    .map_err(|e| GateError::BadArguments(format!("arguments cannot be canonicalised: {e}")))?;
    let verdict = decide::decide(
        state,
        &caller,
        &target,
        action,
        decide::Guardrails::Consider,
        now,
    )
    .await?;
    let outcome = verdict.decided.decision.outcome();
    state.metrics.decision(outcome.as_str());
    // Names only: arguments and results never reach the log, at any level.
    tracing::debug!(tenant = %ctx.tenant_name, tool = %req.name, outcome = outcome.as_str(), "tool call decided");
    let effect = target.tool.classification().effective();
    let policy = verdict.policy_detail();
    let decide::Verdict {
        decided,
        facts,
        extra_reasons,
        covering,
    } = verdict;
    match decided.decision {
        Decision::Deny { action, reasons } => {
            let mut draft = call_draft(state, &caller, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.detail = json!({ "effect": effect, "reasons": reasons, "policy": policy });
            state.store.append_audit(draft, now).await?;
            Ok(CallOutcome::Denied(reasons))
        }
        Decision::Allow(permit) => {
            let guardrail = permit.guardrail().map(|c| c.id().clone());
            let mut draft = call_draft(state, &caller, permit.hashed(), AuditKind::ToolCall);
            draft.decision = Some("allow".into());
            draft.detail = json!({ "effect": effect, "policy": policy, "guardrail": guardrail });
            if guardrail.is_none() {
                // A read or a draft: the audit commit overlaps the upstream call, and the
                // result waits for the commit (withheld if it fails).
                let (committed, outcome) = tokio::join!(
                    state.store.append_audit(draft, now),
                    execute::forward_for(state, ctx, &caller, &req.name, *permit, req.agent),
                );
                committed?;
                return Ok(outcome);
            }
            // An effect under a guardrail: its event is durable before the upstream hears of it.
            state.store.append_audit(draft, now).await?;
            if let Some(g) = covering.filter(|g| g.mode == GuardrailMode::AutoWithNotice) {
                let mut notice = call_draft(state, &caller, permit.hashed(), AuditKind::Notice);
                notice.detail = json!({
                    "guardrail": g.id,
                    "guardrail_name": g.name,
                    "summary": summary_of(&target, permit.action()),
                    "cost_cents": facts.cost_cents,
                });
                state.store.append_audit(notice, now).await?;
            }
            let outcome =
                execute::forward_for(state, ctx, &caller, &req.name, *permit, req.agent).await;
            // An effect run under a guardrail is an execution too: anchored soon after.
            state.anchors.nudge(&caller.tenant);
            Ok(outcome)
        }
        Decision::Hold {
            action,
            mut reasons,
        } => {
            reasons.extend(extra_reasons);
            let held = hold::Held {
                caller: &caller,
                target: &target,
                action,
                reasons,
                evaluation: &decided.evaluation,
                facts: &facts,
                stated_reason: req.stated_reason,
                agent: req.agent,
            };
            Ok(hold::hold(state, held, now).await?)
        }
    }
}

/// A person's vote to approve a request (see [`approve::approve`]). A revert has no agent to
/// re-send it: when the vote completes a revert's approval, the gateway runs it at once.
pub async fn approve(
    state: &AppState,
    ctx: &crate::identity::AdminContext,
    approval: Approval,
    reason: Option<String>,
) -> Result<Approval, crate::error::ApiError> {
    let approval = approve::approve(state, ctx, approval, reason).await?;
    if approval.revert_of.is_some() && approval.status == portcullis_store::ApprovalStatus::Approved
    {
        return revert::execute(state, ctx, approval).await;
    }
    Ok(approval)
}

/// The audit skeleton shared by every event about one call: the tool as resource, the
/// agent's session, and the arguments only as a keyed hash of their canonical form.
pub(crate) fn call_draft(
    state: &AppState,
    caller: &Caller,
    action: &HashedAction,
    kind: AuditKind,
) -> AuditDraft {
    let a = action.action();
    let mut draft = AuditDraft::new(caller.tenant.clone(), caller.recorded_actor(), kind)
        .resource(format!("tool:{}/{}", a.connection, a.tool));
    // Sessionless (2026-07-28) calls are recorded under the agent's session key; every call
    // also carries the agent as its actor, which is where `policy::session_facts` finds the
    // reads that escalate a later send from any session.
    draft.session = Some(caller.session_key());
    draft.args_hash = Some(
        state
            .keys
            .keyed_hash(&caller.tenant, action.canonical_arguments()),
    );
    draft
}

/// What approvers read in lists: every argument, the profile's important ones first.
pub(crate) fn summary_of(target: &Target, action: &Action) -> String {
    portcullis_core::summary::summary(
        target.tool.classification().effective(),
        &target.connection.name,
        &target.tool.name,
        &action.arguments,
        &target.tool.profile.summary_keys,
    )
}

/// The reason an approver gave for a denial, as the agent reads it.
pub(crate) fn denial_reason(approval: &Approval) -> String {
    format!(
        "denied by {}: {}",
        approval.decided_by.as_deref().unwrap_or("an approver"),
        approval
            .decision_reason
            .as_deref()
            .unwrap_or("no reason given")
    )
}
