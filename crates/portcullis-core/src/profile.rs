//! Tool profiles: what an operator declares about a tool beyond its effect class — tags such
//! as `production`, the data classes it reads or carries, which argument states its dollar
//! impact, and an optional preview read that captures the target's state before a write.

use serde::{Deserialize, Serialize};

/// Operator-declared facts about one tool. Every field is optional; the empty profile is the
/// default for a tool nobody described.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolProfile {
    /// Free-form labels policies can test, e.g. `production`, `billing`, `security`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Data classes the tool's results carry (`customer`, `private`, `untrusted`, …). A read
    /// of such a tool marks the session; policies see what a session has read.
    #[serde(default)]
    pub data_classes: Vec<String>,
    /// The top-level argument that states the action's dollar impact, in cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_argument: Option<String>,
    /// A fixed declared cost per call in cents, used when there is no cost argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_cents: Option<i64>,
    /// A read that shows the target's current state, captured when the call is held and
    /// again just before it executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    /// How to put the target back: a write of the same connection whose arguments come from
    /// the before-state the preview captured. Lets an approver propose the inverse action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<Revert>,
    /// The arguments approvers should read first in a summary (a recipient, an amount).
    /// Every other argument is still shown after them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary_keys: Vec<String>,
}

/// The inverse of a write, built from a captured before-state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    /// A tool of the same connection.
    pub tool: String,
    /// Revert argument name → the field of the before-state's structured value it takes.
    pub arguments: std::collections::BTreeMap<String, String>,
}

/// Which read tool previews a write, and how the write's arguments map onto it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// A tool of the same connection.
    pub tool: String,
    /// Preview argument name → the write's top-level argument whose value it takes.
    #[serde(default)]
    pub arguments: std::collections::BTreeMap<String, String>,
}

impl ToolProfile {
    /// The dollar impact of a call in cents: the cost argument when declared and present (a
    /// non-negative integer), else the fixed cost, else zero. A declared cost argument that is
    /// present but not a non-negative integer is an error: the caller must not guess.
    pub fn cost_of(&self, arguments: &serde_json::Value) -> Result<i64, String> {
        if let Some(name) = &self.cost_argument
            && let Some(value) = arguments.get(name)
        {
            return value.as_i64().filter(|v| *v >= 0).ok_or_else(|| {
                format!("argument `{name}` must be a non-negative integer (cents)")
            });
        }
        Ok(self.cost_cents.unwrap_or(0).max(0))
    }

    /// The preview read's arguments for one write, or `None` when a mapped argument is
    /// missing (the preview cannot be taken).
    pub fn preview_arguments(&self, arguments: &serde_json::Value) -> Option<serde_json::Value> {
        let preview = self.preview.as_ref()?;
        let mut out = serde_json::Map::new();
        for (to, from) in &preview.arguments {
            out.insert(to.clone(), arguments.get(from)?.clone());
        }
        Some(serde_json::Value::Object(out))
    }
}

impl Revert {
    /// The inverse call's arguments from a before-state's structured value, or `None` when
    /// a mapped field is missing (nothing to restore from).
    pub fn arguments_from(&self, before: &serde_json::Value) -> Option<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (to, from) in &self.arguments {
            out.insert(to.clone(), before.get(from)?.clone());
        }
        Some(serde_json::Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cost_comes_from_the_declared_argument() {
        let p = ToolProfile {
            cost_argument: Some("amount_cents".into()),
            cost_cents: Some(5),
            ..Default::default()
        };
        assert_eq!(p.cost_of(&json!({"amount_cents": 1200})), Ok(1200));
        assert_eq!(p.cost_of(&json!({})), Ok(5));
        assert!(p.cost_of(&json!({"amount_cents": -1})).is_err());
        assert!(p.cost_of(&json!({"amount_cents": "12"})).is_err());
        assert!(p.cost_of(&json!({"amount_cents": 1.5})).is_err());
        assert_eq!(ToolProfile::default().cost_of(&json!({"x": 1})), Ok(0));
    }

    #[test]
    fn revert_arguments_come_from_the_before_state() {
        let revert = Revert {
            tool: "update_contact".into(),
            arguments: [("id", "id"), ("company", "company")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .into(),
        };
        assert_eq!(
            revert.arguments_from(&json!({"id": "c_2", "company": "Compiler Corp", "x": 1})),
            Some(json!({"id": "c_2", "company": "Compiler Corp"}))
        );
        assert_eq!(revert.arguments_from(&json!({"id": "c_2"})), None);
    }

    #[test]
    fn preview_arguments_map_or_give_up() {
        let p = ToolProfile {
            preview: Some(Preview {
                tool: "get_contact".into(),
                arguments: [("id".to_owned(), "contact_id".to_owned())].into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            p.preview_arguments(&json!({"contact_id": "c1", "x": 2})),
            Some(json!({"id": "c1"}))
        );
        assert_eq!(p.preview_arguments(&json!({"x": 2})), None);
    }
}
