//! The Portcullis redactor: finds personal data and credentials in text, and masks,
//! pseudonymises or refuses it. Pure domain code (no IO, no async) so it can be benchmarked
//! and fuzzed alone.
//!
//! [`injection::spot`] looks for signs that tool output tries to instruct the model reading
//! it; its `Signal`s, like findings, carry a kind and a span only.
//!
//! Build a [`Redactor`] once from [`Rules`]; it compiles every regex and the keyword
//! automaton then. [`Redactor::scan`] returns sorted, non-overlapping [`Finding`]s (a
//! [`Kind`] and a byte span). [`Redactor::mask`], [`Redactor::pseudonymise`] and
//! [`Redactor::check`] (or [`Redactor::redact`] with a [`Mode`]) turn them into output;
//! [`Redactor::redact_each`] treats each kind as the caller says (a [`Treatment`]).
//!
//! ```
//! use portcullis_redact::{Kind, Pseudonyms, Redactor};
//!
//! let redactor = Redactor::default();
//! let key = ["sk_live_", "4eC39HqLyjWDarjtT1zdp7dc"].concat();
//! let text = format!("mail ada@example.com, key {key}");
//!
//! let masked = redactor.mask(&text);
//! assert_eq!(masked.text, "mail [EMAIL], key [SECRET:stripe_secret_key]");
//!
//! let mut session = Pseudonyms::new();
//! let sent = redactor.pseudonymise(&text, &mut session);
//! assert_eq!(sent.text, "mail [EMAIL_1], key [SECRET:stripe_secret_key_1]");
//! assert_eq!(session.restore("Wrote to [EMAIL_1]."), "Wrote to ada@example.com.");
//!
//! let blocked = redactor.check(&text).unwrap_err();
//! assert_eq!(blocked.to_string(), "blocked: 1 email, 1 secret:stripe_secret_key");
//!
//! // Findings carry a kind and a span, never the value.
//! let finding = masked.findings[1];
//! assert_eq!(finding.kind(), Kind::Secret(portcullis_redact::SecretRule::StripeSecretKey));
//! assert!(!format!("{finding:?}").contains(&key));
//! ```
//!
//! A finding cannot be made outside this crate, so every finding came from a scan:
//!
//! ```compile_fail
//! use portcullis_redact::{Encoding, Finding, Kind};
//! let forged = Finding { kind: Kind::Email, start: 0, end: 1, encoding: Encoding::Plain };
//! ```

mod encoded;
pub mod injection;
mod kind;
mod pii;
mod pseudonym;
mod redact;
mod redactor;
mod secret;
mod text;

pub use kind::{Encoding, Finding, Kind, SecretRule};
pub use pseudonym::{Pseudonyms, Restorer};
pub use redact::{Blocked, Mode, Redacted, Treatment};
pub use redactor::{Redactor, Rules};
