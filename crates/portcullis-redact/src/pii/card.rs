//! Payment card numbers: 12–19 digits, unbroken or in groups separated by one kind of
//! separator (space or dash) in the layouts cards are printed in (fours with a shorter last
//! group; 4-6-5 and 4-6-4 for American Express and Diners), with a valid Luhn check digit and
//! an issuer prefix whose card length fits: Visa 4, Mastercard 51–55 and 2221–2720, American
//! Express 34/37, Discover 6011/644–649/65, JCB 3528–3589, Diners Club 300–305/36/38/39,
//! UnionPay 62 and Maestro.

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::number_isolated;

pub(crate) struct Card {
    regex: Regex,
}

/// Layouts besides "fours with a shorter last group".
const LAYOUTS: [&[usize]; 2] = [&[4, 6, 5], &[4, 6, 4]];

impl Card {
    pub(crate) fn new() -> Card {
        Card {
            regex: Regex::new(r"[0-9](?:[ -]?[0-9]){11,}").expect("card regex"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for run in self.regex.find_iter(text) {
            scan_run(text, run.start(), run.end(), out);
        }
    }
}

/// Tries every window of consecutive digit groups of the run, leftmost first and longest
/// first, and reports the card numbers among them.
fn scan_run(text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    // (start, end) of each digit group.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut index = start;
    while index < end {
        let group_start = index;
        while index < end && bytes[index].is_ascii_digit() {
            index += 1;
        }
        groups.push((group_start, index));
        index += 1; // the separator
    }
    let mut first = 0;
    while first < groups.len() {
        let mut found = None;
        let mut digits = 0;
        let mut last = first;
        let mut windows = Vec::new();
        while last < groups.len() && last - first < 6 {
            digits += groups[last].1 - groups[last].0;
            if digits > 19 {
                break;
            }
            windows.push(last);
            last += 1;
        }
        for &last in windows.iter().rev() {
            let (span_start, span_end) = (groups[first].0, groups[last].1);
            if is_card(text, &groups[first..=last]) && number_isolated(text, span_start, span_end) {
                found = Some(last);
                out.push(Finding::new(
                    Kind::PaymentCard,
                    span_start,
                    span_end,
                    Encoding::Plain,
                ));
                break;
            }
        }
        first = found.map_or(first + 1, |last| last + 1);
    }
}

fn is_card(text: &str, groups: &[(usize, usize)]) -> bool {
    let total: usize = groups.iter().map(|(s, e)| e - s).sum();
    if !(12..=19).contains(&total) {
        return false;
    }
    let sizes: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    if groups.len() > 1 {
        let separators: Vec<u8> = groups.windows(2).map(|w| text.as_bytes()[w[0].1]).collect();
        if separators.iter().any(|&s| s != separators[0]) {
            return false;
        }
        let fours = sizes[..sizes.len() - 1].iter().all(|&s| s == 4)
            && (1..=4).contains(&sizes[sizes.len() - 1]);
        if !fours && !LAYOUTS.contains(&sizes.as_slice()) {
            return false;
        }
    }
    let digits: Vec<u8> = groups
        .iter()
        .flat_map(|&(s, e)| text.as_bytes()[s..e].iter().map(|b| b - b'0'))
        .collect();
    luhn(&digits) && issuer_fits(&digits)
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The issuer named by the leading digits issues cards of this length.
fn issuer_fits(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let len = digits.len();
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover =
        (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners = ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39))
        && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let maestro = matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763)
        && (12..=19).contains(&len);
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn cards(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Card::new().scan(text, &mut out);
        found(text, &out, Kind::PaymentCard)
    }

    #[test]
    fn finds_issuer_test_numbers() {
        for number in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5555 5555 5555 4444",
            "2223 0031 2200 3222",
            "3782 822463 10005",
            "6011 1111 1111 1117",
            "3530 1113 3330 0000",
            "3056 930902 5904",
            "6200 0000 0000 0005",
            "4222222222222",
        ] {
            assert_eq!(cards(&format!("card: {number}.")), [number], "{number}");
        }
    }

    #[test]
    fn finds_a_card_among_other_numbers() {
        assert_eq!(
            cards("qty 12 4111 1111 1111 1111 2 items"),
            ["4111 1111 1111 1111"]
        );
    }

    #[test]
    fn rejects_near_misses() {
        for text in [
            "4111 1111 1111 1112",  // Luhn
            "4111-1111 1111-1111",  // mixed separators
            "41 1111 1111 1111 11", // layout
            "1234 5678 9012 3456",  // no issuer starts with 1
            "3782 822463 1000",     // Amex length
            "9111 1111 1111 1111",  // issuer
            "ID41111111111111111X", // glued
            "4111111111111111-12",  // joined to another number
        ] {
            assert!(cards(text).is_empty(), "{text}");
        }
    }
}
