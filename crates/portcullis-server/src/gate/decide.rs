//! Decide: read what the policies need beyond the call — the tenant's engine, the call's
//! cost, the agent's recent reads, the day's spend (one query), the guardrail that covers the
//! call, for an effect what its arguments carry (customer data; a credential refuses it) —
//! and let core decide. A guardrail-covered call is charged here: the charge is the
//! exact, concurrency-safe check of the guardrail's day, and when it refuses, the call is
//! decided again without the guardrail (and so held, saying which guardrail is used up).

use super::Target;
use crate::policy::{Caller, SessionFacts};
use crate::state::AppState;
use portcullis_core::UnixMillis;
use portcullis_core::action::HashedAction;
use portcullis_core::decision::{self, Call, Decided, Decision};
use portcullis_core::guardrail::{Cover, Coverage, CoveredCall};
use portcullis_core::policy::Engine;
use portcullis_store::{Charge, ChargeLimit, Guardrail, Spend, StoreError};
use serde_json::json;
use std::sync::Arc;

/// Whether a guardrail may let the call run without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guardrails {
    /// An agent's own call: a covering guardrail may let it run.
    Consider,
    /// Work a person proposed (a revert): always decided by people, never by a guardrail.
    Ignore,
}

/// What the decision read, kept for the hold that may follow (approver rules, evidence).
pub struct Facts {
    pub engine: Arc<Engine>,
    pub cost_cents: i64,
    pub session: Arc<SessionFacts>,
}

/// A decision with what it rests on.
pub struct Verdict {
    pub decided: Decided,
    pub facts: Facts,
    /// Why no guardrail let the call run, when one matched but its day is used up.
    pub extra_reasons: Vec<String>,
    /// The guardrail whose coverage the permit carries, if one does.
    pub covering: Option<Guardrail>,
}

impl Verdict {
    /// The policies, policy hash and approval points, as the audit trail records them.
    pub fn policy_detail(&self) -> serde_json::Value {
        let e = &self.decided.evaluation;
        json!({ "policies": e.policies(), "policy_hash": e.policy_hash(), "points": e.points() })
    }
}

/// Decide one call of `target` for `caller`.
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    action: HashedAction,
    guardrails: Guardrails,
    now: UnixMillis,
) -> Result<Verdict, StoreError> {
    let (engine, problem) = match crate::policy::engine(state, &caller.tenant).await? {
        Ok(engine) => (engine, None),
        // Every call is denied with `problem`; the built-ins only lend the refusal its shape.
        Err(problem) => (crate::engines::builtin(), Some(problem)),
    };
    let (cost_cents, problem) = match target.tool.profile.cost_of(&action.action().arguments) {
        Ok(cost) => (cost, problem),
        Err(cost_problem) => (0, problem.or(Some(cost_problem))),
    };
    let mut facts = Facts {
        engine,
        cost_cents,
        session: Arc::default(),
    };
    if let Some(problem) = problem {
        return Ok(Verdict {
            decided: decision::refuse(&facts.engine, action, problem),
            facts,
            extra_reasons: Vec::new(),
            covering: None,
        });
    }
    let class = target.tool.classification();
    // An effect's arguments are scanned: customer data becomes a data class for the
    // policies (the export point), a credential refuses the call. Reads and drafts stay
    // inside the boundary and are not scanned (`context.argument_classes` is empty).
    let mut found = super::scrub::ArgumentFindings::default();
    if class.effective().is_effect() {
        found = super::scrub::arguments(&state.redactor, &action.action().arguments);
        super::scrub::record_arguments(
            state,
            caller,
            &action,
            &target.connection.name,
            &found,
            now,
        )
        .await?;
        if let Some(refusal) = found.refusal() {
            return Ok(Verdict {
                decided: decision::refuse(&facts.engine, action, refusal),
                facts,
                extra_reasons: Vec::new(),
                covering: None,
            });
        }
    }
    // History, spend and guardrails matter to world-changing calls; reads and drafts skip
    // these lookups (their `context.session` is empty, see the schema).
    let mut spend = Spend::default();
    let mut cover = GuardrailCover::default();
    if class.effective().is_effect() {
        facts.session = Arc::new(crate::policy::session_facts(state, caller, now).await?);
        spend = state
            .store
            .spend_today(
                &caller.tenant,
                &caller.agent,
                portcullis_core::guardrail::day_start(now),
            )
            .await?;
        if guardrails == Guardrails::Consider {
            cover = covering(state, caller, target, &action, cost_cents, &spend, now).await?;
        }
    }
    let call = Call {
        tenant: &caller.tenant_name,
        agent: &caller.agent_name,
        agent_owner: caller.agent_owner.as_deref(),
        connection: &target.connection.name,
        class,
        profile: &target.tool.profile,
        cost_cents,
        spent_today_cents: spend.tenant_cents,
        agent_spent_today_cents: spend.agent_cents,
        session_read_classes: &facts.session.classes,
        session_reads: facts.session.reads,
        has_session: caller.session.is_some(),
        argument_classes: &found.classes,
        coverage: cover.covering.as_ref().map(|(c, _)| c.clone()),
        stated_reason: caller.stated_reason,
        now,
    };
    let decided = decision::decide(&facts.engine, &call, action);
    let mut extra_reasons = cover.used_up;
    let Some((_, guardrail)) = cover.covering else {
        return Ok(Verdict {
            decided,
            facts,
            extra_reasons,
            covering: None,
        });
    };
    let Decided {
        decision: Decision::Allow(permit),
        evaluation,
    } = decided
    else {
        return Ok(Verdict {
            decided,
            facts,
            extra_reasons,
            covering: None,
        });
    };
    if charge(state, caller, &guardrail, permit.hashed(), cost_cents, now).await? {
        return Ok(Verdict {
            decided: Decided {
                decision: Decision::Allow(permit),
                evaluation,
            },
            facts,
            extra_reasons,
            covering: Some(guardrail),
        });
    }
    // Over the limit (a concurrent call took the last run) or revoked since it was read:
    // decided again without the guardrail, saying why.
    let today = state
        .store
        .spend_today(
            &caller.tenant,
            &caller.agent,
            portcullis_core::guardrail::day_start(now),
        )
        .await?;
    let covered = CoveredCall {
        agent: &caller.agent_name,
        connection: &target.connection.name,
        tool: &target.tool.name,
        arguments: &permit.action().arguments,
        cost_cents,
    };
    let runs = today
        .guardrails
        .get(&guardrail.id)
        .copied()
        .unwrap_or_default();
    extra_reasons.push(
        match guardrail.spec.cover(
            &guardrail.id,
            &guardrail.name,
            guardrail.mode,
            &covered,
            runs,
            now,
        ) {
            Cover::UsedUp(reason) => reason,
            _ => format!(
                "guardrail `{}` was revoked or used up meanwhile",
                guardrail.name
            ),
        },
    );
    let call = Call {
        coverage: None,
        spent_today_cents: today.tenant_cents,
        agent_spent_today_cents: today.agent_cents,
        ..call
    };
    let decided = decision::decide(&facts.engine, &call, permit.into_action());
    Ok(Verdict {
        decided,
        facts,
        extra_reasons,
        covering: None,
    })
}

/// Record a guardrail-covered run in the ledger, admitted only within the guardrail's daily
/// count and cost (checked inside the inserting transaction). `false`: not admitted.
async fn charge(
    state: &AppState,
    caller: &Caller,
    guardrail: &Guardrail,
    action: &HashedAction,
    cost_cents: i64,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let charge = Charge {
        tenant: caller.tenant.clone(),
        agent: caller.agent.clone(),
        guardrail: Some(guardrail.id.clone()),
        approval: None,
        connection: action.action().connection.clone(),
        tool: action.action().tool.clone(),
        cost_cents,
        action_hash: action.hash().to_owned(),
    };
    let limit = ChargeLimit {
        since: portcullis_core::guardrail::day_start(now),
        max_count: Some(i64::from(guardrail.spec.max_per_day)),
        max_cents: Some(guardrail.spec.max_cost_cents_per_day),
    };
    match state.store.charge(&charge, Some(&limit), now).await {
        Ok(admitted) => Ok(admitted),
        // Revoked since it was read: it covers nothing any more.
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Which guardrail covers a call, and which would have but for today's limits.
#[derive(Default)]
struct GuardrailCover {
    covering: Option<(Coverage, Guardrail)>,
    /// One sentence per matching guardrail whose daily count or budget is used up.
    used_up: Vec<String>,
}

/// The first active guardrail that covers the call (as far as today's figures tell; the
/// charge is the exact check). Matching guardrails whose day is used up are named.
async fn covering(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    action: &HashedAction,
    cost_cents: i64,
    spend: &Spend,
    now: UnixMillis,
) -> Result<GuardrailCover, StoreError> {
    let guardrails = state.cache.guardrails(&state.store, &caller.tenant).await?;
    let call = CoveredCall {
        agent: &caller.agent_name,
        connection: &target.connection.name,
        tool: &target.tool.name,
        arguments: &action.action().arguments,
        cost_cents,
    };
    let mut cover = GuardrailCover::default();
    for guardrail in guardrails.iter().filter(|g| g.revoked_at.is_none()) {
        let today = spend
            .guardrails
            .get(&guardrail.id)
            .copied()
            .unwrap_or_default();
        match guardrail.spec.cover(
            &guardrail.id,
            &guardrail.name,
            guardrail.mode,
            &call,
            today,
            now,
        ) {
            Cover::Covers(coverage) => {
                cover.covering = Some((coverage, guardrail.clone()));
                return Ok(cover);
            }
            Cover::UsedUp(reason) => cover.used_up.push(reason),
            Cover::No => {}
        }
    }
    Ok(cover)
}
