//! The decision: one function that turns a call into allow, hold or deny, and the [`Permit`]
//! an allowed call carries to the upstream.
//!
//! [`decide`] evaluates the call itself: the caller hands over the action, the tool's
//! [`Classification`] and, when a guardrail covers the call, the [`Coverage`] that guardrail
//! matching produced — never an effect class or an evaluation of its own. The tenant's
//! policies ([`crate::policy::Engine`]) decide; the most restrictive outcome wins.
//!
//! A permit for a world-changing action comes from [`verify`] (people approved it: the receipt
//! checked against the action about to run; the permit carries the receipt) or from [`decide`] when a guardrail covered the call —
//! never from a policy alone: an effect allowed without a guardrail is held here even if the
//! policies said allow. Every type that could stand in for that evidence has private fields,
//! so server code cannot build one:
//!
//! ```compile_fail
//! # use portcullis_core::{action::HashedAction, decision::{Grounds, Permit}};
//! fn forge(action: HashedAction) -> Permit {
//!     Permit { action, grounds: Grounds::Read }
//! }
//! ```
//!
//! ```compile_fail
//! # use portcullis_core::{decision::Outcome, policy::Evaluation};
//! let evaluation = Evaluation {
//!     outcome: Outcome::Allow,
//!     policies: vec![],
//!     reasons: vec![],
//!     points: vec![],
//!     policy_hash: String::new(),
//! };
//! ```
//!
//! ```compile_fail
//! # use portcullis_core::guardrail::{Coverage, GuardrailMode};
//! # use portcullis_core::id::GuardrailId;
//! let coverage = Coverage { id: GuardrailId::generate(), mode: GuardrailMode::Auto };
//! ```
//!
//! The honest way compiles — the engine evaluates, `decide` concludes:
//!
//! ```
//! # use portcullis_core::{action::{Action, HashedAction}, decision::*, effect::*, id::*};
//! # use portcullis_core::{policy::Engine, profile::ToolProfile};
//! let engine = Engine::builtin_only();
//! let profile = ToolProfile::default();
//! let action = HashedAction::new(Action {
//!     tenant: TenantId::generate(),
//!     connection: ConnectionId::generate(),
//!     tool: "send_email".into(),
//!     tool_definition_hash: "pin".into(),
//!     arguments: serde_json::json!({ "to": "a@example.com" }),
//! })
//! .unwrap();
//! let call = Call {
//!     class: Classification::of(EffectClass::Send, "pin", "pin"),
//!     ..Call::new("acme", "bot", "mail", &profile, 0)
//! };
//! let decided = decide(&engine, &call, action);
//! assert_eq!(decided.decision.outcome(), Outcome::Hold);
//! ```

use crate::UnixMillis;
use crate::action::{Action, HashedAction};
use crate::effect::{Classification, EffectClass};
use crate::guardrail::Coverage;
use crate::id::{ApprovalId, ReceiptId};
use crate::policy::{CallFacts, Engine, Evaluation};
use crate::profile::ToolProfile;
use crate::receipt::{ReceiptError, SignedReceipt};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

/// Everything about one call besides the action, as the gateway read it. The effect class
/// comes from the tool's [`Classification`], and a guardrail counts only as a [`Coverage`].
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    /// The human the agent acts for, if recorded.
    pub agent_owner: Option<&'a str>,
    /// The connection's name (policies and guardrails speak names).
    pub connection: &'a str,
    pub class: Classification,
    pub profile: &'a ToolProfile,
    pub cost_cents: i64,
    /// The tenant's spend today (UTC), and this agent's.
    pub spent_today_cents: i64,
    pub agent_spent_today_cents: i64,
    /// Data classes the agent's recent reads carried, and how many reads.
    pub session_read_classes: &'a [String],
    pub session_reads: i64,
    pub has_session: bool,
    /// Data classes found in the call's arguments (the gateway scans an effect's).
    pub argument_classes: &'a [String],
    pub coverage: Option<Coverage>,
    /// The agent stated a reason or plan in the call's metadata.
    pub stated_reason: bool,
    pub now: UnixMillis,
}

impl<'a> Call<'a> {
    /// A call with no history, no spend and no guardrail, for a tool classified `write`
    /// until the caller says otherwise.
    pub fn new(
        tenant: &'a str,
        agent: &'a str,
        connection: &'a str,
        profile: &'a ToolProfile,
        now: UnixMillis,
    ) -> Self {
        Self {
            tenant,
            agent,
            agent_owner: None,
            connection,
            class: Classification::of(EffectClass::Write, "", ""),
            profile,
            cost_cents: 0,
            spent_today_cents: 0,
            agent_spent_today_cents: 0,
            session_read_classes: &[],
            session_reads: 0,
            has_session: false,
            argument_classes: &[],
            coverage: None,
            stated_reason: false,
            now,
        }
    }

    /// The class the call is decided as.
    pub fn effect(&self) -> EffectClass {
        self.class.effective()
    }
}

/// The outcome of a decision. Hold and deny hand the action back (for the approval request
/// and the audit trail); allow wraps it in the permit.
#[derive(Debug)]
pub enum Decision {
    Allow(Box<Permit>),
    Hold {
        action: HashedAction,
        reasons: Vec<String>,
    },
    Deny {
        action: HashedAction,
        reasons: Vec<String>,
    },
}

/// A decision with the evaluation it rests on (for the audit trail and approver rules).
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    pub evaluation: Evaluation,
}

pub use crate::policy::Outcome;

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Allow(_) => Outcome::Allow,
            Self::Hold { .. } => Outcome::Hold,
            Self::Deny { .. } => Outcome::Deny,
        }
    }
}

/// Decide on one call: the engine evaluates it (deny beats hold beats allow; any error
/// denies), then an effect runs only under a guardrail's coverage.
pub fn decide(engine: &Engine, call: &Call<'_>, action: HashedAction) -> Decided {
    let effect = call.effect();
    let evaluation = {
        let a: &Action = action.action();
        engine.evaluate(&CallFacts {
            tenant: call.tenant,
            agent: call.agent,
            agent_owner: call.agent_owner,
            connection: call.connection,
            tool: &a.tool,
            effect,
            profile: call.profile,
            arguments: &a.arguments,
            cost_cents: call.cost_cents,
            spent_today_cents: call.spent_today_cents,
            agent_spent_today_cents: call.agent_spent_today_cents,
            session_read_classes: call.session_read_classes,
            session_reads: call.session_reads,
            has_session: call.has_session,
            argument_classes: call.argument_classes,
            guardrail: call.coverage.as_ref().map(|c| (c.id().as_str(), c.mode())),
            definition_changed: call.class.definition_changed(),
            stated_reason: call.stated_reason,
            now: call.now,
        })
    };
    let decision = conclude(&evaluation, effect, call.coverage.clone(), action);
    Decided {
        decision,
        evaluation,
    }
}

/// Deny a call that cannot be given to the policies (see [`Engine::refusal`]).
pub fn refuse(engine: &Engine, action: HashedAction, reason: String) -> Decided {
    let evaluation = engine.refusal(reason);
    Decided {
        decision: Decision::Deny {
            action,
            reasons: evaluation.reasons().to_vec(),
        },
        evaluation,
    }
}

/// Verify a receipt against the action about to run. Only this function (and
/// [`decide`] for reads and guardrail-covered effects) produces a [`Permit`];
/// the permit carries the receipt. Consuming the nonce is the store's job and must happen in
/// the same transaction as the execution's audit entry, before the permit is used.
pub fn verify(
    receipt: &SignedReceipt,
    key: &VerifyingKey,
    action: HashedAction,
    now: UnixMillis,
) -> Result<Permit, ReceiptError> {
    let bytes = receipt.body.signed_bytes()?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&receipt.signature, &mut sig).map_err(|_| ReceiptError::BadSignature)?;
    key.verify(&bytes, &Signature::from_bytes(&sig))
        .map_err(|_| ReceiptError::BadSignature)?;
    if receipt.body.tenant != action.action().tenant {
        return Err(ReceiptError::TenantMismatch);
    }
    // A format-1 receipt was bound to the action hash of its own canonicaliser.
    let hash = receipt.body.action_hash_of(&action)?;
    let hash = hash.as_str();
    match &receipt.body.batch {
        None if hash != receipt.body.action_hash => return Err(ReceiptError::ActionMismatch),
        None => {}
        Some(items) => {
            if crate::receipt::batch_hash(items) != receipt.body.action_hash {
                return Err(ReceiptError::Malformed(
                    "batch hash does not match its items".into(),
                ));
            }
            if !items.iter().any(|item| item == hash) {
                return Err(ReceiptError::ActionMismatch);
            }
        }
    }
    if now >= receipt.body.expires_at {
        return Err(ReceiptError::Expired);
    }
    // A batch receipt covers several actions; each spends its own nonce.
    let nonce = match &receipt.body.batch {
        None => receipt.body.nonce.clone(),
        Some(_) => format!("{}:{hash}", receipt.body.nonce),
    };
    Ok(Permit {
        action,
        grounds: Grounds::Approved(Box::new(ApprovedBy {
            receipt: receipt.clone(),
            nonce,
        })),
    })
}

fn conclude(
    evaluation: &Evaluation,
    effect: EffectClass,
    coverage: Option<Coverage>,
    action: HashedAction,
) -> Decision {
    let reasons = || evaluation.reasons().to_vec();
    match (evaluation.outcome(), effect.is_effect(), coverage) {
        (Outcome::Deny, ..) => Decision::Deny {
            action,
            reasons: reasons(),
        },
        (Outcome::Hold, ..) => Decision::Hold {
            action,
            reasons: reasons(),
        },
        (Outcome::Allow, false, _) => Decision::Allow(Box::new(Permit {
            action,
            grounds: Grounds::Read,
        })),
        (Outcome::Allow, true, Some(coverage)) => Decision::Allow(Box::new(Permit {
            action,
            grounds: Grounds::Guardrail(coverage),
        })),
        (Outcome::Allow, true, None) => Decision::Hold {
            action,
            reasons: vec![format!(
                "`{effect}` changes the world and needs a person's approval or a guardrail"
            )],
        },
    }
}

/// Permission to send exactly one action upstream. Fields are private: only [`decide`] (for
/// reads, drafts and guardrail-covered effects) and [`verify`] (for approved effects), both in
/// this module, construct it.
#[derive(Debug)]
pub struct Permit {
    action: HashedAction,
    grounds: Grounds,
}

/// Why a permit lets its action run.
#[derive(Debug, Clone)]
pub enum Grounds {
    /// The policies allowed a read or a draft.
    Read,
    /// The policies allowed an effect and this guardrail covered it.
    Guardrail(Coverage),
    /// People approved exactly this action: the verified receipt.
    Approved(Box<ApprovedBy>),
}

/// The verified receipt behind an approved permit, and the nonce its execution spends.
#[derive(Debug, Clone)]
pub struct ApprovedBy {
    receipt: SignedReceipt,
    nonce: String,
}

impl ApprovedBy {
    pub fn receipt(&self) -> &SignedReceipt {
        &self.receipt
    }

    pub fn approval_id(&self) -> &ApprovalId {
        &self.receipt.body.approval_id
    }

    pub fn receipt_id(&self) -> &ReceiptId {
        &self.receipt.body.receipt_id
    }

    /// The single-use nonce this action's execution consumes (per item for a batch).
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Who approved, comma-separated.
    pub fn approver(&self) -> &str {
        &self.receipt.body.approver
    }
}

impl Permit {
    pub fn grounds(&self) -> &Grounds {
        &self.grounds
    }

    /// The guardrail that let this effect run without a person, if one did.
    pub fn guardrail(&self) -> Option<&Coverage> {
        match &self.grounds {
            Grounds::Guardrail(coverage) => Some(coverage),
            _ => None,
        }
    }

    /// The receipt behind this permit, when it is for an approved effect.
    pub fn approval(&self) -> Option<&ApprovedBy> {
        match &self.grounds {
            Grounds::Approved(by) => Some(by),
            _ => None,
        }
    }

    pub fn action(&self) -> &Action {
        self.action.action()
    }

    pub fn hashed(&self) -> &HashedAction {
        &self.action
    }

    pub fn into_action(self) -> HashedAction {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrail::{Cover, CoveredCall, GuardrailMode, GuardrailSpec, Today};
    use crate::id::{ConnectionId, GuardrailId, TenantId};
    use crate::policy::PolicyDocument;

    fn action() -> HashedAction {
        HashedAction::new(Action {
            tenant: TenantId::generate(),
            connection: ConnectionId::generate(),
            tool: "t".into(),
            tool_definition_hash: "h".into(),
            arguments: serde_json::json!({}),
        })
        .unwrap()
    }

    fn coverage() -> Coverage {
        let spec: GuardrailSpec = serde_json::from_value(serde_json::json!({
            "connection": "c", "tool": "t", "max_per_day": 5, "expires_at": 10_000
        }))
        .unwrap();
        let args = serde_json::json!({});
        let call = CoveredCall {
            agent: "a",
            connection: "c",
            tool: "t",
            arguments: &args,
            cost_cents: 0,
        };
        match spec.cover(
            &GuardrailId::generate(),
            "g",
            GuardrailMode::Auto,
            &call,
            Today::default(),
            0,
        ) {
            Cover::Covers(coverage) => coverage,
            other => panic!("{other:?}"),
        }
    }

    /// The built-ins plus one tenant policy (for `send` and reads with no history, cost or
    /// tags, only the general effect hold among the built-ins can match).
    fn engine(policy: &str) -> Engine {
        Engine::compile(&PolicyDocument {
            cedar: policy.to_owned(),
            ..PolicyDocument::default()
        })
        .unwrap()
    }

    /// One row per case: effect class, definition changed, guardrail, tenant policy → outcome.
    #[test]
    fn decision_table() {
        use EffectClass::*;
        use Outcome as O;
        let allow = "";
        let hold = r#"@hold @id("h") forbid (principal, action, resource);"#;
        let deny = r#"@id("d") forbid (principal, action, resource);"#;
        let cases = [
            (Read, false, false, allow, O::Allow),
            (Read, false, false, hold, O::Hold),
            (Read, false, false, deny, O::Deny),
            (Draft, false, false, allow, O::Allow),
            // A changed definition is an effect: held even for a read.
            (Read, true, false, allow, O::Hold),
            // A policy alone never lets an effect run: it needs a guardrail or a receipt.
            (Send, false, false, allow, O::Hold),
            (Send, false, true, allow, O::Allow),
            (Send, false, true, hold, O::Hold),
            (Send, false, true, deny, O::Deny),
        ];
        let profile = ToolProfile::default();
        for (effect, changed, covered, policy, expected) in cases {
            let engine = engine(policy);
            let call = Call {
                class: Classification::of(effect, "h", if changed { "other" } else { "h" }),
                coverage: covered.then(coverage),
                ..Call::new("t", "a", "c", &profile, 0)
            };
            let decided = decide(&engine, &call, action());
            assert_eq!(
                decided.decision.outcome(),
                expected,
                "{effect:?} changed={changed} covered={covered} {policy}"
            );
            if let Decision::Allow(permit) = decided.decision {
                assert_eq!(permit.guardrail().is_some(), effect.is_effect());
                assert!(permit.approval().is_none());
            }
        }
    }

    #[test]
    fn a_refusal_only_denies() {
        let engine = Engine::builtin_only();
        let decided = refuse(&engine, action(), "the policy is broken".into());
        assert_eq!(decided.decision.outcome(), Outcome::Deny);
        assert_eq!(decided.evaluation.reasons(), ["the policy is broken"]);
    }
}
