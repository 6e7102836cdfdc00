//! Email addresses: a practical subset of RFC 5322's dot-atom form. The local part is letters,
//! digits and `_ % + -` in dot-separated atoms (at most 64 bytes); the domain is at least two
//! DNS labels (1–63 letters, digits and inner hyphens) ending in an alphabetic top-level domain
//! of two or more letters or a punycode one (`xn--…`). Quoted local parts, IP-literal domains
//! and Unicode addresses are not detected.

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::{byte_at, byte_before, ceil_boundary};

pub(crate) struct Email {
    regex: Regex,
}

impl Email {
    pub(crate) fn new() -> Email {
        let regex = Regex::new(
            r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
        )
        .expect("email regex");
        Email { regex }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for found in self.regex.find_iter(text) {
            if is_valid(text, found.start(), found.end()) {
                out.push(Finding::new(
                    Kind::Email,
                    found.start(),
                    found.end(),
                    Encoding::Plain,
                ));
            }
        }
    }
}

fn is_valid(text: &str, start: usize, end: usize) -> bool {
    let address = &text[start..end];
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    // A following letter, digit, `@` or hyphen means the address was cut out of something
    // longer that is not an address.
    if byte_at(text, end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'@' || b == b'-' || b == b'_')
    {
        return false;
    }
    if local.len() > 64 || domain.len() > 253 {
        return false;
    }
    // `scheme://user:password@host` is a URL's user information, not an address (the
    // password is a credential, found by the `url_credentials` rule).
    if byte_before(text, start) == Some(b':') {
        // Bounded look-back, so a text of many such candidates stays linear.
        let window = &text[ceil_boundary(text, start.saturating_sub(256))..start];
        let token = window
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default();
        if token.contains("://") {
            return false;
        }
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    let alphabetic = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic());
    let punycode = tld.len() > 4 && tld[..4].eq_ignore_ascii_case("xn--");
    alphabetic || punycode
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn emails(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Email::new().scan(text, &mut out);
        found(text, &out, Kind::Email)
    }

    #[test]
    fn finds_addresses() {
        assert_eq!(
            emails("mail ada.lovelace+news@example.co.uk now"),
            ["ada.lovelace+news@example.co.uk"]
        );
        assert_eq!(
            emails("<bob_1@mail-relay.example.org>."),
            ["bob_1@mail-relay.example.org"]
        );
        assert_eq!(
            emails("x@xn--80ak6aa92e.xn--p1ai"),
            ["x@xn--80ak6aa92e.xn--p1ai"]
        );
        assert_eq!(emails("é ünïcode: zoe@example.com ✓"), ["zoe@example.com"]);
    }

    #[test]
    fn rejects_near_misses() {
        assert!(emails("user@localhost").is_empty());
        assert!(emails("user@example.c").is_empty());
        assert!(emails("user@example.123").is_empty());
        assert!(emails("@example.com").is_empty());
        assert!(emails("user@-example.com").is_empty());
        assert!(emails("postgres://app:hunter2@db.example.com/app").is_empty());
        assert_eq!(emails("mailto:ada@example.com"), ["ada@example.com"]);
        assert!(emails(&format!("{}@example.com", "a".repeat(65))).is_empty());
    }
}
