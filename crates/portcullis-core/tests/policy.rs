//! The policy engine attacked from outside: a decision table over overlapping rules, policies
//! that error at evaluation time, invalid documents, tunable settings and plain English.

use portcullis_core::decision::Outcome;
use portcullis_core::effect::EffectClass;
use portcullis_core::policy::{CallFacts, Engine, Point, PolicyDocument, PolicySettings, table};
use portcullis_core::profile::ToolProfile;
use serde_json::json;

fn tenant_document() -> PolicyDocument {
    PolicyDocument {
        cedar: include_str!("fixtures/tenant.cedar").to_owned(),
        settings: PolicySettings::default(),
    }
}

#[test]
fn decision_table() {
    let engine = Engine::compile(&tenant_document()).expect("fixture compiles");
    let cases = table::parse(include_str!("decisions.table")).expect("table parses");
    assert!(cases.len() >= 30, "the table lost its cases");
    let failures: Vec<String> = table::run(&engine, &cases)
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| {
            format!(
                "line {}: expected {:?}, got {:?} by {:?} ({:?}); missing {:?}",
                r.line,
                r.expected,
                r.got.outcome(),
                r.got.policies(),
                r.got.reasons(),
                r.missing_policies
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn facts<'a>(profile: &'a ToolProfile, arguments: &'a serde_json::Value) -> CallFacts<'a> {
    CallFacts {
        tenant: "acme",
        agent: "bot",
        agent_owner: None,
        connection: "crm",
        tool: "get_contact",
        effect: EffectClass::Read,
        profile,
        arguments,
        cost_cents: 0,
        spent_today_cents: 0,
        agent_spent_today_cents: 0,
        session_read_classes: &[],
        session_reads: 0,
        has_session: false,
        argument_classes: &[],
        guardrail: None,
        definition_changed: false,
        stated_reason: false,
        now: 1_790_000_000_000,
    }
}

/// Cedar skips a policy whose evaluation errors; for a forbid that would allow. Here it denies.
#[test]
fn an_erroring_policy_denies_instead_of_being_skipped() {
    let document = PolicyDocument {
        cedar: r#"
            @id("overflow")
            forbid (principal, action, resource)
            when { context.numbers.hasTag("n") && context.numbers.getTag("n") * 100000000000 > 0 };
        "#
        .into(),
        settings: PolicySettings::default(),
    };
    let engine = Engine::compile(&document).expect("overflow is not a validation error");
    let profile = ToolProfile::default();
    let fine = json!({"n": 1});
    assert_eq!(
        engine.evaluate(&facts(&profile, &fine)).outcome(),
        Outcome::Deny
    );
    let small = json!({"n": -1});
    assert_eq!(
        engine.evaluate(&facts(&profile, &small)).outcome(),
        Outcome::Allow
    );
    let overflowing = json!({"n": 1_000_000_000});
    let evaluation = engine.evaluate(&facts(&profile, &overflowing));
    assert_eq!(evaluation.outcome(), Outcome::Deny);
    assert_eq!(evaluation.policies(), ["overflow"]);
    assert!(
        evaluation.reasons()[0].contains("overflow"),
        "{:?}",
        evaluation.reasons()
    );
}

#[test]
fn invalid_documents_are_refused_with_every_problem_named() {
    for (cedar, needle) in [
        ("permit (principal, action, resource", "syntax"),
        // Unguarded tag access could error at call time: refused now.
        (
            r#"forbid (principal, action, resource) when { context.args.getTag("to") == "x" };"#,
            "tag",
        ),
        (
            r#"forbid (principal, action, resource) when { context.nope };"#,
            "nope",
        ),
        (
            r#"permit (principal == Portcullis::User::"x", action, resource);"#,
            "User",
        ),
        (
            r#"@id("builtin.mine") permit (principal, action, resource);"#,
            "reserved",
        ),
        (r#"@hold permit (principal, action, resource);"#, "@hold"),
        (
            r#"@hold @point("sideways") forbid (principal, action, resource);"#,
            "sideways",
        ),
        (
            r#"@colour("red") forbid (principal, action, resource);"#,
            "@colour",
        ),
        (
            r#"@id("a") permit (principal, action, resource); @id("a") forbid (principal, action, resource);"#,
            "twice",
        ),
        (
            r#"permit (principal, action, resource) when { context.cost_cents == "five" };"#,
            "",
        ),
        // Action groups belong in the head, where slicing honours them.
        (
            r#"forbid (principal, action, resource) when { action in Portcullis::Action::"effect" };"#,
            "action in",
        ),
    ] {
        let document = PolicyDocument {
            cedar: cedar.into(),
            settings: PolicySettings::default(),
        };
        let error = Engine::compile(&document).expect_err(cedar);
        let text = error.to_string();
        assert!(text.contains(needle), "{cedar}: {text}");
    }
}

#[test]
fn settings_tune_the_built_in_points() {
    let profile = ToolProfile::default();
    let arguments = json!({});
    let mut call = facts(&profile, &arguments);
    call.effect = EffectClass::Publish;
    call.guardrail = Some(("g", portcullis_core::guardrail::GuardrailMode::Auto));
    let strict = Engine::builtin_only();
    assert_eq!(strict.evaluate(&call).outcome(), Outcome::Hold);
    let relaxed: PolicySettings =
        serde_json::from_value(json!({"points": {"publish": {"enabled": false}}})).unwrap();
    let relaxed = Engine::compile(&PolicyDocument {
        cedar: String::new(),
        settings: relaxed,
    })
    .unwrap();
    assert_eq!(relaxed.evaluate(&call).outcome(), Outcome::Allow);
    assert_ne!(
        strict.hash(),
        relaxed.hash(),
        "settings are part of the hash"
    );

    call.effect = EffectClass::Spend;
    call.cost_cents = 2_000;
    let capped: PolicySettings = serde_json::from_value(
        json!({"money": {"per_action_cents": 1_000, "per_day_cents": 5_000}}),
    )
    .unwrap();
    let capped = Engine::compile(&PolicyDocument {
        cedar: String::new(),
        settings: capped,
    })
    .unwrap();
    let evaluation = capped.evaluate(&call);
    assert_eq!(evaluation.outcome(), Outcome::Hold);
    assert_eq!(evaluation.points(), [Point::Money]);
    assert_eq!(strict.evaluate(&call).outcome(), Outcome::Allow);

    // A per-agent daily cap, below the tenant's.
    let per_agent: PolicySettings = serde_json::from_value(json!({"money": {
        "per_action_cents": 10_000, "per_day_cents": 100_000, "per_agent_day_cents": 3_000
    }}))
    .unwrap();
    let per_agent = Engine::compile(&PolicyDocument {
        cedar: String::new(),
        settings: per_agent,
    })
    .unwrap();
    call.agent_spent_today_cents = 1_000;
    assert_eq!(per_agent.evaluate(&call).outcome(), Outcome::Allow);
    call.agent_spent_today_cents = 1_001;
    let evaluation = per_agent.evaluate(&call);
    assert_eq!(evaluation.outcome(), Outcome::Hold);
    assert_eq!(evaluation.points(), [Point::Money]);
    assert_eq!(
        strict.evaluate(&call).outcome(),
        Outcome::Allow,
        "default: the tenant's cap"
    );
}

#[test]
fn unrelated_policies_are_sliced_away_and_ids_are_recorded() {
    let mut cedar = String::new();
    for i in 0..200 {
        cedar.push_str(&format!(
            "@id(\"other-{i}\") forbid (principal, action, resource == Portcullis::Tool::\"other/t{i}\");\n"
        ));
    }
    cedar.push_str("@id(\"mine\") forbid (principal, action, resource == Portcullis::Tool::\"crm/get_contact\") when { principal == Portcullis::Agent::\"bad\" };\n");
    let engine = Engine::compile(&PolicyDocument {
        cedar,
        settings: PolicySettings::default(),
    })
    .unwrap();
    let profile = ToolProfile::default();
    let arguments = json!({});
    let mut call = facts(&profile, &arguments);
    let allowed = engine.evaluate(&call);
    assert_eq!(allowed.outcome(), Outcome::Allow);
    assert_eq!(allowed.policies(), ["builtin.reads"]);
    assert_eq!(allowed.policy_hash(), engine.hash());
    call.agent = "bad";
    assert_eq!(engine.evaluate(&call).policies(), ["mine"]);
    call.connection = "other";
    call.tool = "t7";
    assert_eq!(engine.evaluate(&call).policies(), ["other-7"]);
}

#[test]
fn every_policy_reads_as_plain_english() {
    let engine = Engine::compile(&tenant_document()).unwrap();
    let english = |id: &str| engine.rule(id).unwrap().english();
    assert_eq!(
        english("intern-no-deploy"),
        "Denies `deploy` calls by agent `intern` on any tool."
    );
    assert_eq!(
        english("refund-large-deny"),
        "Denies `spend` calls by any agent on tool `billing/issue_refund` when (argument `amount_cents` is given and argument `amount_cents` is over 500000)."
    );
    assert!(english("mail-external-deny").contains("argument `to` matches \"*@example.com\""));
    assert!(
        english("night-hold").starts_with("Holds for a person's approval world-changing calls")
    );
    // The tenant's caps are written into the built-in, so the sentence shows the numbers.
    let money = engine.settings().money;
    assert!(
        english("builtin.money").contains(&format!(
            "the cost in cents is over {}",
            money.per_action_cents
        )),
        "{}",
        english("builtin.money")
    );
    for rule in engine.rules() {
        let sentence = rule.english();
        assert!(
            sentence.ends_with('.') && !sentence.contains("[{"),
            "{}: {sentence}",
            rule.id
        );
    }
}
