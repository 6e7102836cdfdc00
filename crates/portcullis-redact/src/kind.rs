//! What was found: the `Kind` of a finding and the `Finding` itself, a kind and a byte span.
//!
//! INVARIANT: a `Finding` never carries the matched text. It holds the kind, the span and how
//! the text was encoded, nothing else, so no `Debug`, `Display` or serialised form of a finding
//! (or of anything built from findings, such as `Blocked`) can print the value.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

pub use crate::secret::rules::SecretRule;

/// The kind of sensitive text a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    UsSsn,
    PaymentCard,
    Iban,
    IpAddress,
    /// A provider credential, named by its rule.
    Secret(SecretRule),
    /// A JSON Web Token (three base64url parts, a JSON header naming `alg`).
    Jwt,
    /// A PEM private key block, `-----BEGIN … PRIVATE KEY-----` through its END line.
    PemPrivateKey,
    /// A high-entropy value given as a bearer token, token, key, secret or password.
    HighEntropyBearer,
}

impl Kind {
    /// The personal-data kinds, in the order they are reported.
    pub const PII: [Kind; 6] = [
        Kind::Email,
        Kind::Phone,
        Kind::UsSsn,
        Kind::PaymentCard,
        Kind::Iban,
        Kind::IpAddress,
    ];

    /// True for credentials (provider secrets, JWTs, private keys, bearer values).
    pub const fn is_secret(self) -> bool {
        matches!(
            self,
            Kind::Secret(_) | Kind::Jwt | Kind::PemPrivateKey | Kind::HighEntropyBearer
        )
    }

    /// The tag used in labels: `EMAIL`, `US_SSN`, `SECRET:github_pat`, `SECRET:jwt`.
    pub const fn tag(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::UsSsn => "US_SSN",
            Kind::PaymentCard => "PAYMENT_CARD",
            Kind::Iban => "IBAN",
            Kind::IpAddress => "IP_ADDRESS",
            Kind::Secret(rule) => rule.tag(),
            Kind::Jwt => "SECRET:jwt",
            Kind::PemPrivateKey => "SECRET:pem_private_key",
            Kind::HighEntropyBearer => "SECRET:high_entropy_bearer",
        }
    }

    /// Which finding wins where two overlap: lower first. Provider credentials are the most
    /// specific; a generic bearer value yields to them; personal data yields to credentials
    /// (a card-shaped run inside a key is part of the key).
    pub(crate) const fn precedence(self) -> u8 {
        match self {
            Kind::Secret(_) | Kind::Jwt | Kind::PemPrivateKey => 0,
            Kind::HighEntropyBearer => 1,
            Kind::PaymentCard | Kind::Iban | Kind::UsSsn | Kind::Email => 2,
            Kind::Phone | Kind::IpAddress => 3,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Email => f.write_str("email"),
            Kind::Phone => f.write_str("phone"),
            Kind::UsSsn => f.write_str("us_ssn"),
            Kind::PaymentCard => f.write_str("payment_card"),
            Kind::Iban => f.write_str("iban"),
            Kind::IpAddress => f.write_str("ip_address"),
            Kind::Secret(rule) => write!(f, "secret:{}", rule.id()),
            Kind::Jwt => f.write_str("secret:jwt"),
            Kind::PemPrivateKey => f.write_str("secret:pem_private_key"),
            Kind::HighEntropyBearer => f.write_str("secret:high_entropy_bearer"),
        }
    }
}

/// How the text of a finding was hidden: found as is, or found after decoding the run that
/// the span covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Plain,
    Base64,
    /// `%2F`-style percent-encoding.
    Url,
    /// JSON string escapes (`\u0073`, `\/`).
    JsonEscape,
}

/// One finding: its kind and the byte span of the scanned text it covers (always on char
/// boundaries). For a secret found inside an encoded run, the span is the whole run.
/// Serialisable for reports, but not deserialisable: only a scan makes findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    kind: Kind,
    start: usize,
    end: usize,
    encoding: Encoding,
}

impl Finding {
    pub(crate) const fn new(kind: Kind, start: usize, end: usize, encoding: Encoding) -> Finding {
        Finding {
            kind,
            start,
            end,
            encoding,
        }
    }

    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// Byte offset of the first byte.
    pub const fn start(&self) -> usize {
        self.start
    }

    /// Byte offset one past the last byte.
    pub const fn end(&self) -> usize {
        self.end
    }

    pub const fn span(&self) -> Range<usize> {
        self.start..self.end
    }

    pub const fn encoding(&self) -> Encoding {
        self.encoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_in_snake_case() {
        assert_eq!(serde_json::to_string(&Kind::UsSsn).unwrap(), "\"us_ssn\"");
        assert_eq!(
            serde_json::to_string(&Kind::Secret(SecretRule::StripeSecretKey)).unwrap(),
            "{\"secret\":\"stripe_secret_key\"}"
        );
        assert_eq!(
            serde_json::to_string(&Kind::PemPrivateKey).unwrap(),
            "\"pem_private_key\""
        );
    }

    #[test]
    fn secrets_are_secrets_and_pii_is_not() {
        assert!(Kind::Jwt.is_secret());
        assert!(Kind::Secret(SecretRule::GithubPat).is_secret());
        assert!(Kind::PII.iter().all(|k| !k.is_secret()));
        assert_eq!(
            Kind::Secret(SecretRule::AwsAccessKeyId).tag(),
            "SECRET:aws_access_key_id"
        );
    }
}
