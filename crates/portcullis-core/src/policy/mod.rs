//! Policy: each tenant's Cedar policies plus the built-in ones, compiled once per version
//! and evaluated per call to allow, hold or deny (deny > hold > allow).
//!
//! Cedar knows permit and forbid. Portcullis reads a `forbid` annotated `@hold` as "hold for
//! a person" and any other `forbid` as deny. The built-in permits cover every action (what an
//! agent may call at all is decided by grants and token scopes before policy), so tenant
//! policies restrict: a matching deny-forbid denies, else a matching hold-forbid holds, else
//! the call is allowed. One Cedar evaluation per call reports every matching forbid.
//!
//! INVARIANT: fail closed. Cedar skips a policy whose evaluation errors, which for a `forbid`
//! would silently allow; here any evaluation error denies, naming the erroring policies.
//! Policies are validated against the schema in strict mode before they are accepted.
//!
//! Cost: the set is sliced per tool (policies scoped to another tool or connection are left
//! out) and slices are cached, so unrelated policies cost nothing per call.

mod builtin;
#[cfg(test)]
mod differential;
pub mod english;
mod fast;
pub mod settings;
pub mod table;

pub use settings::{
    ApproverRule, Point, PolicySettings, VoterIdentity, refuse_identity, refuse_voter, satisfied,
};

use crate::UnixMillis;
use crate::effect::EffectClass;
use crate::guardrail::GuardrailMode;
use crate::profile::ToolProfile;
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, ResourceConstraint, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, RwLock};

const SCHEMA_TEXT: &str = include_str!("schema.cedarschema");

/// The Cedar schema every tenant policy is validated against.
pub fn schema_text() -> &'static str {
    SCHEMA_TEXT
}

struct Static {
    schema: Schema,
    slice_permit: Policy,
    types: Types,
}

struct Types {
    tenant: EntityTypeName,
    agent: EntityTypeName,
    connection: EntityTypeName,
    tool: EntityTypeName,
    arguments: EntityTypeName,
    numbers: EntityTypeName,
    action: EntityTypeName,
}

static STATIC: LazyLock<Static> = LazyLock::new(|| {
    let (schema, _warnings) =
        Schema::from_cedarschema_str(SCHEMA_TEXT).expect("the built-in schema parses");
    let name = |n: &str| EntityTypeName::from_str(n).expect("built-in type names parse");
    let slice_permit = Policy::parse(
        Some(PolicyId::new(SLICE_PERMIT)),
        "permit (principal, action, resource);",
    )
    .expect("the slice permit parses");
    Static {
        schema,
        slice_permit,
        types: Types {
            tenant: name("Portcullis::Tenant"),
            agent: name("Portcullis::Agent"),
            connection: name("Portcullis::Connection"),
            tool: name("Portcullis::Tool"),
            arguments: name("Portcullis::Arguments"),
            numbers: name("Portcullis::Numbers"),
            action: name("Portcullis::Action"),
        },
    }
});

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// A tenant's policy document: its own Cedar text and the settings of the built-ins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyDocument {
    #[serde(default)]
    pub cedar: String,
    #[serde(default)]
    pub settings: PolicySettings,
}

impl PolicyDocument {
    /// The hash recorded with every decision: SHA-256 over the canonical JSON of the tenant's
    /// text, its settings and the built-ins' version.
    pub fn hash(&self) -> String {
        let body = serde_json::json!({
            "builtin_version": builtin::BUILTIN_VERSION,
            "cedar": self.cedar,
            "settings": self.settings,
        });
        // An internal fingerprint (recorded, compared, never re-derived by a verifier).
        crate::action::internal_hash(&body).expect("a policy document serialises")
    }
}

/// Why a policy document was refused. Every problem is listed, each naming its policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy set is invalid:\n  - {}", .problems.join("\n  - "))]
pub struct PolicyError {
    pub problems: Vec<String>,
}

impl PolicyError {
    fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

/// What a policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Permit,
    Hold,
    Deny,
}

/// Which calls a policy can apply to, read from its resource scope; the slicing key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Any,
    Connection(String),
    Tool(String),
}

/// One compiled policy and what Portcullis reads from its annotations.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub kind: Kind,
    pub point: Option<Point>,
    /// `@reason`, or a generated sentence.
    pub reason: String,
    pub builtin: bool,
    policy: Policy,
    /// What Cedar evaluates: the policy with the scopes slicing decides exactly lifted to
    /// "any". Slicing admits exactly the actions the scope names (groups expanded), so the
    /// action hierarchy never has to be put in the per-call entities; a principal naming one
    /// agent and a resource naming a tool or connection are matched there too.
    evaluated: Policy,
    /// What the conditions read of `context`; a policy reading nothing is decided once per
    /// slice.
    reads: ContextReads,
    /// The conditions (or a scope slicing does not decide) look at entities: `principal`,
    /// `resource` or an entity literal. Otherwise the per-call entities are only the
    /// arguments, and the slice's base entities are left out of the call.
    reads_entities: bool,
    /// A tenant forbid whose scopes slicing decides entirely: its conditions as one Cedar
    /// expression (JSON form), so a slice can check several such policies in one go.
    condition: Option<serde_json::Value>,
    /// The conditions compiled for [`fast`], when every scope is lifted and the conditions
    /// stay inside its subset.
    fast: Option<fast::Expr>,
    scope: Scope,
    /// `principal == Agent::"name"`: only that agent's calls.
    agent: Option<String>,
    /// The effect classes the action scope admits; `None`: any.
    actions: Option<Vec<EffectClass>>,
}

impl Rule {
    fn applies(&self, connection: &str, tool_key: &str, agent: &str, effect: EffectClass) -> bool {
        let scope = match &self.scope {
            Scope::Any => true,
            Scope::Connection(c) => c == connection,
            Scope::Tool(t) => t == tool_key,
        };
        scope
            && self.agent.as_deref().is_none_or(|a| a == agent)
            && self.actions.as_ref().is_none_or(|a| a.contains(&effect))
    }

    /// The policy's Cedar text.
    pub fn text(&self) -> String {
        self.policy.to_string()
    }

    /// The policy as a plain-English sentence, generated from its structure.
    pub fn english(&self) -> String {
        english::policy(&self.policy, self.kind)
    }
}

/// The policies that can apply to one agent calling one tool, and the entities that do not
/// change from call to call.
struct Slice {
    /// The policies whose outcome depends on the call's context, plus [`SLICE_PERMIT`] when a
    /// context-free permit matched.
    set: PolicySet,
    /// Context-free policies already known to match this slice (their outcome cannot change
    /// from call to call: principal, action, resource and their entities are fixed here).
    constant: Vec<String>,
    /// What the policies in `set` read of the context: all a call has to build.
    reads: ContextReads,
    /// Some policy in `set` looks at entities, so calls carry `base`.
    reads_entities: bool,
    /// Tenant forbids checked together: `set` holds one policy per group, the disjunction of
    /// its members' conditions, and only when it matches or errors are the members evaluated
    /// one by one to name them. Most calls match no tenant forbid, so most pay one
    /// evaluation per group instead of one per policy.
    groups: Vec<Group>,
    /// Every per-call policy (indices into the engine's rules) when all of them compile for
    /// [`fast`]; the slice is then decided without Cedar's request.
    fast: Option<Vec<usize>>,
    base: Entities,
}

/// What the per-call policies of a slice came to for one call.
#[derive(Debug, Default)]
struct Found {
    matched: Vec<String>,
    /// Policy id and error message.
    failed: Vec<(String, String)>,
}

/// Several tenant forbids of one kind, checked as one (see [`Slice`]).
struct Group {
    id: &'static str,
    members: PolicySet,
}

/// Ids of the group policies, one per kind.
const GROUP_DENY: &str = "builtin.slice-deny";
const GROUP_HOLD: &str = "builtin.slice-hold";

/// Stands in, inside a slice's set, for the context-free permits that matched.
const SLICE_PERMIT: &str = "builtin.slice-permit";

/// Slices kept per engine before the cache starts over.
const MAX_SLICES: usize = 4096;

/// A tenant's policies, compiled and validated.
pub struct Engine {
    document: PolicyDocument,
    hash: String,
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    authorizer: Authorizer,
    slices: RwLock<HashMap<String, Arc<Slice>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("hash", &self.hash)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// The facts one call is decided on, gathered by the caller.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub agent_owner: Option<&'a str>,
    pub connection: &'a str,
    pub tool: &'a str,
    pub effect: EffectClass,
    pub profile: &'a ToolProfile,
    pub arguments: &'a serde_json::Value,
    pub cost_cents: i64,
    pub spent_today_cents: i64,
    /// This agent's spend today (UTC).
    pub agent_spent_today_cents: i64,
    /// Data classes the session has read so far.
    pub session_read_classes: &'a [String],
    pub session_reads: i64,
    pub has_session: bool,
    /// Data classes found in the call's arguments (an effect's; empty for reads).
    pub argument_classes: &'a [String],
    /// The guardrail that covers this call, if one does (mode above approve-each, inside its
    /// limits and expiry).
    pub guardrail: Option<(&'a str, GuardrailMode)>,
    pub definition_changed: bool,
    /// The agent stated a reason or plan in the call's metadata.
    pub stated_reason: bool,
    pub now: UnixMillis,
}

/// Allow, hold or deny: the outcome of an evaluation and of a decision (without its permit),
/// for logs, metrics and the audit trail.
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

/// The policy engine's answer for one call. Fields are private: only an [`Engine`] produces
/// one, so a decision can never rest on an answer the caller wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub(crate) outcome: Outcome,
    pub(crate) policies: Vec<String>,
    pub(crate) reasons: Vec<String>,
    pub(crate) points: Vec<Point>,
    pub(crate) policy_hash: String,
}

impl Evaluation {
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Ids of the policies that decided: the matching forbids for deny and hold, the matching
    /// permits for allow, the erroring policies for an evaluation error.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The approval points a hold came from (their approver rules apply).
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Hash of the policy document in force.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }
}

/// The deepest bracket nesting a policy document may have. Cedar's parser recurses once per
/// level without a stack check; no real policy comes near this.
pub const MAX_NESTING: usize = 32;

/// The most chaining operators (`||`, `&&`, `+`, `-`, `*`, `.`, `if`) one policy may hold:
/// each makes the expression tree one level deeper, and Cedar builds, checks and drops such
/// trees recursively. A real policy holds a handful.
pub const MAX_OPERATORS: usize = 24;

/// Refuse a document whose shape would make Cedar recurse deeper than a thread's stack —
/// brackets nested deeper than [`MAX_NESTING`], or a policy with more than
/// [`MAX_OPERATORS`] chaining operators — before the parser sees it. String literals and
/// comments are skipped.
fn check_shape(text: &str) -> Result<(), String> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut statement, mut operators) = (1usize, 0usize);
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word == "if" {
            operators += 1;
        }
        word.clear();
        match c {
            '"' => {
                // A string literal: skip to its unescaped end.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '|' | '&' if chars.peek() == Some(&c) => {
                chars.next();
                operators += 1;
            }
            '+' | '-' | '*' | '.' => operators += 1,
            ';' => {
                statement += 1;
                operators = 0;
            }
            _ => {}
        }
        if deepest > MAX_NESTING {
            return Err(format!(
                "policy {statement} is nested more than {MAX_NESTING} brackets deep"
            ));
        }
        if operators > MAX_OPERATORS {
            return Err(format!(
                "policy {statement} chains more than {MAX_OPERATORS} operators; split it"
            ));
        }
    }
    Ok(())
}

impl Engine {
    /// The engine for a tenant without a policy document of its own: the built-ins with
    /// default settings.
    pub fn builtin_only() -> Self {
        Self::compile(&PolicyDocument::default()).expect("the built-in policies compile")
    }

    /// Parse, check and validate a policy document.
    pub fn compile(document: &PolicyDocument) -> Result<Self, PolicyError> {
        document.settings.validate().map_err(PolicyError::one)?;
        check_shape(&document.cedar).map_err(PolicyError::one)?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let builtins = builtin::policies(&document.settings);
        for (text, builtin) in [(builtins.as_str(), true), (document.cedar.as_str(), false)] {
            let parsed = match PolicySet::from_str(text) {
                Ok(set) => set,
                Err(e) => {
                    problems.push(format!("syntax: {e}"));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push("templates are not supported; write each policy out".into());
            }
            // `policies()` iterates a hash map; sort by Cedar's positional id for stable ids.
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (n, policy) in policies.into_iter().enumerate() {
                match rule(policy, n, builtin) {
                    Ok(rule) => rules.push(rule),
                    Err(e) => problems.push(e),
                }
            }
        }
        let mut by_id = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if by_id.insert(rule.id.clone(), i).is_some() {
                problems.push(format!("policy id `{}` is used twice", rule.id));
            }
        }
        if problems.is_empty() {
            let mut all = PolicySet::new();
            for rule in &rules {
                if let Err(e) = all.add(rule.policy.clone()) {
                    problems.push(format!("policy `{}`: {e}", rule.id));
                }
            }
            let result =
                Validator::new(STATIC.schema.clone()).validate(&all, ValidationMode::Strict);
            for error in result.validation_errors() {
                problems.push(error.to_string());
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }
        Ok(Self {
            hash: document.hash(),
            document: document.clone(),
            rules,
            by_id,
            authorizer: Authorizer::new(),
            slices: RwLock::new(HashMap::new()),
        })
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    pub fn settings(&self) -> &PolicySettings {
        &self.document.settings
    }

    /// Every policy in force, built-ins first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|i| &self.rules[*i])
    }

    fn slice(&self, facts: &CallFacts<'_>) -> Result<Arc<Slice>, String> {
        let tool_key = format!("{}/{}", facts.connection, facts.tool);
        let mut key = String::with_capacity(128);
        // The tenant too: tenants with identical documents share one engine, and the slice's
        // base entities place the agent in its tenant. Each part is length-prefixed, so no
        // name (whatever characters it holds) can make two different calls share a key.
        let _ = write!(key, "{}:", facts.profile.tags.len());
        for part in [
            facts.tenant,
            tool_key.as_str(),
            facts.agent,
            facts.agent_owner.unwrap_or_default(),
            facts.effect.as_str(),
        ]
        .into_iter()
        .chain(facts.profile.tags.iter().map(String::as_str))
        .chain(facts.profile.data_classes.iter().map(String::as_str))
        {
            let _ = write!(key, "{}:{part}", part.len());
        }
        if let Some(slice) = self
            .slices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(slice.clone());
        }
        let base = base_entities(facts)?;
        let fixed = fixed_request(facts)?;
        let mut set = PolicySet::new();
        let mut constant = Vec::new();
        let mut reads = ContextReads::default();
        let mut reads_entities = false;
        let (mut deny_group, mut hold_group) = (Vec::new(), Vec::new());
        let mut fast = Some(Vec::new());
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.applies(facts.connection, &tool_key, facts.agent, facts.effect) {
                continue;
            }
            if rule.reads.is_empty() {
                // Decide it once for the slice; an error keeps it per call, where it denies.
                let mut alone = PolicySet::new();
                let _ = alone.add(rule.evaluated.clone());
                let response = self.authorizer.is_authorized(&fixed, &alone, &base);
                if response.diagnostics().errors().next().is_none() {
                    if response.diagnostics().reason().next().is_some() {
                        constant.push(rule.id.clone());
                    }
                    continue;
                }
            }
            reads.extend(&rule.reads);
            reads_entities |= rule.reads_entities;
            fast = fast.filter(|_| rule.fast.is_some()).map(|mut rules| {
                rules.push(index);
                rules
            });
            if rule.condition.is_some() {
                match rule.kind {
                    Kind::Deny => deny_group.push(rule),
                    _ => hold_group.push(rule),
                }
                continue;
            }
            // Ids are unique (checked at compile time), so adding cannot fail.
            let _ = set.add(rule.evaluated.clone());
        }
        let mut groups = Vec::new();
        for (id, members) in [(GROUP_DENY, deny_group), (GROUP_HOLD, hold_group)] {
            match group(id, &members) {
                Some((combined, group)) => {
                    let _ = set.add(combined);
                    groups.push(group);
                }
                None => members.iter().for_each(|rule| {
                    let _ = set.add(rule.evaluated.clone());
                }),
            }
        }
        if constant
            .iter()
            .any(|id| self.rule(id).is_some_and(|r| r.kind == Kind::Permit))
        {
            let _ = set.add(STATIC.slice_permit.clone());
        }
        let slice = Arc::new(Slice {
            set,
            constant,
            reads,
            reads_entities,
            groups,
            fast,
            base,
        });
        let mut slices = self.slices.write().unwrap_or_else(|e| e.into_inner());
        if slices.len() >= MAX_SLICES {
            slices.clear();
        }
        slices.insert(key, slice.clone());
        Ok(slice)
    }

    /// Decide one call. Deny beats hold beats allow; any evaluation error denies.
    pub fn evaluate(&self, facts: &CallFacts<'_>) -> Evaluation {
        let slice = match self.slice(facts) {
            Ok(slice) => slice,
            Err(e) => return self.unusable(e),
        };
        let found = match &slice.fast {
            Some(rules) => self.match_fast(rules, &slice, facts),
            None => self.match_cedar(&slice, facts),
        };
        let evaluation = self.conclude(&slice, found);
        // Cedar is the reference: in debug builds (every test), check the fast path against it.
        #[cfg(debug_assertions)]
        if slice.fast.is_some() {
            let cedar = self.conclude(&slice, self.match_cedar(&slice, facts));
            assert_eq!(
                (cedar.outcome, &cedar.policies),
                (evaluation.outcome, &evaluation.policies),
                "the fast path and Cedar disagree on {facts:?}: {evaluation:?} vs {cedar:?}"
            );
        }
        evaluation
    }

    /// A denial for a call that cannot be given to the policies at all (the tenant's stored
    /// policy does not compile, the call's cost cannot be read): `reason` is what the agent
    /// and the audit trail see. A refusal can only deny.
    pub fn refusal(&self, reason: String) -> Evaluation {
        self.finish(Outcome::Deny, Vec::new(), vec![reason])
    }

    fn unusable(&self, e: String) -> Evaluation {
        self.finish(
            Outcome::Deny,
            Vec::new(),
            vec![format!(
                "the call's facts could not be given to the policy engine: {e}"
            )],
        )
    }

    /// The per-call policies that match and those that err, by Cedar. One evaluation covers
    /// them all (groups are expanded only when they match or err).
    fn match_cedar(&self, slice: &Slice, facts: &CallFacts<'_>) -> Result<Found, String> {
        let base = slice.reads_entities.then_some(&slice.base);
        let (request, entities) = request(facts, &self.document.settings, &slice.reads, base)?;
        let response = self
            .authorizer
            .is_authorized(&request, &slice.set, &entities);
        let mut failed = errors(&response);
        let mut matched: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .filter(|id| id != SLICE_PERMIT)
            .collect();
        for group in &slice.groups {
            let before = (matched.len(), failed.len());
            matched.retain(|id| id != group.id);
            failed.retain(|(id, _)| id != group.id);
            if before == (matched.len(), failed.len()) {
                continue;
            }
            // The group matched or erred: evaluate its members to name them.
            let members = self
                .authorizer
                .is_authorized(&request, &group.members, &entities);
            let found = (members.diagnostics().reason().next().is_some())
                || members.diagnostics().errors().next().is_some();
            matched.extend(members.diagnostics().reason().map(|id| id.to_string()));
            failed.extend(errors(&members));
            if !found {
                // Cannot happen (the group is the disjunction of its members); deny if it does.
                failed.push((
                    group.id.to_owned(),
                    "the tenant's policies matched together but none alone".into(),
                ));
            }
        }
        Ok(Found { matched, failed })
    }

    /// The same, by the [`fast`] evaluator.
    fn match_fast(
        &self,
        rules: &[usize],
        slice: &Slice,
        facts: &CallFacts<'_>,
    ) -> Result<Found, String> {
        let args = slice.reads.part("args");
        let view = fast::Facts::new(facts, &self.document.settings, |key| {
            args.is_some_and(|part| part.wants(key))
        })?;
        let mut found = Found::default();
        for rule in rules.iter().map(|i| &self.rules[*i]) {
            // A slice lists only compiled rules; should one not be, it errs (and so denies)
            // rather than being skipped.
            let held = match &rule.fast {
                Some(condition) => view.holds(condition),
                None => Err("the policy was not compiled".into()),
            };
            match held {
                Ok(true) => found.matched.push(rule.id.clone()),
                Ok(false) => {}
                Err(e) => found.failed.push((
                    rule.id.clone(),
                    format!("error while evaluating policy `{}`: {e}", rule.id),
                )),
            }
        }
        Ok(found)
    }

    /// Combine the slice's context-free decisions with the per-call ones: any error denies,
    /// then deny-forbids beat hold-forbids beat permits.
    fn conclude(&self, slice: &Slice, found: Result<Found, String>) -> Evaluation {
        let Found { matched, failed } = match found {
            Ok(found) => found,
            Err(e) => return self.unusable(e),
        };
        if !failed.is_empty() {
            let (ids, messages) = failed.into_iter().unzip();
            return self.finish(Outcome::Deny, ids, messages);
        }
        let (permits, forbids): (Vec<String>, Vec<String>) = slice
            .constant
            .iter()
            .cloned()
            .chain(matched)
            .partition(|id| self.rule(id).is_some_and(|r| r.kind == Kind::Permit));
        if forbids.is_empty() {
            if permits.is_empty() {
                return self.finish(
                    Outcome::Deny,
                    Vec::new(),
                    vec!["no policy permits this call".into()],
                );
            }
            let reasons = self.reasons(&permits);
            return self.finish(Outcome::Allow, permits, reasons);
        }
        let denying: Vec<String> = forbids
            .iter()
            .filter(|id| self.rule(id).is_none_or(|r| r.kind != Kind::Hold))
            .cloned()
            .collect();
        let (outcome, ids) = if denying.is_empty() {
            (Outcome::Hold, forbids)
        } else {
            (Outcome::Deny, denying)
        };
        let reasons = self.reasons(&ids);
        self.finish(outcome, ids, reasons)
    }

    fn reasons(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|id| match self.rule(id) {
                Some(rule) => rule.reason.clone(),
                None => format!("policy `{id}`"),
            })
            .collect()
    }

    fn finish(
        &self,
        outcome: Outcome,
        mut policies: Vec<String>,
        reasons: Vec<String>,
    ) -> Evaluation {
        policies.sort();
        let mut points: Vec<Point> = policies
            .iter()
            .filter_map(|id| self.rule(id))
            .filter(|r| outcome == Outcome::Hold && r.kind == Kind::Hold)
            .filter_map(|r| r.point)
            .collect();
        points.sort();
        points.dedup();
        let mut reasons = reasons;
        reasons.dedup();
        Evaluation {
            outcome,
            policies,
            reasons,
            points,
            policy_hash: self.hash.clone(),
        }
    }

    /// The approver rules a held call must satisfy: one per approval point it came from
    /// (`effect` when it came from a tenant hold policy without a point).
    pub fn approver_rules(&self, evaluation: &Evaluation) -> Vec<(Point, ApproverRule)> {
        let mut points = evaluation.points.clone();
        if points.is_empty() {
            points.push(Point::Effect);
        }
        points
            .into_iter()
            .map(|p| (p, self.document.settings.point(p).approvers))
            .collect()
    }
}

/// The policies whose evaluation erred, with the error. Any error denies (Cedar itself would
/// skip the policy).
fn errors(response: &cedar_policy::Response) -> Vec<(String, String)> {
    response
        .diagnostics()
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(inner) => {
                (inner.policy_id().to_string(), e.to_string())
            }
        })
        .collect()
}

/// One policy checking `members` together: forbid when any member's condition holds. `None`
/// when there are fewer than two (nothing to gain) or Cedar refuses the combination.
fn group(id: &'static str, members: &[&Rule]) -> Option<(Policy, Group)> {
    if members.len() < 2 {
        return None;
    }
    let conditions: Vec<serde_json::Value> = members
        .iter()
        .filter_map(|rule| rule.condition.clone())
        .collect();
    let json = serde_json::json!({
        "effect": "forbid",
        "principal": { "op": "All" },
        "action": { "op": "All" },
        "resource": { "op": "All" },
        "conditions": [{ "kind": "when", "body": disjunction(&conditions) }],
    });
    let combined = Policy::from_json(Some(PolicyId::new(id)), json).ok()?;
    let mut set = PolicySet::new();
    for rule in members {
        set.add(rule.evaluated.clone()).ok()?;
    }
    Some((combined, Group { id, members: set }))
}

/// `a || b || …` as a balanced tree, so depth grows with the log of the count.
fn disjunction(items: &[serde_json::Value]) -> serde_json::Value {
    match items {
        [] => serde_json::json!({ "Value": false }),
        [one] => one.clone(),
        _ => {
            let (left, right) = items.split_at(items.len() / 2);
            serde_json::json!({ "||": { "left": disjunction(left), "right": disjunction(right) } })
        }
    }
}

/// A policy's `when`/`unless` clauses (Cedar's JSON form) as one expression; `None` without
/// clauses.
fn conjunction(conditions: &serde_json::Value) -> Option<serde_json::Value> {
    conditions
        .as_array()?
        .iter()
        .map(|c| match c["kind"].as_str() {
            Some("unless") => serde_json::json!({ "!": { "arg": c["body"].clone() } }),
            _ => c["body"].clone(),
        })
        .reduce(|left, right| serde_json::json!({ "&&": { "left": left, "right": right } }))
}

fn annotation(policy: &Policy, key: &str) -> Option<String> {
    policy.annotation(key).map(str::to_owned)
}

/// Read one parsed policy into a [`Rule`], checking the annotations Portcullis gives meaning.
fn rule(policy: &Policy, n: usize, builtin: bool) -> Result<Rule, String> {
    let id = annotation(policy, "id").unwrap_or_else(|| format!("policy{n}"));
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "policy id `{id}` must be 1–128 characters without spaces"
        ));
    }
    if !builtin && id.starts_with(builtin::PREFIX) {
        return Err(format!(
            "policy id `{id}`: the `{}` prefix is reserved",
            builtin::PREFIX
        ));
    }
    let hold = policy.annotation("hold").is_some();
    let kind = match (policy.effect(), hold) {
        (cedar_policy::Effect::Permit, false) => Kind::Permit,
        (cedar_policy::Effect::Forbid, false) => Kind::Deny,
        (cedar_policy::Effect::Forbid, true) => Kind::Hold,
        (cedar_policy::Effect::Permit, true) => {
            return Err(format!(
                "policy `{id}`: @hold applies to forbid policies (\"hold unless a person approves\")"
            ));
        }
    };
    let point = match policy.annotation("point") {
        None => None,
        Some(p) => Some(
            Point::parse(p)
                .ok_or_else(|| format!("policy `{id}`: unknown approval point `{p}`"))?,
        ),
    };
    if point.is_some() && kind != Kind::Hold {
        return Err(format!("policy `{id}`: @point applies to @hold policies"));
    }
    for (key, _) in policy.annotations() {
        if !["id", "hold", "point", "reason"].contains(&key) {
            return Err(format!(
                "policy `{id}`: unknown annotation @{key} (known: @id, @hold, @point, @reason)"
            ));
        }
    }
    let scope = match policy.resource_constraint() {
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid)
            if uid.type_name() == &STATIC.types.tool =>
        {
            Scope::Tool(uid.id().unescaped().to_owned())
        }
        ResourceConstraint::In(uid) if uid.type_name() == &STATIC.types.connection => {
            Scope::Connection(uid.id().unescaped().to_owned())
        }
        _ => Scope::Any,
    };
    let agent = match policy.principal_constraint() {
        cedar_policy::PrincipalConstraint::Eq(uid) if uid.type_name() == &STATIC.types.agent => {
            Some(uid.id().unescaped().to_owned())
        }
        _ => None,
    };
    // `in` admits a group's members; `==` only the action itself (a call's action is never
    // the `effect` group, so `action == Action::"effect"` admits nothing, as in Cedar).
    let class = |uid: &EntityUid, members: bool| -> Vec<EffectClass> {
        let name = uid.id().unescaped();
        EffectClass::ALL
            .into_iter()
            .filter(|c| c.as_str() == name || (members && name == "effect" && c.is_effect()))
            .collect()
    };
    let actions = match policy.action_constraint() {
        cedar_policy::ActionConstraint::Any => None,
        cedar_policy::ActionConstraint::Eq(uid) => Some(class(&uid, false)),
        cedar_policy::ActionConstraint::In(uids) => {
            Some(uids.iter().flat_map(|uid| class(uid, true)).collect())
        }
    };
    let policy = policy.new_id(PolicyId::new(&id));
    let mut est = policy
        .to_json()
        .map_err(|e| format!("policy `{id}`: {e}"))?;
    if mentions_action_in(&est["conditions"]) {
        return Err(format!(
            "policy `{id}`: testing an action's groups (`in`) inside a condition is not supported; scope actions in the policy head (`action in [...]`) or compare with `action == …`"
        ));
    }
    if names_argument_entity(&est) {
        return Err(format!(
            "policy `{id}`: read the call's arguments through `context.args` and `context.numbers`, not by naming their entities"
        ));
    }
    let reads = ContextReads::of(&est["conditions"]);
    // Lift what slicing already decides exactly: the action scope always, the principal scope
    // when it names one agent, the resource scope when it names a tool or a connection.
    est["action"] = serde_json::json!({ "op": "All" });
    if agent.is_some() {
        est["principal"] = serde_json::json!({ "op": "All" });
    }
    if scope != Scope::Any {
        est["resource"] = serde_json::json!({ "op": "All" });
    }
    let reads_entities = est["principal"]["op"] != "All"
        || est["resource"]["op"] != "All"
        || reads_entities(&est["conditions"]);
    let fast = (est["principal"]["op"] == "All"
        && est["resource"]["op"] == "All"
        && est["action"]["op"] == "All")
        .then(|| fast::compile(&est["conditions"]))
        .flatten();
    let condition = (!builtin
        && kind != Kind::Permit
        && est["principal"]["op"] == "All"
        && est["resource"]["op"] == "All")
        .then(|| conjunction(&est["conditions"]))
        .flatten();
    let evaluated = Policy::from_json(Some(PolicyId::new(&id)), est)
        .map_err(|e| format!("policy `{id}`: {e}"))?;
    let reason = annotation(&policy, "reason").unwrap_or_else(|| english::policy(&policy, kind));
    Ok(Rule {
        id,
        kind,
        point,
        reason,
        builtin,
        policy,
        evaluated,
        reads,
        reads_entities,
        condition,
        fast,
        scope,
        agent,
        actions,
    })
}

fn entity_error(e: cedar_policy::EntityAttrEvaluationError) -> String {
    e.to_string()
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .iter()
            .map(|v| RestrictedExpression::new_string(v.clone())),
    )
}

/// The entities that stay the same for one agent calling one tool: the tenant, the agent, the
/// connection and the tool.
fn base_entities(facts: &CallFacts<'_>) -> Result<Entities, String> {
    let t = &STATIC.types;
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let tenant = uid(&t.tenant, facts.tenant);
    let connection = uid(&t.connection, facts.connection);
    let entities = [
        Entity::new(
            tenant.clone(),
            [("name".to_owned(), s(facts.tenant))].into(),
            HashSet::new(),
        )
        .map_err(entity_error)?,
        Entity::new(
            uid(&t.agent, facts.agent),
            [
                ("name".to_owned(), s(facts.agent)),
                ("owner".to_owned(), s(facts.agent_owner.unwrap_or_default())),
            ]
            .into(),
            [tenant.clone()].into(),
        )
        .map_err(entity_error)?,
        Entity::new(
            connection.clone(),
            [("name".to_owned(), s(facts.connection))].into(),
            [tenant].into(),
        )
        .map_err(entity_error)?,
        Entity::new(
            uid(&t.tool, &format!("{}/{}", facts.connection, facts.tool)),
            [
                ("name".to_owned(), s(facts.tool)),
                ("connection".to_owned(), s(facts.connection)),
                ("effect".to_owned(), s(facts.effect.as_str())),
                ("tags".to_owned(), strings(&facts.profile.tags)),
                (
                    "data_classes".to_owned(),
                    strings(&facts.profile.data_classes),
                ),
            ]
            .into(),
            [connection].into(),
        )
        .map_err(entity_error)?,
    ];
    Entities::from_entities(entities, None).map_err(|e| e.to_string())
}

/// What some policies read of `context`: per top-level attribute, the whole value or only
/// some of its parts (a record's fields, the argument entities' tag keys); everything when a
/// policy uses `context` itself as a value.
///
/// Per call, only these parts are built. A record field or attribute this missed would make
/// the reading policy's evaluation error, and an error denies. Tag keys must be exact, since a
/// missing tag reads as absent rather than erroring: a key is narrowed only when it is a string
/// literal in `hasTag`/`getTag` directly on `context.args`/`context.numbers`, any other use
/// takes the whole entity, and policies may not name the argument entities by literal uid
/// (refused when compiled), so no other path reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ContextReads {
    all: bool,
    attrs: BTreeMap<String, Part>,
}

/// How much of one context attribute is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Whole,
    /// Only these fields or tag keys (none: only whether the attribute is there).
    Only(BTreeSet<String>),
}

/// What one expression needs of a context attribute.
#[derive(Clone, Copy)]
enum Need<'a> {
    Whole,
    Present,
    Part(&'a str),
}

/// `context.<attr>`, if `value` is exactly that expression.
fn context_attr(value: &serde_json::Value) -> Option<&str> {
    let access = value.get(".")?;
    (access["left"] == serde_json::json!({ "Var": "context" }))
        .then(|| access["attr"].as_str())
        .flatten()
}

impl ContextReads {
    /// What the conditions of one policy (Cedar's JSON form) read.
    fn of(conditions: &serde_json::Value) -> Self {
        let mut reads = Self::default();
        reads.walk(conditions);
        reads
    }

    fn read(&mut self, attr: &str, need: Need<'_>) {
        let entry = self
            .attrs
            .entry(attr.to_owned())
            .or_insert_with(|| Part::Only(BTreeSet::new()));
        match (entry, need) {
            (Part::Whole, _) | (_, Need::Present) => {}
            (entry, Need::Whole) => *entry = Part::Whole,
            (Part::Only(parts), Need::Part(part)) => {
                parts.insert(part.to_owned());
            }
        }
    }

    fn walk(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("Var").and_then(|v| v.as_str()) == Some("context") {
                    self.all = true;
                    return;
                }
                // A record literal's keys are names, not operations.
                if let Some(fields) = map.get("Record").and_then(|r| r.as_object()) {
                    fields.values().for_each(|v| self.walk(v));
                    return;
                }
                for op in [".", "has"] {
                    let Some(access) = map.get(op) else { continue };
                    // `has a.b` names a path: take the whole of its first attribute.
                    let (attr, path) = match &access["attr"] {
                        serde_json::Value::Array(path) => (
                            path.first().and_then(|a| a.as_str()).unwrap_or_default(),
                            true,
                        ),
                        attr => (attr.as_str().unwrap_or_default(), false),
                    };
                    if access["left"] == serde_json::json!({ "Var": "context" }) {
                        // `context.x` used as a value takes all of it; `context has x` only
                        // needs it present.
                        let need = if op == "has" && !path {
                            Need::Present
                        } else {
                            Need::Whole
                        };
                        self.read(attr, need);
                    } else if let Some(outer) = context_attr(&access["left"]) {
                        self.read(outer, if path { Need::Whole } else { Need::Part(attr) });
                    } else {
                        self.walk(&access["left"]);
                    }
                    return;
                }
                for op in ["hasTag", "getTag"] {
                    let Some(call) = map.get(op) else { continue };
                    if let Some(outer) = context_attr(&call["left"]) {
                        match call["right"].get("Value").and_then(|k| k.as_str()) {
                            Some(key) => self.read(outer, Need::Part(key)),
                            None => {
                                self.read(outer, Need::Whole);
                                self.walk(&call["right"]);
                            }
                        }
                    } else {
                        self.walk(&call["left"]);
                        self.walk(&call["right"]);
                    }
                    return;
                }
                map.values().for_each(|v| self.walk(v));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| self.walk(v)),
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.attrs.is_empty()
    }

    /// How much of `attr` a call must build: `None` when nothing reads it.
    fn part(&self, attr: &str) -> Option<&Part> {
        if self.all {
            return Some(&Part::Whole);
        }
        self.attrs.get(attr)
    }

    fn extend(&mut self, other: &Self) {
        self.all |= other.all;
        for (attr, part) in &other.attrs {
            match part {
                Part::Whole => self.read(attr, Need::Whole),
                Part::Only(parts) => {
                    self.read(attr, Need::Present);
                    for p in parts {
                        self.read(attr, Need::Part(p));
                    }
                }
            }
        }
    }
}

impl Part {
    fn wants(&self, part: &str) -> bool {
        match self {
            Part::Whole => true,
            Part::Only(parts) => parts.contains(part),
        }
    }
}

/// Whether a policy names one of the per-call argument entities by literal uid (see
/// [`ContextReads`]).
fn names_argument_entity(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.get("__entity")
                .and_then(|e| e["type"].as_str())
                .is_some_and(|t| ARGUMENT_TYPES.contains(&t))
                || map
                    .get("entity")
                    .and_then(|e| e["type"].as_str())
                    .is_some_and(|t| ARGUMENT_TYPES.contains(&t))
                || map.values().any(names_argument_entity)
        }
        serde_json::Value::Array(items) => items.iter().any(names_argument_entity),
        _ => false,
    }
}

/// Whether conditions look at an entity in the store: `principal`, `resource`, or a literal
/// uid of any type but an action (action entities are never in the store; comparing action
/// uids needs none).
fn reads_entities(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            matches!(
                map.get("Var").and_then(|v| v.as_str()),
                Some("principal" | "resource")
            ) || map
                .get("__entity")
                .is_some_and(|e| e["type"] != "Portcullis::Action")
                || map.values().any(reads_entities)
        }
        serde_json::Value::Array(items) => items.iter().any(reads_entities),
        _ => false,
    }
}

const ARGUMENT_TYPES: [&str; 2] = ["Portcullis::Arguments", "Portcullis::Numbers"];

/// The request a slice's context-free policies are decided with: its principal, action and
/// resource, and an empty context (which they do not read).
fn fixed_request(facts: &CallFacts<'_>) -> Result<Request, String> {
    let t = &STATIC.types;
    Request::new(
        uid(&t.agent, facts.agent),
        uid(&t.action, facts.effect.as_str()),
        uid(&t.tool, &format!("{}/{}", facts.connection, facts.tool)),
        Context::empty(),
        None,
    )
    .map_err(|e| e.to_string())
}

/// Whether a condition tests hierarchy membership (`in`, `is … in`) of an action: its left
/// side mentions `action` or an action literal (see [`Rule`]'s `evaluated`: the per-call
/// entities hold no action hierarchy, so such a test would quietly compare equality).
fn mentions_action_in(value: &serde_json::Value) -> bool {
    fn mentions_action(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => {
                map.get("Var").and_then(|v| v.as_str()) == Some("action")
                    || map
                        .get("__entity")
                        .is_some_and(|e| e["type"] == "Portcullis::Action")
                    || map.values().any(mentions_action)
            }
            serde_json::Value::Array(items) => items.iter().any(mentions_action),
            _ => false,
        }
    }
    match value {
        serde_json::Value::Object(map) => {
            map.get("in").is_some_and(|e| mentions_action(&e["left"]))
                || map
                    .get("is")
                    .is_some_and(|e| e.get("in").is_some() && mentions_action(&e["left"]))
                || map.values().any(mentions_action_in)
        }
        serde_json::Value::Array(items) => items.iter().any(mentions_action_in),
        _ => false,
    }
}

/// Builds one context attribute, given how much of it is read.
type BuildAttr<'a> = dyn Fn(&Part) -> Result<RestrictedExpression, String> + 'a;

/// Turn the call's facts into a Cedar request carrying what `reads` names of the context, and
/// the call's entities: the arguments that are read, added to `base` when one is given.
fn request<'b>(
    facts: &CallFacts<'_>,
    settings: &PolicySettings,
    reads: &ContextReads,
    base: Option<&'b Entities>,
) -> Result<(Request, Cow<'b, Entities>), String> {
    let t = &STATIC.types;
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let long = RestrictedExpression::new_long;
    let boolean = RestrictedExpression::new_bool;
    let mut context: Vec<(String, RestrictedExpression)> = Vec::new();
    let mut entities = Vec::new();

    // The arguments: every value as text (`args`), integers also as numbers (`numbers`).
    let (args, numbers) = (reads.part("args"), reads.part("numbers"));
    if args.is_some() || numbers.is_some() {
        let mut arg_tags = HashMap::new();
        let mut num_tags = HashMap::new();
        if let serde_json::Value::Object(map) = facts.arguments {
            for (key, value) in map {
                if args.is_some_and(|p| p.wants(key)) {
                    let text = match value {
                        serde_json::Value::String(v) => v.clone(),
                        other => crate::action::canonical_json(other)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .map_err(|e| e.to_string())?,
                    };
                    arg_tags.insert(key.clone(), RestrictedExpression::new_string(text));
                }
                if numbers.is_some_and(|p| p.wants(key))
                    && let Some(n) = value.as_i64()
                {
                    num_tags.insert(key.clone(), long(n));
                }
            }
        }
        for (part, name, ty, tags) in [
            (args, "args", &t.arguments, arg_tags),
            (numbers, "numbers", &t.numbers, num_tags),
        ] {
            if part.is_some() {
                let id = uid(ty, "call");
                entities.push(
                    Entity::new_with_tags(id.clone(), HashMap::new(), HashSet::new(), tags)
                        .map_err(entity_error)?,
                );
                context.push((name.to_owned(), RestrictedExpression::new_entity_uid(id)));
            }
        }
    }

    // A record with the fields that are read.
    let record = |part: &Part, fields: Vec<(&str, RestrictedExpression)>| {
        RestrictedExpression::new_record(
            fields
                .into_iter()
                .filter(|(k, _)| part.wants(k))
                .map(|(k, v)| (k.to_owned(), v)),
        )
        .map_err(|e| e.to_string())
    };
    let day_ms = 86_400_000;
    let (guardrail_id, guardrail_mode) = match facts.guardrail {
        Some((id, mode)) => (id, mode.as_str()),
        None => ("", "none"),
    };
    let attrs: [(&str, &BuildAttr<'_>); 13] = [
        ("effect", &|_| Ok(s(facts.effect.as_str()))),
        ("cost_cents", &|_| Ok(long(facts.cost_cents))),
        ("spent_today_cents", &|_| Ok(long(facts.spent_today_cents))),
        ("agent_spent_today_cents", &|_| {
            Ok(long(facts.agent_spent_today_cents))
        }),
        ("limits", &|part| {
            let money = &settings.money;
            record(
                part,
                vec![
                    ("per_action_cents", long(money.per_action_cents)),
                    ("per_day_cents", long(money.per_day_cents)),
                    ("per_agent_day_cents", long(money.per_agent_day())),
                ],
            )
        }),
        ("session", &|part| {
            record(
                part,
                vec![
                    ("read_classes", strings(facts.session_read_classes)),
                    ("reads", long(facts.session_reads)),
                    ("has_session", boolean(facts.has_session)),
                ],
            )
        }),
        ("argument_classes", &|_| Ok(strings(facts.argument_classes))),
        ("escalate_classes", &|_| {
            Ok(strings(&settings.escalation.classes))
        }),
        ("guardrail", &|part| {
            record(
                part,
                vec![
                    ("covered", boolean(facts.guardrail.is_some())),
                    ("id", s(guardrail_id)),
                    ("mode", s(guardrail_mode)),
                ],
            )
        }),
        ("definition_changed", &|_| {
            Ok(boolean(facts.definition_changed))
        }),
        ("stated_reason", &|_| Ok(boolean(facts.stated_reason))),
        ("hour_utc", &|_| {
            Ok(long(facts.now.rem_euclid(day_ms) / 3_600_000))
        }),
        // 1970-01-01 was a Thursday; 0 = Monday.
        ("weekday", &|_| {
            Ok(long((facts.now.div_euclid(day_ms) + 3).rem_euclid(7)))
        }),
    ];
    for (name, build) in attrs {
        if let Some(part) = reads.part(name) {
            context.push((name.to_owned(), build(part)?));
        }
    }
    let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
    let request = Request::new(
        uid(&t.agent, facts.agent),
        uid(&t.action, facts.effect.as_str()),
        uid(&t.tool, &format!("{}/{}", facts.connection, facts.tool)),
        context,
        None,
    )
    .map_err(|e| e.to_string())?;
    let entities = match base {
        Some(base) if entities.is_empty() => Cow::Borrowed(base),
        Some(base) => Cow::Owned(
            base.clone()
                .add_entities(entities, None)
                .map_err(|e| e.to_string())?,
        ),
        None => Cow::Owned(
            Entities::empty()
                .add_entities(entities, None)
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok((request, entities))
}
