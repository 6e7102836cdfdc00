//! Plain-English sentences for Cedar policies, generated from their structure (Cedar's JSON
//! form), so a reviewer can read what a policy does without reading Cedar. Anything without
//! a phrase of its own is shown in brackets as written, never dropped.

use super::Kind;
use cedar_policy::Policy;
use serde_json::Value;

/// One sentence for one policy.
pub fn policy(policy: &Policy, kind: Kind) -> String {
    let Ok(json) = policy.to_json() else {
        return format!("[{policy}]");
    };
    let verb = match kind {
        Kind::Permit => "Allows",
        Kind::Deny => "Denies",
        Kind::Hold => "Holds for a person's approval",
    };
    let mut out = format!(
        "{verb} {} by {} on {}",
        action(&json["action"]),
        principal(&json["principal"]),
        resource(&json["resource"])
    );
    if let Some(conditions) = json["conditions"].as_array() {
        for condition in conditions {
            let word = if condition["kind"] == "unless" {
                "unless"
            } else {
                "when"
            };
            out.push_str(&format!(" {word} {}", expr(&condition["body"])));
        }
    }
    out.push('.');
    out
}

fn entity(value: &Value) -> String {
    let ty = value["type"].as_str().unwrap_or("?");
    let id = value["id"].as_str().unwrap_or("?");
    match ty.trim_start_matches("Portcullis::") {
        "Agent" => format!("agent `{id}`"),
        "Tenant" => format!("tenant `{id}`"),
        "Connection" => format!("connection `{id}`"),
        "Tool" => format!("tool `{id}`"),
        "Action" => format!("`{id}`"),
        other => format!("{other} `{id}`"),
    }
}

fn principal(scope: &Value) -> String {
    match scope["op"].as_str() {
        Some("==") => entity(&scope["entity"]),
        Some("in") => format!("any agent in {}", entity(&scope["entity"])),
        _ => "any agent".into(),
    }
}

fn action(scope: &Value) -> String {
    let name = |e: &Value| e["id"].as_str().unwrap_or("?").to_owned();
    match scope["op"].as_str() {
        Some("==") => format!("`{}` calls", name(&scope["entity"])),
        Some("in") => {
            let list: Vec<String> = match scope.get("entities").and_then(Value::as_array) {
                Some(list) => list.iter().map(name).collect(),
                None => vec![name(&scope["entity"])],
            };
            if list == ["effect"] {
                "world-changing calls".into()
            } else {
                format!(
                    "{} calls",
                    list.iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            }
        }
        _ => "any call".into(),
    }
}

fn resource(scope: &Value) -> String {
    match scope["op"].as_str() {
        Some("==") => entity(&scope["entity"]),
        Some("in") => format!("any tool of {}", entity(&scope["entity"])),
        _ => "any tool".into(),
    }
}

fn binary<'a>(value: &'a Value, op: &str) -> Option<(&'a Value, &'a Value)> {
    let inner = value.get(op)?;
    Some((inner.get("left")?, inner.get("right")?))
}

fn path(value: &Value) -> Option<String> {
    if let Some(var) = value.get("Var").and_then(Value::as_str) {
        return Some(var.to_owned());
    }
    let dot = value.get(".")?;
    Some(format!("{}.{}", path(&dot["left"])?, dot["attr"].as_str()?))
}

/// Friendly names for the attributes the schema defines.
fn noun(path: &str) -> String {
    match path {
        "context.cost_cents" => "the cost in cents".into(),
        "context.spent_today_cents" => "today's spend in cents".into(),
        "context.agent_spent_today_cents" => "the agent's spend today in cents".into(),
        "context.limits.per_agent_day_cents" => "the agent's daily cap".into(),
        "context.limits.per_action_cents" => "the per-action cap".into(),
        "context.limits.per_day_cents" => "the daily cap".into(),
        "context.session.read_classes" => "the data classes the session has read".into(),
        "context.session.reads" => "the number of reads in the session".into(),
        "context.argument_classes" => "the data classes found in the arguments".into(),
        "context.escalate_classes" => "the escalating data classes".into(),
        "context.guardrail.covered" => "a guardrail covers the call".into(),
        "context.definition_changed" => "the tool's definition changed".into(),
        "context.stated_reason" => "the agent stated a reason".into(),
        "context.hour_utc" => "the hour (UTC)".into(),
        "context.weekday" => "the weekday (0 = Monday)".into(),
        "context.effect" => "the effect class".into(),
        "resource.tags" => "the tool's tags".into(),
        "resource.data_classes" => "the tool's data classes".into(),
        "resource.name" => "the tool's name".into(),
        "resource.connection" => "the tool's connection".into(),
        "principal.name" => "the agent's name".into(),
        "principal.owner" => "the agent's owner".into(),
        other => format!("`{other}`"),
    }
}

fn expr(value: &Value) -> String {
    if let Some(v) = value.get("Value") {
        return literal(v);
    }
    if let Some(p) = path(value) {
        return noun(&p);
    }
    for (op, word) in [
        ("&&", "and"),
        ("||", "or"),
        ("==", "is"),
        ("!=", "is not"),
        ("<", "is under"),
        ("<=", "is at most"),
        (">", "is over"),
        (">=", "is at least"),
        ("+", "plus"),
        ("-", "minus"),
        ("*", "times"),
        ("contains", "includes"),
        ("containsAll", "includes all of"),
        ("containsAny", "includes any of"),
        ("in", "is in"),
    ] {
        if let Some((left, right)) = binary(value, op) {
            let text = format!("{} {word} {}", expr(left), expr(right));
            return if matches!(op, "&&" | "||") {
                format!("({text})")
            } else {
                text
            };
        }
    }
    if let Some((left, right)) = binary(value, "getTag") {
        return tag(left, right).unwrap_or_else(|| format!("{}[{}]", expr(left), expr(right)));
    }
    if let Some((left, right)) = binary(value, "hasTag") {
        return match tag(left, right) {
            Some(t) => format!("{t} is given"),
            None => format!("{} has {}", expr(left), expr(right)),
        };
    }
    if let Some(arg) = value.get("!").and_then(|v| v.get("arg")) {
        return format!("not {}", expr(arg));
    }
    if let Some(has) = value.get("has") {
        return format!(
            "{} has `{}`",
            expr(&has["left"]),
            has["attr"].as_str().unwrap_or("?")
        );
    }
    if let Some(like) = value.get("like") {
        return format!(
            "{} matches \"{}\"",
            expr(&like["left"]),
            pattern(&like["pattern"])
        );
    }
    if let Some(set) = value.get("Set").and_then(Value::as_array) {
        return format!("[{}]", set.iter().map(expr).collect::<Vec<_>>().join(", "));
    }
    if let Some(ite) = value.get("if-then-else") {
        return format!(
            "(if {} then {} else {})",
            expr(&ite["if"]),
            expr(&ite["then"]),
            expr(&ite["else"])
        );
    }
    format!("[{value}]")
}

/// `context.args.getTag("to")` reads as "argument `to`".
fn tag(left: &Value, right: &Value) -> Option<String> {
    let p = path(left)?;
    let key = right.get("Value")?.as_str()?;
    matches!(p.as_str(), "context.args" | "context.numbers").then(|| format!("argument `{key}`"))
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(o) if o.contains_key("__entity") => entity(&o["__entity"]),
        other => other.to_string(),
    }
}

fn pattern(value: &Value) -> String {
    value
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|p| match p {
                    Value::String(s) if s == "Wildcard" => "*".to_owned(),
                    other => other
                        .get("Literal")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
