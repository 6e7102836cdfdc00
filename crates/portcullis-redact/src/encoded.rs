//! Credentials hidden in encoded runs: base64 (standard or URL-safe), percent-encoding and
//! JSON string escapes. A run is decoded once, its decoded text is scanned for credentials
//! (not decoded again: depth 1), and a credential found inside is reported on the span of the
//! whole run in the original text, so masking hides the run.
//!
//! Decoded bytes are read as UTF-8 lossily: an invalid byte (one stray `%FF`, or a byte
//! appended before base64-encoding) must not hide a credential, and credentials are ASCII.
//!
//! The work is bounded: runs longer than `MAX_RUN_LEN` are not decoded, a run is decoded at
//! most once (the scanner keeps a cursor per encoding and skips keyword hits inside a run it
//! already handled), and decoded text is never decoded again. So the cost stays linear in the
//! input.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::kind::{Encoding, Finding};
use crate::secret::SecretScanner;
use crate::text::{ceil_boundary, floor_boundary};

/// The longest encoded run that is decoded.
pub(crate) const MAX_RUN_LEN: usize = 64 * 1024;
/// The shortest base64 run that is decoded (18 bytes of payload).
pub(crate) const MIN_BASE64_LEN: usize = 24;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);

/// Scans decoded text and reports the most specific credential in it on `start..end`.
fn report(
    scanner: &SecretScanner,
    decoded: &str,
    start: usize,
    end: usize,
    encoding: Encoding,
    out: &mut Vec<Finding>,
) {
    let mut inner = Vec::new();
    scanner.scan(decoded, false, &mut inner);
    if let Some(best) = inner
        .iter()
        .min_by_key(|f| (f.kind().precedence(), f.start()))
    {
        out.push(Finding::new(best.kind(), start, end, encoding));
    }
}

/// Base64 (standard and URL-safe) characters, as a table: this test runs on every byte of
/// the text.
const BASE64_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    table
};

fn is_base64_byte(b: u8) -> bool {
    BASE64_BYTES[usize::from(b)]
}

/// Finds maximal runs of base64 characters (with up to two `=` of padding) of at least
/// `MIN_BASE64_LEN` bytes, decodes those that decode to UTF-8 text and scans them.
pub(crate) fn base64_runs(scanner: &SecretScanner, text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut decoded = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !is_base64_byte(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && is_base64_byte(bytes[index]) {
            index += 1;
        }
        let body_end = index;
        while index < bytes.len() && index - body_end < 2 && bytes[index] == b'=' {
            index += 1;
        }
        let len = body_end - start;
        if !(MIN_BASE64_LEN..=MAX_RUN_LEN).contains(&len) || len % 4 == 1 {
            continue;
        }
        // Runs are ASCII, so their ends are char boundaries.
        let body = &text[start..body_end];
        let url_safe = body.contains(['-', '_']);
        if url_safe && body.contains(['+', '/']) {
            continue; // two alphabets mixed: not base64
        }
        // Words, hashes and UUIDs: runs of only letters, or only hex digits and dashes, do
        // not decode to text.
        if body.bytes().all(|b| b.is_ascii_alphabetic())
            || body.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            continue;
        }
        let engine = if url_safe { &URL_SAFE } else { &STANDARD };
        decoded.clear();
        if engine.decode_vec(body, &mut decoded).is_ok() && has_printable_stretch(&decoded) {
            report(
                scanner,
                &String::from_utf8_lossy(&decoded),
                start,
                index,
                Encoding::Base64,
                out,
            );
        }
    }
}

/// Every credential has at least this many printable ASCII characters in a row; decoded
/// bytes without such a stretch are not scanned.
const MIN_PRINTABLE_STRETCH: usize = 8;

fn has_printable_stretch(bytes: &[u8]) -> bool {
    let mut run = 0;
    for &b in bytes {
        run = if b.is_ascii_graphic() { run + 1 } else { 0 };
        if run >= MIN_PRINTABLE_STRETCH {
            return true;
        }
    }
    false
}

/// Characters that may appear in a percent-encoded run (a URL or a form body).
fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'%' | b'.'
                | b'_'
                | b'~'
                | b'+'
                | b'-'
                | b'!'
                | b'$'
                | b'&'
                | b'*'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'#'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Handles the percent-encoded run around the `%` at `at` (the run starts no earlier than
/// `cursor`). Returns where the run ends, the cursor for the next hit.
pub(crate) fn percent_run(
    scanner: &SecretScanner,
    text: &str,
    at: usize,
    cursor: usize,
    out: &mut Vec<Finding>,
) -> usize {
    let bytes = text.as_bytes();
    let is_escape = |i: usize| {
        i + 2 < bytes.len()
            && hex_value(bytes[i + 1]).is_some()
            && hex_value(bytes[i + 2]).is_some()
    };
    if !is_escape(at) {
        return at + 1;
    }
    let mut start = at;
    while start > cursor && is_url_byte(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < bytes.len() && is_url_byte(bytes[end]) {
        end += 1;
    }
    if end - start > MAX_RUN_LEN {
        return end;
    }
    let mut decoded = Vec::with_capacity(end - start);
    let mut index = start;
    while index < end {
        if bytes[index] == b'%' && index + 2 < end && is_escape(index) {
            decoded.push(
                hex_value(bytes[index + 1]).unwrap_or(0) * 16
                    + hex_value(bytes[index + 2]).unwrap_or(0),
            );
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    // Lossy: a stray invalid escape must not hide the rest of the run (credentials are ASCII).
    report(
        scanner,
        &String::from_utf8_lossy(&decoded),
        start,
        end,
        Encoding::Url,
        out,
    );
    end
}

/// Handles the JSON-escaped run around the `\u` or `\/` at `at`: the string content around it
/// up to whitespace or an unescaped quote. Returns where the run ends.
pub(crate) fn json_run(
    scanner: &SecretScanner,
    text: &str,
    at: usize,
    cursor: usize,
    out: &mut Vec<Finding>,
) -> usize {
    let bytes = text.as_bytes();
    let stops = |i: usize| {
        bytes[i].is_ascii_whitespace() || (bytes[i] == b'"' && !(i > 0 && bytes[i - 1] == b'\\'))
    };
    let mut start = at;
    while start > cursor && !stops(start - 1) && at - start < MAX_RUN_LEN {
        start -= 1;
    }
    let mut end = at;
    while end < bytes.len() && !stops(end) && end - at < MAX_RUN_LEN {
        end += 1;
    }
    // The length limits may stop inside a multi-byte character.
    let (start, end) = (ceil_boundary(text, start), floor_boundary(text, end));
    if start >= end {
        return end.max(at + 1);
    }
    let run = &text[start..end];
    let decoded = unescape_json(run);
    if decoded != run {
        report(scanner, &decoded, start, end, Encoding::JsonEscape, out);
    }
    end.max(at + 1)
}

/// Decodes JSON string escapes; anything that is not a valid escape is kept as it is.
pub(crate) fn unescape_json(run: &str) -> String {
    let mut decoded = String::with_capacity(run.len());
    let mut rest = run;
    while let Some(index) = rest.find('\\') {
        decoded.push_str(&rest[..index]);
        let escape = &rest[index..];
        let mut chars = escape[1..].chars();
        let (replacement, consumed) = match chars.next() {
            Some('u') => match hex4(&escape[1..]) {
                Some(high @ 0xD800..=0xDBFF) => match escape
                    .get(6..8)
                    .filter(|s| *s == "\\u")
                    .and_then(|_| hex4(&escape[7..]))
                {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code), 12)
                    }
                    _ => (None, 1),
                },
                Some(code) => (char::from_u32(code), 6),
                None => (None, 1),
            },
            Some('/') => (Some('/'), 2),
            Some('\\') => (Some('\\'), 2),
            Some('"') => (Some('"'), 2),
            Some('n') => (Some('\n'), 2),
            Some('t') => (Some('\t'), 2),
            Some('r') => (Some('\r'), 2),
            Some('b') => (Some('\u{8}'), 2),
            Some('f') => (Some('\u{c}'), 2),
            _ => (None, 1),
        };
        match replacement {
            Some(c) => decoded.push(c),
            None => decoded.push('\\'),
        }
        let consumed = if replacement.is_some() { consumed } else { 1 };
        rest = &escape[consumed..];
    }
    decoded.push_str(rest);
    decoded
}

/// The four hex digits after `u` in `u0073…`.
fn hex4(after_backslash: &str) -> Option<u32> {
    let digits = after_backslash.get(1..5)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_decode_including_surrogate_pairs() {
        assert_eq!(unescape_json(r"\u0073k_live\/x"), "sk_live/x");
        assert_eq!(unescape_json(r"\ud83d\ude00"), "😀");
        assert_eq!(unescape_json(r"\ud83d"), r"\ud83d");
        assert_eq!(unescape_json(r"a\qb\u12"), r"a\qb\u12");
        assert_eq!(unescape_json("\\"), "\\");
    }
}
