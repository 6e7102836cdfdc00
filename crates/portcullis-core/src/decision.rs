//! The decision: one function that turns an action and its facts into allow, hold or deny.
//!
//! Today it is a built-in rule (reads and drafts allow, effects hold, anything not granted
//! denies); a policy engine replaces the body later, not the signature. The most restrictive
//! outcome wins and any problem denies.
//!
//! An `Allow` carries a [`Permit`], the only value the executor accepts. A permit for an
//! effect can only come from [`crate::receipt::verify`], so an unapproved effect cannot be
//! written as code that compiles.

use crate::action::Action;
use crate::effect::EffectClass;
use crate::id::{ApprovalId, ReceiptId};
use serde::Serialize;

/// Whether a tool's current definition is the one an operator accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionStatus {
    /// The pinned hash matches what the upstream serves now.
    Accepted,
    /// The upstream changed the definition since it was classified; treat as an unknown effect.
    Changed,
}

/// The facts the decision is made on, gathered by the caller.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    /// The agent's grant covers this connection and tool.
    pub granted: bool,
    /// The agent token's scope covers this connection and tool.
    pub in_token_scope: bool,
    /// The connection is live (not revoked).
    pub connection_active: bool,
    /// The gateway's classification of the tool.
    pub effect: EffectClass,
    pub definition: DefinitionStatus,
}

/// The outcome of a decision.
#[derive(Debug)]
pub enum Decision {
    Allow(Permit),
    Hold {
        effect: EffectClass,
        reasons: Vec<String>,
    },
    Deny {
        reasons: Vec<String>,
    },
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

/// Decide on one action. Deny beats hold beats allow.
pub fn decide(action: Action, input: &DecisionInput) -> Decision {
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
    let mut hold = Vec::new();
    // INVARIANT: a changed definition is an unknown tool, and an unknown tool is an effect.
    let effect = match input.definition {
        DefinitionStatus::Accepted => input.effect,
        DefinitionStatus::Changed => {
            hold.push(
                "the upstream changed this tool's definition since it was accepted".to_owned(),
            );
            if input.effect.is_effect() {
                input.effect
            } else {
                EffectClass::Write
            }
        }
    };
    if effect.is_effect() {
        hold.push(format!("`{effect}` changes the world and needs approval"));
    }
    if !hold.is_empty() {
        return Decision::Hold {
            effect,
            reasons: hold,
        };
    }
    Decision::Allow(Permit {
        action,
        approval: None,
    })
}

/// Permission to send exactly one action upstream. Fields are private: only [`decide`] (for
/// reads and drafts) and [`crate::receipt::verify`] (for approved effects) construct it.
#[derive(Debug)]
pub struct Permit {
    action: Action,
    approval: Option<ApprovedBy>,
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
        }
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

    /// One row per case: granted, in scope, active, effect, definition → outcome.
    #[test]
    fn decision_table() {
        use DefinitionStatus::*;
        use EffectClass::*;
        use Outcome as O;
        let cases = [
            (true, true, true, Read, Accepted, O::Allow),
            (true, true, true, Draft, Accepted, O::Allow),
            (true, true, true, Read, Changed, O::Hold),
            (true, true, true, Draft, Changed, O::Hold),
            (false, true, true, Read, Accepted, O::Deny),
            (true, false, true, Read, Accepted, O::Deny),
            (true, true, false, Read, Accepted, O::Deny),
            (false, true, true, Send, Changed, O::Deny),
        ];
        for (granted, in_token_scope, connection_active, effect, definition, expected) in cases {
            let input = DecisionInput {
                granted,
                in_token_scope,
                connection_active,
                effect,
                definition,
            };
            assert_eq!(decide(action(), &input).outcome(), expected, "{input:?}");
        }
        for effect in EffectClass::ALL.into_iter().filter(|e| e.is_effect()) {
            let input = DecisionInput {
                granted: true,
                in_token_scope: true,
                connection_active: true,
                effect,
                definition: Accepted,
            };
            assert_eq!(decide(action(), &input).outcome(), O::Hold, "{effect}");
        }
    }
}
