//! Every secret rule has a true sample it must find (with the exact span) and a near miss it
//! must not. The table is checked against `SecretRule::ALL`: a rule added without samples
//! fails this test.

use base64::Engine as _;
use portcullis_redact::{Kind, Redactor, SecretRule};

use crate::fake::{
    ALNUM, BASE32, BASE64, BASE64URL, BECH32, DIGITS, HEX, LOWER_ALNUM, UPPER_ALNUM, random, uuid,
};

/// A true sample (`context` then `secret`, which the finding must span exactly) and a near
/// miss (a whole text in which the rule must find nothing).
struct Sample {
    rule: SecretRule,
    context: String,
    secret: String,
    near_miss: String,
}

fn sample(rule: SecretRule, context: &str, secret: String, near_miss: String) -> Sample {
    Sample {
        rule,
        context: context.to_owned(),
        secret,
        near_miss,
    }
}

/// A prefix rule: `prefix` + `len` characters of `alphabet`; the near miss is one short.
fn prefixed(rule: SecretRule, prefix: &str, alphabet: &str, len: usize) -> Sample {
    sample(
        rule,
        "",
        [prefix, &random(alphabet, len)].concat(),
        [prefix, &random(alphabet, len - 1)].concat(),
    )
}

/// A context rule: `name` then the value; the near miss has a value one short.
fn assigned(rule: SecretRule, name: &str, alphabet: &str, len: usize) -> Sample {
    sample(
        rule,
        name,
        random(alphabet, len),
        [name, &random(alphabet, len - 1)].concat(),
    )
}

fn samples() -> Vec<Sample> {
    use SecretRule as R;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        prefixed(R::AwsAccessKeyId, "AKIA", BASE32, 16),
        assigned(
            R::AwsSecretAccessKey,
            "aws_secret_access_key = ",
            BASE64,
            40,
        ),
        sample(
            R::AwsSessionToken,
            "AWS_SESSION_TOKEN=",
            random(BASE64, 300),
            ["AWS_SESSION_TOKEN=", &random(BASE64, 60)].concat(),
        ),
        prefixed(R::GcpApiKey, "AIza", BASE64URL, 35),
        sample(
            R::GcpServiceAccountKeyId,
            r#"{"type": "service_account", "private_key_id": ""#,
            random(HEX, 40),
            [r#""private_key_id": ""#, &random(HEX, 39), "\""].concat(),
        ),
        prefixed(R::GcpOauthClientSecret, "GOCSPX-", BASE64URL, 28),
        sample(
            R::AzureStorageKey,
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=",
            [random(BASE64, 86), "==".into()].concat(),
            ["AccountKey=", &random(BASE64, 40), "=="].concat(),
        ),
        sample(
            R::AzureAdClientSecret,
            "client_secret ",
            [random(ALNUM, 3), "8Q~".into(), random(ALNUM, 34)].concat(),
            [random(ALNUM, 3), "8Q~".into(), random(ALNUM, 20)].concat(),
        ),
        prefixed(R::DigitaloceanToken, "dop_v1_", HEX, 64),
        sample(
            R::AlibabaAccessKeyId,
            "",
            ["LTAI", &random(ALNUM, 20)].concat(),
            ["LTAI", &random(ALNUM, 8)].concat(),
        ),
        assigned(R::IbmCloudApiKey, "IBM_CLOUD_API_KEY=", BASE64URL, 44),
        sample(
            R::HerokuApiKey,
            "HEROKU_API_KEY=",
            uuid(),
            "HEROKU_API_KEY=not-a-uuid-at-all".into(),
        ),
        prefixed(R::GithubPat, "ghp_", ALNUM, 36),
        prefixed(R::GithubOauthToken, "gho_", ALNUM, 36),
        prefixed(R::GithubUserToken, "ghu_", ALNUM, 36),
        prefixed(R::GithubServerToken, "ghs_", ALNUM, 36),
        prefixed(R::GithubRefreshToken, "ghr_", ALNUM, 36),
        sample(
            R::GithubFineGrainedPat,
            "",
            ["github_pat_", &random(ALNUM, 22), "_", &random(ALNUM, 59)].concat(),
            ["github_pat_", &random(ALNUM, 22), "_", &random(ALNUM, 40)].concat(),
        ),
        sample(
            R::GitlabPat,
            "",
            ["glpat-", &random(ALNUM, 20)].concat(),
            ["glpat-", &random(ALNUM, 12)].concat(),
        ),
        sample(
            R::GitlabRunnerToken,
            "",
            ["glrt-", &random(ALNUM, 24)].concat(),
            ["glrt-", &random(ALNUM, 12)].concat(),
        ),
        prefixed(R::GitlabPipelineTriggerToken, "glptt-", HEX, 40),
        sample(
            R::GitlabDeployToken,
            "",
            ["gldt-", &random(ALNUM, 24)].concat(),
            ["gldt-", &random(ALNUM, 12)].concat(),
        ),
        sample(
            R::BitbucketAppPassword,
            "",
            ["ATBB", &random(ALNUM, 32)].concat(),
            ["ATBB", &random(ALNUM, 10)].concat(),
        ),
        sample(
            R::AtlassianApiToken,
            "",
            ["ATATT3", &random(BASE64URL, 186)].concat(),
            ["ATATT3", &random(ALNUM, 50)].concat(),
        ),
        prefixed(R::NpmToken, "npm_", ALNUM, 36),
        sample(
            R::PypiToken,
            "",
            ["pypi-AgEIcHlwaS5vcmc", &random(BASE64URL, 70)].concat(),
            ["pypi-AgE", &random(BASE64URL, 40)].concat(),
        ),
        prefixed(R::DockerHubPat, "dckr_pat_", BASE64URL, 27),
        sample(
            R::VaultToken,
            "",
            ["hvs.", &random(BASE64URL, 90)].concat(),
            ["hvs.", &random(ALNUM, 10)].concat(),
        ),
        sample(
            R::TerraformCloudToken,
            "",
            [random(ALNUM, 14), ".atlasv1.".into(), random(ALNUM, 67)].concat(),
            [random(ALNUM, 14), ".atlasv1.".into(), random(ALNUM, 30)].concat(),
        ),
        sample(
            R::SlackBotToken,
            "",
            [
                "xoxb-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 13),
                "-",
                &random(ALNUM, 24),
            ]
            .concat(),
            [
                "xoxb-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 13),
                "-",
                &random(ALNUM, 23),
            ]
            .concat(),
        ),
        sample(
            R::SlackUserToken,
            "",
            [
                "xoxp-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 12),
                "-",
                &random(HEX, 32),
            ]
            .concat(),
            [
                "xoxp-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 12),
                "-",
                &random(DIGITS, 12),
                "-",
                &random(HEX, 31),
            ]
            .concat(),
        ),
        sample(
            R::SlackAppToken,
            "",
            [
                "xapp-1-",
                &random(UPPER_ALNUM, 11),
                "-",
                &random(DIGITS, 13),
                "-",
                &random(HEX, 64),
            ]
            .concat(),
            [
                "xapp-1-",
                &random(UPPER_ALNUM, 11),
                "-",
                &random(DIGITS, 13),
                "-",
                &random(HEX, 63),
            ]
            .concat(),
        ),
        sample(
            R::SlackWebhookUrl,
            "",
            [
                "https://hooks.slack.com/services/T",
                &random(UPPER_ALNUM, 8),
                "/B",
                &random(UPPER_ALNUM, 8),
                "/",
                &random(ALNUM, 24),
            ]
            .concat(),
            "https://hooks.slack.com/services/T123/B123/abc".into(),
        ),
        sample(
            R::DiscordBotToken,
            "DISCORD_BOT_TOKEN=",
            [
                "M",
                &random(ALNUM, 23),
                ".",
                &random(ALNUM, 6),
                ".",
                &random(ALNUM, 27),
            ]
            .concat(),
            [
                "DISCORD_BOT_TOKEN=X",
                &random(ALNUM, 23),
                ".",
                &random(ALNUM, 6),
                ".",
                &random(ALNUM, 27),
            ]
            .concat(),
        ),
        sample(
            R::DiscordWebhookUrl,
            "",
            [
                "https://discord.com/api/webhooks/",
                &random(DIGITS, 18),
                "/",
                &random(BASE64URL, 68),
            ]
            .concat(),
            [
                "https://discord.com/api/webhooks/",
                &random(DIGITS, 18),
                "/",
                &random(BASE64URL, 20),
            ]
            .concat(),
        ),
        sample(
            R::TelegramBotToken,
            "bot",
            [random(DIGITS, 10), ":AA".into(), random(BASE64URL, 33)].concat(),
            [random(DIGITS, 10), ":AA".into(), random(BASE64URL, 20)].concat(),
        ),
        sample(
            R::TeamsWebhookUrl,
            "",
            [
                "https://contoso.webhook.office.com/webhookb2/",
                &uuid(),
                "@",
                &uuid(),
                "/IncomingWebhook/",
                &random(HEX, 32),
                "/",
                &uuid(),
            ]
            .concat(),
            [
                "https://contoso.webhook.office.com/webhookb2/",
                &uuid(),
                "@",
                &uuid(),
            ]
            .concat(),
        ),
        sample(
            R::StripeSecretKey,
            "",
            ["sk_live_", &random(ALNUM, 24)].concat(),
            ["sk_live_", &random(ALNUM, 10)].concat(),
        ),
        sample(
            R::StripeRestrictedKey,
            "",
            ["rk_live_", &random(ALNUM, 24)].concat(),
            ["rk_live_", &random(ALNUM, 10)].concat(),
        ),
        sample(
            R::StripeTestKey,
            "",
            ["sk_test_", &random(ALNUM, 24)].concat(),
            ["sk_test_", &random(ALNUM, 10)].concat(),
        ),
        sample(
            R::WebhookSigningSecret,
            "",
            ["whsec_", &random(BASE64, 32)].concat(),
            ["whsec_", &random(BASE64, 10)].concat(),
        ),
        prefixed(R::SquareAccessToken, "sq0atp-", BASE64URL, 22),
        sample(
            R::SquareOauthSecret,
            "",
            ["sq0csp-", &random(BASE64URL, 43)].concat(),
            ["sq0csp-", &random(BASE64URL, 30)].concat(),
        ),
        sample(
            R::BraintreeAccessToken,
            "",
            [
                "access_token$production$",
                &random(LOWER_ALNUM, 16),
                "$",
                &random(HEX, 32),
            ]
            .concat(),
            [
                "access_token$production$",
                &random(LOWER_ALNUM, 16),
                "$",
                &random(HEX, 31),
            ]
            .concat(),
        ),
        prefixed(R::ShopifyAccessToken, "shpat_", HEX, 32),
        prefixed(R::ShopifySharedSecret, "shpss_", HEX, 32),
        sample(
            R::OpenaiApiKey,
            "",
            ["sk-proj-", &random(BASE64URL, 156)].concat(),
            ["sk-proj-", &random(BASE64URL, 20)].concat(),
        ),
        sample(
            R::OpenaiLegacyApiKey,
            "",
            ["sk-", &random(ALNUM, 20), "T3BlbkFJ", &random(ALNUM, 20)].concat(),
            ["sk-", &random(ALNUM, 20), "T3BlbkFJ", &random(ALNUM, 19)].concat(),
        ),
        sample(
            R::AnthropicApiKey,
            "",
            ["sk-ant-api03-", &random(BASE64URL, 93), "AA"].concat(),
            ["sk-ant-api03-", &random(BASE64URL, 40)].concat(),
        ),
        sample(
            R::AnthropicAdminKey,
            "",
            ["sk-ant-admin01-", &random(BASE64URL, 93), "AA"].concat(),
            ["sk-ant-admin01-", &random(BASE64URL, 40)].concat(),
        ),
        prefixed(R::HuggingfaceToken, "hf_", ALNUM, 34),
        prefixed(R::GroqApiKey, "gsk_", ALNUM, 52),
        prefixed(R::ReplicateApiToken, "r8_", ALNUM, 37),
        assigned(R::CohereApiKey, "COHERE_API_KEY=", ALNUM, 40),
        assigned(R::MistralApiKey, "MISTRAL_API_KEY: ", ALNUM, 32),
        prefixed(R::PerplexityApiKey, "pplx-", ALNUM, 48),
        prefixed(R::XaiApiKey, "xai-", ALNUM, 80),
        sample(
            R::LangsmithApiKey,
            "",
            ["lsv2_pt_", &random(HEX, 32), "_", &random(HEX, 10)].concat(),
            ["lsv2_pt_", &random(HEX, 32), "_", &random(HEX, 9)].concat(),
        ),
        sample(
            R::SendgridApiKey,
            "",
            ["SG.", &random(BASE64URL, 22), ".", &random(BASE64URL, 43)].concat(),
            ["SG.", &random(BASE64URL, 22), ".", &random(BASE64URL, 42)].concat(),
        ),
        prefixed(R::MailgunApiKey, "key-", HEX, 32),
        sample(
            R::TwilioApiKey,
            "TWILIO_API_KEY=",
            ["SK", &random(HEX, 32)].concat(),
            ["TWILIO_API_KEY=SK", &random(HEX, 31)].concat(),
        ),
        sample(
            R::PostmarkServerToken,
            "X-Postmark-Server-Token: ",
            uuid(),
            "X-Postmark-Server-Token: abc-123".into(),
        ),
        assigned(R::DatadogApiKey, "DD_API_KEY=", HEX, 32),
        prefixed(R::NewRelicApiKey, "NRAK-", UPPER_ALNUM, 27),
        sample(
            R::SentryDsn,
            "SENTRY_DSN=",
            [
                "https://",
                &random(HEX, 32),
                "@o",
                &random(DIGITS, 6),
                ".ingest.sentry.io/",
                &random(DIGITS, 7),
            ]
            .concat(),
            ["https://", &random(HEX, 31), "@o123.ingest.sentry.io/456"].concat(),
        ),
        sample(
            R::SentryAuthToken,
            "",
            ["sntrys_", &random(BASE64, 120)].concat(),
            ["sntrys_", &random(BASE64, 30)].concat(),
        ),
        prefixed(R::LinearApiKey, "lin_api_", ALNUM, 40),
        prefixed(R::NotionToken, "secret_", ALNUM, 43),
        sample(
            R::AirtablePat,
            "",
            ["pat", &random(ALNUM, 14), ".", &random(HEX, 64)].concat(),
            ["pat", &random(ALNUM, 14), ".", &random(HEX, 63)].concat(),
        ),
        sample(
            R::OktaApiToken,
            "OKTA_API_TOKEN=",
            ["00", &random(BASE64URL, 40)].concat(),
            ["OKTA_API_TOKEN=11", &random(BASE64URL, 40)].concat(),
        ),
        prefixed(R::NetlifyToken, "nfp_", ALNUM, 36),
        assigned(R::VercelToken, "VERCEL_TOKEN=", ALNUM, 24),
        assigned(R::CloudflareApiToken, "CLOUDFLARE_API_TOKEN=", ALNUM, 40),
        assigned(R::FastlyApiToken, "FASTLY_API_TOKEN=", ALNUM, 32),
        prefixed(R::AgeSecretKey, "AGE-SECRET-KEY-1", BECH32, 58),
        prefixed(R::DatabricksToken, "dapi", HEX, 32),
        sample(
            R::GrafanaCloudToken,
            "",
            ["glc_", &random(BASE64, 80)].concat(),
            ["glc_", &random(BASE64, 20)].concat(),
        ),
        sample(
            R::GrafanaServiceAccountToken,
            "",
            ["glsa_", &random(ALNUM, 32), "_", &random(HEX, 8)].concat(),
            ["glsa_", &random(ALNUM, 32), "_", &random(HEX, 7)].concat(),
        ),
        sample(
            R::PostmanApiKey,
            "",
            ["PMAK-", &random(HEX, 24), "-", &random(HEX, 34)].concat(),
            ["PMAK-", &random(HEX, 24), "-", &random(HEX, 33)].concat(),
        ),
        sample(
            R::DopplerToken,
            "",
            ["dp.pt.", &random(ALNUM, 43)].concat(),
            ["dp.pt.", &random(ALNUM, 30)].concat(),
        ),
        prefixed(R::PulumiAccessToken, "pul-", HEX, 40),
        sample(
            R::MapboxSecretToken,
            "",
            [
                "sk.eyJ",
                &random(BASE64URL, 80),
                ".",
                &random(BASE64URL, 22),
            ]
            .concat(),
            [
                "sk.eyJ",
                &random(BASE64URL, 30),
                ".",
                &random(BASE64URL, 22),
            ]
            .concat(),
        ),
        sample(
            R::OnepasswordServiceAccountToken,
            "",
            ["ops_eyJ", &random(BASE64, 200)].concat(),
            ["ops_eyJ", &random(BASE64, 50)].concat(),
        ),
        prefixed(R::FigmaPat, "figd_", BASE64URL, 40),
        prefixed(R::SupabaseAccessToken, "sbp_", HEX, 40),
        sample(
            R::PlanetscaleToken,
            "",
            ["pscale_tkn_", &random(ALNUM, 43)].concat(),
            ["pscale_tkn_", &random(ALNUM, 20)].concat(),
        ),
        sample(
            R::TailscaleKey,
            "",
            ["tskey-auth-", &random(ALNUM, 12), "-", &random(ALNUM, 30)].concat(),
            ["tskey-auth-", &random(ALNUM, 12)].concat(),
        ),
        prefixed(R::BuildkiteToken, "bkua_", HEX, 40),
        sample(
            R::UrlCredentials,
            "DATABASE_URL=postgres://app:",
            random(ALNUM, 20),
            "DATABASE_URL=postgres://app:****@db.internal:5432/app".into(),
        ),
        sample(
            R::HttpBasicAuth,
            "Authorization: Basic ",
            b64.encode(["admin:", &random(ALNUM, 12)].concat()),
            ["Authorization: Basic ", &b64.encode("no colon in this one")].concat(),
        ),
    ]
}

#[test]
fn every_rule_has_a_true_sample_and_a_near_miss() {
    let samples = samples();
    let missing: Vec<&str> = SecretRule::ALL
        .iter()
        .filter(|rule| !samples.iter().any(|s| s.rule == **rule))
        .map(|rule| rule.id())
        .collect();
    assert!(missing.is_empty(), "rules without samples: {missing:?}");
    assert!(SecretRule::ALL.len() >= 50);
}

#[test]
fn every_true_sample_is_found_with_its_exact_span() {
    let redactor = Redactor::default();
    let mut failures = Vec::new();
    for sample in samples() {
        // The URL sample needs the rest of the URL after the password.
        let tail = if sample.rule == SecretRule::UrlCredentials {
            "@db.internal:5432/app"
        } else {
            ""
        };
        let text = format!(
            "é config → {}{}{tail} and more\n",
            sample.context, sample.secret
        );
        let start = text
            .find(&sample.secret)
            .expect("the secret is in the text");
        let expected = start..start + sample.secret.len();
        let findings = redactor.scan(&text);
        let hit = findings
            .iter()
            .any(|f| f.kind() == Kind::Secret(sample.rule) && f.span() == expected);
        if !hit {
            let kinds: Vec<String> = findings
                .iter()
                .map(|f| format!("{} {:?}", f.kind(), f.span()))
                .collect();
            failures.push(format!(
                "{}: expected {expected:?}, found {kinds:?}",
                sample.rule.id()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_near_miss_is_found() {
    let redactor = Redactor::default();
    let mut failures = Vec::new();
    for sample in samples() {
        let text = format!("near miss: {} done\n", sample.near_miss);
        if redactor
            .scan(&text)
            .iter()
            .any(|f| f.kind() == Kind::Secret(sample.rule))
        {
            failures.push(sample.rule.id());
        }
    }
    assert!(failures.is_empty(), "near misses found: {failures:?}");
}

#[test]
fn provider_rules_win_over_the_generic_bearer_rule() {
    let token = ["ghp_", &random(ALNUM, 36)].concat();
    let text = format!("Authorization: Bearer {token}\n");
    let findings = Redactor::default().scan(&text);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].kind(), Kind::Secret(SecretRule::GithubPat));
}

#[test]
fn jwt_pem_and_bearer_have_samples_too() {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = [
        engine.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        ".".into(),
        engine.encode(r#"{"sub":"agent-7","exp":1900000000}"#),
        ".".into(),
        random(BASE64URL, 86),
    ]
    .concat();
    let not_jwt = [
        engine.encode(r#"{"typ":"JWT"}"#),
        ".".into(),
        engine.encode("{}x"),
        ".".into(),
        random(BASE64URL, 20),
    ]
    .concat();
    let pem = [
        "-----BEGIN ",
        "EC PRIVATE KEY-----\n",
        &random(BASE64, 64),
        "\n",
        &random(BASE64, 20),
        "\n-----END EC PRIVATE KEY-----",
    ]
    .concat();
    let public = [
        "-----BEGIN ",
        "CERTIFICATE-----\n",
        &random(BASE64, 64),
        "\n-----END CERTIFICATE-----",
    ]
    .concat();
    let bearer = random(ALNUM, 32);
    let cases: [(Kind, String, String, String); 4] = [
        (Kind::Jwt, "token ".into(), jwt, not_jwt),
        (Kind::PemPrivateKey, "key:\n".into(), pem, public),
        (
            Kind::HighEntropyBearer,
            "Authorization: Bearer ".into(),
            bearer.clone(),
            "Authorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
        ),
        (
            Kind::HighEntropyBearer,
            "api_key=\"".into(),
            bearer,
            "api_key=\"correct-horse-battery-staple\"".into(),
        ),
    ];
    let redactor = Redactor::default();
    for (kind, context, secret, near_miss) in cases {
        let text = format!("{context}{secret}\"\n");
        let start = context.len();
        assert!(
            redactor
                .scan(&text)
                .iter()
                .any(|f| f.kind() == kind && f.span() == (start..start + secret.len())),
            "{kind}: {:?}",
            redactor.scan(&text)
        );
        assert!(
            !redactor.scan(&near_miss).iter().any(|f| f.kind() == kind),
            "{kind} near miss"
        );
    }
}

#[test]
fn each_keyword_of_a_look_behind_rule_gets_its_own_match() {
    // Found by fuzzing: the second URL's window also held the first URL, which was matched
    // again, so the second password was left.
    let first = random(ALNUM, 4);
    let second = random(ALNUM, 12);
    let text = format!("pg://u:{first}@h db://v:{second}@k");
    let masked = Redactor::default().mask(&text);
    assert_eq!(
        masked.text,
        "pg://u:[SECRET:url_credentials]@h db://v:[SECRET:url_credentials]@k"
    );
}
