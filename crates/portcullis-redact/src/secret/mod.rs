//! Credential detection: provider rules, JWTs, PEM private keys and high-entropy bearer values,
//! plus (through `crate::encoded`) credentials hidden in base64, percent-encoding and JSON
//! escapes.
//!
//! One Aho-Corasick automaton holds every literal keyword of every rule (`ghp_`, `sk_live_`,
//! `-----BEGIN `, `bearer`, `%`, …) and runs once over the text. Each hit names the rule it
//! belongs to, and only that rule's regex runs, only on a window of bounded length at the hit.
//! So the cost is one automaton pass plus work proportional to the hits, and it stays flat as
//! rules are added: a rule without hits costs nothing. (`regex::RegexSet` would also be one
//! pass, but it reports only which patterns matched, not where; finding the positions means
//! running each matching regex over the whole text again.)

pub(crate) mod rules;

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use regex::Regex;

use crate::encoded;
use crate::kind::{Encoding, Finding, Kind};
use crate::text::{alnum_isolated, byte_before, char_classes, floor_boundary, shannon_entropy};
use rules::SecretRule;

/// The longest JWT we look at, and the longest PEM block.
const JWT_MAX_LEN: usize = 16 * 1024;
const PEM_MAX_LEN: usize = 64 * 1024;
/// Bearer-style values: at least this long, at most this long.
const BEARER_MIN_LEN: usize = 20;
const BEARER_MAX_LEN: usize = 1024;

/// What a prefilter keyword triggers.
#[derive(Clone, Copy)]
enum Target {
    Rule(usize),
    Jwt,
    PemBegin,
    PemEnd,
    /// `Bearer <value>`.
    Bearer,
    /// `token=<value>`, `api_key: <value>`, `password = "<value>"`.
    Assignment,
    Percent,
    JsonEscape,
}

struct CompiledRule {
    rule: SecretRule,
    regex: Regex,
    /// The credential is the named group `s` (context rules), not the whole match.
    has_group: bool,
    /// A pure prefix rule: its keyword starts the credential, so a keyword glued to a letter or
    /// digit on its left cannot start one.
    prefix_only: bool,
    back: usize,
    max_len: usize,
    min_entropy: f64,
    check: Option<fn(&str) -> bool>,
    after_letters: bool,
}

pub(crate) struct SecretScanner {
    prefilter: AhoCorasick,
    targets: Vec<Target>,
    rules: Vec<CompiledRule>,
    jwt: Regex,
    bearer: Regex,
    assignment: Regex,
    bearer_min_entropy: f64,
}

impl SecretScanner {
    pub(crate) fn new(bearer_min_entropy: f64) -> SecretScanner {
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut targets = Vec::new();
        let mut compiled = Vec::new();
        for (index, &rule) in SecretRule::ALL.iter().enumerate() {
            let spec = rule.spec();
            for anchor in spec.anchors {
                keywords.push(anchor);
                targets.push(Target::Rule(index));
            }
            // INVARIANT: rules without a look-behind window are anchored at the keyword, so a
            // failed hit costs only as many bytes as the regex needs to fail.
            let pattern = if spec.back == 0 {
                format!("^(?:{})", spec.regex)
            } else {
                spec.regex.to_owned()
            };
            let has_group = spec.regex.contains("(?P<s>");
            compiled.push(CompiledRule {
                rule,
                regex: Regex::new(&pattern).expect("secret rule regexes are tested to compile"),
                has_group,
                prefix_only: spec.back == 0 && !has_group,
                back: spec.back,
                max_len: spec.max_len,
                min_entropy: spec.min_entropy,
                check: spec.check,
                after_letters: spec.after_letters,
            });
        }
        let fixed: [(&'static str, Target); 15] = [
            ("eyJ", Target::Jwt),
            ("-----BEGIN ", Target::PemBegin),
            ("-----END ", Target::PemEnd),
            ("bearer", Target::Bearer),
            ("token", Target::Assignment),
            ("api_key", Target::Assignment),
            ("api-key", Target::Assignment),
            ("apikey", Target::Assignment),
            ("secret", Target::Assignment),
            ("password", Target::Assignment),
            ("passwd", Target::Assignment),
            ("access_key", Target::Assignment),
            ("%", Target::Percent),
            ("\\u", Target::JsonEscape),
            ("\\/", Target::JsonEscape),
        ];
        for (keyword, target) in fixed {
            keywords.push(keyword);
            targets.push(target);
        }
        let prefilter = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&keywords)
            .expect("the keyword automaton builds");
        // Values end at whitespace, quotes, separators, `=` and `:`.
        let value = r#"[^\s"'`<>,;:{}()\[\]\\&|=]"#;
        SecretScanner {
            prefilter,
            targets,
            rules: compiled,
            jwt: Regex::new(r"^eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
                .expect("jwt regex"),
            bearer: Regex::new(&format!(r"^(?i:bearer)[ \t]+(?P<s>{value}{{{BEARER_MIN_LEN},}}={{0,2}})"))
                .expect("bearer regex"),
            assignment: Regex::new(&format!(
                r#"^(?i:token|api[_-]?key|apikey|secret|password|passwd|access[_-]?key)[A-Za-z0-9_.-]{{0,32}}["']?\s{{0,4}}(?:=>|:=|[:=])\s{{0,4}}["']?(?P<s>{value}{{{BEARER_MIN_LEN},}}={{0,2}})"#
            ))
            .expect("assignment regex"),
            bearer_min_entropy,
        }
    }

    /// Appends every credential candidate in `text`. With `decode`, encoded runs are decoded
    /// once and their decoded text scanned too (without decoding again: depth 1).
    pub(crate) fn scan(&self, text: &str, decode: bool, out: &mut Vec<Finding>) {
        self.scan_recording(text, decode, out, &mut Vec::new());
    }

    /// `scan`, also recording the bearer-style values that were read but failed their checks
    /// (see `recheck_values`).
    pub(crate) fn scan_recording(
        &self,
        text: &str,
        decode: bool,
        out: &mut Vec<Finding>,
        rejected: &mut Vec<Range<usize>>,
    ) {
        let mut pem_begins = Vec::new();
        let mut pem_ends = Vec::new();
        // INVARIANT: a keyword hit inside the last match of its own rule (or inside an encoded
        // run already decoded) is skipped: that text was read already. Without this,
        // input made of one keyword repeated would make each hit read a whole window again.
        let mut rule_cursors = vec![0usize; self.rules.len()];
        let mut jwt_cursor = 0;
        let mut url_cursor = 0;
        let mut json_cursor = 0;
        for hit in self.prefilter.find_overlapping_iter(text) {
            let at = hit.start();
            match self.targets[hit.pattern().as_usize()] {
                Target::Rule(index) if at >= rule_cursors[index] => {
                    if let Some(end) = self.rule_at(&self.rules[index], text, at, out) {
                        rule_cursors[index] = end;
                    }
                }
                Target::Jwt if at >= jwt_cursor => {
                    if let Some(end) = self.jwt_at(text, at, out) {
                        jwt_cursor = end;
                    }
                }
                Target::PemBegin => pem_begins.push(at),
                Target::PemEnd => pem_ends.push(at),
                // No cursor here: values end at whitespace, `=` and `:`, so a keyword inside a
                // value fails its regex at once.
                Target::Bearer => self.bearer_at(&self.bearer, text, at, out, rejected),
                Target::Assignment => self.bearer_at(&self.assignment, text, at, out, rejected),
                Target::Percent if decode && at >= url_cursor => {
                    url_cursor = encoded::percent_run(self, text, at, url_cursor, out);
                }
                Target::JsonEscape if decode && at >= json_cursor => {
                    json_cursor = encoded::json_run(self, text, at, json_cursor, out);
                }
                _ => {}
            }
        }
        pem_blocks(text, &pem_begins, &pem_ends, out);
        if decode {
            encoded::base64_runs(self, text, out);
        }
    }

    /// Runs one rule at a keyword hit. Returns the end of the regex match, if any (whether
    /// or not the match passed the checks after it).
    fn rule_at(
        &self,
        rule: &CompiledRule,
        text: &str,
        at: usize,
        out: &mut Vec<Finding>,
    ) -> Option<usize> {
        if rule.prefix_only && byte_before(text, at).is_some_and(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        // Keyword hits are ASCII, so `at` is a char boundary; the window ends are rounded.
        let window_start = crate::text::ceil_boundary(text, at.saturating_sub(rule.back));
        let window_end = floor_boundary(text, at.saturating_add(rule.max_len));
        let window = &text[window_start..window_end];
        // The lazy DFA finds the match; only then do captures (a slower engine, whose cost
        // grows with the haystack) run, and only over the match itself.
        // A rule with a look-behind window takes the match around its keyword, not an
        // earlier one that also fits in the window (its own keyword was handled already).
        let keyword = at - window_start;
        let found = if rule.back == 0 {
            rule.regex.find(window)?
        } else {
            rule.regex
                .find_iter(window)
                .find(|m| m.start() <= keyword && keyword < m.end())?
        };
        let (start, end) = if rule.has_group {
            let matched = &window[..found.end()];
            let caps = rule.regex.captures_at(matched, found.start())?;
            let span = caps.name("s").or_else(|| caps.get(0))?;
            (window_start + span.start(), window_start + span.end())
        } else {
            (window_start + found.start(), window_start + found.end())
        };
        let isolated = if rule.after_letters {
            !byte_before(text, start).is_some_and(|b| b.is_ascii_digit())
                && !crate::text::byte_at(text, end).is_some_and(|b| b.is_ascii_alphanumeric())
        } else {
            alnum_isolated(text, start, end)
        };
        if !isolated {
            return Some(end);
        }
        let value = &text[start..end];
        if rule.min_entropy > 0.0 && shannon_entropy(value) < rule.min_entropy {
            return Some(end);
        }
        if rule.check.is_some_and(|check| !check(value)) {
            return Some(end);
        }
        out.push(Finding::new(
            Kind::Secret(rule.rule),
            start,
            end,
            Encoding::Plain,
        ));
        Some(end)
    }

    fn jwt_at(&self, text: &str, at: usize, out: &mut Vec<Finding>) -> Option<usize> {
        if byte_before(text, at).is_some_and(is_base64url_byte) {
            return None;
        }
        let window = &text[at..floor_boundary(text, at.saturating_add(JWT_MAX_LEN))];
        let found = self.jwt.find(window)?;
        let end = at + found.end();
        if crate::text::byte_at(text, end).is_some_and(|b| is_base64url_byte(b) || b == b'.') {
            return Some(end);
        }
        let header = found.as_str().split('.').next().unwrap_or_default();
        if jwt_header_names_alg(header) {
            out.push(Finding::new(Kind::Jwt, at, end, Encoding::Plain));
        }
        Some(end)
    }

    /// A bearer-style value at a keyword hit.
    fn bearer_at(
        &self,
        regex: &Regex,
        text: &str,
        at: usize,
        out: &mut Vec<Finding>,
        rejected: &mut Vec<Range<usize>>,
    ) {
        let window = &text[at..floor_boundary(text, at.saturating_add(BEARER_MAX_LEN + 64))];
        let Some(found) = regex.find(window) else {
            return;
        };
        let Some(value) = regex
            .captures(&window[..found.end()])
            .and_then(|caps| caps.name("s"))
        else {
            return;
        };
        let value = at + value.start()..at + value.end();
        match self.bearer_value(text, value.clone()) {
            Some(end) => out.push(Finding::new(
                Kind::HighEntropyBearer,
                value.start,
                end,
                Encoding::Plain,
            )),
            None => rejected.push(value),
        }
    }

    /// The end of the value when it reads as a credential: long enough, mixed classes,
    /// high entropy. Trailing sentence punctuation is not part of it.
    fn bearer_value(&self, text: &str, value: Range<usize>) -> Option<usize> {
        let trimmed = text[value.clone()].trim_end_matches(['.', '!', '?']);
        (trimmed.len() >= BEARER_MIN_LEN
            && char_classes(trimmed) >= 2
            && shannon_entropy(trimmed) >= self.bearer_min_entropy)
            .then_some(value.start + trimmed.len())
    }

    /// Re-reads rejected bearer-style values as they will read once what was found inside
    /// them is masked: a label (`[IP_ADDRESS]`) ends the value there, and the shorter value
    /// may pass where the whole did not. Reporting it now keeps masking from uncovering a
    /// credential in its own output. `starts` (of every candidate) must be sorted.
    pub(crate) fn recheck_values(
        &self,
        text: &str,
        rejected: &[Range<usize>],
        starts: &[usize],
        out: &mut Vec<Finding>,
    ) {
        for value in rejected {
            let next = starts.partition_point(|&start| start <= value.start);
            let Some(&cut) = starts.get(next).filter(|&&start| start < value.end) else {
                continue;
            };
            if let Some(end) = self.bearer_value(text, value.start..cut) {
                out.push(Finding::new(
                    Kind::HighEntropyBearer,
                    value.start,
                    end,
                    Encoding::Plain,
                ));
            }
        }
    }
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// True when a JWT's first part decodes to a JSON object with an `alg` member.
fn jwt_header_names_alg(header: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(json) = std::str::from_utf8(&bytes) else {
        return false;
    };
    let json = json.trim();
    if !(json.starts_with('{') && json.ends_with('}')) {
        return false;
    }
    json.match_indices("\"alg\"")
        .any(|(index, key)| json[index + key.len()..].trim_start().starts_with(':'))
}

/// Pairs each `-----BEGIN … PRIVATE KEY-----` with the next END line of the same label. A
/// block whose END is missing (a truncated key) runs to the end of its base64 body.
fn pem_blocks(text: &str, begins: &[usize], ends: &[usize], out: &mut Vec<Finding>) {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let bytes = text.as_bytes();
    let mut covered = 0;
    for &begin in begins {
        if begin < covered || !text[begin..].starts_with(BEGIN) {
            continue; // the prefilter matched ignoring case; PEM is upper case
        }
        let label_start = begin + BEGIN.len();
        let Some(label_len) =
            text[label_start..floor_boundary(text, label_start + 40)].find("-----")
        else {
            continue;
        };
        let label = &text[label_start..label_start + label_len];
        // RFC 7468 labels are upper-case words.
        let well_formed = label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
        if !well_formed || !(label.ends_with("PRIVATE KEY") || label == "PGP PRIVATE KEY BLOCK") {
            continue;
        }
        let body_start = label_start + label_len + 5;
        let next_end = ends.partition_point(|&e| e < body_start);
        let closed = ends.get(next_end).and_then(|&e| {
            let rest = &text[e..];
            let closes = e - begin <= PEM_MAX_LEN
                && rest.starts_with(END)
                && rest[END.len()..].starts_with(label)
                && rest[END.len() + label.len()..].starts_with("-----");
            closes.then_some(e + END.len() + label.len() + 5)
        });
        let end = closed.unwrap_or_else(|| {
            // Truncated: the body is base64 lines, possibly with JSON `\n` escapes between them.
            let limit = (begin + PEM_MAX_LEN).min(bytes.len());
            let mut end = body_start;
            while end < limit
                && (bytes[end].is_ascii_alphanumeric()
                    || matches!(
                        bytes[end],
                        b'+' | b'/' | b'=' | b'\\' | b'\r' | b'\n' | b' ' | b'\t' | b':' | b','
                    ))
            {
                end += 1;
            }
            // Trailing separators are not key material.
            while end > body_start
                && matches!(bytes[end - 1], b'\r' | b'\n' | b' ' | b'\t' | b'\\' | b'-')
            {
                end -= 1;
            }
            end
        });
        out.push(Finding::new(
            Kind::PemPrivateKey,
            begin,
            end,
            Encoding::Plain,
        ));
        covered = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        SecretScanner::new(3.2).scan(text, true, &mut out);
        out
    }

    #[test]
    fn jwt_needs_a_header_with_alg() {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = engine.encode(r#"{"sub":"1234567890","name":"Ada"}"#);
        let token = format!(
            "{header}.{payload}.{}",
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        let found = scan(&format!("auth: {token} end"));
        assert!(
            found
                .iter()
                .any(|f| f.kind() == Kind::Jwt && f.span() == (6..6 + token.len()))
        );

        let no_alg = format!("{}.{payload}.sig", engine.encode(r#"{"typ":"JWT"}"#));
        assert!(!scan(&no_alg).iter().any(|f| f.kind() == Kind::Jwt));
    }

    #[test]
    fn pem_block_runs_from_begin_to_its_end_line() {
        let key = [
            "-----BEGIN ",
            "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83x\n-----END RSA PRIVATE KEY-----",
        ]
        .concat();
        let text = format!("key:\n{key}\nafter");
        let found = scan(&text);
        assert!(
            found
                .iter()
                .any(|f| f.kind() == Kind::PemPrivateKey && text[f.span()] == key)
        );
        let public = [
            "-----BEGIN ",
            "PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
        ]
        .concat();
        assert!(
            !scan(&public)
                .iter()
                .any(|f| f.kind() == Kind::PemPrivateKey)
        );
    }

    #[test]
    fn pem_labels_are_upper_case_words() {
        // Found by fuzzing: masking the email shortened the label into the 40-byte window,
        // so the masked text held a "private key" the original did not.
        let text = "-----BEGIN ooo[EMAIL] QQ!Q PRIVATE KEY-----\nMIIE";
        assert!(scan(text).is_empty());
    }

    #[test]
    fn truncated_pem_block_still_covers_its_body() {
        let text = [
            "x -----BEGIN ",
            "PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nBKcwggSjAgEAAoIBAQC7",
        ]
        .concat();
        let found = scan(&text);
        let pem = found
            .iter()
            .find(|f| f.kind() == Kind::PemPrivateKey)
            .expect("a finding");
        assert_eq!(pem.end(), text.len());
    }

    #[test]
    fn bearer_values_need_entropy() {
        let token = ["q8Zr2LxT0pWv9Nb", "K3mHy7Qd"].concat();
        let found = scan(&format!("Authorization: Bearer {token}\n"));
        assert!(found.iter().any(|f| f.kind() == Kind::HighEntropyBearer));
        assert!(scan("Authorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaa\n").is_empty());
        // Found by fuzzing: a keyword at the end of a rejected value still counts.
        let glued = format!("Bearer {}Bearer {token}", "U".repeat(40));
        assert_eq!(scan(&glued).len(), 1);
        assert!(scan("password: this_is_a_placeholder_value").is_empty());
    }
}
