//! Spans are byte offsets on char boundaries, also with multi-byte text hard against values.

use portcullis_redact::{Kind, Redactor};

use crate::fake::{ALNUM, random};

#[test]
fn spans_sit_on_char_boundaries_next_to_multibyte_text() {
    let token = ["npm_", &random(ALNUM, 36)].concat();
    let values = [
        (Kind::Email, "ada@example.com".to_owned()),
        (Kind::Phone, "+44 20 7946 0958".to_owned()),
        (Kind::UsSsn, "123-45-6789".to_owned()),
        (Kind::PaymentCard, "4111 1111 1111 1111".to_owned()),
        (Kind::Iban, "DE89 3704 0044 0532 0130 00".to_owned()),
        (Kind::IpAddress, "10.20.30.40".to_owned()),
        (Kind::Secret(portcullis_redact::SecretRule::NpmToken), token),
    ];
    let neighbours = ["é", "東京", "😀", "\u{200b}", "ß", "→"];
    let redactor = Redactor::default();
    for (kind, value) in &values {
        for left in neighbours {
            for right in neighbours {
                let text = format!("{left} {value}{right}");
                let findings = redactor.scan(&text);
                for f in &findings {
                    assert!(
                        text.is_char_boundary(f.start()) && text.is_char_boundary(f.end()),
                        "{text}"
                    );
                }
                let start = left.len() + 1;
                assert!(
                    findings
                        .iter()
                        .any(|f| f.kind() == *kind && f.span() == (start..start + value.len())),
                    "{kind} in {text:?}: {findings:?}"
                );
            }
        }
    }
}
