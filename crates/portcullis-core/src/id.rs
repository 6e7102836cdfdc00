//! Typed, prefixed identifiers (`ten_…`, `agt_…`, `apr_…`): a tenant id can never be passed
//! where a connection id is expected, and a stored id says what it names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An id string did not have the expected prefix or shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id")]
pub struct IdParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id (a ULID, so ids sort by creation time).
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, ulid::Ulid::new().to_string().to_lowercase()))
            }

            /// Validate an id received from outside.
            pub fn parse(value: &str) -> Result<Self, IdParseError> {
                let ok = value
                    .strip_prefix(concat!($prefix, "_"))
                    .is_some_and(|rest| {
                        rest.len() == 26 && rest.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
                    });
                if ok {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdParseError { kind: stringify!($name), value: value.chars().take(64).collect() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

typed_id!(
    /// A tenant: the isolation unit.
    TenantId, "ten");
typed_id!(
    /// An agent principal inside one tenant.
    AgentId, "agt");
typed_id!(
    /// One agent token (its secret is never stored, only its hash).
    TokenId, "tok");
typed_id!(
    /// A human administrator or approver.
    AdminId, "adm");
typed_id!(
    /// An upstream connection registered for one tenant.
    ConnectionId, "con");
typed_id!(
    /// A durable approval request for one held action.
    ApprovalId, "apr");
typed_id!(
    /// A signed approval receipt.
    ReceiptId, "rcp");
typed_id!(
    /// An agent session on the MCP endpoint.
    SessionId, "ses");
typed_id!(
    /// A guardrail: a standing rule that lets one proven workflow run without asking.
    GuardrailId, "grd");
typed_id!(
    /// One secret in a tenant's vault (bound into its ciphertext with tenant and version).
    SecretId, "sec");
typed_id!(
    /// A tenant's webhook endpoint (a URL, its event filter and its signing secrets).
    WebhookEndpointId, "whe");
typed_id!(
    /// One webhook message: the `webhook-id` every delivery attempt of it carries.
    WebhookMessageId, "msg");
typed_id!(
    /// One message's delivery to one endpoint, with its attempts.
    DeliveryId, "dlv");
typed_id!(
    /// A signed share link (its token is a separate secret; only its hash is stored).
    ShareLinkId, "shl");
typed_id!(
    /// A source of inbound webhooks (a code host or SaaS tool) with its verification secret.
    InboundSourceId, "whi");

impl TenantId {
    /// The pseudo-tenant whose audit chain records events that belong to no tenant (for
    /// example a failed authentication naming no known tenant, or creating a tenant).
    pub fn system() -> Self {
        Self("ten_00000000000000000000000000".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_prefixes_do_not_mix() {
        let id = TenantId::generate();
        assert_eq!(TenantId::parse(id.as_str()).unwrap(), id);
        assert!(AgentId::parse(id.as_str()).is_err());
        assert!(TenantId::parse("ten_../../etc").is_err());
        assert!(TenantId::parse("").is_err());
    }
}
