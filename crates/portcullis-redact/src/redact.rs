//! Turning findings into output: mask them with their kind (`[EMAIL]`), replace them with
//! pseudonyms that can be restored later (`[EMAIL_1]`), or refuse the text (`Blocked`).

use std::borrow::Cow;
use std::fmt;

use crate::kind::{Finding, Kind};
use crate::pseudonym::Pseudonyms;
use crate::redactor::Redactor;

/// What to do with what was found.
#[derive(Debug)]
pub enum Mode<'p> {
    /// Replace each finding with `[TAG]`: `[EMAIL]`, `[SECRET:aws_access_key_id]`.
    Mask,
    /// Replace each finding with a numbered label, `[EMAIL_1]`; the same value gets the same
    /// label within one `Pseudonyms`, which can restore the original text later.
    Pseudonymise(&'p mut Pseudonyms),
    /// Refuse the whole text if anything is found.
    Block,
}

/// What to do with the findings of one kind, for callers whose treatment depends on the kind
/// (see [`Redactor::redact_each`]): credentials masked while personal data passes, say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// Leave the text as it is.
    Keep,
    /// Replace it with `[TAG]`.
    Mask,
    /// Replace it with its label in the caller's `Pseudonyms` (`[EMAIL_1]`).
    Pseudonymise,
}

/// Redacted text and what was found in the input (spans into the input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redacted<'t> {
    /// Borrowed from the input when nothing was found.
    pub text: Cow<'t, str>,
    pub findings: Vec<Finding>,
}

/// A refusal in `Mode::Block`: how many findings of each kind the text held (never the values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    counts: Vec<(Kind, usize)>,
}

impl Blocked {
    /// (kind, count) pairs, ordered by kind.
    pub fn counts(&self) -> &[(Kind, usize)] {
        &self.counts
    }

    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blocked: ")?;
        for (index, (kind, count)) in self.counts.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{count} {kind}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Blocked {}

impl Redactor {
    /// Scans `text` and applies `mode` (for callers whose mode is configuration). Only
    /// `Mode::Block` returns `Err`, and only when something was found.
    pub fn redact<'t>(&self, text: &'t str, mode: Mode<'_>) -> Result<Redacted<'t>, Blocked> {
        match mode {
            Mode::Mask => Ok(self.mask(text)),
            Mode::Pseudonymise(pseudonyms) => Ok(self.pseudonymise(text, pseudonyms)),
            Mode::Block => self.check(text).map(|()| Redacted {
                text: Cow::Borrowed(text),
                findings: Vec::new(),
            }),
        }
    }

    /// Replaces each finding with `[TAG]`.
    pub fn mask<'t>(&self, text: &'t str) -> Redacted<'t> {
        let findings = self.scan(text);
        let text = replace(text, &findings, |finding| mask_label(finding.kind()));
        Redacted { text, findings }
    }

    /// Replaces each finding with its label in `pseudonyms` (`[EMAIL_1]`), adding new values.
    /// A value that no longer fits (the map is full) is masked instead, so it still does not
    /// leave.
    pub fn pseudonymise<'t>(&self, text: &'t str, pseudonyms: &mut Pseudonyms) -> Redacted<'t> {
        let findings = self.scan(text);
        let output = replace(text, &findings, |finding| {
            pseudonyms
                .label_for(finding.kind(), &text[finding.span()])
                .map_or_else(|| mask_label(finding.kind()), str::to_owned)
        });
        Redacted {
            text: output,
            findings,
        }
    }

    /// Scans `text` once and treats each finding as `treat` says for its kind. The findings
    /// returned are the ones replaced (those kept are left out). `Pseudonymise` without a
    /// `pseudonyms` map masks, so a value meant to be hidden never passes.
    pub fn redact_each<'t>(
        &self,
        text: &'t str,
        treat: impl Fn(Kind) -> Treatment,
        mut pseudonyms: Option<&mut Pseudonyms>,
    ) -> Redacted<'t> {
        let findings: Vec<Finding> = self
            .scan(text)
            .into_iter()
            .filter(|finding| treat(finding.kind()) != Treatment::Keep)
            .collect();
        let output = replace(text, &findings, |finding| {
            match (treat(finding.kind()), pseudonyms.as_deref_mut()) {
                (Treatment::Pseudonymise, Some(pseudonyms)) => pseudonyms
                    .label_for(finding.kind(), &text[finding.span()])
                    .map_or_else(|| mask_label(finding.kind()), str::to_owned),
                _ => mask_label(finding.kind()),
            }
        });
        Redacted {
            text: output,
            findings,
        }
    }

    /// `Err(Blocked)` when anything is found.
    pub fn check(&self, text: &str) -> Result<(), Blocked> {
        let findings = self.scan(text);
        if findings.is_empty() {
            Ok(())
        } else {
            Err(blocked(&findings))
        }
    }
}

/// `[EMAIL]`, `[SECRET:github_pat]`.
pub(crate) fn mask_label(kind: Kind) -> String {
    format!("[{}]", kind.tag())
}

fn replace<'t>(
    text: &'t str,
    findings: &[Finding],
    mut label: impl FnMut(&Finding) -> String,
) -> Cow<'t, str> {
    if findings.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    for finding in findings {
        output.push_str(&text[copied..finding.start()]);
        output.push_str(&label(finding));
        copied = finding.end();
    }
    output.push_str(&text[copied..]);
    Cow::Owned(output)
}

fn blocked(findings: &[Finding]) -> Blocked {
    let mut counts: Vec<(Kind, usize)> = Vec::new();
    let mut kinds: Vec<Kind> = findings.iter().map(Finding::kind).collect();
    kinds.sort_unstable();
    for kind in kinds {
        match counts.last_mut() {
            Some((last, count)) if *last == kind => *count += 1,
            _ => counts.push((kind, 1)),
        }
    }
    Blocked { counts }
}
