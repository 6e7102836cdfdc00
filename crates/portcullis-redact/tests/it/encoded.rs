//! Credentials hidden in base64, percent-encoding and JSON escapes are found and reported on
//! the span of the whole encoded run.

use base64::Engine as _;
use portcullis_redact::{Encoding, Kind, Redactor, SecretRule};

use crate::fake::{ALNUM, random};

fn stripe_key() -> String {
    ["sk_live_", &random(ALNUM, 24)].concat()
}

fn only_finding(text: &str) -> (Kind, Encoding, String) {
    let findings = Redactor::default().scan(text);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = findings[0];
    (f.kind(), f.encoding(), text[f.span()].to_owned())
}

#[test]
fn base64_runs_are_decoded() {
    let key = stripe_key();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("STRIPE_KEY={key}\n"));
    let (kind, encoding, span) = only_finding(&format!("config blob: {encoded} (end)"));
    assert_eq!(
        (kind, encoding, span),
        (
            Kind::Secret(SecretRule::StripeSecretKey),
            Encoding::Base64,
            encoded
        )
    );

    let url_safe =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"k\":\"{key}\"}}"));
    assert_eq!(only_finding(&format!("x={url_safe}")).1, Encoding::Base64);
}

#[test]
fn percent_encoded_runs_are_decoded() {
    let key = stripe_key();
    let encoded: String = format!("{{\"key\":\"{key}\"}}")
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let text = format!("GET /cb?state={encoded} HTTP/1.1");
    let (kind, encoding, span) = only_finding(&text);
    assert_eq!(kind, Kind::Secret(SecretRule::StripeSecretKey));
    assert_eq!(encoding, Encoding::Url);
    assert!(span.contains(&encoded), "{span}");
    // The prefix itself encoded.
    let hidden = key.replacen("sk_", "sk%5F", 1);
    assert_eq!(
        only_finding(&format!("token={hidden}&x=1")).1,
        Encoding::Url
    );
}

#[test]
fn json_escapes_are_decoded() {
    let key = stripe_key();
    let escaped = key.replacen('s', "\\u0073", 1);
    let text = format!("{{\"note\": \"{escaped}\"}}");
    assert_eq!(
        only_finding(&text),
        (
            Kind::Secret(SecretRule::StripeSecretKey),
            Encoding::JsonEscape,
            escaped
        )
    );

    let hook = [
        "https://hooks.slack.com/services/T",
        &random("ABCDEFGHJK0123456789", 9),
        "/B",
        &random("ABCDEFGHJK0123456789", 9),
        "/",
        &random(ALNUM, 24),
    ]
    .concat();
    let slashed = hook.replace('/', "\\/");
    let (kind, encoding, _) = only_finding(&format!("{{\"url\":\"{slashed}\"}}"));
    assert_eq!(
        (kind, encoding),
        (
            Kind::Secret(SecretRule::SlackWebhookUrl),
            Encoding::JsonEscape
        )
    );
}

#[test]
fn encoded_text_without_secrets_is_not_reported() {
    let plain = base64::engine::general_purpose::STANDARD
        .encode("just an ordinary sentence, nothing secret in it");
    assert!(
        Redactor::default()
            .scan(&format!("data: {plain}"))
            .is_empty()
    );
    assert!(
        Redactor::default()
            .scan("100%25 of %E2%9C%93 and \\u00e9t\\u00e9 \\/ ok")
            .is_empty()
    );
}

#[test]
fn decoding_goes_one_level_deep() {
    let once = base64::engine::general_purpose::STANDARD.encode(format!("k={}", stripe_key()));
    let twice = base64::engine::general_purpose::STANDARD.encode(&once);
    assert!(Redactor::default().scan(&twice).is_empty());
}

#[test]
fn masking_hides_the_whole_run() {
    let key = stripe_key();
    let escaped = key.replacen('s', "\\u0073", 1);
    let text = format!("\"{escaped}\"");
    let masked = Redactor::default().mask(&text);
    assert_eq!(masked.text, "\"[SECRET:stripe_secret_key]\"");
}

#[test]
fn invalid_bytes_around_an_encoded_secret_do_not_hide_it() {
    let key = stripe_key();
    // A byte that is not UTF-8 appended before encoding.
    let mut bytes = format!("key={key}").into_bytes();
    bytes.push(0xFF);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert_eq!(
        only_finding(&encoded).0,
        Kind::Secret(SecretRule::StripeSecretKey)
    );
    // A stray escape that decodes to an invalid byte, in the same percent-encoded run
    // (found by fuzzing).
    let run = format!("%ad%7B%22k%22%3A%22{}%22%7D", key.replacen('_', "%5F", 2));
    assert_eq!(only_finding(&format!("q={run}")).1, Encoding::Url);
}
