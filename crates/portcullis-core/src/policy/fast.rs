//! A direct evaluator for the part of Cedar most policies use, reading the call's facts where
//! they already are.
//!
//! Why by hand: Cedar's interpreter (cedar-policy 4.14) spends thousands of instructions on
//! each condition — every intermediate value is allocated — and each call must first build
//! the request's context and the argument entities, which kept the decision p99 above its
//! 50 µs target at 1,000 policies. Here a validated policy's conditions are compiled once,
//! from Cedar's own JSON form, into a small tree that is evaluated without building anything.
//!
//! Cedar stays the reference. A condition outside this subset compiles to `None`, and a slice
//! holding any such policy is evaluated by Cedar. Debug builds evaluate every fast decision
//! with Cedar as well and panic on any difference in outcome or deciding policies, so every
//! test that reaches the engine checks this module; the differential tests in `mod.rs`
//! compare the two on generated policies and calls.
//!
//! The subset: literals, sets, `&&` `||` `!` `if`, `==` `!=` `<` `<=` `>` `>=` `+` `-` `*`,
//! `like`, `contains` `containsAll` `containsAny` `isEmpty`, `context.x` and `context.x.y`
//! (and `has` on them), `context.args`/`context.numbers` `hasTag`/`getTag` with a literal key,
//! the agent's and the tool's attributes, and `action == Portcullis::Action::"…"`. Semantics
//! follow Cedar's: left-to-right short-circuit, set equality, checked 64-bit arithmetic
//! (overflow is an error), a missing tag is an error, and a comparison of different types is
//! false.

use super::{CallFacts, PolicySettings, context_attr};
use std::borrow::Cow;

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Bool(bool),
    Long(i64),
    Str(String),
    Set(Vec<Expr>),
    Fact(Fact),
    HasTag(Tags, String),
    GetTag(Tags, String),
    /// `action == Portcullis::Action::"<name>"`.
    ActionIs(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsEmpty(Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Like(Box<Expr>, Vec<Pat>),
}

/// The argument entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tags {
    /// `context.args`: every top-level argument as text.
    Args,
    /// `context.numbers`: the integer arguments.
    Numbers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    And,
    Or,
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Contains,
    ContainsAll,
    ContainsAny,
}

/// One element of a `like` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pat {
    Any,
    Char(char),
}

/// The facts a condition can read, with their types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fact {
    Effect,
    Cost,
    Spent,
    AgentSpent,
    PerAction,
    PerDay,
    PerAgentDay,
    ReadClasses,
    Reads,
    HasSession,
    ArgumentClasses,
    EscalateClasses,
    Covered,
    GuardrailId,
    GuardrailMode,
    DefinitionChanged,
    StatedReason,
    Hour,
    Weekday,
    AgentName,
    AgentOwner,
    ToolName,
    ToolConnection,
    ToolEffect,
    ToolTags,
    ToolDataClasses,
}

/// The static type of an expression, for refusing what the evaluator does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Long,
    Str,
    Set,
}

impl Fact {
    fn ty(self) -> Ty {
        use Fact::*;
        match self {
            Effect | GuardrailId | GuardrailMode | AgentName | AgentOwner | ToolName
            | ToolConnection | ToolEffect => Ty::Str,
            Cost | Spent | AgentSpent | PerAction | PerDay | PerAgentDay | Reads | Hour
            | Weekday => Ty::Long,
            HasSession | Covered | DefinitionChanged | StatedReason => Ty::Bool,
            ReadClasses | ArgumentClasses | EscalateClasses | ToolTags | ToolDataClasses => Ty::Set,
        }
    }

    /// `context.<attr>` (no `field`) or `context.<attr>.<field>`.
    fn context(attr: &str, field: Option<&str>) -> Option<Self> {
        use Fact::*;
        Some(match (attr, field) {
            ("effect", None) => Effect,
            ("cost_cents", None) => Cost,
            ("spent_today_cents", None) => Spent,
            ("agent_spent_today_cents", None) => AgentSpent,
            ("limits", Some("per_action_cents")) => PerAction,
            ("limits", Some("per_day_cents")) => PerDay,
            ("limits", Some("per_agent_day_cents")) => PerAgentDay,
            ("session", Some("read_classes")) => ReadClasses,
            ("session", Some("reads")) => Reads,
            ("session", Some("has_session")) => HasSession,
            ("argument_classes", None) => ArgumentClasses,
            ("escalate_classes", None) => EscalateClasses,
            ("guardrail", Some("covered")) => Covered,
            ("guardrail", Some("id")) => GuardrailId,
            ("guardrail", Some("mode")) => GuardrailMode,
            ("definition_changed", None) => DefinitionChanged,
            ("stated_reason", None) => StatedReason,
            ("hour_utc", None) => Hour,
            ("weekday", None) => Weekday,
            _ => return None,
        })
    }
}

/// The records in the context and their fields (for `has`).
const RECORDS: [(&str, &[&str]); 3] = [
    (
        "limits",
        &["per_action_cents", "per_day_cents", "per_agent_day_cents"],
    ),
    ("session", &["read_classes", "reads", "has_session"]),
    ("guardrail", &["covered", "id", "mode"]),
];

/// The top-level context attributes (for `context has …`).
const CONTEXT: [&str; 15] = [
    "args",
    "numbers",
    "effect",
    "cost_cents",
    "spent_today_cents",
    "agent_spent_today_cents",
    "limits",
    "session",
    "argument_classes",
    "escalate_classes",
    "guardrail",
    "definition_changed",
    "stated_reason",
    "hour_utc",
    "weekday",
];

/// Compile a policy's `when`/`unless` clauses (Cedar's JSON form); `None` when something in
/// them is outside the subset.
pub(super) fn compile(conditions: &serde_json::Value) -> Option<Expr> {
    let mut out: Option<Expr> = None;
    for clause in conditions.as_array()? {
        let (body, ty) = expr(&clause["body"])?;
        if ty != Ty::Bool {
            return None;
        }
        let body = match clause["kind"].as_str()? {
            "when" => body,
            "unless" => Expr::Not(Box::new(body)),
            _ => return None,
        };
        out = Some(match out {
            None => body,
            Some(left) => Expr::Bin(Op::And, Box::new(left), Box::new(body)),
        });
    }
    Some(out.unwrap_or(Expr::Bool(true)))
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// An action uid literal's name.
fn action_literal(value: &serde_json::Value) -> Option<&str> {
    let entity = value.get("Value")?.get("__entity")?;
    (entity["type"] == "Portcullis::Action")
        .then(|| entity["id"].as_str())
        .flatten()
}

/// Deeper conditions are left to Cedar (which bounds its own recursion), so evaluation here
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 48;

fn expr(value: &serde_json::Value) -> Option<(Expr, Ty)> {
    expr_at(value, 0)
}

fn expr_at(value: &serde_json::Value, depth: usize) -> Option<(Expr, Ty)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let expr = |v: &serde_json::Value| expr_at(v, depth + 1);
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (op, body) = map.iter().next()?;
    let unary = |want: Ty, make: fn(Box<Expr>) -> Expr, out: Ty| -> Option<(Expr, Ty)> {
        let (arg, ty) = expr(&body["arg"])?;
        (ty == want).then(|| (make(boxed(arg)), out))
    };
    match op.as_str() {
        "Value" => match body {
            serde_json::Value::Bool(b) => Some((Expr::Bool(*b), Ty::Bool)),
            serde_json::Value::Number(n) => Some((Expr::Long(n.as_i64()?), Ty::Long)),
            serde_json::Value::String(s) => Some((Expr::Str(s.clone()), Ty::Str)),
            _ => None,
        },
        "Set" => {
            let items = body
                .as_array()?
                .iter()
                .map(|item| match expr(item)? {
                    (_, Ty::Set) => None,
                    (e, _) => Some(e),
                })
                .collect::<Option<Vec<_>>>()?;
            Some((Expr::Set(items), Ty::Set))
        }
        "." => {
            let attr = body["attr"].as_str()?;
            let left = &body["left"];
            let fact = if left == &serde_json::json!({ "Var": "context" }) {
                Fact::context(attr, None)?
            } else if let Some(outer) = context_attr(left) {
                Fact::context(outer, Some(attr))?
            } else if left == &serde_json::json!({ "Var": "principal" }) {
                match attr {
                    "name" => Fact::AgentName,
                    "owner" => Fact::AgentOwner,
                    _ => return None,
                }
            } else if left == &serde_json::json!({ "Var": "resource" }) {
                match attr {
                    "name" => Fact::ToolName,
                    "connection" => Fact::ToolConnection,
                    "effect" => Fact::ToolEffect,
                    "tags" => Fact::ToolTags,
                    "data_classes" => Fact::ToolDataClasses,
                    _ => return None,
                }
            } else {
                return None;
            };
            Some((Expr::Fact(fact), fact.ty()))
        }
        "has" => {
            let attr = body["attr"].as_str()?;
            let left = &body["left"];
            let present = if left == &serde_json::json!({ "Var": "context" }) {
                CONTEXT.contains(&attr)
            } else {
                let outer = context_attr(left)?;
                let (_, fields) = RECORDS.iter().find(|(name, _)| *name == outer)?;
                fields.contains(&attr)
            };
            Some((Expr::Bool(present), Ty::Bool))
        }
        "hasTag" | "getTag" => {
            let tags = match context_attr(&body["left"])? {
                "args" => Tags::Args,
                "numbers" => Tags::Numbers,
                _ => return None,
            };
            let key = body["right"].get("Value")?.as_str()?.to_owned();
            Some(if op == "hasTag" {
                (Expr::HasTag(tags, key), Ty::Bool)
            } else {
                let ty = if tags == Tags::Args {
                    Ty::Str
                } else {
                    Ty::Long
                };
                (Expr::GetTag(tags, key), ty)
            })
        }
        "!" => unary(Ty::Bool, Expr::Not, Ty::Bool),
        "neg" => unary(Ty::Long, Expr::Neg, Ty::Long),
        "isEmpty" => unary(Ty::Set, Expr::IsEmpty, Ty::Bool),
        "if-then-else" => {
            let (test, t) = expr(&body["if"])?;
            let (then, a) = expr(&body["then"])?;
            let (other, b) = expr(&body["else"])?;
            (t == Ty::Bool && a == b).then(|| (Expr::If(boxed(test), boxed(then), boxed(other)), a))
        }
        "like" => {
            let (left, ty) = expr(&body["left"])?;
            let mut pattern = Vec::new();
            for elem in body["pattern"].as_array()? {
                if elem == "Wildcard" {
                    pattern.push(Pat::Any);
                } else {
                    pattern.extend(elem.get("Literal")?.as_str()?.chars().map(Pat::Char));
                }
            }
            (ty == Ty::Str).then(|| (Expr::Like(boxed(left), pattern), Ty::Bool))
        }
        "==" | "!=" => {
            let action = match (
                action_literal(&body["left"]),
                action_literal(&body["right"]),
            ) {
                (None, Some(name)) if body["left"] == serde_json::json!({ "Var": "action" }) => {
                    Some(name)
                }
                (Some(name), None) if body["right"] == serde_json::json!({ "Var": "action" }) => {
                    Some(name)
                }
                _ => None,
            };
            let e = match action {
                Some(name) => Expr::ActionIs(name.to_owned()),
                None => {
                    let (left, _) = expr(&body["left"])?;
                    let (right, _) = expr(&body["right"])?;
                    Expr::Bin(Op::Eq, boxed(left), boxed(right))
                }
            };
            Some((if op == "!=" { Expr::Not(boxed(e)) } else { e }, Ty::Bool))
        }
        _ => {
            let (op, want, out) = match op.as_str() {
                "&&" => (Op::And, Ty::Bool, Ty::Bool),
                "||" => (Op::Or, Ty::Bool, Ty::Bool),
                "<" => (Op::Lt, Ty::Long, Ty::Bool),
                "<=" => (Op::Le, Ty::Long, Ty::Bool),
                ">" => (Op::Gt, Ty::Long, Ty::Bool),
                ">=" => (Op::Ge, Ty::Long, Ty::Bool),
                "+" => (Op::Add, Ty::Long, Ty::Long),
                "-" => (Op::Sub, Ty::Long, Ty::Long),
                "*" => (Op::Mul, Ty::Long, Ty::Long),
                "contains" => (Op::Contains, Ty::Set, Ty::Bool),
                "containsAll" => (Op::ContainsAll, Ty::Set, Ty::Bool),
                "containsAny" => (Op::ContainsAny, Ty::Set, Ty::Bool),
                _ => return None,
            };
            let (left, l) = expr(&body["left"])?;
            let (right, r) = expr(&body["right"])?;
            let right_ok = match op {
                Op::Contains => r != Ty::Set,
                _ => r == want,
            };
            (l == want && right_ok).then(|| (Expr::Bin(op, boxed(left), boxed(right)), out))
        }
    }
}

/// A value during evaluation, borrowing from the facts and the compiled condition.
#[derive(Debug, Clone)]
enum Value<'a> {
    Bool(bool),
    Long(i64),
    Str(Cow<'a, str>),
    /// A set of strings from the facts.
    Strs(&'a [String]),
    Set(Vec<Value<'a>>),
}

impl Value<'_> {
    fn is_set(&self) -> bool {
        matches!(self, Value::Strs(_) | Value::Set(_))
    }

    fn set_contains(&self, item: &Value<'_>) -> bool {
        match self {
            Value::Strs(items) => match item {
                Value::Str(s) => items.iter().any(|i| i == s),
                _ => false,
            },
            Value::Set(items) => items.iter().any(|i| equal(i, item)),
            _ => false,
        }
    }

    fn set_items(&self) -> Vec<Value<'_>> {
        match self {
            Value::Strs(items) => items
                .iter()
                .map(|s| Value::Str(Cow::Borrowed(s.as_str())))
                .collect(),
            Value::Set(items) => items.clone(),
            _ => Vec::new(),
        }
    }

    fn set_len_is_zero(&self) -> bool {
        match self {
            Value::Strs(items) => items.is_empty(),
            Value::Set(items) => items.is_empty(),
            _ => false,
        }
    }
}

/// Cedar's `==`: values of different types are unequal; sets compare as sets.
fn equal(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Long(x), Value::Long(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (x, y) if x.is_set() && y.is_set() => {
            x.set_items().iter().all(|i| y.set_contains(i))
                && y.set_items().iter().all(|i| x.set_contains(i))
        }
        _ => false,
    }
}

/// Cedar's `like`: `*` matches any run of characters (classic backtracking glob).
fn like(text: &str, pattern: &[Pat]) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Pat::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Pat::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|e| *e == Pat::Any)
}

/// What conditions are evaluated against: the call's facts, the tenant's settings, and the
/// text of the arguments that are not strings (prepared once per call, as the Cedar path does
/// for the tags it builds).
pub(super) struct Facts<'a> {
    pub call: &'a CallFacts<'a>,
    pub settings: &'a PolicySettings,
    pub texts: Vec<(&'a str, String)>,
}

type Result<T> = std::result::Result<T, String>;

fn arguments<'a>(
    call: &'a CallFacts<'_>,
) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
    call.arguments.as_object()
}

impl<'a> Facts<'a> {
    /// Prepare the argument texts the Cedar path would build: every non-string argument whose
    /// key some policy in the slice reads through `context.args`. An argument that cannot be
    /// written as canonical JSON makes the facts unusable, as there.
    pub fn new(
        call: &'a CallFacts<'a>,
        settings: &'a PolicySettings,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let mut texts = Vec::new();
        if let Some(map) = arguments(call) {
            for (key, value) in map {
                if !value.is_string() && wanted(key) {
                    let bytes = crate::action::canonical_json(value).map_err(|e| e.to_string())?;
                    texts.push((key.as_str(), String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
        Ok(Self {
            call,
            settings,
            texts,
        })
    }

    fn fact(&'a self, fact: Fact) -> Value<'a> {
        let c = self.call;
        let money = &self.settings.money;
        let day_ms = 86_400_000;
        let s = |v: &'a str| Value::Str(Cow::Borrowed(v));
        match fact {
            Fact::Effect | Fact::ToolEffect => s(c.effect.as_str()),
            Fact::Cost => Value::Long(c.cost_cents),
            Fact::Spent => Value::Long(c.spent_today_cents),
            Fact::AgentSpent => Value::Long(c.agent_spent_today_cents),
            Fact::PerAction => Value::Long(money.per_action_cents),
            Fact::PerDay => Value::Long(money.per_day_cents),
            Fact::PerAgentDay => Value::Long(money.per_agent_day()),
            Fact::ReadClasses => Value::Strs(c.session_read_classes),
            Fact::Reads => Value::Long(c.session_reads),
            Fact::HasSession => Value::Bool(c.has_session),
            Fact::ArgumentClasses => Value::Strs(c.argument_classes),
            Fact::EscalateClasses => Value::Strs(&self.settings.escalation.classes),
            Fact::Covered => Value::Bool(c.guardrail.is_some()),
            Fact::GuardrailId => s(c.guardrail.map_or("", |(id, _)| id)),
            Fact::GuardrailMode => s(c.guardrail.map_or("none", |(_, mode)| mode.as_str())),
            Fact::DefinitionChanged => Value::Bool(c.definition_changed),
            Fact::StatedReason => Value::Bool(c.stated_reason),
            Fact::Hour => Value::Long(c.now.rem_euclid(day_ms) / 3_600_000),
            // 1970-01-01 was a Thursday; 0 = Monday.
            Fact::Weekday => Value::Long((c.now.div_euclid(day_ms) + 3).rem_euclid(7)),
            Fact::AgentName => s(c.agent),
            Fact::AgentOwner => s(c.agent_owner.unwrap_or_default()),
            Fact::ToolName => s(c.tool),
            Fact::ToolConnection => s(c.connection),
            Fact::ToolTags => Value::Strs(&c.profile.tags),
            Fact::ToolDataClasses => Value::Strs(&c.profile.data_classes),
        }
    }

    fn tag(&'a self, tags: Tags, key: &str) -> Option<Value<'a>> {
        let value = arguments(self.call)?.get(key)?;
        match tags {
            Tags::Numbers => value.as_i64().map(Value::Long),
            Tags::Args => match value {
                serde_json::Value::String(s) => Some(Value::Str(Cow::Borrowed(s.as_str()))),
                _ => self
                    .texts
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, text)| Value::Str(Cow::Borrowed(text.as_str()))),
            },
        }
    }

    /// Evaluate one compiled condition: `Ok(true)` when it holds, `Err` when Cedar would
    /// report an evaluation error.
    pub fn holds(&'a self, condition: &'a Expr) -> Result<bool> {
        match self.eval(condition)? {
            Value::Bool(b) => Ok(b),
            _ => Err("a condition did not evaluate to a boolean".into()),
        }
    }

    fn long(&'a self, e: &'a Expr) -> Result<i64> {
        match self.eval(e)? {
            Value::Long(n) => Ok(n),
            _ => Err("expected a number".into()),
        }
    }

    fn eval(&'a self, e: &'a Expr) -> Result<Value<'a>> {
        Ok(match e {
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Long(n) => Value::Long(*n),
            Expr::Str(s) => Value::Str(Cow::Borrowed(s.as_str())),
            Expr::Set(items) => Value::Set(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Expr::Fact(fact) => self.fact(*fact),
            Expr::HasTag(tags, key) => Value::Bool(self.tag(*tags, key).is_some()),
            Expr::GetTag(tags, key) => self
                .tag(*tags, key)
                .ok_or_else(|| format!("the call has no argument `{key}`"))?,
            Expr::ActionIs(name) => Value::Bool(self.call.effect.as_str() == name),
            Expr::Not(arg) => Value::Bool(!self.holds(arg)?),
            Expr::Neg(arg) => Value::Long(self.long(arg)?.checked_neg().ok_or("integer overflow")?),
            Expr::IsEmpty(arg) => Value::Bool(self.eval(arg)?.set_len_is_zero()),
            Expr::If(test, then, other) => {
                if self.holds(test)? {
                    self.eval(then)?
                } else {
                    self.eval(other)?
                }
            }
            Expr::Like(text, pattern) => match self.eval(text)? {
                Value::Str(s) => Value::Bool(like(&s, pattern)),
                _ => return Err("`like` applies to strings".into()),
            },
            Expr::Bin(op, left, right) => self.binary(*op, left, right)?,
        })
    }

    fn binary(&'a self, op: Op, left: &'a Expr, right: &'a Expr) -> Result<Value<'a>> {
        let arith = |f: fn(i64, i64) -> Option<i64>| -> Result<Value<'a>> {
            let (a, b) = (self.long(left)?, self.long(right)?);
            f(a, b)
                .map(Value::Long)
                .ok_or_else(|| "integer overflow".into())
        };
        let compare = |f: fn(&i64, &i64) -> bool| -> Result<Value<'a>> {
            let (a, b) = (self.long(left)?, self.long(right)?);
            Ok(Value::Bool(f(&a, &b)))
        };
        Ok(match op {
            Op::And => Value::Bool(self.holds(left)? && self.holds(right)?),
            Op::Or => Value::Bool(self.holds(left)? || self.holds(right)?),
            Op::Eq => Value::Bool(equal(&self.eval(left)?, &self.eval(right)?)),
            Op::Lt => compare(i64::lt)?,
            Op::Le => compare(i64::le)?,
            Op::Gt => compare(i64::gt)?,
            Op::Ge => compare(i64::ge)?,
            Op::Add => arith(i64::checked_add)?,
            Op::Sub => arith(i64::checked_sub)?,
            Op::Mul => arith(i64::checked_mul)?,
            Op::Contains => {
                let set = self.eval(left)?;
                let item = self.eval(right)?;
                Value::Bool(set.set_contains(&item))
            }
            Op::ContainsAll | Op::ContainsAny => {
                let set = self.eval(left)?;
                let other = self.eval(right)?;
                let items = other.set_items();
                Value::Bool(if op == Op::ContainsAll {
                    items.iter().all(|i| set.set_contains(i))
                } else {
                    items.iter().any(|i| set.set_contains(i))
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_as_cedar_does() {
        let pat = |s: &str| -> Vec<Pat> {
            s.chars()
                .map(|c| if c == '*' { Pat::Any } else { Pat::Char(c) })
                .collect()
        };
        for (text, pattern, expected) in [
            ("", "", true),
            ("", "*", true),
            ("a", "", false),
            ("abc", "a*c", true),
            ("abc", "*b*", true),
            ("abc", "*d*", false),
            ("a@blocked1.test", "*@blocked1.test", true),
            ("a@blocked12.test", "*@blocked1.test", false),
            ("aaa", "a*a*a", true),
            ("aa", "a*a*a", false),
            ("ünïcødé", "ü*é", true),
            ("ab", "a**b", true),
        ] {
            assert_eq!(like(text, &pat(pattern)), expected, "{text} like {pattern}");
        }
    }
}
