//! Pseudonyms: a per-session map between found values and numbered labels (`[EMAIL_1]`), so a
//! model sees consistent placeholders and its answer can be turned back into the real values.
//!
//! The map holds the values in the clear while it lives, zeroizes them when dropped, and is
//! serialisable so the gateway can keep it encrypted (in its vault) between requests. It is
//! bounded: past `max_entries` new values are masked instead of labelled.
//!
//! Restoring replaces every label of this map found in the text. A label that an outsider
//! typed into the text (`[EMAIL_1]`) is restored too: the value goes back to the session it
//! came from, not anywhere else.

use std::collections::HashMap;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::kind::Kind;

/// The longest label: `[`, the longest tag, `_`, a count of up to ten digits, `]`.
const MAX_LABEL_LEN: usize = 80;

/// A session's map between values and their labels.
pub struct Pseudonyms {
    entries: Vec<Entry>,
    by_value: HashMap<String, usize>,
    by_label: HashMap<String, usize>,
    counters: HashMap<Kind, u32>,
    max_entries: usize,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    kind: Kind,
    label: String,
    value: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl Pseudonyms {
    /// The default bound on distinct values per map.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

    pub fn new() -> Pseudonyms {
        Pseudonyms::with_max_entries(Pseudonyms::DEFAULT_MAX_ENTRIES)
    }

    pub fn with_max_entries(max_entries: usize) -> Pseudonyms {
        Pseudonyms {
            entries: Vec::new(),
            by_value: HashMap::new(),
            by_label: HashMap::new(),
            counters: HashMap::new(),
            max_entries,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The label of `value`, adding it as the next label of `kind` if it is new; `None` when
    /// the map is full.
    pub(crate) fn label_for(&mut self, kind: Kind, value: &str) -> Option<&str> {
        if let Some(&index) = self.by_value.get(value) {
            return Some(&self.entries[index].label);
        }
        if self.entries.len() >= self.max_entries {
            return None;
        }
        let counter = self.counters.entry(kind).or_insert(0);
        *counter += 1;
        let label = format!("[{}_{}]", kind.tag(), counter);
        let index = self.entries.len();
        self.by_value.insert(value.to_owned(), index);
        self.by_label.insert(label.clone(), index);
        self.entries.push(Entry {
            kind,
            label,
            value: value.to_owned(),
        });
        Some(&self.entries[index].label)
    }

    /// `text` with every label of this map replaced by its value.
    pub fn restore(&self, text: &str) -> String {
        let mut output = String::with_capacity(text.len());
        self.restore_into(text, &mut output);
        output
    }

    /// A streaming restorer for text that arrives in chunks (a streamed model answer).
    pub fn restorer(&self) -> Restorer<'_> {
        Restorer {
            pseudonyms: self,
            pending: String::new(),
        }
    }

    /// The streaming restore without a borrow: `pending` is the caller's own holdback
    /// buffer (start empty), for a stream whose owner also owns this map. Returns the
    /// restored text that is ready; [`Pseudonyms::restore_rest`] ends the stream.
    pub fn restore_streamed(&self, pending: &mut String, chunk: &str) -> String {
        pending.push_str(chunk);
        let hold = partial_label_start(pending);
        let mut output = String::with_capacity(hold);
        self.restore_into(&pending[..hold], &mut output);
        pending.drain(..hold);
        output
    }

    /// Whatever a [`Pseudonyms::restore_streamed`] stream kept back, restored; `pending` is
    /// left empty.
    pub fn restore_rest(&self, pending: &mut String) -> String {
        let rest = self.restore(pending);
        pending.clear();
        rest
    }

    fn restore_into(&self, text: &str, output: &mut String) {
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            output.push_str(&rest[..open]);
            let candidate = &rest[open..];
            let label_len = candidate
                .bytes()
                .skip(1)
                .take(MAX_LABEL_LEN)
                .position(|b| !is_label_byte(b));
            let value = label_len
                .filter(|&len| candidate.as_bytes()[len + 1] == b']')
                .and_then(|len| {
                    self.by_label
                        .get(&candidate[..len + 2])
                        .map(|&index| (len + 2, index))
                });
            match value {
                Some((len, index)) => {
                    output.push_str(&self.entries[index].value);
                    rest = &candidate[len..];
                }
                None => {
                    output.push('[');
                    rest = &candidate[1..];
                }
            }
        }
        output.push_str(rest);
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

impl Default for Pseudonyms {
    fn default() -> Pseudonyms {
        Pseudonyms::new()
    }
}

impl Drop for Pseudonyms {
    fn drop(&mut self) {
        // The entries zeroize their own values; the index keys are copies of the values.
        for (mut value, _) in self.by_value.drain() {
            value.zeroize();
        }
    }
}

/// Never prints values or labels.
impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("entries", &self.entries.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

#[derive(Serialize)]
struct WireRef<'a> {
    max_entries: usize,
    entries: &'a [Entry],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    max_entries: usize,
    entries: Vec<Entry>,
}

impl Serialize for Pseudonyms {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            max_entries: self.max_entries,
            entries: &self.entries,
        }
        .serialize(serializer)
    }
}

/// Accepts only a map this module could have written: labels numbered in order per kind,
/// values distinct and non-empty, no more entries than the bound.
impl<'de> Deserialize<'de> for Pseudonyms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pseudonyms, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        if wire.entries.len() > wire.max_entries {
            return Err(D::Error::custom("more pseudonyms than `max_entries`"));
        }
        let mut pseudonyms = Pseudonyms::with_max_entries(wire.max_entries);
        for entry in wire.entries {
            let counter = pseudonyms.counters.entry(entry.kind).or_insert(0);
            *counter += 1;
            if entry.label != format!("[{}_{}]", entry.kind.tag(), counter) {
                return Err(D::Error::custom("pseudonym labels out of order"));
            }
            if entry.value.is_empty() || pseudonyms.by_value.contains_key(&entry.value) {
                return Err(D::Error::custom("empty or repeated pseudonymised value"));
            }
            let index = pseudonyms.entries.len();
            pseudonyms.by_value.insert(entry.value.clone(), index);
            pseudonyms.by_label.insert(entry.label.clone(), index);
            pseudonyms.entries.push(entry);
        }
        Ok(pseudonyms)
    }
}

/// Restores text that arrives in chunks. A chunk that ends inside what may be a label keeps
/// that tail back (at most `MAX_LABEL_LEN` bytes) until the next chunk shows whether it is one.
pub struct Restorer<'p> {
    pseudonyms: &'p Pseudonyms,
    pending: String,
}

impl Restorer<'_> {
    /// The restored text that is ready, given the next chunk.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pseudonyms.restore_streamed(&mut self.pending, chunk)
    }

    /// Whatever was kept back, restored: call it when the stream ends.
    pub fn finish(self) -> String {
        self.pseudonyms.restore(&self.pending)
    }
}

impl fmt::Debug for Restorer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer")
            .field("pending_bytes", &self.pending.len())
            .finish()
    }
}

/// Where a possibly unfinished label starts at the end of `text` (or `text.len()`).
fn partial_label_start(text: &str) -> usize {
    match text.rfind('[') {
        Some(open)
            if text.len() - open <= MAX_LABEL_LEN
                && text.as_bytes()[open + 1..]
                    .iter()
                    .all(|&b| is_label_byte(b)) =>
        {
            open
        }
        _ => text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::SecretRule;

    #[test]
    fn same_value_same_label_per_kind_numbering() {
        let mut map = Pseudonyms::new();
        assert_eq!(
            map.label_for(Kind::Email, "a@example.com"),
            Some("[EMAIL_1]")
        );
        assert_eq!(
            map.label_for(Kind::Email, "b@example.com"),
            Some("[EMAIL_2]")
        );
        assert_eq!(
            map.label_for(Kind::Email, "a@example.com"),
            Some("[EMAIL_1]")
        );
        assert_eq!(
            map.label_for(Kind::Secret(SecretRule::GithubPat), "t"),
            Some("[SECRET:github_pat_1]")
        );
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn full_map_refuses_new_values() {
        let mut map = Pseudonyms::with_max_entries(1);
        assert!(map.label_for(Kind::Phone, "1").is_some());
        assert!(map.label_for(Kind::Phone, "2").is_none());
        assert!(map.label_for(Kind::Phone, "1").is_some());
    }

    #[test]
    fn restore_replaces_only_known_labels() {
        let mut map = Pseudonyms::new();
        map.label_for(Kind::Email, "a@example.com");
        assert_eq!(
            map.restore("to [EMAIL_1], not [EMAIL_2] or [x"),
            "to a@example.com, not [EMAIL_2] or [x"
        );
        assert_eq!(map.restore("[[EMAIL_1]]"), "[a@example.com]");
    }

    #[test]
    fn debug_prints_no_values() {
        let mut map = Pseudonyms::new();
        map.label_for(Kind::Email, "secret@example.com");
        let debug = format!("{map:?} {:?}", map.restorer());
        assert!(
            !debug.contains("secret@example.com") && !debug.contains("EMAIL"),
            "{debug}"
        );
    }

    #[test]
    fn serialised_map_round_trips_and_rejects_forged_labels() {
        let mut map = Pseudonyms::with_max_entries(5);
        map.label_for(Kind::Email, "a@example.com");
        map.label_for(Kind::IpAddress, "10.0.0.1");
        let json = serde_json::to_string(&map).unwrap();
        let back: Pseudonyms = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.restore("[EMAIL_1] [IP_ADDRESS_1]"),
            "a@example.com 10.0.0.1"
        );
        let forged = json.replace("[EMAIL_1]", "[EMAIL_7]");
        assert!(serde_json::from_str::<Pseudonyms>(&forged).is_err());
    }
}
