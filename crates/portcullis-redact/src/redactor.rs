//! The `Redactor`: built once from `Rules` (every regex and the keyword automaton compiled
//! then), shared freely across threads, and asked to `scan` or `redact` text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kind::Finding;
use crate::pii::PiiScanner;
use crate::secret::SecretScanner;

/// Which detectors run. The default runs all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub email: bool,
    pub phone: bool,
    pub us_ssn: bool,
    pub payment_card: bool,
    pub iban: bool,
    pub ip_address: bool,
    /// Provider credentials, JWTs, PEM private keys and high-entropy bearer values.
    pub secrets: bool,
    /// Also look for credentials inside base64, percent-encoded and JSON-escaped runs.
    pub decode: bool,
    /// The Shannon entropy (bits per byte) a bearer-style value must reach to count as a
    /// credential. Random base62 of 20+ characters has about 4; English words about 3.
    pub bearer_min_entropy: f64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            email: true,
            phone: true,
            us_ssn: true,
            payment_card: true,
            iban: true,
            ip_address: true,
            secrets: true,
            decode: true,
            bearer_min_entropy: 3.2,
        }
    }
}

impl Rules {
    /// Credentials only (with decoding), no personal data.
    pub fn secrets_only() -> Rules {
        Rules {
            email: false,
            phone: false,
            us_ssn: false,
            payment_card: false,
            iban: false,
            ip_address: false,
            ..Rules::default()
        }
    }
}

/// Finds PII and credentials in text. Build it once; it is `Send + Sync` and cheap to share.
pub struct Redactor {
    rules: Rules,
    secrets: Option<SecretScanner>,
    pii: PiiScanner,
}

impl Redactor {
    pub fn new(rules: &Rules) -> Redactor {
        Redactor {
            rules: rules.clone(),
            secrets: rules
                .secrets
                .then(|| SecretScanner::new(rules.bearer_min_entropy)),
            pii: PiiScanner::new(rules),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The findings in `text`: sorted by position, never overlapping. Where candidates
    /// overlap, the more specific kind wins (credentials over personal data, a provider rule
    /// over a generic bearer value), then the longer span.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut candidates = Vec::new();
        if let Some(secrets) = &self.secrets {
            secrets.scan(text, self.rules.decode, &mut candidates);
        }
        self.pii.scan(text, &mut candidates);
        resolve(candidates)
    }
}

impl Default for Redactor {
    fn default() -> Redactor {
        Redactor::new(&Rules::default())
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Keeps the best of overlapping candidates: lowest precedence value, then longest, then
/// leftmost.
fn resolve(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by_key(|f| {
        (
            f.kind().precedence(),
            std::cmp::Reverse(f.end() - f.start()),
            f.start(),
        )
    });
    // INVARIANT: the taken spans are disjoint, so only the one starting last before a
    // candidate's end can overlap it.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut findings = Vec::new();
    for candidate in candidates {
        if candidate.start() >= candidate.end() {
            continue;
        }
        let overlaps = taken
            .range(..candidate.end())
            .next_back()
            .is_some_and(|(_, &end)| end > candidate.start());
        if !overlaps {
            taken.insert(candidate.start(), candidate.end());
            findings.push(candidate);
        }
    }
    findings.sort_by_key(Finding::start);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{Encoding, Kind, SecretRule};

    #[test]
    fn overlaps_go_to_the_more_specific_kind() {
        let secret = Finding::new(Kind::Secret(SecretRule::GithubPat), 10, 50, Encoding::Plain);
        let bearer = Finding::new(Kind::HighEntropyBearer, 10, 50, Encoding::Plain);
        let phone = Finding::new(Kind::Phone, 20, 30, Encoding::Plain);
        let email = Finding::new(Kind::Email, 60, 70, Encoding::Plain);
        let found = resolve(vec![phone, email, bearer, secret]);
        assert_eq!(found, [secret, email]);
    }

    #[test]
    fn redactor_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Redactor>();
    }
}
