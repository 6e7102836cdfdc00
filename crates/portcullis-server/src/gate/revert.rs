//! Revert: undo an executed write with the tool profile's revert call, its arguments taken
//! from the before-state captured when the original was held. A person proposes it, others
//! approve it, and the gateway runs it once through the same verify-redeem-execute path.
//!
//! INVARIANT: a revert is an action like any other. It is decided by the same policy
//! evaluation as the forward call the original agent would make (a deny policy refuses it;
//! the approval points and their approver rules apply), it is refused while the agent or its
//! tenant is suspended, it is charged to the spend ledger when it runs, at most one revert per
//! original is live or executed (a unique index), and its own before-state is captured so a
//! target that changed since refuses it as stale. It never runs under a guardrail: a person
//! proposed it and other people approve it. When approved it is decided again before it runs
//! (a deny added since wins), and the execution is recorded as the approver's doing.

use super::decide::{Guardrails, decide};
use super::{CallOutcome, Target, summary_of};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::policy::Caller;
use crate::state::AppState;
use portcullis_core::action::{Action, HashedAction};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::decision::{Decision, Outcome};
use portcullis_core::id::ApprovalId;
use portcullis_core::policy::{ApproverRule, Point};
use portcullis_store::{Approval, ApprovalExtras, ApprovalStatus, HoldOutcome, NewApproval};
use serde_json::json;

/// Propose the inverse of an executed write (see the module invariant).
pub async fn propose(
    state: &AppState,
    ctx: &AdminContext,
    original: Approval,
) -> Result<Approval, ApiError> {
    super::approve::require_approver(ctx)?;
    let conflict = |m: &str| ApiError::Conflict(m.to_owned());
    if original.status != ApprovalStatus::Executed {
        return Err(conflict("only an executed action can be reverted"));
    }
    let before = original
        .before_state
        .as_ref()
        .ok_or_else(|| conflict("no before-state was captured for this action"))?;
    if before["value"]["is_error"] == json!(true) {
        return Err(conflict(
            "the target did not exist before this action; there is no state to restore",
        ));
    }
    let structured = before["value"]["structured"].clone();
    let tenant = original.tenant.clone();
    let tool = state
        .store
        .tool(&tenant, &original.connection, &original.tool)
        .await?;
    let revert = tool
        .profile
        .revert
        .as_ref()
        .ok_or_else(|| conflict("this tool's profile names no revert"))?;
    let arguments = revert
        .arguments_from(&structured)
        .ok_or_else(|| conflict("the before-state lacks a field the revert needs"))?;
    let connection = state
        .store
        .connection(&tenant, &original.connection)
        .await?;
    if connection.revoked_at.is_some() {
        return Err(conflict("the connection was revoked"));
    }
    let revert_tool = state
        .store
        .tool(&tenant, &original.connection, &revert.tool)
        .await
        .map_err(|_| conflict("the revert tool does not exist"))?;
    if revert_tool.definition_changed() {
        return Err(conflict(
            "the revert tool's definition changed; accept it before proposing a revert",
        ));
    }
    // The agent's own call of the revert tool: it must be granted to the agent.
    let grants = state
        .store
        .grants_for_agent(&tenant, &original.agent)
        .await?;
    if !super::resolve::granted(&grants, &connection.id, &revert_tool.name) {
        return Err(conflict(
            "the revert tool is not granted to the agent; a revert is the agent's own call",
        ));
    }
    let caller = caller_for(state, &original).await?;
    let target = Target {
        connection,
        tool: revert_tool,
    };
    let action = HashedAction::new(Action {
        tenant: tenant.clone(),
        connection: target.connection.id.clone(),
        tool: target.tool.name.clone(),
        tool_definition_hash: target.tool.current_hash.clone(),
        arguments,
    })
    .map_err(|e| ApiError::BadRequest(format!("the revert's arguments: {e}")))?;
    let now = state.clock.now();
    let me = ctx.admin.name.clone();
    // The same evaluation as the agent's own call of the revert tool, minus guardrails.
    let verdict = decide(state, &caller, &target, action, Guardrails::Ignore, now).await?;
    let policy = verdict.policy_detail();
    let evaluation = &verdict.decided.evaluation;
    let resource = format!("tool:{}/{}", target.connection.id, target.tool.name);
    let action = match verdict.decided.decision {
        Decision::Deny { action, reasons } => {
            let mut draft =
                AuditDraft::new(tenant.clone(), ctx.actor(), AuditKind::Deny).resource(resource);
            draft.decision = Some("deny".into());
            draft.detail = json!({ "revert_of": original.id, "action_hash": action.hash(), "reasons": reasons, "policy": policy });
            state.store.append_audit(draft, now).await?;
            return Err(ApiError::Forbidden(format!(
                "policy denies this revert: {}",
                reasons.join("; ")
            )));
        }
        Decision::Hold { action, .. } => action,
        // A revert tool that is a read: still decided by people, like every revert.
        Decision::Allow(permit) => permit.into_action(),
    };
    let mut rules = verdict.facts.engine.approver_rules(evaluation);
    if rules.is_empty() {
        rules.push((Point::Effect, ApproverRule::default()));
    }
    let id = ApprovalId::generate();
    let mut draft =
        AuditDraft::new(tenant.clone(), ctx.actor(), AuditKind::Hold).resource(resource);
    draft.decision = Some("hold".into());
    draft.detail = json!({ "approval": id, "revert_of": original.id, "action_hash": action.hash(), "policy": policy });
    // The revert's own before-state: what the target looks like now, checked again just
    // before the revert runs.
    let before_state = super::preview::capture(
        state,
        &caller,
        &verdict.facts.engine,
        &target,
        &action,
        None,
    )
    .await;
    let mut reasons = evaluation.reasons().to_vec();
    reasons.push(format!(
        "revert of {} proposed by {me}: restores the state captured before it ran",
        original.id
    ));
    let new = NewApproval {
        id,
        tenant: tenant.clone(),
        agent: original.agent.clone(),
        session: None,
        summary: format!(
            "revert of {}: {}",
            original.id,
            summary_of(&target, action.action())
        ),
        action: action.action().clone(),
        action_hash: action.hash().to_owned(),
        effect: target.tool.classification().effective(),
        reasons,
        expires_at: super::hold::expiry(state, now),
        revert_of: Some(original.id.clone()),
    };
    let extras = ApprovalExtras {
        rules: serde_json::to_value(&rules).unwrap_or_default(),
        evidence: json!({
            "revert_of": original.id, "proposed_by": me, "before_state": before,
            "policies": evaluation.policies(), "policy_hash": evaluation.policy_hash(),
        }),
        cost_cents: verdict.facts.cost_cents,
        before_state,
    };
    match state
        .store
        .create_approval_with(new, extras, draft, now)
        .await?
    {
        HoldOutcome::Created(approval, _) => Ok(approval),
        HoldOutcome::Joined(existing) if existing.revert_of.as_ref() == Some(&original.id) => {
            Err(ApiError::Conflict(format!(
                "{} already has a revert ({}, {}); an action is reverted at most once",
                original.id,
                existing.id,
                existing.status.as_str()
            )))
        }
        HoldOutcome::Joined(existing) => Err(ApiError::Conflict(format!(
            "an identical action by this agent is already waiting for approval ({}); decide that request instead",
            existing.id
        ))),
    }
}

/// The agent a revert acts for, as policy sees it: the original's agent, no session. Refused
/// while the agent or its tenant is suspended (the kill switch stops reverts too).
async fn caller_for(state: &AppState, approval: &Approval) -> Result<Caller, ApiError> {
    let tenant = state.store.tenant(&approval.tenant).await?;
    let agent = state
        .store
        .list_agents(&approval.tenant)
        .await?
        .into_iter()
        .find(|a| a.id == approval.agent)
        .ok_or(ApiError::NotFound)?;
    if tenant.suspended_at.is_some() || agent.suspended_at.is_some() {
        return Err(ApiError::Conflict(
            "the agent or its tenant is suspended; nothing was done".into(),
        ));
    }
    if agent.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "the agent was revoked; nothing was done".into(),
        ));
    }
    Ok(Caller {
        tenant: tenant.id,
        tenant_name: tenant.name,
        agent: agent.id,
        agent_name: agent.name,
        agent_owner: agent.owner,
        session: None,
        stated_reason: false,
        recorded_as: None,
    })
}

/// Run an approved revert once, on behalf of the approvers (no agent request to forward to).
/// Policy decides it again first, as it decides every retried call: a deny added since the
/// proposal wins.
pub(crate) async fn execute(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
) -> Result<Approval, ApiError> {
    let refuse = |reasons: Vec<String>| {
        let (tenant, actor, id) = (approval.tenant.clone(), ctx.actor(), approval.id.clone());
        let revert_of = approval.revert_of.clone();
        async move {
            let mut draft =
                AuditDraft::new(tenant, actor, AuditKind::Deny).resource(format!("approval:{id}"));
            draft.decision = Some("deny".into());
            draft.detail = json!({ "approval": id, "revert_of": revert_of, "reasons": reasons });
            state.store.append_audit(draft, state.clock.now()).await?;
            Ok::<(), ApiError>(())
        }
    };
    let mut caller = match caller_for(state, &approval).await {
        Ok(caller) => caller,
        Err(refusal) => {
            refuse(vec![
                "the agent or its tenant is suspended or revoked; the revert did not run".into(),
            ])
            .await?;
            return Err(refusal);
        }
    };
    caller.recorded_as = Some(ctx.actor());
    let connection = state
        .store
        .connection(&approval.tenant, &approval.connection)
        .await?;
    let tool = state
        .store
        .tool(
            &approval.tenant,
            &approval.connection,
            &approval.action.tool,
        )
        .await?;
    if connection.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "approved, but the connection was revoked; the revert did not run".into(),
        ));
    }
    if tool.current_hash != approval.action.tool_definition_hash {
        return Err(ApiError::Conflict(
            "approved, but the revert tool's definition changed; the revert did not run".into(),
        ));
    }
    let action = HashedAction::new(approval.action.clone())
        .map_err(|e| ApiError::Conflict(format!("the approved revert cannot be read: {e}")))?;
    let now = state.clock.now();
    let target = Target { connection, tool };
    let verdict = decide(state, &caller, &target, action, Guardrails::Ignore, now).await?;
    let action = match verdict.decided.decision {
        Decision::Deny { reasons, .. } => {
            refuse(reasons.clone()).await?;
            return Err(ApiError::Forbidden(format!(
                "approved, but policy now denies this revert: {}",
                reasons.join("; ")
            )));
        }
        Decision::Hold { action, .. } => action,
        Decision::Allow(permit) => permit.into_action(),
    };
    debug_assert_ne!(verdict.decided.evaluation.outcome(), Outcome::Deny);
    let outcome =
        super::execute::run_approved(state, &caller, None, action, approval.clone()).await?;
    let refused = match outcome {
        CallOutcome::Completed(_) | CallOutcome::UpstreamFailed(_) => None,
        CallOutcome::Denied(reasons) => Some(format!("denied: {}", reasons.join("; "))),
        CallOutcome::NotRun { why, .. } => Some(why.as_str().to_owned()),
        CallOutcome::Held(_) => Some("held".to_owned()),
        // A revert runs for people, never bridged to an agent.
        CallOutcome::InputRequired { .. } => Some("input required".to_owned()),
    };
    if let Some(why) = refused {
        return Err(ApiError::Conflict(format!(
            "approved, but the revert did not run: {why}"
        )));
    }
    Ok(state
        .store
        .find_approval(Some(&approval.tenant), &approval.id, state.clock.now())
        .await?)
}
