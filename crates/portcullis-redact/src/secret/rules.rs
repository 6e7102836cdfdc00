//! The provider credential rules: one row per credential family, each with the literal
//! keywords the prefilter looks for, the regular expression that confirms a hit, and the
//! checks a match must pass. `SecretRule` and the table are generated from one list, so a rule
//! cannot exist without its row (and the samples test in `tests/it/rules.rs` fails for a rule
//! without a positive and a near-miss sample).
//!
//! Two shapes of rule:
//!
//! - **Prefix rules** (`ghp_…`, `sk_live_…`): the keyword is the start of the credential; the
//!   regex is anchored at the keyword, the match is the credential.
//! - **Context rules** (`COHERE_API_KEY=…`): the credential has no prefix of its own, so the
//!   keyword is a name it is assigned to; the regex runs from the keyword over an assignment
//!   (`=`, `:`, `=>`, quotes) and the named group `s` is the credential. Context rules demand
//!   some entropy, which turns away placeholders such as `your-key-here`.
//!
//! A rule with `back > 0` has its keyword inside the credential (`…8Q~…`, `….atlasv1.…`); its
//! regex runs unanchored over a window that starts `back` bytes before the keyword.

use serde::{Deserialize, Serialize};

/// The assignment between a context keyword and the value: the rest of an identifier
/// (`_API_KEY`), an optional closing quote, `=`/`:`/`=>`/`:=` and an optional opening quote.
macro_rules! sep {
    () => {
        r#"[A-Za-z0-9_.-]{0,32}["']?\s{0,4}(?:=>|:=|[:=])\s{0,4}["']?"#
    };
}

macro_rules! uuid {
    () => {
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    };
}

/// How a rule finds and confirms a credential (see the module doc).
#[derive(Clone, Copy)]
pub(crate) struct RuleSpec {
    /// Literal keywords, matched ASCII-case-insensitively by the prefilter.
    pub anchors: &'static [&'static str],
    /// How many bytes before a keyword hit a match may start.
    pub back: usize,
    /// The longest match, counted from the keyword (bounds the work per hit).
    pub max_len: usize,
    pub regex: &'static str,
    /// Minimum Shannon entropy (bits per byte) of the credential.
    pub min_entropy: f64,
    /// A further check on the credential text.
    pub check: Option<fn(&str) -> bool>,
    /// The credential may follow a letter directly (`…/bot123456:AA…` in Telegram URLs);
    /// otherwise it must not follow a letter or digit.
    pub after_letters: bool,
}

impl RuleSpec {
    const DEFAULT: RuleSpec = RuleSpec {
        anchors: &[],
        back: 0,
        max_len: 128,
        regex: "",
        min_entropy: 0.0,
        check: None,
        after_letters: false,
    };
}

macro_rules! secret_rules {
    ($( $(#[doc = $doc:literal])* $variant:ident = $id:literal { $($field:ident : $value:expr),* $(,)? } )*) => {
        /// A provider credential rule; its id (`github_pat`) is its serialised form and the
        /// name in mask labels (`[SECRET:github_pat]`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum SecretRule {
            $( $(#[doc = $doc])* #[serde(rename = $id)] $variant, )*
        }

        impl SecretRule {
            /// Every rule, in table order.
            pub const ALL: &'static [SecretRule] = &[$(SecretRule::$variant),*];

            /// The rule's id, e.g. `aws_access_key_id`.
            pub const fn id(self) -> &'static str {
                match self { $(SecretRule::$variant => $id),* }
            }

            /// The tag in labels, e.g. `SECRET:aws_access_key_id`.
            pub const fn tag(self) -> &'static str {
                match self { $(SecretRule::$variant => concat!("SECRET:", $id)),* }
            }

            pub(crate) const fn spec(self) -> RuleSpec {
                match self {
                    $(SecretRule::$variant => RuleSpec { $($field: $value,)* ..RuleSpec::DEFAULT }),*
                }
            }
        }
    };
}

secret_rules! {
    // Cloud providers.
    /// AWS access key id (`AKIA…`, `ASIA…` and the other documented prefixes).
    AwsAccessKeyId = "aws_access_key_id" {
        anchors: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"], max_len: 20,
        regex: r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
    }
    /// AWS secret access key, 40 base64 characters assigned to an AWS secret name.
    AwsSecretAccessKey = "aws_secret_access_key" {
        anchors: &["aws_secret", "awssecret", "secret_access_key", "secretaccesskey"],
        max_len: 120, min_entropy: 3.0,
        regex: concat!("(?i:aws_?secret|secret_?access_?key)", sep!(), "(?P<s>[A-Za-z0-9/+]{40})"),
    }
    /// AWS STS session token assigned to an AWS session-token name.
    AwsSessionToken = "aws_session_token" {
        anchors: &["aws_session_token", "awssessiontoken", "x-amz-security-token"],
        max_len: 1400, min_entropy: 3.0,
        regex: concat!("(?i:aws_?session_?token|x-amz-security-token)", sep!(), "(?P<s>[A-Za-z0-9/+=]{100,})"),
    }
    /// Google Cloud / Gemini API key (`AIza…`).
    GcpApiKey = "gcp_api_key" {
        anchors: &["AIza"], max_len: 39, regex: r"AIza[0-9A-Za-z_-]{35}",
    }
    /// The private key id of a Google service-account JSON key file.
    GcpServiceAccountKeyId = "gcp_service_account_key_id" {
        anchors: &["private_key_id"], max_len: 80,
        regex: r#"private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})"#,
    }
    /// Google OAuth client secret (`GOCSPX-…`).
    GcpOauthClientSecret = "gcp_oauth_client_secret" {
        anchors: &["GOCSPX-"], max_len: 35, regex: r"GOCSPX-[A-Za-z0-9_-]{28}",
    }
    /// Azure storage account key in a connection string (`AccountKey=…==`).
    AzureStorageKey = "azure_storage_key" {
        anchors: &["AccountKey="], max_len: 100, regex: r"AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)",
    }
    /// Microsoft Entra (Azure AD) client secret (`…8Q~…`).
    AzureAdClientSecret = "azure_ad_client_secret" {
        anchors: &["Q~"], back: 4, max_len: 40, min_entropy: 3.0,
        regex: r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
    }
    /// DigitalOcean personal, OAuth and refresh tokens (`dop_v1_…`).
    DigitaloceanToken = "digitalocean_token" {
        anchors: &["dop_v1_", "doo_v1_", "dor_v1_"], max_len: 71, regex: r"do[por]_v1_[a-f0-9]{64}",
    }
    /// Alibaba Cloud access key id (`LTAI…`).
    AlibabaAccessKeyId = "alibaba_access_key_id" {
        anchors: &["LTAI"], max_len: 24, min_entropy: 3.0, regex: r"LTAI[A-Za-z0-9]{12,20}",
    }
    /// IBM Cloud API key, 44 characters assigned to an IBM API key name.
    IbmCloudApiKey = "ibm_cloud_api_key" {
        anchors: &["ibm"], max_len: 120, min_entropy: 3.0,
        regex: concat!("(?i:ibm[_.-]?(?:cloud[_.-]?)?api[_.-]?key)", sep!(), "(?P<s>[A-Za-z0-9_-]{44})"),
    }
    /// Heroku API key (`HRKU-…`, or a UUID assigned to a Heroku name).
    HerokuApiKey = "heroku_api_key" {
        anchors: &["heroku", "HRKU-"], max_len: 120,
        regex: concat!("HRKU-[A-Za-z0-9_-]{60}|(?i:heroku)", sep!(), "(?P<s>", uuid!(), ")"),
    }

    // Code hosts and package registries.
    /// GitHub personal access token, classic (`ghp_…`).
    GithubPat = "github_pat" { anchors: &["ghp_"], max_len: 40, regex: r"ghp_[A-Za-z0-9]{36}" }
    /// GitHub OAuth access token (`gho_…`).
    GithubOauthToken = "github_oauth_token" { anchors: &["gho_"], max_len: 40, regex: r"gho_[A-Za-z0-9]{36}" }
    /// GitHub App user-to-server token (`ghu_…`).
    GithubUserToken = "github_user_token" { anchors: &["ghu_"], max_len: 40, regex: r"ghu_[A-Za-z0-9]{36}" }
    /// GitHub App installation (server-to-server) token (`ghs_…`).
    GithubServerToken = "github_server_token" { anchors: &["ghs_"], max_len: 40, regex: r"ghs_[A-Za-z0-9]{36}" }
    /// GitHub App refresh token (`ghr_…`).
    GithubRefreshToken = "github_refresh_token" { anchors: &["ghr_"], max_len: 40, regex: r"ghr_[A-Za-z0-9]{36}" }
    /// GitHub fine-grained personal access token (`github_pat_…`).
    GithubFineGrainedPat = "github_fine_grained_pat" {
        anchors: &["github_pat_"], max_len: 93, regex: r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    }
    /// GitLab personal, project or group access token (`glpat-…`).
    GitlabPat = "gitlab_pat" { anchors: &["glpat-"], max_len: 86, regex: r"glpat-[A-Za-z0-9_.-]{20,80}" }
    /// GitLab runner authentication token (`glrt-…`).
    GitlabRunnerToken = "gitlab_runner_token" { anchors: &["glrt-"], max_len: 85, regex: r"glrt-[A-Za-z0-9_.-]{20,80}" }
    /// GitLab pipeline trigger token (`glptt-…`).
    GitlabPipelineTriggerToken = "gitlab_pipeline_trigger_token" {
        anchors: &["glptt-"], max_len: 46, regex: r"glptt-[0-9a-f]{40}",
    }
    /// GitLab deploy token (`gldt-…`).
    GitlabDeployToken = "gitlab_deploy_token" { anchors: &["gldt-"], max_len: 85, regex: r"gldt-[A-Za-z0-9_-]{20,80}" }
    /// Bitbucket app password (`ATBB…`).
    BitbucketAppPassword = "bitbucket_app_password" {
        anchors: &["ATBB"], max_len: 64, min_entropy: 3.0, regex: r"ATBB[A-Za-z0-9_=.-]{28,60}",
    }
    /// Atlassian (Jira, Confluence) API token (`ATATT3…`).
    AtlassianApiToken = "atlassian_api_token" {
        anchors: &["ATATT3"], max_len: 310, regex: r"ATATT3[A-Za-z0-9_=-]{100,}",
    }
    /// npm access token (`npm_…`).
    NpmToken = "npm_token" { anchors: &["npm_"], max_len: 40, regex: r"npm_[A-Za-z0-9]{36}" }
    /// PyPI upload token (`pypi-AgE…`, a macaroon).
    PypiToken = "pypi_token" { anchors: &["pypi-AgE"], max_len: 310, regex: r"pypi-AgE[A-Za-z0-9_-]{50,}" }
    /// Docker Hub personal access token (`dckr_pat_…`).
    DockerHubPat = "docker_hub_pat" { anchors: &["dckr_pat_"], max_len: 36, regex: r"dckr_pat_[A-Za-z0-9_-]{27}" }
    /// HashiCorp Vault service, batch and recovery tokens (`hvs.…`).
    VaultToken = "vault_token" {
        anchors: &["hvs.", "hvb.", "hvr."], max_len: 204, min_entropy: 3.0, regex: r"hv[sbr]\.[A-Za-z0-9_-]{24,}",
    }
    /// HashiCorp Terraform Cloud API token (`….atlasv1.…`).
    TerraformCloudToken = "terraform_cloud_token" {
        anchors: &[".atlasv1."], back: 14, max_len: 80, regex: r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}",
    }

    // Chat.
    /// Slack bot token (`xoxb-…`).
    SlackBotToken = "slack_bot_token" {
        anchors: &["xoxb-"], max_len: 60, regex: r"xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}",
    }
    /// Slack user token (`xoxp-…`, `xoxe-…`).
    SlackUserToken = "slack_user_token" {
        anchors: &["xoxp-", "xoxe-"], max_len: 80,
        regex: r"xox[pe]-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32}",
    }
    /// Slack app-level token (`xapp-…`).
    SlackAppToken = "slack_app_token" {
        anchors: &["xapp-"], max_len: 100, regex: r"xapp-[0-9]-[A-Z0-9]{9,11}-[0-9]{10,13}-[a-f0-9]{64}",
    }
    /// Slack incoming webhook URL (`https://hooks.slack.com/services/T…/B…/…`).
    SlackWebhookUrl = "slack_webhook_url" {
        anchors: &["hooks.slack.com/"], back: 8, max_len: 90,
        regex: r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/[A-Z0-9]{8,12}/[A-Za-z0-9]{24}",
    }
    /// Discord bot token assigned to a Discord name.
    DiscordBotToken = "discord_bot_token" {
        anchors: &["discord"], max_len: 140, min_entropy: 3.0,
        regex: concat!("(?i:discord)", sep!(), r"(?:Bot\s+)?(?P<s>[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})"),
    }
    /// Discord webhook URL.
    DiscordWebhookUrl = "discord_webhook_url" {
        anchors: &["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"], back: 16, max_len: 130,
        regex: r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}",
    }
    /// Telegram bot token (`123456789:AA…`).
    TelegramBotToken = "telegram_bot_token" {
        anchors: &[":AA"], back: 10, max_len: 40, after_letters: true, regex: r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}",
    }
    /// Microsoft Teams incoming webhook URL.
    TeamsWebhookUrl = "teams_webhook_url" {
        anchors: &[".webhook.office.com/webhookb2/"], back: 48, max_len: 300,
        regex: r"https://[A-Za-z0-9-]{1,40}\.webhook\.office\.com/webhookb2/[0-9a-f-]{36}@[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36}(?:/[A-Za-z0-9_-]{20,80})?",
    }

    // Payments and commerce.
    /// Stripe live secret key (`sk_live_…`).
    StripeSecretKey = "stripe_secret_key" { anchors: &["sk_live_"], max_len: 108, regex: r"sk_live_[A-Za-z0-9]{24,}" }
    /// Stripe live restricted key (`rk_live_…`).
    StripeRestrictedKey = "stripe_restricted_key" { anchors: &["rk_live_"], max_len: 108, regex: r"rk_live_[A-Za-z0-9]{24,}" }
    /// Stripe test-mode secret or restricted key (`sk_test_…`).
    StripeTestKey = "stripe_test_key" {
        anchors: &["sk_test_", "rk_test_"], max_len: 108, regex: r"[sr]k_test_[A-Za-z0-9]{24,}",
    }
    /// Webhook signing secret (`whsec_…`: Stripe, Standard Webhooks, Portcullis itself).
    WebhookSigningSecret = "webhook_signing_secret" {
        anchors: &["whsec_"], max_len: 106, min_entropy: 3.0, regex: r"whsec_[A-Za-z0-9+/=]{24,}",
    }
    /// Square access token (`sq0atp-…`, `EAAA…`).
    SquareAccessToken = "square_access_token" {
        anchors: &["sq0atp-", "EAAA"], max_len: 64, min_entropy: 3.0,
        regex: r"sq0atp-[A-Za-z0-9_-]{22}|EAAA[A-Za-z0-9_-]{60}",
    }
    /// Square OAuth application secret (`sq0csp-…`).
    SquareOauthSecret = "square_oauth_secret" { anchors: &["sq0csp-"], max_len: 50, regex: r"sq0csp-[A-Za-z0-9_-]{43}" }
    /// PayPal Braintree access token (`access_token$production$…`).
    BraintreeAccessToken = "braintree_access_token" {
        anchors: &["access_token$"], max_len: 80,
        regex: r"access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}",
    }
    /// Shopify Admin API, custom app and partner access tokens (`shpat_…`).
    ShopifyAccessToken = "shopify_access_token" {
        anchors: &["shpat_", "shpca_", "shppa_"], max_len: 38, regex: r"shp(?:at|ca|pa)_[a-fA-F0-9]{32}",
    }
    /// Shopify app shared secret (`shpss_…`).
    ShopifySharedSecret = "shopify_shared_secret" { anchors: &["shpss_"], max_len: 38, regex: r"shpss_[a-fA-F0-9]{32}" }

    // Model providers.
    /// OpenAI project, service-account and admin keys (`sk-proj-…`).
    OpenaiApiKey = "openai_api_key" {
        anchors: &["sk-proj-", "sk-svcacct-", "sk-admin-"], max_len: 262,
        regex: r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}",
    }
    /// OpenAI user key of the older format (`sk-…T3BlbkFJ…`).
    OpenaiLegacyApiKey = "openai_legacy_api_key" {
        anchors: &["T3BlbkFJ"], back: 23, max_len: 28, regex: r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
    }
    /// Anthropic API key (`sk-ant-api03-…`).
    AnthropicApiKey = "anthropic_api_key" {
        anchors: &["sk-ant-api"], max_len: 135, regex: r"sk-ant-api[0-9]{2}-[A-Za-z0-9_-]{80,}",
    }
    /// Anthropic Admin API key (`sk-ant-admin01-…`).
    AnthropicAdminKey = "anthropic_admin_key" {
        anchors: &["sk-ant-admin"], max_len: 137, regex: r"sk-ant-admin[0-9]{2}-[A-Za-z0-9_-]{80,}",
    }
    /// Hugging Face access token (`hf_…`).
    HuggingfaceToken = "huggingface_token" {
        anchors: &["hf_"], max_len: 37, min_entropy: 3.0, regex: r"hf_[A-Za-z0-9]{34}",
    }
    /// Groq API key (`gsk_…`).
    GroqApiKey = "groq_api_key" { anchors: &["gsk_"], max_len: 56, regex: r"gsk_[A-Za-z0-9]{52}" }
    /// Replicate API token (`r8_…`).
    ReplicateApiToken = "replicate_api_token" {
        anchors: &["r8_"], max_len: 40, min_entropy: 3.0, regex: r"r8_[A-Za-z0-9]{37}",
    }
    /// Cohere API key, 40 characters assigned to a Cohere name.
    CohereApiKey = "cohere_api_key" {
        anchors: &["cohere"], max_len: 100, min_entropy: 3.0,
        regex: concat!("(?i:cohere)", sep!(), "(?P<s>[A-Za-z0-9]{40})"),
    }
    /// Mistral API key, 32 characters assigned to a Mistral name.
    MistralApiKey = "mistral_api_key" {
        anchors: &["mistral"], max_len: 100, min_entropy: 3.0,
        regex: concat!("(?i:mistral)", sep!(), "(?P<s>[A-Za-z0-9]{32})"),
    }
    /// Perplexity API key (`pplx-…`).
    PerplexityApiKey = "perplexity_api_key" { anchors: &["pplx-"], max_len: 53, regex: r"pplx-[A-Za-z0-9]{48}" }
    /// xAI API key (`xai-…`).
    XaiApiKey = "xai_api_key" { anchors: &["xai-"], max_len: 84, regex: r"xai-[A-Za-z0-9]{80}" }
    /// LangSmith API key or personal token (`lsv2_pt_…`).
    LangsmithApiKey = "langsmith_api_key" {
        anchors: &["lsv2_"], max_len: 52, regex: r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}",
    }

    // Email, messaging and observability.
    /// SendGrid API key (`SG.….…`).
    SendgridApiKey = "sendgrid_api_key" {
        anchors: &["SG."], max_len: 69, regex: r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    }
    /// Mailgun API key (`key-…`).
    MailgunApiKey = "mailgun_api_key" { anchors: &["key-"], max_len: 36, regex: r"key-[0-9a-f]{32}" }
    /// Twilio API key, account SID or auth token assigned to a Twilio name.
    TwilioApiKey = "twilio_api_key" {
        anchors: &["twilio"], max_len: 100, min_entropy: 3.0,
        regex: concat!("(?i:twilio)", sep!(), "(?P<s>(?:SK|AC)[0-9a-fA-F]{32}|[0-9a-f]{32})"),
    }
    /// Postmark server or account token (a UUID assigned to a Postmark name).
    PostmarkServerToken = "postmark_server_token" {
        anchors: &["postmark"], max_len: 110,
        regex: concat!("(?i:postmark)", sep!(), "(?P<s>", uuid!(), ")"),
    }
    /// Datadog API key (32 hex) or application key (40 hex) assigned to a Datadog name.
    DatadogApiKey = "datadog_api_key" {
        anchors: &["datadog", "dd_api_key", "dd-api-key", "dd_app", "dd-app", "dd-application-key"],
        max_len: 110, min_entropy: 3.0,
        regex: concat!("(?i:datadog|dd[_-]api[_-]key|dd[_-]app(?:lication)?[_-]key)", sep!(), "(?P<s>[0-9a-f]{40}|[0-9a-f]{32})"),
    }
    /// New Relic user API key (`NRAK-…`) or insert key (`NRII-…`).
    NewRelicApiKey = "new_relic_api_key" {
        anchors: &["NRAK-", "NRII-"], max_len: 40, regex: r"NRAK-[A-Z0-9]{27}|NRII-[A-Za-z0-9_-]{32}",
    }
    /// Sentry DSN (`https://<key>@o….ingest.sentry.io/<project>`).
    SentryDsn = "sentry_dsn" {
        anchors: &[".sentry.io/"], back: 130, max_len: 24,
        regex: r"https://[0-9a-f]{32}@[A-Za-z0-9.-]{1,80}\.sentry\.io/[0-9]{1,12}",
    }
    /// Sentry auth token (`sntrys_…`, `sntryu_…`).
    SentryAuthToken = "sentry_auth_token" {
        anchors: &["sntrys_", "sntryu_"], max_len: 260, regex: r"sntry[su]_[A-Za-z0-9+/=_-]{60,}",
    }

    // Developer tools and platforms.
    /// Linear API key (`lin_api_…`).
    LinearApiKey = "linear_api_key" { anchors: &["lin_api_"], max_len: 48, regex: r"lin_api_[A-Za-z0-9]{40}" }
    /// Notion integration token (`secret_…`, `ntn_…`).
    NotionToken = "notion_token" {
        anchors: &["secret_", "ntn_"], max_len: 50, min_entropy: 3.0,
        regex: r"secret_[A-Za-z0-9]{43}|ntn_[A-Za-z0-9]{46}",
    }
    /// Airtable personal access token (`pat….…`).
    AirtablePat = "airtable_pat" {
        anchors: &["pat"], max_len: 82, min_entropy: 3.0, regex: r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}",
    }
    /// Okta API token (`00…`) assigned to an Okta name.
    OktaApiToken = "okta_api_token" {
        anchors: &["okta"], max_len: 110, min_entropy: 3.0,
        regex: concat!("(?i:okta)", sep!(), "(?P<s>00[A-Za-z0-9_-]{40})"),
    }
    /// Netlify personal access token (`nfp_…`, or assigned to a Netlify name).
    NetlifyToken = "netlify_token" {
        anchors: &["nfp_", "netlify"], max_len: 110, min_entropy: 3.0,
        regex: concat!("nfp_[A-Za-z0-9]{36}|(?i:netlify)", sep!(), "(?P<s>[A-Za-z0-9_-]{40,46})"),
    }
    /// Vercel access token assigned to a Vercel name.
    VercelToken = "vercel_token" {
        anchors: &["vercel"], max_len: 100, min_entropy: 3.0,
        regex: concat!("(?i:vercel)", sep!(), "(?P<s>[A-Za-z0-9]{24})"),
    }
    /// Cloudflare API token (40) or global API key (37 hex) assigned to a Cloudflare name.
    CloudflareApiToken = "cloudflare_api_token" {
        anchors: &["cloudflare", "cf_api", "cf-api"], max_len: 110, min_entropy: 3.0,
        regex: concat!("(?i:cloudflare|cf[_-]api)", sep!(), "(?P<s>[A-Za-z0-9_-]{40}|[0-9a-f]{37})"),
    }
    /// Fastly API token assigned to a Fastly name.
    FastlyApiToken = "fastly_api_token" {
        anchors: &["fastly"], max_len: 100, min_entropy: 3.0,
        regex: concat!("(?i:fastly)", sep!(), "(?P<s>[A-Za-z0-9_-]{32})"),
    }
    /// age encryption secret key (`AGE-SECRET-KEY-1…`).
    AgeSecretKey = "age_secret_key" {
        anchors: &["AGE-SECRET-KEY-1"], max_len: 74, regex: r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
    }
    /// Databricks personal access token (`dapi…`).
    DatabricksToken = "databricks_token" { anchors: &["dapi"], max_len: 38, regex: r"dapi[a-f0-9]{32}(?:-[0-9])?" }
    /// Grafana Cloud access policy token (`glc_…`).
    GrafanaCloudToken = "grafana_cloud_token" {
        anchors: &["glc_"], max_len: 406, min_entropy: 3.0, regex: r"glc_[A-Za-z0-9+/]{32,}={0,2}",
    }
    /// Grafana service account token (`glsa_…`).
    GrafanaServiceAccountToken = "grafana_service_account_token" {
        anchors: &["glsa_"], max_len: 46, regex: r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
    }
    /// Postman API key (`PMAK-…`).
    PostmanApiKey = "postman_api_key" { anchors: &["PMAK-"], max_len: 64, regex: r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}" }
    /// Doppler token (`dp.pt.…` and the other Doppler token types).
    DopplerToken = "doppler_token" {
        anchors: &["dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."], max_len: 54,
        regex: r"dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}",
    }
    /// Pulumi access token (`pul-…`).
    PulumiAccessToken = "pulumi_access_token" { anchors: &["pul-"], max_len: 44, regex: r"pul-[a-f0-9]{40}" }
    /// Mapbox secret token (`sk.eyJ…`).
    MapboxSecretToken = "mapbox_secret_token" {
        anchors: &["sk.eyJ"], max_len: 350, regex: r"sk\.eyJ[A-Za-z0-9_-]{50,}\.[A-Za-z0-9_-]{20,40}",
    }
    /// 1Password service account token (`ops_eyJ…`).
    OnepasswordServiceAccountToken = "onepassword_service_account_token" {
        anchors: &["ops_eyJ"], max_len: 1010, regex: r"ops_eyJ[A-Za-z0-9+/=_-]{100,}",
    }
    /// Figma personal access token (`figd_…`).
    FigmaPat = "figma_pat" { anchors: &["figd_"], max_len: 45, regex: r"figd_[A-Za-z0-9_-]{40}" }
    /// Supabase access token (`sbp_…`).
    SupabaseAccessToken = "supabase_access_token" { anchors: &["sbp_"], max_len: 44, regex: r"sbp_[a-f0-9]{40}" }
    /// PlanetScale service token or password (`pscale_tkn_…`).
    PlanetscaleToken = "planetscale_token" {
        anchors: &["pscale_"], max_len: 82, regex: r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,64}",
    }
    /// Tailscale auth, API and OAuth client keys (`tskey-…`).
    TailscaleKey = "tailscale_key" {
        anchors: &["tskey-"], max_len: 90,
        regex: r"tskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,20}-[A-Za-z0-9]{20,40}",
    }
    /// Buildkite user access token (`bkua_…`).
    BuildkiteToken = "buildkite_token" { anchors: &["bkua_"], max_len: 45, regex: r"bkua_[a-f0-9]{40}" }

    // Generic credential shapes with a fixed syntax.
    /// The password in a URL (`postgres://user:<password>@host`).
    UrlCredentials = "url_credentials" {
        anchors: &["://"], back: 20, max_len: 200, check: Some(not_a_placeholder),
        regex: r#"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s:@/?#"'<>\[\]]{1,64}:(?P<s>[^\s:@/?#"'<>\[\]]{1,})@"#,
    }
    /// HTTP basic credentials (`Authorization: Basic <base64 of user:password>`).
    HttpBasicAuth = "http_basic_auth" {
        anchors: &["basic "], max_len: 300, check: Some(is_basic_credentials),
        regex: r"(?i:basic)[ ]+(?P<s>[A-Za-z0-9+/]{8,}={0,2})",
    }
}

/// Rejects masked or templated values (`****`, `${DB_PASSWORD}`, `{{ password }}`, `<password>`).
fn not_a_placeholder(value: &str) -> bool {
    !(value.bytes().all(|b| b == b'*' || b == b'x' || b == b'X')
        || value.starts_with("${")
        || value.starts_with("{{")
        || value.starts_with('<')
        || value.starts_with('%'))
}

/// True when the value is base64 of `user:password` text.
fn is_basic_credentials(value: &str) -> bool {
    use base64::Engine as _;
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return false;
    };
    matches!(text.split_once(':'), Some((user, password))
        if !user.is_empty() && !password.is_empty() && !text.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_snake_case() {
        let mut ids: Vec<&str> = SecretRule::ALL.iter().map(|r| r.id()).collect();
        assert!(ids.iter().all(|id| {
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before);
        assert!(before >= 50, "only {before} provider rules");
    }

    #[test]
    fn every_rule_has_anchors_and_a_regex() {
        for rule in SecretRule::ALL {
            let spec = rule.spec();
            assert!(!spec.anchors.is_empty(), "{} has no anchors", rule.id());
            assert!(!spec.regex.is_empty(), "{} has no regex", rule.id());
            assert!(
                regex::Regex::new(spec.regex).is_ok(),
                "{} regex does not compile",
                rule.id()
            );
        }
    }

    #[test]
    fn serialises_as_the_id() {
        let json = serde_json::to_string(&SecretRule::GithubPat).unwrap();
        assert_eq!(json, "\"github_pat\"");
        let back: SecretRule = serde_json::from_str("\"aws_access_key_id\"").unwrap();
        assert_eq!(back, SecretRule::AwsAccessKeyId);
    }
}
