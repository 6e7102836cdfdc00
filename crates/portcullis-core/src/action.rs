//! Actions and tool definitions in canonical form (RFC 8785 JCS, see [`crate::jcs`]) with
//! their SHA-256 hashes.
//!
//! The action hash is what an approver signs off: any change to the tenant, connection, tool,
//! pinned tool definition or a single argument gives a different hash, so an approval can never
//! be stretched to cover a call it did not see.

use crate::id::{ConnectionId, TenantId};
use serde::{Deserialize, Serialize};

/// A canonicalisation failure (for example a number no IEEE 754 double holds exactly).
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise: {0}")]
pub struct CanonicalError(#[from] crate::jcs::JcsError);

/// Canonical JSON (RFC 8785) of any serialisable value.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    Ok(crate::jcs::to_vec(value)?)
}

/// SHA-256 (hex) of the canonical JSON of a value.
pub fn canonical_hash<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    Ok(crate::sha256_hex(&canonical_json(value)?))
}

/// SHA-256 (hex) of a value for the gateway's own comparisons — never signed, never checked by
/// anyone else — and total over any JSON (integers beyond a double included), so it never
/// fails on what an upstream or an admin sends. Uses the format-1 canonicaliser, which keeps
/// such hashes stable across the change to RFC 8785 proper.
pub fn internal_hash<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    crate::jcs::legacy::to_vec(value)
        .ok()
        .map(|bytes| crate::sha256_hex(&bytes))
}

/// One upstream tool's definition as pinned by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
    pub annotations: Option<serde_json::Value>,
    /// The display title (top level, MCP 2025-06-18 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The schema of the tool's structured result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// The upstream's `_meta` on the tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

impl ToolDefinition {
    /// The pin: hash of name, description, input schema and annotations in canonical form,
    /// and of the title, output schema and `_meta` when the upstream gives them (absent
    /// fields leave the hash of a definition without them unchanged).
    pub fn pin_hash(&self) -> Result<String, CanonicalError> {
        canonical_hash(self)
    }
}

/// One proposed tool call, exactly as it would reach the upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub tenant: TenantId,
    pub connection: ConnectionId,
    pub tool: String,
    pub tool_definition_hash: String,
    pub arguments: serde_json::Value,
}

impl Action {
    /// SHA-256 of the canonical action; the value receipts are bound to.
    pub fn hash(&self) -> Result<String, CanonicalError> {
        canonical_hash(self)
    }

    /// The action hash a format-1 receipt was bound to (see [`crate::jcs::legacy`]).
    pub fn legacy_hash(&self) -> Result<String, CanonicalError> {
        Ok(crate::sha256_hex(&crate::jcs::legacy::to_vec(self)?))
    }
}

/// An action with its canonical arguments and its hash, each computed once: the arguments are
/// canonicalised a single time and those bytes serve the action hash, the keyed audit hash
/// and anything else that needs them. Fields are private, so the hash always belongs to the
/// action beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct HashedAction {
    action: Action,
    arguments: Vec<u8>,
    hash: String,
}

impl HashedAction {
    /// Canonicalise the arguments once and hash the whole action from those bytes.
    ///
    /// RFC 8785 serialises an object's members sorted by key, each value canonical; the
    /// action's keys are fixed, so its canonical form is assembled around the canonical
    /// arguments instead of canonicalising them a second time (a property test checks it
    /// against [`canonical_json`] of the whole action).
    pub fn new(action: Action) -> Result<Self, CanonicalError> {
        let arguments = canonical_json(&action.arguments)?;
        let mut whole = Vec::with_capacity(arguments.len() + 200);
        whole.extend_from_slice(b"{\"arguments\":");
        whole.extend_from_slice(&arguments);
        for (key, value) in [
            ("connection", action.connection.as_str()),
            ("tenant", action.tenant.as_str()),
            ("tool", action.tool.as_str()),
            ("tool_definition_hash", action.tool_definition_hash.as_str()),
        ] {
            whole.extend_from_slice(b",\"");
            whole.extend_from_slice(key.as_bytes());
            whole.extend_from_slice(b"\":");
            whole.extend_from_slice(&canonical_json(value)?);
        }
        whole.push(b'}');
        let hash = crate::sha256_hex(&whole);
        Ok(Self {
            action,
            arguments,
            hash,
        })
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// SHA-256 of the canonical action (what receipts are bound to).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The arguments in canonical form (RFC 8785).
    pub fn canonical_arguments(&self) -> &[u8] {
        &self.arguments
    }

    pub fn into_action(self) -> Action {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn action(arguments: serde_json::Value) -> Action {
        Action {
            tenant: TenantId::parse("ten_01hzzzzzzzzzzzzzzzzzzzzzzz").unwrap(),
            connection: ConnectionId::parse("con_01hzzzzzzzzzzzzzzzzzzzzzzz").unwrap(),
            tool: "send_email".into(),
            tool_definition_hash: "abc".into(),
            arguments,
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash_but_values_do() {
        let a = action(json!({"to": "a@example.com", "amount": 10}));
        let b = action(serde_json::from_str(r#"{"amount":10,"to":"a@example.com"}"#).unwrap());
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        let c = action(json!({"to": "a@example.com", "amount": 10.01}));
        assert_ne!(a.hash().unwrap(), c.hash().unwrap());
    }

    proptest! {
        #[test]
        fn a_hashed_action_hashes_as_the_whole_canonical_action(
            tool in "[ -~\u{80}-\u{10ffff}]{0,12}",
            pin in "[a-f0-9\"\\\\]{0,8}",
            key in "[ -~\u{e9}\u{1F600}]{0,6}",
            text in "[ -~\u{0}-\u{1f}\u{7f}-\u{10ffff}]{0,16}",
            n in -(1i64 << 53)..=(1i64 << 53),
            f in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ) {
            let mut a = action(json!({ key: [text, n, f, {"z": null, "a": true}] }));
            a.tool = tool;
            a.tool_definition_hash = pin;
            let hashed = HashedAction::new(a.clone()).unwrap();
            prop_assert_eq!(hashed.hash(), a.hash().unwrap());
            prop_assert_eq!(hashed.canonical_arguments(), canonical_json(&a.arguments).unwrap());
        }

        #[test]
        fn any_changed_argument_changes_the_hash(key in "[a-z]{1,8}", v1 in -(1i64 << 53)..=(1i64 << 53), v2 in -(1i64 << 53)..=(1i64 << 53)) {
            prop_assume!(v1 != v2);
            let a = action(json!({ key.clone(): v1 }));
            let b = action(json!({ key: v2 }));
            prop_assert_ne!(a.hash().unwrap(), b.hash().unwrap());
        }

        #[test]
        fn canonical_form_is_stable_under_reparse(s in "[ -~]{0,40}", n in any::<i32>()) {
            let v = json!({"s": s, "n": n, "nested": {"b": [1, 2], "a": null}});
            let once = canonical_json(&v).unwrap();
            let reparsed: serde_json::Value = serde_json::from_slice(&once).unwrap();
            prop_assert_eq!(once, canonical_json(&reparsed).unwrap());
        }
    }
}
