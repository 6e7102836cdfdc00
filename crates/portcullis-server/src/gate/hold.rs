//! Hold: a held call joins the one live approval request for its action, or opens it. The
//! request found decides what the call gets: pending → held; denied → the approver's reason;
//! approved → it runs now, once.
//!
//! INVARIANT: one live request per action. An identical call (same tenant, agent and action
//! hash) joins the request that already decides it — an approved one first, so a retry
//! executes it — and the store's unique index makes concurrent first calls join one new
//! request instead of opening several.

use super::decide::Facts;
use super::{CallOutcome, Target, call_draft, denial_reason, summary_of};
use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::AgentSide;
use portcullis_core::UnixMillis;
use portcullis_core::action::HashedAction;
use portcullis_core::audit::AuditKind;
use portcullis_core::id::ApprovalId;
use portcullis_core::policy::Evaluation;
use portcullis_store::{ApprovalExtras, ApprovalStatus, HoldOutcome, NewApproval, StoreError};
use serde_json::json;

/// A call the policies held, with what the request records.
pub struct Held<'a> {
    pub caller: &'a Caller,
    pub target: &'a Target,
    pub action: HashedAction,
    pub reasons: Vec<String>,
    pub evaluation: &'a Evaluation,
    pub facts: &'a Facts,
    pub stated_reason: Option<String>,
    pub agent: Option<AgentSide>,
}

/// The expiry of a request opened now.
pub fn expiry(state: &AppState, now: UnixMillis) -> UnixMillis {
    now + (state.config.approvals.default_ttl_secs as i64 * 1000)
        .min(portcullis_core::MAX_APPROVAL_TTL_MS)
}

pub async fn hold(
    state: &AppState,
    held: Held<'_>,
    now: UnixMillis,
) -> Result<CallOutcome, StoreError> {
    let Held {
        caller,
        target,
        action,
        reasons,
        evaluation,
        facts,
        stated_reason,
        agent,
    } = held;
    let live = state
        .store
        .live_approval_for(&caller.tenant, &caller.agent, action.hash(), now)
        .await?;
    let approval = match live {
        Some(approval) => approval,
        None => {
            let id = ApprovalId::generate();
            let effect = target.tool.classification().effective();
            let mut draft = call_draft(state, caller, &action, AuditKind::Hold);
            draft.decision = Some("hold".into());
            draft.detail = json!({
                "effect": effect, "reasons": reasons, "approval": id,
                "action_hash": action.hash(),
                "policy": { "policies": evaluation.policies(), "policy_hash": evaluation.policy_hash(), "points": evaluation.points() },
            });
            let before_state = if effect.is_effect() {
                super::preview::capture(
                    state,
                    caller,
                    &facts.engine,
                    target,
                    &action,
                    agent.as_ref(),
                )
                .await
            } else {
                None
            };
            let extras = ApprovalExtras {
                rules: serde_json::to_value(facts.engine.approver_rules(evaluation))
                    .unwrap_or_default(),
                evidence: json!({
                    "reads": facts.session.evidence,
                    "read_classes": facts.session.classes,
                    "stated_reason": stated_reason,
                    "policies": evaluation.policies(),
                    "policy_hash": evaluation.policy_hash(),
                }),
                cost_cents: facts.cost_cents,
                before_state,
            };
            let new = NewApproval {
                id,
                tenant: caller.tenant.clone(),
                agent: caller.agent.clone(),
                session: caller.session.clone(),
                summary: summary_of(target, action.action()),
                action: action.action().clone(),
                action_hash: action.hash().to_owned(),
                effect,
                reasons,
                expires_at: expiry(state, now),
                revert_of: None,
            };
            match state
                .store
                .create_approval_with(new, extras, draft, now)
                .await?
            {
                HoldOutcome::Created(approval, _) => {
                    state.metrics.holds.inc();
                    tracing::info!(approval = %approval.id, tenant = %caller.tenant_name, "action held for approval");
                    return Ok(CallOutcome::Held(Box::new(approval)));
                }
                // A concurrent identical call stored its request first: join it.
                HoldOutcome::Joined(approval) => approval,
            }
        }
    };
    let effect = target.tool.classification().effective();
    match approval.status {
        ApprovalStatus::Pending => {
            let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
            draft.decision = Some("hold".into());
            draft.detail =
                json!({ "effect": effect, "approval": approval.id, "status": "pending" });
            state.store.append_audit(draft, now).await?;
            Ok(CallOutcome::Held(Box::new(approval)))
        }
        ApprovalStatus::Denied => {
            let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.detail = json!({ "effect": effect, "approval": approval.id, "status": "denied" });
            state.store.append_audit(draft, now).await?;
            Ok(CallOutcome::Denied(vec![denial_reason(&approval)]))
        }
        ApprovalStatus::Approved => {
            super::execute::run_approved(state, caller, agent, action, approval).await
        }
        other => {
            // Not reachable through the lookups above; refuse rather than guess.
            Ok(CallOutcome::Denied(vec![format!(
                "approval {} is {}",
                approval.id,
                other.as_str()
            )]))
        }
    }
}
