//! The personal-data kinds through the public API: well-known valid values are found with
//! their exact spans, well-known near misses are not.

use portcullis_redact::{Kind, Redactor, Rules};

fn found(text: &str, kind: Kind) -> Vec<String> {
    Redactor::default()
        .scan(text)
        .iter()
        .filter(|f| f.kind() == kind)
        .map(|f| text[f.span()].to_owned())
        .collect()
}

fn check(kind: Kind, positives: &[&str], negatives: &[&str]) {
    for value in positives {
        let text = format!("before «{value}» after");
        assert_eq!(found(&text, kind), [*value], "{kind} should find {value}");
    }
    for value in negatives {
        let text = format!("before {value} after");
        assert!(
            found(&text, kind).is_empty(),
            "{kind} should not find {value}"
        );
    }
}

#[test]
fn emails() {
    check(
        Kind::Email,
        &[
            "ada@example.com",
            "first.last+tag@sub.example.co.uk",
            "x_y-z%1@example.museum",
        ],
        &[
            "ada@localhost",
            "ada@example",
            "ada@example.c0m",
            "ada.@",
            "@example.com",
            "ada@@example.com",
        ],
    );
}

#[test]
fn phones() {
    check(
        Kind::Phone,
        &[
            "+44 20 7946 0958",
            "+1 (415) 555-0123",
            "(212) 555-0100",
            "+81 3-1234-5678",
            "+49 (0)30 1234567",
            "+61 412 345 678",
        ],
        &[
            "+999 1234 5678",
            "+28 1234 5678",
            "+44 12",
            "(123) 456-7890",
            "+1 212 055 0100",
            "212-555-01000",
            "12.30.2026",
        ],
    );
}

#[test]
fn us_ssns() {
    check(
        Kind::UsSsn,
        &["123-45-6789", "536 22 1234", "899-99-9999"],
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-99-9999",
            "123-00-6789",
            "123-45-0000",
            "123-45 6789",
            "123456789",
        ],
    );
    assert_eq!(found("SSN 536221234", Kind::UsSsn), ["536221234"]);
    assert_eq!(
        found("social security no. 536221234", Kind::UsSsn),
        ["536221234"]
    );
}

#[test]
fn payment_cards() {
    check(
        Kind::PaymentCard,
        &[
            "4111 1111 1111 1111",
            "4012888888881881",
            "5555-5555-5555-4444",
            "2223000048400011",
            "378282246310005",
            "3714 496353 98431",
            "6011000990139424",
            "3530111333300000",
            "36227206271667",
            "6200000000000005",
        ],
        &[
            "4111 1111 1111 1112",
            "4111111111111",
            "1111 1111 1111 1117",
            "5555 5555 5555 4445",
            "3782 8224 6310 005x",
            "0000 0000 0000 0000",
        ],
    );
}

#[test]
fn ibans() {
    check(
        Kind::Iban,
        &[
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "NL91ABNA0417164300",
            "CH9300762011623852957",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
        ],
        &[
            "DE89 3704 0044 0532 0130 01",
            "GB82 WEST 1234 5698 7654 3",
            "ZZ89 3704 0044 0532 0130 00",
            "NL91 ABNA 0417 1643 00X",
        ],
    );
}

#[test]
fn ip_addresses() {
    check(
        Kind::IpAddress,
        &[
            "192.168.0.1",
            "8.8.8.8",
            "255.255.255.255",
            "2001:db8::1",
            "fe80::a00:27ff:fe4e:66a1",
            "::1",
        ],
        &[
            "256.1.1.1",
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4.5",
            "01.02.03.04",
            "12:34:56",
            "2001:db8:::1",
        ],
    );
}

#[test]
fn disabled_kinds_are_not_scanned() {
    let text = "mail ada@example.com from 10.0.0.1";
    let rules = Rules {
        email: false,
        ..Rules::default()
    };
    let kinds: Vec<Kind> = Redactor::new(&rules)
        .scan(text)
        .iter()
        .map(|f| f.kind())
        .collect();
    assert_eq!(kinds, [Kind::IpAddress]);
    let secrets_only = Redactor::new(&Rules::secrets_only());
    assert!(secrets_only.scan(text).is_empty());
}
