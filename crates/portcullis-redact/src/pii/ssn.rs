//! US social security numbers: `AAA-GG-SSSS` or `AAA GG SSSS`, and a bare run of nine digits
//! only when "SSN" or "social security" appears shortly before it. The Social Security
//! Administration never issues area 000, 666 or 900–999, group 00 or serial 0000, nor the
//! numbers it has published as examples.

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::{ceil_boundary, number_isolated};

pub(crate) struct Ssn {
    regex: Regex,
}

/// How far before a bare nine-digit number the keyword may be.
const KEYWORD_WINDOW: usize = 40;
const KEYWORDS: [&str; 6] = ["ssn", "social security", "soc sec", "ss#", "ss #", "ss no"];
/// Numbers the SSA published in advertising and samples; not anyone's.
const PUBLISHED: [&str; 3] = ["078051120", "219099999", "457555462"];

impl Ssn {
    pub(crate) fn new() -> Ssn {
        Ssn {
            regex: Regex::new(r"[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}").expect("ssn regex"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for candidate in self.regex.find_iter(text) {
            let (start, end) = (candidate.start(), candidate.end());
            if !number_isolated(text, start, end) {
                continue;
            }
            let value = candidate.as_str();
            let separators: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_digit()).collect();
            let well_formed = match separators.as_slice() {
                [] => keyword_before(text, start),
                [a, b] => a == b && value.as_bytes()[3] == *a && value.as_bytes()[6] == *b,
                _ => false,
            };
            if well_formed && issuable(value) {
                out.push(Finding::new(Kind::UsSsn, start, end, Encoding::Plain));
            }
        }
    }
}

fn keyword_before(text: &str, start: usize) -> bool {
    let window =
        text[ceil_boundary(text, start.saturating_sub(KEYWORD_WINDOW))..start].to_ascii_lowercase();
    KEYWORDS.iter().any(|k| window.contains(k))
}

/// Area 001–665 or 667–899, group 01–99, serial 0001–9999, and not a published example.
fn issuable(value: &str) -> bool {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let area: u16 = digits[0..3].parse().unwrap_or(0);
    let group = &digits[3..5];
    let serial = &digits[5..9];
    area != 0
        && area != 666
        && area < 900
        && group != "00"
        && serial != "0000"
        && !PUBLISHED.contains(&digits.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn ssns(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Ssn::new().scan(text, &mut out);
        found(text, &out, Kind::UsSsn)
    }

    #[test]
    fn finds_valid_numbers() {
        assert_eq!(ssns("ssn 123-45-6789."), ["123-45-6789"]);
        assert_eq!(ssns("id: 536 22 1234"), ["536 22 1234"]);
        assert_eq!(ssns("SSN: 536221234"), ["536221234"]);
        assert_eq!(ssns("Social Security number 536221234"), ["536221234"]);
    }

    #[test]
    fn rejects_unissuable_and_unanchored_numbers() {
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
            "123-45 6789",
            "123456789",
            "order 536221234",
            "12-123-45-6789",
            "123-45-67890",
        ] {
            assert!(ssns(text).is_empty(), "{text}");
        }
    }
}
