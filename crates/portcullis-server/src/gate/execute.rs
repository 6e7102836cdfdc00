//! Execute: the only way an action reaches an upstream. [`forward`] sends a permit;
//! [`run_approved`] turns an approved request into a permit and runs it exactly once:
//! verify the receipt, check the target still looks as approved, redeem the receipt (nonce,
//! status and the `execute` audit event in one transaction), charge the ledger, call the
//! upstream, record the outcome. Every answer comes back through [`reach`], which hands it
//! to [`super::scrub`] before anything else sees it.
//!
//! INVARIANT: a receipt executes at most once — redemption is the store's single-winner
//! transaction, and the upstream is called only after it committed.

use super::scrub::{ResultScope, Scrub};
use super::{CallOutcome, NotRun, call_draft};
use crate::bridge::{Owner, Waited};
use crate::identity::AgentContext;
use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::{AgentSide, UpstreamError, Upstreams};
use portcullis_core::action::HashedAction;
use portcullis_core::audit::AuditKind;
use portcullis_core::decision;
use portcullis_core::decision::Permit;
use portcullis_store::{Approval, Charge, ExecutionOutcome, StoreError};
use serde_json::json;

/// Send a permitted action upstream for `caller`. Returns what the agent gets and what it
/// means for the execution record.
pub async fn forward(
    state: &AppState,
    caller: &Caller,
    permit: Permit,
    agent: Option<AgentSide>,
) -> (CallOutcome, ExecutionOutcome) {
    let started = std::time::Instant::now();
    let scope = ResultScope::of(state, caller, permit.hashed());
    let result = reach(&state.upstreams, &Scrub::of(state), permit, agent, scope).await;
    settle(state, result, started)
}

/// The one way a tool result comes back from an upstream: the upstream's answer, scrubbed
/// (redacted per its connection, read by the injection spotter, both audited).
async fn reach(
    upstreams: &Upstreams,
    scrub: &Scrub,
    permit: Permit,
    agent: Option<AgentSide>,
    scope: ResultScope,
) -> Result<rmcp::model::CallToolResult, UpstreamError> {
    let result = match agent {
        Some(agent) => upstreams.call(permit, agent).await?,
        None => upstreams.call_unattended(permit).await?,
    };
    scrub.result(scope, result).await
}

/// Who may resume a bridged call: this agent, calling this tool name with these arguments.
fn owner(ctx: &AgentContext, name: &str, arguments: &serde_json::Value) -> Option<Owner> {
    let call = portcullis_core::action::internal_hash(&json!({
        "tool": name,
        "arguments": arguments,
    }))?;
    Some(Owner {
        tenant: ctx.tenant.clone(),
        agent: ctx.agent.clone(),
        call,
    })
}

/// Forward an agent's permitted call of the tool it named `name`. An agent on 2026-07-28
/// cannot be sent the upstream's sampling or elicitation requests: its call runs detached
/// and is suspended on the first question, which reaches the agent as an input-required
/// result ([`crate::bridge`]).
pub async fn forward_for(
    state: &AppState,
    ctx: &AgentContext,
    caller: &Caller,
    name: &str,
    permit: Permit,
    agent: Option<AgentSide>,
) -> CallOutcome {
    let Some(mut agent) = agent else {
        return forward(state, caller, permit, None).await.0;
    };
    // Only a call that may be suspended needs its owner (the hash of name and arguments).
    let owner = match agent.multi_round_trip {
        true => owner(ctx, name, &permit.action().arguments),
        false => None,
    };
    let Some(owner) = owner else {
        return forward(state, caller, permit, Some(agent)).await.0;
    };
    let (questions, asked) = tokio::sync::mpsc::unbounded_channel();
    agent.questions = Some(questions);
    // The call outlives this HTTP request when it is suspended; the agent's request
    // cancellation no longer applies (an unanswered question lapses with the call timeout).
    agent.cancel = tokio_util::sync::CancellationToken::new();
    let (upstreams, scrub) = (state.upstreams.clone(), Scrub::of(state));
    let scope = ResultScope::of(state, caller, permit.hashed());
    let started = std::time::Instant::now();
    // The answer is scrubbed inside the detached call, so a resumed call's answer is too.
    let waited = state
        .bridges
        .start(
            owner,
            async move { reach(&upstreams, &scrub, permit, Some(agent), scope).await },
            asked,
        )
        .await;
    after_wait(state, waited, started)
}

/// A retried call with the answers to the upstream's question.
pub async fn resume(
    state: &AppState,
    ctx: &AgentContext,
    name: &str,
    arguments: Option<serde_json::Map<String, serde_json::Value>>,
    resume: super::Resume,
) -> Result<CallOutcome, super::GateError> {
    let arguments = serde_json::Value::Object(arguments.unwrap_or_default());
    let owner = owner(ctx, name, &arguments).ok_or_else(|| {
        super::GateError::BadArguments("arguments cannot be canonicalised".to_owned())
    })?;
    let started = std::time::Instant::now();
    let waited = state
        .bridges
        .resume(&owner, &resume.request_state, resume.responses)
        .await
        .map_err(|e| super::GateError::BadArguments(e.to_string()))?;
    Ok(after_wait(state, waited, started))
}

fn after_wait(
    state: &AppState,
    waited: Waited<Result<rmcp::model::CallToolResult, UpstreamError>>,
    started: std::time::Instant,
) -> CallOutcome {
    match waited {
        Waited::Done(result) => settle(state, result, started).0,
        Waited::NeedsInput {
            request_state,
            requests,
        } => CallOutcome::InputRequired {
            request_state,
            requests,
        },
        Waited::Lost => settle(state, Err(UpstreamError::Transport), started).0,
    }
}

/// What an upstream's answer means for the agent and for the execution record.
fn settle(
    state: &AppState,
    result: Result<rmcp::model::CallToolResult, UpstreamError>,
    started: std::time::Instant,
) -> (CallOutcome, ExecutionOutcome) {
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
    match result {
        Ok(result) => {
            let tool_error = result.is_error == Some(true);
            label(if tool_error { "tool_error" } else { "ok" });
            let outcome = if tool_error {
                ExecutionOutcome::ToolError
            } else {
                ExecutionOutcome::Ok
            };
            (CallOutcome::Completed(result), outcome)
        }
        Err(UpstreamError::Withheld) => {
            // The upstream answered (the action ran); only the answer is kept from the agent.
            label("withheld");
            (
                CallOutcome::UpstreamFailed(UpstreamError::Withheld.to_string()),
                ExecutionOutcome::Ok,
            )
        }
        Err(e) => {
            label(match e {
                UpstreamError::Timeout => "timeout",
                UpstreamError::Cancelled => "cancelled",
                _ => "error",
            });
            (
                CallOutcome::UpstreamFailed(e.to_string()),
                ExecutionOutcome::UpstreamError,
            )
        }
    }
}

/// Run an approved request for `caller`. `agent` is the calling agent's request (a retried
/// call or a task), or `None` when the gateway runs the action for people (an approved
/// revert).
pub async fn run_approved(
    state: &AppState,
    caller: &Caller,
    agent: Option<AgentSide>,
    action: HashedAction,
    approval: Approval,
) -> Result<CallOutcome, StoreError> {
    let now = state.clock.now();
    let refuse = |reason: String| async {
        let mut draft = call_draft(state, caller, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [reason.clone()] });
        state.store.append_audit(draft, now).await?;
        Ok::<_, StoreError>(reason)
    };
    let Some(signed) = approval.receipt.as_ref() else {
        let reason = refuse("approved request has no receipt".into()).await?;
        return Ok(CallOutcome::Denied(vec![reason]));
    };
    let permit = match decision::verify(signed, &state.keys.verifying_key(), action.clone(), now) {
        Ok(permit) => permit,
        Err(e) => {
            tracing::warn!(approval = %approval.id, error = %e, "receipt refused");
            let reason = refuse(format!("approval receipt refused: {e}")).await?;
            state
                .metrics
                .executions
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "refused" })
                .inc();
            return Ok(CallOutcome::Denied(vec![reason]));
        }
    };
    let Some(approved_by) = permit.approval().cloned() else {
        // `decision::verify` only hands out approved permits; refuse should that ever change.
        let reason = refuse("the receipt did not yield an approved permit".into()).await?;
        return Ok(CallOutcome::Denied(vec![reason]));
    };
    // Redeeming spends the approval; with no upstream to send to (crashed, restarting) that
    // would burn it without executing anything. Keep it for a retry instead.
    if !matches!(
        state.upstreams.status(&action.action().connection),
        crate::upstream::Status::Ready { .. }
    ) {
        let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
        draft.decision = Some("hold".into());
        draft.detail = json!({ "approval": approval.id, "status": "upstream_unavailable" });
        state.store.append_audit(draft, now).await?;
        return Ok(CallOutcome::NotRun {
            approval: approval.id,
            why: NotRun::UpstreamUnavailable,
        });
    }
    if let Some(before) = &approval.before_state
        && let Err(reason) =
            super::preview::still_current(state, caller, &action, before, agent.as_ref()).await
    {
        let reason = refuse(reason).await?;
        return Ok(CallOutcome::NotRun {
            approval: approval.id,
            why: NotRun::Stale(reason),
        });
    }
    let mut draft = call_draft(state, caller, &action, AuditKind::Execute);
    draft.decision = Some("allow".into());
    draft.receipt_id = Some(approved_by.receipt_id().to_string());
    draft.detail = json!({ "approval": approval.id, "approver": approved_by.approver(), "revert_of": approval.revert_of });
    match state
        .store
        .redeem_receipt(
            &caller.tenant,
            &approval.id,
            approved_by.receipt_id(),
            approved_by.nonce(),
            draft,
            now,
        )
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            // Another request redeemed it first (or it is no longer redeemable): this call is
            // refused, and like every decision that refusal is recorded before the answer.
            let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.receipt_id = Some(approved_by.receipt_id().to_string());
            draft.detail = json!({ "approval": approval.id, "status": "already_executed" });
            state.store.append_audit(draft, state.clock.now()).await?;
            return Ok(CallOutcome::NotRun {
                approval: approval.id,
                why: NotRun::AlreadyExecuted,
            });
        }
        Err(e) => return Err(e),
    }
    // The spend ledger records what ran (reverts included); an approved call is not limited
    // by a guardrail.
    let charge = Charge {
        tenant: caller.tenant.clone(),
        agent: caller.agent.clone(),
        guardrail: None,
        approval: Some(approval.id.clone()),
        connection: action.action().connection.clone(),
        tool: action.action().tool.clone(),
        cost_cents: approval.cost_cents,
        action_hash: approval.action_hash.clone(),
    };
    if let Err(e) = state.store.charge(&charge, None, now).await {
        tracing::error!(error = %e, approval = %approval.id, "could not record an approved call's spend");
    }
    let (outcome, recorded) = forward(state, caller, permit, agent).await;
    let mut draft = call_draft(state, caller, &action, AuditKind::ExecutionResult);
    draft.receipt_id = Some(approved_by.receipt_id().to_string());
    draft.detail = json!({
        "approval": approval.id,
        "outcome": recorded,
        "upstream_error": recorded != ExecutionOutcome::Ok,
    });
    if let Err(e) = state
        .store
        .record_outcome(
            &caller.tenant,
            &approval.id,
            recorded,
            draft,
            state.clock.now(),
        )
        .await
    {
        // The `execute` event is already durable; without a recorded outcome the approval is
        // reported as `unknown` by the sweep (never re-run).
        tracing::error!(error = %e, approval = %approval.id, "could not record an execution's outcome");
    }
    // Every execution is anchored by a witnessed checkpoint soon after.
    state.anchors.nudge(&caller.tenant);
    Ok(outcome)
}

/// Run an approved request reached through its task (`tasks/get`) rather than a retried
/// call, once the stored action is still callable exactly as approved.
pub async fn run_from_task(
    state: &AppState,
    ctx: &AgentContext,
    approval: Approval,
    agent: AgentSide,
    session: Option<String>,
) -> Result<CallOutcome, StoreError> {
    let caller = Caller::of(ctx, session, false);
    let action = match HashedAction::new(approval.action.clone()) {
        Ok(action) => action,
        Err(e) => {
            return Ok(CallOutcome::Denied(vec![format!(
                "the approved action cannot be read back: {e}"
            )]));
        }
    };
    if let Err(problem) = super::resolve::still_callable(state, ctx, action.action()).await? {
        let mut draft = call_draft(state, &caller, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [problem] });
        state.store.append_audit(draft, state.clock.now()).await?;
        return Ok(CallOutcome::Denied(vec![format!(
            "the approved action cannot run as approved: {problem}"
        )]));
    }
    run_approved(state, &caller, Some(agent), action, approval).await
}
