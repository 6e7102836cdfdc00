//! Phone numbers in international format (`+CC …` with spaces, dots, dashes and parentheses,
//! `(0)` trunk prefixes) and North American (NANP) numbers (`(212) 555-0100`, `212-555-0100`).
//!
//! An international number's country calling code must be assigned by the ITU (codes are
//! prefix-free, so the code is the one assigned prefix of the digits), and its national number
//! must have a length that country uses (a table for the most common countries; 4–14 digits
//! elsewhere, 15 digits in all at most, as E.164 says). NANP numbers follow the NANP rules:
//! area code and exchange start with 2–9 and are not N11 service codes. A bare run of ten
//! digits is not reported: too many order numbers and timestamps look like that.

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::{alnum_isolated, byte_before, number_isolated};

pub(crate) struct Phone {
    international: Regex,
    nanp: Regex,
}

/// ITU-T E.164 assigned country calling codes (geographic and global services).
const COUNTRY_CODES: &[u16] = &[
    1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54,
    55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98, 211,
    212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253,
    254, 255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298,
    299, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377,
    378, 379, 380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674, 675,
    676, 677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 800, 808, 850,
    852, 853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888, 960, 961, 962, 963, 964, 965, 966,
    967, 968, 970, 971, 972, 973, 974, 975, 976, 977, 979, 992, 993, 994, 995, 996, 998,
];

/// National (significant) number lengths, without the trunk prefix, for common countries.
const NATIONAL_LENGTHS: &[(u16, u8, u8)] = &[
    (1, 10, 10),  // NANP
    (7, 10, 10),  // Russia, Kazakhstan
    (20, 8, 10),  // Egypt
    (27, 9, 9),   // South Africa
    (30, 10, 10), // Greece
    (31, 9, 9),   // Netherlands
    (32, 8, 9),   // Belgium
    (33, 9, 9),   // France
    (34, 9, 9),   // Spain
    (36, 8, 9),   // Hungary
    (39, 6, 11),  // Italy
    (40, 9, 9),   // Romania
    (41, 9, 9),   // Switzerland
    (43, 4, 13),  // Austria
    (44, 9, 10),  // United Kingdom
    (45, 8, 8),   // Denmark
    (46, 7, 10),  // Sweden
    (47, 8, 8),   // Norway
    (48, 9, 9),   // Poland
    (49, 6, 13),  // Germany
    (51, 8, 9),   // Peru
    (52, 10, 10), // Mexico
    (54, 10, 11), // Argentina
    (55, 10, 11), // Brazil
    (56, 9, 9),   // Chile
    (57, 10, 10), // Colombia
    (60, 8, 10),  // Malaysia
    (61, 9, 9),   // Australia
    (62, 8, 12),  // Indonesia
    (63, 8, 10),  // Philippines
    (64, 8, 10),  // New Zealand
    (65, 8, 8),   // Singapore
    (66, 8, 9),   // Thailand
    (81, 9, 10),  // Japan
    (82, 8, 10),  // South Korea
    (84, 9, 10),  // Vietnam
    (86, 9, 11),  // China
    (90, 10, 10), // Turkey
    (91, 10, 10), // India
    (92, 9, 10),  // Pakistan
    (234, 8, 10), // Nigeria
    (254, 9, 9),  // Kenya
    (351, 9, 9),  // Portugal
    (353, 7, 9),  // Ireland
    (358, 5, 12), // Finland
    (372, 7, 8),  // Estonia
    (380, 9, 9),  // Ukraine
    (420, 9, 9),  // Czechia
    (852, 8, 8),  // Hong Kong
    (886, 8, 9),  // Taiwan
    (966, 8, 9),  // Saudi Arabia
    (971, 8, 9),  // United Arab Emirates
    (972, 8, 9),  // Israel
];

impl Phone {
    pub(crate) fn new() -> Phone {
        Phone {
            international: Regex::new(r"\+[0-9][0-9 .()\-]{4,24}[0-9]").expect("phone regex"),
            nanp: Regex::new(
                r"(?:1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}",
            )
            .expect("nanp regex"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for candidate in self.international.find_iter(text) {
            if byte_before(text, candidate.start())
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+')
            {
                continue;
            }
            if let Some(end) = parse_international(text, candidate.start(), candidate.end()) {
                out.push(Finding::new(
                    Kind::Phone,
                    candidate.start(),
                    end,
                    Encoding::Plain,
                ));
            }
        }
        for candidate in self.nanp.find_iter(text) {
            let (start, end) = (candidate.start(), candidate.end());
            if byte_before(text, start) == Some(b'+') || !number_isolated(text, start, end) {
                continue;
            }
            if is_nanp(candidate.as_str()) {
                out.push(Finding::new(Kind::Phone, start, end, Encoding::Plain));
            }
        }
    }
}

/// A digit group of a candidate and whether it sits inside parentheses.
struct Group {
    end: usize,
    digits: String,
    parenthesised: bool,
}

/// Parses `+CC …` at `start`; returns the end of the longest prefix of digit groups that is a
/// valid number.
fn parse_international(text: &str, start: usize, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut groups: Vec<Group> = Vec::new();
    let mut index = start + 1;
    let mut open = false;
    let mut separators = 0usize;
    while index < end {
        let b = bytes[index];
        if b.is_ascii_digit() {
            let group_start = index;
            while index < end && bytes[index].is_ascii_digit() {
                index += 1;
            }
            groups.push(Group {
                end: index,
                digits: text[group_start..index].to_owned(),
                parenthesised: open,
            });
            separators = 0;
            continue;
        }
        match b {
            b'(' if !open => open = true,
            b')' if open => open = false,
            b' ' | b'.' | b'-' => {}
            _ => break, // a second or unbalanced parenthesis ends the number
        }
        separators += 1;
        if separators > 2 {
            break;
        }
        index += 1;
    }
    (1..=groups.len()).rev().find_map(|count| {
        let used = &groups[..count];
        // The number ends at a digit; an unclosed parenthesis means a cut-off candidate.
        if used.last().is_some_and(|g| g.parenthesised)
            && bytes.get(used[count - 1].end) != Some(&b')')
        {
            return None;
        }
        let mut digits = String::new();
        for (position, group) in used.iter().enumerate() {
            // `+44 (0)20 …`: the parenthesised 0 is the national trunk prefix, not dialled.
            if position == 1 && group.parenthesised && group.digits == "0" {
                continue;
            }
            digits.push_str(&group.digits);
        }
        let group_end = used[count - 1].end;
        let span_end = if used[count - 1].parenthesised {
            group_end + 1
        } else {
            group_end
        };
        (valid_international(&digits) && alnum_isolated(text, start, span_end)).then_some(span_end)
    })
}

/// True for a country calling code followed by a national number of a plausible length.
fn valid_international(digits: &str) -> bool {
    if !(7..=15).contains(&digits.len()) {
        return false;
    }
    let Some((code, national)) = (1..=3).find_map(|len| {
        let code: u16 = digits.get(..len)?.parse().ok()?;
        COUNTRY_CODES
            .binary_search(&code)
            .is_ok()
            .then(|| (code, &digits[len..]))
    }) else {
        return false;
    };
    let (min, max) = NATIONAL_LENGTHS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or((4, 14), |&(_, min, max)| {
            (usize::from(min), usize::from(max))
        });
    if !(min..=max).contains(&national.len()) {
        return false;
    }
    code != 1 || nanp_digits(national)
}

/// NPA and NXX start with 2–9 and are not N11 service codes.
fn nanp_digits(national: &str) -> bool {
    let d = national.as_bytes();
    let part_ok = |p: &[u8]| (b'2'..=b'9').contains(&p[0]) && !(p[1] == b'1' && p[2] == b'1');
    d.len() == 10 && part_ok(&d[0..3]) && part_ok(&d[3..6])
}

/// A NANP candidate: the digits pass the NANP rules and, without parentheses, both separators
/// are the same character.
fn is_nanp(candidate: &str) -> bool {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    let national = if digits.len() == 11 {
        &digits[1..]
    } else {
        digits.as_str()
    };
    if !nanp_digits(national) {
        return false;
    }
    if candidate.contains('(') {
        return true;
    }
    let body = if digits.len() == 11 {
        candidate[1..].trim_start_matches([' ', '.', '-'])
    } else {
        candidate
    };
    let separators: Vec<char> = body.chars().filter(|c| !c.is_ascii_digit()).collect();
    separators.len() == 2 && separators[0] == separators[1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn phones(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Phone::new().scan(text, &mut out);
        found(text, &out, Kind::Phone)
    }

    #[test]
    fn country_codes_are_sorted_for_binary_search() {
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        // Prefix-free: no assigned code is a prefix of another.
        for &a in COUNTRY_CODES {
            for &b in COUNTRY_CODES {
                let (a, b) = (a.to_string(), b.to_string());
                assert!(a == b || !b.starts_with(&a), "{a} is a prefix of {b}");
            }
        }
    }

    #[test]
    fn finds_international_numbers() {
        assert_eq!(phones("call +44 20 7946 0958 today"), ["+44 20 7946 0958"]);
        assert_eq!(phones("call +44 (0)20 7946 0958."), ["+44 (0)20 7946 0958"]);
        assert_eq!(phones("+1 (212) 555-0100"), ["+1 (212) 555-0100"]);
        assert_eq!(phones("+33.1.23.45.67.89"), ["+33.1.23.45.67.89"]);
        assert_eq!(phones("+49-30-1234567"), ["+49-30-1234567"]);
        assert_eq!(phones("tel:+12025550123"), ["+12025550123"]);
        assert_eq!(phones("+354 555 1234"), ["+354 555 1234"]);
        // Trailing digits that would make it too long are left out.
        assert_eq!(phones("+44 20 7946 0958 12"), ["+44 20 7946 0958"]);
    }

    #[test]
    fn finds_nanp_numbers() {
        assert_eq!(phones("(212) 555-0100"), ["(212) 555-0100"]);
        assert_eq!(
            phones("call 212-555-0100 or 212.555.0199"),
            ["212-555-0100", "212.555.0199"]
        );
        assert_eq!(phones("1-800-555-0100"), ["1-800-555-0100"]);
    }

    #[test]
    fn rejects_invalid_numbers() {
        assert!(phones("+999 123 456 789").is_empty(), "999 is not assigned");
        assert!(phones("+28 123 456 7890").is_empty(), "28 is not assigned");
        assert!(phones("+44 20 79").is_empty(), "too short");
        assert_eq!(
            phones("+33 1 23 45 67 89 01 23"),
            ["+33 1 23 45 67 89"],
            "the valid prefix"
        );
        assert!(
            phones("+1 (123) 456-7890").is_empty(),
            "area code starts with 1"
        );
        assert!(
            phones("+1 212 155 0100").is_empty(),
            "exchange starts with 1"
        );
        assert!(phones("(911) 555-0100").is_empty(), "N11 area code");
        assert!(phones("212-555.0100").is_empty(), "mixed separators");
        assert!(phones("2125550100").is_empty(), "bare digits");
        assert!(phones("order 12-212-555-0100-7").is_empty());
        assert!(phones("a+44 20 7946 0958").is_empty());
    }
}
