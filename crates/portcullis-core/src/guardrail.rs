//! Guardrails — the trust ladder: a standing rule that lets one proven workflow (an agent, a
//! tool, conditions on its arguments) run without asking, within a daily count, a daily cost
//! and an expiry. Modes climb approve-each → auto with notice → auto; reverting is one step.
//! Also: plain-English sentences for guardrails, and guardrail suggestions from the history
//! of approvals.

use crate::UnixMillis;
use crate::id::GuardrailId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;

/// How far a workflow has climbed the trust ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailMode {
    /// Every call is held for a person, as if the guardrail did not exist.
    ApproveEach,
    /// Calls within the guardrail run, and each run leaves a notice for reviewers.
    AutoWithNotice,
    /// Calls within the guardrail run.
    Auto,
}

impl GuardrailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApproveEach => "approve_each",
            Self::AutoWithNotice => "auto_with_notice",
            Self::Auto => "auto",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [Self::ApproveEach, Self::AutoWithNotice, Self::Auto]
            .into_iter()
            .find(|m| m.as_str() == value || m.as_str().replace('_', "-") == value)
    }
    /// Rank on the ladder: a change to a higher rank widens what runs unasked.
    pub fn rank(self) -> u8 {
        match self {
            Self::ApproveEach => 0,
            Self::AutoWithNotice => 1,
            Self::Auto => 2,
        }
    }
}

/// A comparison on one top-level argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The value is one of a list.
    OneOf,
    Prefix,
    Suffix,
}

/// `argument op value`. A missing argument never matches, so a call that does not state what
/// the condition tests is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub argument: String,
    pub op: ConditionOp,
    pub value: Value,
}

/// What a guardrail covers. Names, not ids, so it reads as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSpec {
    pub connection: String,
    pub tool: String,
    /// One agent by name; `None` covers every agent of the tenant.
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// At most this many runs per UTC day.
    pub max_per_day: u32,
    /// At most this much declared cost per UTC day, in cents (0: only costless calls).
    #[serde(default)]
    pub max_cost_cents_per_day: i64,
    /// After this instant the guardrail covers nothing.
    pub expires_at: UnixMillis,
}

/// The longest a guardrail may stand before someone renews it: 90 days.
pub const MAX_GUARDRAIL_LIFE_MS: UnixMillis = 90 * 24 * 60 * 60 * 1000;

/// The start of the UTC day `now` falls in; per-day limits count from here.
pub fn day_start(now: UnixMillis) -> UnixMillis {
    now - now.rem_euclid(24 * 60 * 60 * 1000)
}

impl Condition {
    /// Whether the call's arguments satisfy this condition. Missing or mistyped values never do.
    pub fn holds(&self, arguments: &Value) -> bool {
        let Some(actual) = arguments.get(&self.argument) else {
            return false;
        };
        let number = |v: &Value| v.as_f64();
        match self.op {
            ConditionOp::Eq => actual == &self.value,
            ConditionOp::Ne => actual != &self.value,
            ConditionOp::Lt | ConditionOp::Le | ConditionOp::Gt | ConditionOp::Ge => {
                let (Some(a), Some(b)) = (number(actual), number(&self.value)) else {
                    return false;
                };
                match self.op {
                    ConditionOp::Lt => a < b,
                    ConditionOp::Le => a <= b,
                    ConditionOp::Gt => a > b,
                    _ => a >= b,
                }
            }
            ConditionOp::OneOf => self
                .value
                .as_array()
                .is_some_and(|options| options.contains(actual)),
            ConditionOp::Prefix | ConditionOp::Suffix => {
                let (Some(a), Some(b)) = (actual.as_str(), self.value.as_str()) else {
                    return false;
                };
                if self.op == ConditionOp::Prefix {
                    a.starts_with(b)
                } else {
                    a.ends_with(b)
                }
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.argument.is_empty() {
            return Err("a condition needs an argument name".into());
        }
        let ok = match self.op {
            ConditionOp::Eq | ConditionOp::Ne => true,
            ConditionOp::Lt | ConditionOp::Le | ConditionOp::Gt | ConditionOp::Ge => {
                self.value.is_number()
            }
            ConditionOp::OneOf => self.value.as_array().is_some_and(|a| !a.is_empty()),
            ConditionOp::Prefix | ConditionOp::Suffix => {
                self.value.as_str().is_some_and(|s| !s.is_empty())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "condition on `{}`: `{}` needs {}",
                self.argument,
                op_word(self.op),
                match self.op {
                    ConditionOp::OneOf => "a non-empty list",
                    ConditionOp::Prefix | ConditionOp::Suffix => "a non-empty string",
                    _ => "a number",
                }
            ))
        }
    }

    fn english(&self) -> String {
        format!("`{}` {} {}", self.argument, op_word(self.op), self.value)
    }
}

fn op_word(op: ConditionOp) -> &'static str {
    match op {
        ConditionOp::Eq => "is",
        ConditionOp::Ne => "is not",
        ConditionOp::Lt => "is under",
        ConditionOp::Le => "is at most",
        ConditionOp::Gt => "is over",
        ConditionOp::Ge => "is at least",
        ConditionOp::OneOf => "is one of",
        ConditionOp::Prefix => "starts with",
        ConditionOp::Suffix => "ends with",
    }
}

/// `YYYY-MM-DD HH:MM UTC`, for sentences (the core reads no clock and has no time library;
/// this is the civil-from-days conversion).
pub fn utc(ms: UnixMillis) -> String {
    let days = ms.div_euclid(86_400_000);
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

/// Dollars and cents from cents, for sentences.
pub fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// A guardrail's leave for one call to run without a person. Fields are private: only
/// [`GuardrailSpec::cover`] — matching, mode and today's limits — produces one, and a
/// decision lets an effect run without a receipt only when it holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    id: GuardrailId,
    mode: GuardrailMode,
}

impl Coverage {
    pub fn id(&self) -> &GuardrailId {
        &self.id
    }

    /// Never [`GuardrailMode::ApproveEach`].
    pub fn mode(&self) -> GuardrailMode {
        self.mode
    }
}

/// The call a guardrail is matched against.
#[derive(Debug, Clone, Copy)]
pub struct CoveredCall<'a> {
    pub agent: &'a str,
    pub connection: &'a str,
    pub tool: &'a str,
    pub arguments: &'a Value,
    /// The call's declared cost, in cents.
    pub cost_cents: i64,
}

/// What a guardrail has admitted since the UTC day began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Today {
    pub runs: i64,
    pub cents: i64,
}

/// Whether one guardrail covers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cover {
    /// It covers the call (as far as today's figures go; the charge is the exact check).
    Covers(Coverage),
    /// It matches, but today's count or budget is used up: one sentence naming it.
    UsedUp(String),
    /// It does not describe this call, or it lets nothing run (approve-each, expired).
    No,
}

impl GuardrailSpec {
    /// Whether the guardrail `id` (called `name`, in `mode`) lets `call` run now, given what
    /// it admitted today. The only way to obtain a [`Coverage`].
    pub fn cover(
        &self,
        id: &GuardrailId,
        name: &str,
        mode: GuardrailMode,
        call: &CoveredCall<'_>,
        today: Today,
        now: UnixMillis,
    ) -> Cover {
        if mode == GuardrailMode::ApproveEach
            || !self.matches(call.agent, call.connection, call.tool, call.arguments, now)
        {
            return Cover::No;
        }
        if today.runs >= i64::from(self.max_per_day) {
            return Cover::UsedUp(format!(
                "guardrail `{name}` has used today's {} runs (UTC day)",
                self.max_per_day
            ));
        }
        if today.cents.saturating_add(call.cost_cents) > self.max_cost_cents_per_day {
            return Cover::UsedUp(format!(
                "guardrail `{name}` has used today's budget: {} of {} spent, this call costs {} (UTC day)",
                dollars(today.cents),
                dollars(self.max_cost_cents_per_day),
                dollars(call.cost_cents)
            ));
        }
        Cover::Covers(Coverage {
            id: id.clone(),
            mode,
        })
    }

    /// Refuse a spec that cannot be honoured or never ends.
    pub fn validate(&self, now: UnixMillis) -> Result<(), String> {
        if self.connection.is_empty() || self.tool.is_empty() {
            return Err("a guardrail names one connection and one tool".into());
        }
        if self.max_per_day == 0 {
            return Err("max_per_day must be at least 1".into());
        }
        if self.max_cost_cents_per_day < 0 {
            return Err("max_cost_cents_per_day must not be negative".into());
        }
        if self.expires_at <= now {
            return Err("expires_at must be in the future".into());
        }
        if self.expires_at > now + MAX_GUARDRAIL_LIFE_MS {
            return Err("a guardrail may stand for at most 90 days; renew it when it ends".into());
        }
        self.conditions.iter().try_for_each(Condition::validate)
    }

    /// Whether this call is the workflow the guardrail describes (limits aside).
    pub fn matches(
        &self,
        agent: &str,
        connection: &str,
        tool: &str,
        arguments: &Value,
        now: UnixMillis,
    ) -> bool {
        now < self.expires_at
            && self.connection == connection
            && self.tool == tool
            && self.agent.as_deref().is_none_or(|a| a == agent)
            && self.conditions.iter().all(|c| c.holds(arguments))
    }

    /// Whether `other` lets through anything this spec does not (a widening needs an admin).
    /// Conservative: any change other than tightening a limit or the expiry counts as wider.
    pub fn is_widened_by(&self, other: &GuardrailSpec) -> bool {
        let same_shape = self.connection == other.connection
            && self.tool == other.tool
            && self.agent == other.agent
            && other.conditions.iter().all(|c| self.conditions.contains(c))
            && self.conditions.iter().all(|c| other.conditions.contains(c));
        !same_shape
            || other.max_per_day > self.max_per_day
            || other.max_cost_cents_per_day > self.max_cost_cents_per_day
            || other.expires_at > self.expires_at
    }

    /// The guardrail as one plain-English sentence.
    pub fn english(&self, mode: GuardrailMode) -> String {
        let who = match &self.agent {
            Some(a) => format!("agent `{a}`"),
            None => "any agent of the tenant".to_owned(),
        };
        let mut out = match mode {
            GuardrailMode::ApproveEach => format!(
                "Approve-each (inactive): {who} calling `{}.{}` is held for a person every time",
                self.connection, self.tool
            ),
            GuardrailMode::AutoWithNotice | GuardrailMode::Auto => format!(
                "Lets {who} call `{}.{}` without asking",
                self.connection, self.tool
            ),
        };
        if !self.conditions.is_empty() {
            let conditions: Vec<String> = self.conditions.iter().map(Condition::english).collect();
            let _ = write!(out, " when {}", conditions.join(" and "));
        }
        let _ = write!(
            out,
            ", at most {} time{} and {} a day (UTC), until {}",
            self.max_per_day,
            if self.max_per_day == 1 { "" } else { "s" },
            dollars(self.max_cost_cents_per_day),
            utc(self.expires_at)
        );
        if mode == GuardrailMode::AutoWithNotice {
            out.push_str("; every run leaves a notice for reviewers");
        }
        out.push_str(". The approval points (money over cap, publishing, customer data leaving, production, sends after private reads) still hold.");
        out
    }
}

/// One past decision on an approval request, as suggestion input.
#[derive(Debug, Clone)]
pub struct PastDecision {
    pub agent: String,
    pub connection: String,
    pub tool: String,
    pub arguments: Value,
    pub approved: bool,
}

/// A guardrail someone could create, from a run of approvals of the same shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub spec: GuardrailSpec,
    /// How many approvals (and no denials) of this shape it is based on.
    pub approvals: usize,
    pub english: String,
}

/// After `threshold` approvals of the same shape (agent, tool, argument names) and no denial,
/// propose a guardrail: arguments that never varied are pinned, numbers are capped at the
/// largest approved value, everything else is left open. `now` sets a 30-day expiry.
pub fn suggest(history: &[PastDecision], threshold: usize, now: UnixMillis) -> Vec<Suggestion> {
    use std::collections::BTreeMap;
    let mut shapes: BTreeMap<(String, String, String, Vec<String>), Vec<&PastDecision>> =
        BTreeMap::new();
    for decision in history {
        let keys = decision
            .arguments
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        shapes
            .entry((
                decision.agent.clone(),
                decision.connection.clone(),
                decision.tool.clone(),
                keys,
            ))
            .or_default()
            .push(decision);
    }
    let mut out = Vec::new();
    for ((agent, connection, tool, keys), decisions) in shapes {
        if decisions.len() < threshold || decisions.iter().any(|d| !d.approved) {
            continue;
        }
        let mut conditions = Vec::new();
        for key in keys {
            let values: Vec<&Value> = decisions
                .iter()
                .filter_map(|d| d.arguments.get(&key))
                .collect();
            if values.windows(2).all(|w| w[0] == w[1]) {
                conditions.push(Condition {
                    argument: key,
                    op: ConditionOp::Eq,
                    value: values[0].clone(),
                });
            } else if values.iter().all(|v| v.is_i64()) {
                let max = values.iter().filter_map(|v| v.as_i64()).max().unwrap_or(0);
                conditions.push(Condition {
                    argument: key,
                    op: ConditionOp::Le,
                    value: Value::from(max),
                });
            }
        }
        let spec = GuardrailSpec {
            connection,
            tool,
            agent: Some(agent),
            conditions,
            max_per_day: decisions.len().min(1_000) as u32,
            max_cost_cents_per_day: 0,
            expires_at: now + 30 * 24 * 60 * 60 * 1000,
        };
        out.push(Suggestion {
            english: spec.english(GuardrailMode::AutoWithNotice),
            spec,
            approvals: decisions.len(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> GuardrailSpec {
        serde_json::from_value(json!({
            "connection": "mail", "tool": "send_email", "agent": "bot",
            "conditions": [
                {"argument": "to", "op": "suffix", "value": "@example.com"},
                {"argument": "priority", "op": "le", "value": 3}
            ],
            "max_per_day": 20, "expires_at": 2_000
        }))
        .unwrap()
    }

    #[test]
    fn matching_needs_every_condition_and_an_unexpired_rule() {
        let s = spec();
        let ok = json!({"to": "a@example.com", "priority": 2});
        assert!(s.matches("bot", "mail", "send_email", &ok, 1_000));
        assert!(
            !s.matches("bot", "mail", "send_email", &ok, 2_000),
            "expired"
        );
        assert!(!s.matches("other", "mail", "send_email", &ok, 1_000));
        assert!(!s.matches("bot", "mail", "delete_email", &ok, 1_000));
        for bad in [
            json!({"to": "a@evil.test", "priority": 2}),
            json!({"to": "a@example.com", "priority": 4}),
            json!({"to": "a@example.com"}),
            json!({"to": "a@example.com", "priority": "2"}),
            json!({"to": ["a@example.com"], "priority": 2}),
        ] {
            assert!(
                !s.matches("bot", "mail", "send_email", &bad, 1_000),
                "{bad}"
            );
        }
    }

    #[test]
    fn coverage_needs_a_match_an_active_mode_and_room_today() {
        let mut s = spec();
        s.max_cost_cents_per_day = 500;
        let id = GuardrailId::generate();
        let args = json!({"to": "a@example.com", "priority": 2});
        let call = |cost_cents| CoveredCall {
            agent: "bot",
            connection: "mail",
            tool: "send_email",
            arguments: &args,
            cost_cents,
        };
        let today = |runs, cents| Today { runs, cents };
        let Cover::Covers(coverage) = s.cover(
            &id,
            "g",
            GuardrailMode::Auto,
            &call(100),
            today(0, 0),
            1_000,
        ) else {
            panic!("should cover");
        };
        assert_eq!((coverage.id(), coverage.mode()), (&id, GuardrailMode::Auto));
        assert_eq!(
            s.cover(
                &id,
                "g",
                GuardrailMode::ApproveEach,
                &call(0),
                today(0, 0),
                1_000
            ),
            Cover::No
        );
        assert_eq!(
            s.cover(&id, "g", GuardrailMode::Auto, &call(0), today(0, 0), 2_000),
            Cover::No,
            "expired"
        );
        let Cover::UsedUp(runs) =
            s.cover(&id, "g", GuardrailMode::Auto, &call(0), today(20, 0), 1_000)
        else {
            panic!("runs used up");
        };
        assert!(runs.contains("`g`") && runs.contains("20 runs"), "{runs}");
        let Cover::UsedUp(budget) = s.cover(
            &id,
            "g",
            GuardrailMode::Auto,
            &call(101),
            today(3, 400),
            1_000,
        ) else {
            panic!("budget used up");
        };
        assert!(budget.contains("$4.00 of $5.00"), "{budget}");
        assert!(matches!(
            s.cover(
                &id,
                "g",
                GuardrailMode::AutoWithNotice,
                &call(100),
                today(3, 400),
                1_000
            ),
            Cover::Covers(_)
        ));
    }

    #[test]
    fn validation_and_widening() {
        let s = spec();
        s.validate(1_000).unwrap();
        assert!(s.validate(2_000).is_err());
        let mut forever = s.clone();
        forever.expires_at = 1_000 + MAX_GUARDRAIL_LIFE_MS + 1;
        assert!(forever.validate(1_000).is_err());
        let mut zero = s.clone();
        zero.max_per_day = 0;
        assert!(zero.validate(1_000).is_err());

        let mut tighter = s.clone();
        tighter.max_per_day = 5;
        assert!(!s.is_widened_by(&tighter));
        let mut more = s.clone();
        more.max_per_day = 21;
        assert!(s.is_widened_by(&more));
        let mut fewer_conditions = s.clone();
        fewer_conditions.conditions.pop();
        assert!(s.is_widened_by(&fewer_conditions));
        let mut any_agent = s.clone();
        any_agent.agent = None;
        assert!(s.is_widened_by(&any_agent));
        assert!(GuardrailMode::Auto.rank() > GuardrailMode::ApproveEach.rank());
    }

    #[test]
    fn english_reads_the_structure() {
        let text = spec().english(GuardrailMode::AutoWithNotice);
        assert!(text.starts_with("Lets agent `bot` call `mail.send_email` without asking when `to` ends with \"@example.com\" and `priority` is at most 3, at most 20 times and $0.00 a day"), "{text}");
        assert!(text.contains("notice"));
        assert!(
            spec()
                .english(GuardrailMode::ApproveEach)
                .starts_with("Approve-each")
        );
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_305_600_000), "2026-11-22 00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 90_000), "2000-02-29 00:01 UTC");
    }

    #[test]
    fn suggestions_need_enough_approvals_and_no_denial() {
        let past = |amount: i64, approved: bool| PastDecision {
            agent: "bot".into(),
            connection: "billing".into(),
            tool: "refund".into(),
            arguments: json!({"amount_cents": amount, "currency": "usd"}),
            approved,
        };
        let history: Vec<PastDecision> = (1..=5).map(|i| past(i * 100, true)).collect();
        let suggestions = suggest(&history, 5, 0);
        assert_eq!(suggestions.len(), 1);
        let s = &suggestions[0].spec;
        assert!(s.conditions.contains(&Condition {
            argument: "currency".into(),
            op: ConditionOp::Eq,
            value: json!("usd")
        }));
        assert!(s.conditions.contains(&Condition {
            argument: "amount_cents".into(),
            op: ConditionOp::Le,
            value: json!(500)
        }));
        assert!(suggest(&history[..4], 5, 0).is_empty());
        let mut denied = history.clone();
        denied.push(past(50, false));
        assert!(suggest(&denied, 5, 0).is_empty());
    }
}
