//! International bank account numbers: a country code from the IBAN registry, two check
//! digits and the country's BBAN, exactly as long as the registry says for that country,
//! unbroken or in groups of four separated by single spaces, with the ISO 7064 mod-97 check
//! equal to 1. Upper case only, as IBANs are printed.

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::{byte_at, byte_before};

pub(crate) struct Iban {
    regex: Regex,
}

/// IBAN lengths by country (SWIFT IBAN registry): every SEPA country and the others that use
/// IBANs.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

impl Iban {
    pub(crate) fn new() -> Iban {
        Iban {
            regex: Regex::new(r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}").expect("iban regex"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let mut from = 0;
        while let Some(candidate) = self.regex.find_at(text, from) {
            // Candidates start with an ASCII letter, so `start + 1` is a char boundary.
            from = match parse(text, candidate.start()) {
                Some(end) => {
                    out.push(Finding::new(
                        Kind::Iban,
                        candidate.start(),
                        end,
                        Encoding::Plain,
                    ));
                    end
                }
                None => candidate.start() + 1,
            };
        }
    }
}

/// Reads an IBAN at `start`; returns its end.
fn parse(text: &str, start: usize) -> Option<usize> {
    if byte_before(text, start).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let bytes = text.as_bytes();
    let country = &text[start..start + 2];
    let length = LENGTHS.iter().find(|(c, _)| *c == country)?.1;
    let mut compact = Vec::with_capacity(length);
    let mut spaced = None;
    let mut index = start;
    while compact.len() < length {
        let b = *bytes.get(index)?;
        if b == b' ' {
            // Spaces only between groups of four, and then between all of them.
            let boundary = compact.len() % 4 == 0 && !compact.is_empty();
            if !boundary || spaced == Some(false) {
                return None;
            }
            spaced = Some(true);
            index += 1;
            continue;
        }
        if !(b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return None;
        }
        if compact.len() % 4 == 0 && compact.len() >= 4 && spaced.is_none() {
            spaced = Some(false);
        }
        if spaced == Some(true)
            && compact.len() % 4 == 0
            && compact.len() >= 4
            && bytes[index - 1] != b' '
        {
            return None;
        }
        compact.push(b);
        index += 1;
    }
    if byte_at(text, index).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    (mod97(&compact) == 1).then_some(index)
}

/// ISO 7064 MOD 97-10 over the rearranged IBAN (country and check digits moved to the end,
/// letters as 10–35).
fn mod97(iban: &[u8]) -> u32 {
    iban[4..].iter().chain(&iban[..4]).fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A' + 10)) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn ibans(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Iban::new().scan(text, &mut out);
        found(text, &out, Kind::Iban)
    }

    #[test]
    fn registry_is_sorted_and_complete_for_sepa() {
        assert!(LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        for sepa in [
            "AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB",
            "GI", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MT", "NL",
            "NO", "PL", "PT", "RO", "SE", "SI", "SK", "SM", "VA",
        ] {
            assert!(LENGTHS.iter().any(|(c, _)| *c == sepa), "{sepa}");
        }
    }

    #[test]
    fn finds_valid_ibans() {
        assert_eq!(
            ibans("pay DE89 3704 0044 0532 0130 00 EUR"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(ibans("GB82WEST12345698765432."), ["GB82WEST12345698765432"]);
        assert_eq!(
            ibans("FR14 2004 1010 0505 0001 3M02 606"),
            ["FR14 2004 1010 0505 0001 3M02 606"]
        );
        assert_eq!(
            ibans("NO9386011117947, BE68539007547034"),
            ["NO9386011117947", "BE68539007547034"]
        );
    }

    #[test]
    fn rejects_near_misses() {
        for text in [
            "DE88 3704 0044 0532 0130 00", // check digits
            "DE89 3704 0044 0532 0130 0",  // length
            "DE89370400440532013000 1",    // fine: the IBAN, then a number
            "XX89 3704 0044 0532 0130 00", // country
            "DE89 370 40044 0532 0130 00", // grouping
            "de89 3704 0044 0532 0130 00", // lower case
            "ADE89370400440532013000",     // glued
        ] {
            let found = ibans(text);
            assert!(
                found.is_empty() || text.ends_with(" 1"),
                "{text}: {found:?}"
            );
        }
    }
}
