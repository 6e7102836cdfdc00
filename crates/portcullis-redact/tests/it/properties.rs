//! Properties over generated input: scanning and redacting never panic, spans are in bounds,
//! on char boundaries, sorted and disjoint; masked output holds no finding's text; pseudonyms
//! round-trip, whole and streamed.

use std::sync::OnceLock;

use portcullis_redact::{Finding, Pseudonyms, Redactor};
use proptest::prelude::*;

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(Redactor::default)
}

fn well_formed(text: &str, findings: &[Finding]) -> Result<(), TestCaseError> {
    let mut previous_end = 0;
    for f in findings {
        prop_assert!(f.start() < f.end() && f.end() <= text.len());
        prop_assert!(text.is_char_boundary(f.start()) && text.is_char_boundary(f.end()));
        prop_assert!(f.start() >= previous_end, "sorted and disjoint");
        previous_end = f.end();
    }
    Ok(())
}

/// Fragments: values of every kind, filler (with multi-byte text, no `[`), and pieces of the
/// syntax detectors key on.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}\\.?[a-z]{1,8}@[a-z]{2,10}\\.(com|org|de|co\\.uk)",
        "\\+(44 20 7946 0[0-9]{3}|1 \\(212\\) 555-01[0-9]{2}|49 30 [2-9][0-9]{6}|33 6 [0-9]{2} [0-9]{2} [0-9]{2} [0-9]{2})",
        "[1-5][0-9]{2}-[1-9][0-9]-[1-9][0-9]{3}",
        Just("4111 1111 1111 1111".to_owned()),
        Just("5555-5555-5555-4444".to_owned()),
        Just("DE89 3704 0044 0532 0130 00".to_owned()),
        Just("GB82WEST12345698765432".to_owned()),
        "(1[0-9]{2}|[1-9][0-9]?)\\.[0-9]{1,2}\\.[0-9]{1,2}\\.[1-9][0-9]?",
        "2001:db8:[0-9a-f]{1,4}::[1-9a-f][0-9a-f]{0,3}",
        "ghp_[A-Za-z0-9]{36}",
        "sk_live_[A-Za-z0-9]{24,30}",
        "xoxb-[0-9]{12}-[0-9]{13}-[A-Za-z0-9]{24}",
        "Bearer [A-Za-z0-9]{24,40}",
        "[^\\[\\s]{0,12}",
        "[a-zéüß東京 ]{1,20}",
        "(%[0-9A-F]{2}|\\\\u00[0-9a-f]{2}|eyJ|-----BEGIN |@|\\+|:|\\.)[A-Za-z0-9]{0,8}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..24).prop_map(|parts| parts.join(" \n "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_text_scans_without_panicking(text in any::<String>()) {
        let findings = redactor().scan(&text);
        well_formed(&text, &findings)?;
        let masked = redactor().mask(&text);
        prop_assert_eq!(masked.findings, findings);
    }

    #[test]
    fn masked_output_holds_no_found_text(text in document()) {
        let masked = redactor().mask(&text);
        well_formed(&text, &masked.findings)?;
        for f in &masked.findings {
            let value = &text[f.span()];
            if value.len() >= 6 {
                prop_assert!(!masked.text.contains(value), "{} left in {}", f.kind(), masked.text);
            }
        }
    }

    #[test]
    fn pseudonyms_round_trip_whole_and_streamed(text in document(), cuts in prop::collection::vec(0usize..4096, 0..8)) {
        let mut session = Pseudonyms::new();
        let sent = redactor().pseudonymise(&text, &mut session).text.into_owned();
        prop_assert_eq!(session.restore(&sent), text.clone());

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (sent.len() + 1)).filter(|&c| sent.is_char_boundary(c)).collect();
        cuts.sort_unstable();
        let mut restorer = session.restorer();
        let mut out = String::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([sent.len()]) {
            out.push_str(&restorer.push(&sent[start..cut]));
            start = cut;
        }
        out.push_str(&restorer.finish());
        prop_assert_eq!(out, text);
    }
}
