//! Decision tables: one expected decision per line, for `portcullis policy test` in a
//! tenant's own CI and for our own tests.
//!
//! ```text
//! # expect  agent  connection/tool  effect  {json arguments}  [option ...]
//! hold      bot    billing/refund   spend   {"amount_cents": 20000}  cost_arg=amount_cents by=builtin.money
//! allow     bot    crm/get_contact  read    {}
//! ```
//!
//! Options: `tags=a,b` `classes=a,b` (the tool's profile), `cost_arg=NAME` `cost=CENTS`,
//! `spent=CENTS` (today's spend so far), `agent_spent=CENTS` (the agent's), `read=a,b` (classes the session has read),
//! `arg_classes=a,b` (data classes found in the arguments, e.g. `customer`),
//! `guardrail=auto|auto_with_notice`, `changed` (definition changed), `owner=NAME`,
//! `reason` (the agent stated one), `at=UNIX_MS`, `by=POLICY_ID` (must be among the
//! deciding policies; repeatable).

use super::{CallFacts, Engine, Evaluation, Kind};
use crate::effect::EffectClass;
use crate::guardrail::GuardrailMode;
use crate::policy::Outcome;
use crate::profile::ToolProfile;
use serde::Serialize;

/// One line of a decision table.
#[derive(Debug, Clone)]
pub struct Case {
    pub line: usize,
    pub expect: Outcome,
    pub agent: String,
    pub connection: String,
    pub tool: String,
    pub effect: EffectClass,
    pub arguments: serde_json::Value,
    pub profile: ToolProfile,
    pub spent_today_cents: i64,
    pub agent_spent_today_cents: i64,
    pub session_classes: Vec<String>,
    /// Data classes the gateway would find in the arguments (it scans an effect's).
    pub argument_classes: Vec<String>,
    pub guardrail: Option<GuardrailMode>,
    pub definition_changed: bool,
    pub owner: Option<String>,
    pub stated_reason: bool,
    pub at: i64,
    pub by: Vec<String>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub line: usize,
    pub passed: bool,
    pub expected: Outcome,
    pub got: Evaluation,
    /// Expected deciding policies that did not decide.
    pub missing_policies: Vec<String>,
}

fn outcome(word: &str) -> Option<Outcome> {
    match word {
        "allow" => Some(Outcome::Allow),
        "hold" => Some(Outcome::Hold),
        "deny" => Some(Outcome::Deny),
        _ => None,
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parse a whole table; errors name their line.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        cases.push(parse_line(trimmed).map_err(|e| format!("line {line}: {e}"))?);
        if let Some(case) = cases.last_mut() {
            case.line = line;
        }
    }
    Ok(cases)
}

fn parse_line(line: &str) -> Result<Case, String> {
    let mut rest = line;
    let mut word = || -> Result<&str, String> {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (w, r) = rest.split_at(end);
        rest = r;
        if w.is_empty() {
            Err("expected: EXPECT AGENT CONNECTION/TOOL EFFECT {ARGS} [OPTIONS]".into())
        } else {
            Ok(w)
        }
    };
    let expect = word()?;
    let expect = outcome(expect).ok_or_else(|| format!("`{expect}` is not allow, hold or deny"))?;
    let agent = word()?.to_owned();
    let target = word()?;
    let (connection, tool) = target
        .split_once('/')
        .ok_or_else(|| format!("`{target}` is not connection/tool"))?;
    let effect = EffectClass::parse(word()?).map_err(|e| e.to_string())?;
    let mut stream =
        serde_json::Deserializer::from_str(rest.trim_start()).into_iter::<serde_json::Value>();
    let arguments = match stream.next() {
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        _ => return Err("arguments must be a JSON object".into()),
    };
    let consumed = stream.byte_offset();
    let options = &rest.trim_start()[consumed..];
    let mut case = Case {
        line: 0,
        expect,
        agent,
        connection: connection.to_owned(),
        tool: tool.to_owned(),
        effect,
        arguments,
        profile: ToolProfile::default(),
        spent_today_cents: 0,
        agent_spent_today_cents: 0,
        session_classes: Vec::new(),
        argument_classes: Vec::new(),
        guardrail: None,
        definition_changed: false,
        owner: None,
        stated_reason: false,
        at: 1_790_000_000_000,
        by: Vec::new(),
    };
    for option in options.split_whitespace() {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| format!("`{key}` needs a whole number"))
        };
        match key {
            "tags" => case.profile.tags = list(value),
            "classes" => case.profile.data_classes = list(value),
            "cost_arg" => case.profile.cost_argument = Some(value.to_owned()),
            "cost" => case.profile.cost_cents = Some(number()?),
            "spent" => case.spent_today_cents = number()?,
            "agent_spent" => case.agent_spent_today_cents = number()?,
            "read" => case.session_classes = list(value),
            "arg_classes" => case.argument_classes = list(value),
            "guardrail" => {
                case.guardrail = Some(
                    GuardrailMode::parse(value)
                        .ok_or_else(|| format!("unknown guardrail mode `{value}`"))?,
                )
            }
            "changed" => case.definition_changed = true,
            "owner" => case.owner = Some(value.to_owned()),
            "reason" => case.stated_reason = true,
            "at" => case.at = number()?,
            "by" => case.by.push(value.to_owned()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(case)
}

/// Evaluate one case's call.
pub fn evaluate(engine: &Engine, case: &Case) -> Result<Evaluation, String> {
    let cost = case.profile.cost_of(&case.arguments)?;
    let guardrail = case.guardrail.map(|mode| ("table", mode));
    let facts = CallFacts {
        tenant: "tenant",
        agent: &case.agent,
        agent_owner: case.owner.as_deref(),
        connection: &case.connection,
        tool: &case.tool,
        effect: case.effect,
        profile: &case.profile,
        arguments: &case.arguments,
        cost_cents: cost,
        spent_today_cents: case.spent_today_cents,
        agent_spent_today_cents: case.agent_spent_today_cents,
        session_read_classes: &case.session_classes,
        session_reads: case.session_classes.len() as i64,
        has_session: true,
        argument_classes: &case.argument_classes,
        guardrail: guardrail.filter(|(_, m)| *m != GuardrailMode::ApproveEach),
        definition_changed: case.definition_changed,
        stated_reason: case.stated_reason,
        now: case.at,
    };
    Ok(engine.evaluate(&facts))
}

/// A policy that decided an explained call. Only `id` for a name the engine does not know
/// (an evaluation error's placeholder).
#[derive(Debug, Clone, Serialize)]
pub struct Deciding {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub english: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cedar: Option<String>,
}

/// Which policies decide one call, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub evaluation: Evaluation,
    pub deciding: Vec<Deciding>,
}

/// Explain one call: a decision-table line without its expectation,
/// `AGENT CONNECTION/TOOL EFFECT {ARGS} [OPTIONS]`.
pub fn explain(engine: &Engine, call: &str) -> Result<Explanation, String> {
    // The table machinery, with a placeholder expectation.
    let cases = parse(&format!("allow {}", call.trim()))?;
    let Some(case) = cases.first() else {
        return Err(
            "give the call to explain: AGENT CONNECTION/TOOL EFFECT {ARGS} [OPTIONS]".into(),
        );
    };
    let evaluation = evaluate(engine, case)?;
    let deciding = evaluation
        .policies()
        .iter()
        .map(|id| {
            let rule = engine.rule(id);
            Deciding {
                id: id.clone(),
                kind: rule.map(|r| r.kind),
                reason: rule.map(|r| r.reason.clone()),
                english: rule.map(|r| r.english()),
                cedar: rule.map(|r| r.text()),
            }
        })
        .collect();
    Ok(Explanation {
        evaluation,
        deciding,
    })
}

/// Run every case.
pub fn run(engine: &Engine, cases: &[Case]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|case| {
            let got = evaluate(engine, case).unwrap_or_else(|e| Evaluation {
                outcome: Outcome::Deny,
                policies: Vec::new(),
                reasons: vec![e],
                points: Vec::new(),
                policy_hash: engine.hash().to_owned(),
            });
            let missing: Vec<String> = case
                .by
                .iter()
                .filter(|id| !got.policies.contains(id))
                .cloned()
                .collect();
            CaseResult {
                line: case.line,
                passed: got.outcome == case.expect && missing.is_empty(),
                expected: case.expect,
                got,
                missing_policies: missing,
            }
        })
        .collect()
}
