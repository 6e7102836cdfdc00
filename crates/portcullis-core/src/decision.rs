//! The decision: one function that turns an action, its structural facts and the policy
//! engine's evaluation into allow, hold or deny.
//!
//! Structural facts (granted, in the token's scope, connection live) deny before any policy:
//! a tenant's policy cannot grant what an administrator did not. Then the Cedar evaluation
//! ([`crate::policy::Engine::evaluate`]) decides; the most restrictive outcome wins.
//!
//! An `Allow` carries a [`Permit`], the only value the executor accepts. A permit for a
//! world-changing action comes from [`crate::receipt::verify`] (a person approved it) or from
//! [`decide`] when a guardrail covered the call — never from a policy alone: an effect allowed
//! without a guardrail is held here even if the policies said allow.

use crate::action::Action;
use crate::effect::EffectClass;
use crate::id::{ApprovalId, GuardrailId, ReceiptId};
use crate::policy::Evaluation;
use serde::Serialize;

/// Whether a tool's current definition is the one an operator accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionStatus {
    /// The pinned hash matches what the upstream serves now.
    Accepted,
    /// The upstream changed the definition since it was classified; treat as an unknown effect.
    Changed,
}

impl DefinitionStatus {
    /// The class a call is decided as. INVARIANT: a changed definition is an unknown tool,
    /// and an unknown tool is an effect.
    pub fn effective(self, effect: EffectClass) -> EffectClass {
        match self {
            Self::Changed if !effect.is_effect() => EffectClass::Write,
            _ => effect,
        }
    }
}

/// The structural facts, gathered by the caller.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    /// The agent's grant covers this connection and tool.
    pub granted: bool,
    /// The agent token's scope covers this connection and tool.
    pub in_token_scope: bool,
    /// The connection is live (not revoked).
    pub connection_active: bool,
    /// The class the call is decided as (see [`DefinitionStatus::effective`]).
    pub effect: EffectClass,
    /// The guardrail the evaluation was told covers this call, if any.
    pub guardrail: Option<GuardrailId>,
}

/// The outcome of a decision.
#[derive(Debug)]
pub enum Decision {
    Allow(Box<Permit>),
    Hold { reasons: Vec<String> },
    Deny { reasons: Vec<String> },
}

/// The decision outcome without its permit, for logs, metrics and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Hold,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Hold => "hold",
            Self::Deny => "deny",
        }
    }
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Allow(_) => Outcome::Allow,
            Self::Hold { .. } => Outcome::Hold,
            Self::Deny { .. } => Outcome::Deny,
        }
    }
}

/// Decide on one action. Structural denials first, then the policy evaluation; deny beats
/// hold beats allow.
pub fn decide(action: Action, input: &DecisionInput, evaluation: &Evaluation) -> Decision {
    let mut deny = Vec::new();
    if !input.connection_active {
        deny.push("connection is revoked".to_owned());
    }
    if !input.granted {
        deny.push(format!(
            "tool `{}` is not granted to this agent",
            action.tool
        ));
    }
    if !input.in_token_scope {
        deny.push(format!(
            "tool `{}` is outside this token's scope",
            action.tool
        ));
    }
    if !deny.is_empty() {
        return Decision::Deny { reasons: deny };
    }
    match evaluation.outcome {
        Outcome::Deny => Decision::Deny {
            reasons: evaluation.reasons.clone(),
        },
        Outcome::Hold => Decision::Hold {
            reasons: evaluation.reasons.clone(),
        },
        Outcome::Allow if input.effect.is_effect() && input.guardrail.is_none() => Decision::Hold {
            reasons: vec![format!(
                "`{}` changes the world and needs a person's approval or a guardrail",
                input.effect
            )],
        },
        Outcome::Allow => Decision::Allow(Box::new(Permit {
            action,
            approval: None,
            guardrail: if input.effect.is_effect() {
                input.guardrail.clone()
            } else {
                None
            },
        })),
    }
}

/// Permission to send exactly one action upstream. Fields are private: only [`decide`] (for
/// reads, drafts and guardrail-covered effects) and [`crate::receipt::verify`] (for approved
/// effects) construct it.
#[derive(Debug)]
pub struct Permit {
    action: Action,
    approval: Option<ApprovedBy>,
    guardrail: Option<GuardrailId>,
}

/// Which receipt approved a permit.
#[derive(Debug, Clone)]
pub struct ApprovedBy {
    pub approval_id: ApprovalId,
    pub receipt_id: ReceiptId,
    pub nonce: String,
    pub approver: String,
}

impl Permit {
    pub(crate) fn approved(action: Action, approval: ApprovedBy) -> Self {
        Self {
            action,
            approval: Some(approval),
            guardrail: None,
        }
    }

    /// The guardrail that let this effect run without a person, if one did.
    pub fn guardrail(&self) -> Option<&GuardrailId> {
        self.guardrail.as_ref()
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// The receipt behind this permit, when it is for an approved effect.
    pub fn approval(&self) -> Option<&ApprovedBy> {
        self.approval.as_ref()
    }

    pub fn into_action(self) -> Action {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ConnectionId, TenantId};

    fn action() -> Action {
        Action {
            tenant: TenantId::generate(),
            connection: ConnectionId::generate(),
            tool: "t".into(),
            tool_definition_hash: "h".into(),
            arguments: serde_json::json!({}),
        }
    }

    fn evaluation(outcome: Outcome) -> Evaluation {
        Evaluation {
            outcome,
            policies: vec!["p".into()],
            reasons: vec!["because".into()],
            points: Vec::new(),
            policy_hash: "h".into(),
        }
    }

    /// One row per case: granted, in scope, active, effect, guardrail, policy outcome → outcome.
    #[test]
    fn decision_table() {
        use EffectClass::*;
        use Outcome as O;
        let g = Some(GuardrailId::generate());
        let cases = [
            (true, true, true, Read, None, O::Allow, O::Allow),
            (true, true, true, Read, None, O::Hold, O::Hold),
            (true, true, true, Read, None, O::Deny, O::Deny),
            (false, true, true, Read, None, O::Allow, O::Deny),
            (true, false, true, Read, None, O::Allow, O::Deny),
            (true, true, false, Read, None, O::Allow, O::Deny),
            // A policy alone never lets an effect run: it needs a guardrail or a receipt.
            (true, true, true, Send, None, O::Allow, O::Hold),
            (true, true, true, Send, g.clone(), O::Allow, O::Allow),
            (true, true, true, Send, g.clone(), O::Hold, O::Hold),
            (false, true, true, Send, g.clone(), O::Allow, O::Deny),
        ];
        for (granted, in_token_scope, connection_active, effect, guardrail, policy, expected) in
            cases
        {
            let input = DecisionInput {
                granted,
                in_token_scope,
                connection_active,
                effect,
                guardrail,
            };
            let decision = decide(action(), &input, &evaluation(policy));
            assert_eq!(decision.outcome(), expected, "{input:?} {policy:?}");
            if let Decision::Allow(permit) = decision {
                assert_eq!(permit.guardrail().is_some(), effect.is_effect());
            }
        }
        assert_eq!(DefinitionStatus::Changed.effective(Read), Write);
        assert_eq!(DefinitionStatus::Changed.effective(Send), Send);
        assert_eq!(DefinitionStatus::Accepted.effective(Read), Read);
    }
}
