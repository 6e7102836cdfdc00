//! Fuzz target `redact`: any UTF-8 text. Scanning must not panic; every span is in bounds, on
//! char boundaries, sorted and disjoint; and the masked output, scanned again, holds no
//! credential (masking removed every one and created none).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_redact::Redactor;

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(Redactor::default)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let masked = redactor().mask(text);
    let mut previous_end = 0;
    for finding in &masked.findings {
        assert!(finding.start() < finding.end() && finding.end() <= text.len());
        assert!(text.is_char_boundary(finding.start()) && text.is_char_boundary(finding.end()));
        assert!(
            finding.start() >= previous_end,
            "findings overlap or are unsorted"
        );
        previous_end = finding.end();
    }
    let again = redactor().scan(&masked.text);
    if let Some(left) = again.iter().find(|f| f.kind().is_secret()) {
        panic!(
            "masked output still holds a credential: {} at {:?}",
            left.kind(),
            left.span()
        );
    }
});
