//! Masking, pseudonymisation and its restoration (whole and streamed), and blocking.

use portcullis_redact::{Kind, Mode, Pseudonyms, Redactor, SecretRule, Treatment};

use crate::fake::{ALNUM, random};

fn sample() -> (String, String) {
    let token = ["ghp_", &random(ALNUM, 36)].concat();
    let text = format!(
        "From ada@example.com to bob@example.org (cc ada@example.com), call +44 20 7946 0958, \
         card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, host 10.0.0.7, ssn 123-45-6789, \
         token {token}. Über café → ✓"
    );
    (text, token)
}

#[test]
fn mask_replaces_each_finding_with_its_kind() {
    let (text, token) = sample();
    let masked = Redactor::default().mask(&text);
    assert_eq!(
        masked.text,
        "From [EMAIL] to [EMAIL] (cc [EMAIL]), call [PHONE], card [PAYMENT_CARD], IBAN [IBAN], host [IP_ADDRESS], \
         ssn [US_SSN], token [SECRET:github_pat]. Über café → ✓"
    );
    assert!(!masked.text.contains(&token));
    assert_eq!(masked.findings.len(), 9);
    let via_mode = Redactor::default()
        .redact(&text, Mode::Mask)
        .expect("mask never refuses");
    assert_eq!(via_mode, masked);
}

#[test]
fn clean_text_is_borrowed_unchanged() {
    let masked = Redactor::default().mask("nothing to see here, version 1.2.3");
    assert!(matches!(masked.text, std::borrow::Cow::Borrowed(_)));
    assert!(masked.findings.is_empty());
}

#[test]
fn pseudonyms_are_stable_and_restore_the_original() {
    let (text, _) = sample();
    let redactor = Redactor::default();
    let mut session = Pseudonyms::new();
    let sent = redactor.pseudonymise(&text, &mut session);
    assert!(
        sent.text
            .starts_with("From [EMAIL_1] to [EMAIL_2] (cc [EMAIL_1]), call [PHONE_1]"),
        "{}",
        sent.text
    );
    assert!(sent.text.contains("token [SECRET:github_pat_1]."));
    assert_eq!(session.restore(&sent.text), text);

    // The same session labels the same value the same way in a later request.
    let later = redactor.pseudonymise("reply to bob@example.org and eve@example.net", &mut session);
    assert_eq!(later.text, "reply to [EMAIL_2] and [EMAIL_3]");
}

#[test]
fn streamed_restore_handles_labels_split_across_chunks() {
    let (text, _) = sample();
    let mut session = Pseudonyms::new();
    let sent = Redactor::default()
        .pseudonymise(&text, &mut session)
        .text
        .into_owned();
    let boundaries: Vec<usize> = (0..=sent.len())
        .filter(|&i| sent.is_char_boundary(i))
        .collect();
    // Every single split point, and fixed-size chunks of every small size.
    for &split in &boundaries {
        let mut restorer = session.restorer();
        let mut out = restorer.push(&sent[..split]);
        out.push_str(&restorer.push(&sent[split..]));
        out.push_str(&restorer.finish());
        assert_eq!(out, text, "split at {split}");
    }
    for size in 1..12 {
        let mut restorer = session.restorer();
        let mut out = String::new();
        let mut start = 0;
        while start < sent.len() {
            let mut end = (start + size).min(sent.len());
            while !sent.is_char_boundary(end) {
                end += 1;
            }
            out.push_str(&restorer.push(&sent[start..end]));
            start = end;
        }
        out.push_str(&restorer.finish());
        assert_eq!(out, text, "chunks of {size}");
    }
}

#[test]
fn a_full_session_masks_new_values_instead() {
    let mut session = Pseudonyms::with_max_entries(1);
    let sent =
        Redactor::default().pseudonymise("a@example.com b@example.com a@example.com", &mut session);
    assert_eq!(sent.text, "[EMAIL_1] [EMAIL] [EMAIL_1]");
}

#[test]
fn a_session_survives_serialisation() {
    let redactor = Redactor::default();
    let mut session = Pseudonyms::new();
    redactor.pseudonymise("a@example.com b@example.com", &mut session);
    let stored = serde_json::to_vec(&session).expect("serialises");
    let mut reopened: Pseudonyms = serde_json::from_slice(&stored).expect("deserialises");
    let sent = redactor.pseudonymise("b@example.com c@example.com", &mut reopened);
    assert_eq!(sent.text, "[EMAIL_2] [EMAIL_3]");
    assert_eq!(reopened.restore(&sent.text), "b@example.com c@example.com");
}

#[test]
fn block_refuses_with_counts_and_no_values() {
    let (text, token) = sample();
    let redactor = Redactor::default();
    let blocked = redactor.check(&text).expect_err("blocked");
    assert_eq!(blocked.total(), 9);
    assert!(blocked.counts().contains(&(Kind::Email, 3)));
    assert!(
        blocked
            .counts()
            .contains(&(Kind::Secret(SecretRule::GithubPat), 1))
    );
    let shown = format!("{blocked} {blocked:?}");
    assert_eq!(
        blocked.to_string(),
        "blocked: 3 email, 1 phone, 1 us_ssn, 1 payment_card, 1 iban, 1 ip_address, 1 secret:github_pat"
    );
    assert!(!shown.contains(&token) && !shown.contains("ada@example.com"));
    assert_eq!(redactor.redact(&text, Mode::Block), Err(blocked));
    assert!(redactor.redact("all clear", Mode::Block).is_ok());
}

#[test]
fn findings_never_print_their_value() {
    let (text, token) = sample();
    let findings = Redactor::default().scan(&text);
    let shown = format!(
        "{findings:?} {}",
        serde_json::to_string(&findings).expect("serialises")
    );
    assert!(
        !shown.contains(&token) && !shown.contains("ada@example.com") && !shown.contains("4111"),
        "{shown}"
    );
}

#[test]
fn masking_uncovers_no_credential() {
    // Found by fuzzing: the IP address ended the bearer value; masked, the shorter value
    // read as a credential. Such values are judged as they will read once masked.
    let text = "token=ghp_0K0pCSbf+fg1.Eglcg!!!!!!!!!#!!!!!!i!!!!!!!!!0.0.0.1` rest";
    let redactor = Redactor::default();
    let masked = redactor.mask(text);
    assert!(
        !redactor
            .scan(&masked.text)
            .iter()
            .any(|f| f.kind().is_secret()),
        "{}",
        masked.text
    );
    assert!(
        masked
            .text
            .starts_with("token=[SECRET:high_entropy_bearer]"),
        "{}",
        masked.text
    );
}

#[test]
fn masking_an_encoded_secret_uncovers_no_credential() {
    // Found by fuzzing: a percent-encoded run inside a rejected bearer value was masked, and
    // the value before it then read as a credential.
    let text = "token=gweg1ggEc0P67QQQQQ~c\0\0%22skicarzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzd4BbJtoken=ghp_hp_9K0pCvbfwfg1ggEc0P67%\u{17}\0\0\0\0\0\0\x0022skecard4BbJtoken=ghp_9K0pCSbfwfg1pCSbfwfg1ggEc0P67%20G25Nliv=";
    let redactor = Redactor::default();
    let masked = redactor.mask(text);
    assert!(
        !redactor
            .scan(&masked.text)
            .iter()
            .any(|f| f.kind().is_secret()),
        "{}",
        masked.text
    );
}

#[test]
fn each_kind_is_treated_as_the_caller_says() {
    let (text, token) = sample();
    let redactor = Redactor::default();
    let treat = |kind: Kind| match kind {
        kind if kind.is_secret() => Treatment::Mask,
        Kind::Email => Treatment::Pseudonymise,
        _ => Treatment::Keep,
    };
    let mut session = Pseudonyms::new();
    let sent = redactor.redact_each(&text, treat, Some(&mut session));
    assert!(
        sent.text
            .starts_with("From [EMAIL_1] to [EMAIL_2] (cc [EMAIL_1]), call +44 20 7946 0958"),
        "{}",
        sent.text
    );
    assert!(
        sent.text.contains("token [SECRET:github_pat]."),
        "{}",
        sent.text
    );
    assert!(!sent.text.contains(&token));
    // Only what was replaced is reported: three addresses and the token.
    assert_eq!(sent.findings.len(), 4);
    assert_eq!(session.len(), 2);

    // Without a map, pseudonymising masks; keeping everything borrows the input.
    let masked = redactor.redact_each(&text, treat, None);
    assert!(
        masked.text.starts_with("From [EMAIL] to [EMAIL]"),
        "{}",
        masked.text
    );
    let kept = redactor.redact_each(&text, |_| Treatment::Keep, None);
    assert!(matches!(kept.text, std::borrow::Cow::Borrowed(_)));
    assert!(kept.findings.is_empty());
}
