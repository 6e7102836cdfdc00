//! The `Redactor`: built once from `Rules` (every regex and the keyword automaton compiled
//! then), shared freely across threads, and asked to `scan` or `redact` text.

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

    /// The findings in `text`: sorted by position, never overlapping. Candidates that overlap
    /// become one finding over all of them, of the most specific kind among them (credentials
    /// over personal data, a provider rule over a generic bearer value), then the longest.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut candidates = Vec::new();
        let mut rejected = Vec::new();
        if let Some(secrets) = &self.secrets {
            secrets.scan_recording(text, self.rules.decode, &mut candidates, &mut rejected);
        }
        self.pii.scan(text, &mut candidates);
        if let Some(secrets) = &self.secrets
            && !rejected.is_empty()
        {
            let mut starts: Vec<usize> = candidates.iter().map(Finding::start).collect();
            starts.sort_unstable();
            secrets.recheck_values(text, &rejected, &starts, &mut candidates);
        }
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

/// Turns candidates into findings: overlapping candidates become one finding that covers all
/// of them (so no byte any detector flagged is left out), of the kind of the best of them:
/// lowest precedence value, then longest, then leftmost.
fn resolve(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.retain(|f| f.start() < f.end());
    candidates.sort_by_key(|f| (f.start(), std::cmp::Reverse(f.end())));
    let better = |a: &Finding, b: &Finding| {
        (
            a.kind().precedence(),
            std::cmp::Reverse(a.end() - a.start()),
            a.start(),
        ) < (
            b.kind().precedence(),
            std::cmp::Reverse(b.end() - b.start()),
            b.start(),
        )
    };
    let mut findings: Vec<Finding> = Vec::with_capacity(candidates.len());
    // The current group: its best candidate and the end of the union so far.
    let mut group: Option<(Finding, usize, usize)> = None;
    for candidate in candidates {
        group = match group {
            Some((best, start, end)) if candidate.start() < end => {
                let best = if better(&candidate, &best) {
                    candidate
                } else {
                    best
                };
                Some((best, start, end.max(candidate.end())))
            }
            Some((best, start, end)) => {
                findings.push(Finding::new(best.kind(), start, end, best.encoding()));
                Some((candidate, candidate.start(), candidate.end()))
            }
            None => Some((candidate, candidate.start(), candidate.end())),
        };
    }
    if let Some((best, start, end)) = group {
        findings.push(Finding::new(best.kind(), start, end, best.encoding()));
    }
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
    fn partly_overlapping_candidates_are_covered_whole() {
        let jwt = Finding::new(Kind::Jwt, 0, 50, Encoding::Plain);
        let bearer = Finding::new(Kind::HighEntropyBearer, 40, 90, Encoding::Plain);
        let email = Finding::new(Kind::Email, 85, 100, Encoding::Plain);
        let ip = Finding::new(Kind::IpAddress, 100, 110, Encoding::Plain);
        let found = resolve(vec![ip, email, bearer, jwt]);
        assert_eq!(
            found,
            [
                Finding::new(Kind::Jwt, 0, 100, Encoding::Plain),
                Finding::new(Kind::IpAddress, 100, 110, Encoding::Plain)
            ]
        );
    }

    #[test]
    fn redactor_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Redactor>();
    }
}
