//! What a tenant configures for model routes: a [`ModelRoute`] (one provider, its wire
//! format, base URL, model allow list, the vault secret holding its key, the retention
//! posture, the redaction mode, a server-side system prompt, credit prices) and the tenant's
//! [`ProviderPolicy`]. Pure: validation and matching only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The wire format a route speaks, to its callers and to its provider alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI Chat Completions: callers post `/t/{tenant}/v1/chat/completions`; the gateway
    /// posts `{base_url}/chat/completions` (base URL as the OpenAI SDK takes it, `…/v1`).
    Openai,
    /// Anthropic Messages: callers post `/t/{tenant}/v1/messages`; the gateway posts
    /// `{base_url}/v1/messages` (base URL as the Anthropic SDK takes it).
    Anthropic,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Openai => "openai",
            Api::Anthropic => "anthropic",
        }
    }

    /// The provider path appended to the route's base URL.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Api::Openai => "/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }
}

/// What happens to personal data in prompts before they leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    /// `[EMAIL]`: the provider never sees the value (the default).
    #[default]
    Mask,
    /// `[EMAIL_1]`: the provider sees a label; with `restore`, the caller gets the value back
    /// wherever the answer uses the label.
    Pseudonymise,
    /// Sent as written (the tenant chose; still audited as observed).
    Off,
}

impl PiiMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiMode::Mask => "mask",
            PiiMode::Pseudonymise => "pseudonymise",
            PiiMode::Off => "off",
        }
    }
}

fn yes() -> bool {
    true
}

fn per_token() -> i64 {
    1000
}

/// One route to one model provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    pub api: Api,
    /// The provider's name as the tenant's provider policy names it (`openai`, `azure`,
    /// `anthropic`, `mistral`, …).
    pub provider: String,
    /// `https://api.openai.com/v1`, `https://api.anthropic.com`: sent through the egress
    /// policy like every outbound request.
    pub base_url: String,
    /// The models callers may ask for: exact names, or a prefix ending in `*`.
    pub models: Vec<String>,
    /// The vault secret holding the provider key (the key itself never leaves the vault
    /// except into the outbound request's header).
    pub key_secret: String,
    /// The key is the tenant's own (bring your own key) rather than the operator's.
    #[serde(default = "yes")]
    pub byo: bool,
    /// No-store body flags and the retention headers are added, features that would keep
    /// data at the provider are refused. On unless the tenant turns it off.
    #[serde(default = "yes")]
    pub zero_retention: bool,
    /// Extra headers the provider honours for no retention / no training (added only in
    /// zero-retention mode).
    #[serde(default)]
    pub retention_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub pii: PiiMode,
    /// With `pii = pseudonymise`: put the values back into the answer (streamed too).
    #[serde(default)]
    pub restore: bool,
    /// Prepended to every request as the system prompt; never returned to callers.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Credits charged per 1,000 tokens (default 1,000: one credit per token).
    #[serde(default = "per_token")]
    pub credits_per_1k_input: i64,
    #[serde(default = "per_token")]
    pub credits_per_1k_output: i64,
}

/// Largest server-side system prompt.
const MAX_SYSTEM_PROMPT: usize = 32 * 1024;

/// Headers a route may not set: the gateway owns them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "cookie",
    "proxy-authorization",
];

/// A route or provider name: 1–64 of `a-z 0-9 - _ .`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

impl ModelRoute {
    /// Everything the gateway checks before storing a route (the vault secret's presence
    /// and the provider policy are checked by the caller, which has the store).
    pub fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.provider) {
            return Err("provider must be 1-64 of a-z, 0-9, -, _ and .".into());
        }
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| format!("base_url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("base_url must be http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("base_url may not carry credentials; put the key in the vault".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("base_url may not have a query or a fragment".into());
        }
        if self.models.is_empty() || self.models.len() > 256 {
            return Err("models must list 1-256 model names (a prefix may end in *)".into());
        }
        for model in &self.models {
            if model.is_empty()
                || model.len() > 128
                || model.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err("each model name must be 1-128 characters without spaces".into());
            }
            if model.trim_end_matches('*').contains('*') {
                return Err("a model pattern may only end in *".into());
            }
        }
        if !crate::vault::valid_secret_name(&self.key_secret) {
            return Err("key_secret must name a vault secret".into());
        }
        for (name, value) in &self.retention_headers {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(format!("retention header `{name}` is not a valid header"));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(format!("retention header `{name}` is set by the gateway"));
            }
        }
        if self.restore && self.pii != PiiMode::Pseudonymise {
            return Err("restore needs pii = pseudonymise".into());
        }
        if self
            .system_prompt
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.len() > MAX_SYSTEM_PROMPT)
        {
            return Err("system_prompt must be 1-32768 bytes".into());
        }
        if !(0..=1_000_000).contains(&self.credits_per_1k_input)
            || !(0..=1_000_000).contains(&self.credits_per_1k_output)
        {
            return Err("credit prices must be 0-1000000 per 1,000 tokens".into());
        }
        Ok(())
    }

    /// Whether callers may ask this route for `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => m == model,
        })
    }

    /// Credits for a request's token counts (rounded up: a started thousand is charged in
    /// proportion, a fraction of a credit as a whole one).
    pub fn credits(&self, input_tokens: i64, output_tokens: i64) -> i64 {
        let milli = input_tokens
            .max(0)
            .saturating_mul(self.credits_per_1k_input)
            + output_tokens
                .max(0)
                .saturating_mul(self.credits_per_1k_output);
        milli.saturating_add(999) / 1000
    }

    /// What the audit keeps of the route: everything but the system prompt's text (its
    /// length and a hash instead).
    pub fn audit_summary(&self, name: &str) -> serde_json::Value {
        use sha2::Digest as _;
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("name".into(), name.into());
            if let Some(prompt) = &self.system_prompt {
                object.insert(
                    "system_prompt".into(),
                    serde_json::json!({
                        "bytes": prompt.len(),
                        "sha256": hex::encode(sha2::Sha256::digest(prompt.as_bytes())),
                    }),
                );
            }
        }
        value
    }
}

/// The tenant's rule for which providers its routes may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPolicy {
    /// When set, only these providers.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Never these providers (wins over `allow`).
    #[serde(default)]
    pub block: Vec<String>,
}

impl ProviderPolicy {
    pub fn validate(&self) -> Result<(), String> {
        let names = self.allow.iter().flatten().chain(&self.block);
        for name in names {
            if !valid_name(name) {
                return Err(format!(
                    "provider `{name}` must be 1-64 of a-z, 0-9, -, _ and ."
                ));
            }
        }
        Ok(())
    }

    /// Why `provider` may not be used, if it may not.
    pub fn refusal(&self, provider: &str) -> Option<String> {
        if self.block.iter().any(|p| p == provider) {
            return Some(format!(
                "provider `{provider}` is blocked by this tenant's provider policy"
            ));
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(|p| p == provider) => Some(format!(
                "provider `{provider}` is not on this tenant's provider allow list"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> ModelRoute {
        serde_json::from_value(serde_json::json!({
            "api": "openai",
            "provider": "openai",
            "base_url": "https://api.openai.com/v1",
            "models": ["gpt-4o-mini", "gpt-5*"],
            "key_secret": "openai-key",
        }))
        .unwrap()
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let r = route();
        assert!(r.zero_retention);
        assert_eq!(r.pii, PiiMode::Mask);
        assert!(!r.restore);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn models_match_exactly_or_by_prefix() {
        let r = route();
        assert!(r.allows_model("gpt-4o-mini"));
        assert!(r.allows_model("gpt-5-nano"));
        assert!(!r.allows_model("gpt-4o"));
        assert!(!r.allows_model("gpt-4o-mini-2"));
    }

    #[test]
    fn bad_routes_are_refused_with_a_reason() {
        type Break = Box<dyn Fn(&mut ModelRoute)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "credentials",
                Box::new(|r| r.base_url = "https://u:p@x.test/v1".into()),
            ),
            (
                "http or https",
                Box::new(|r| r.base_url = "file:///etc/passwd".into()),
            ),
            (
                "query",
                Box::new(|r| r.base_url = "https://x.test/v1?key=1".into()),
            ),
            ("1-256", Box::new(|r| r.models.clear())),
            ("only end in", Box::new(|r| r.models = vec!["g*pt".into()])),
            ("vault secret", Box::new(|r| r.key_secret = "../x".into())),
            (
                "set by the gateway",
                Box::new(|r| {
                    r.retention_headers
                        .insert("Authorization".into(), "x".into());
                }),
            ),
            ("restore needs", Box::new(|r| r.restore = true)),
            (
                "system_prompt",
                Box::new(|r| r.system_prompt = Some(String::new())),
            ),
            ("provider", Box::new(|r| r.provider = "Open AI".into())),
        ];
        for (reason, break_it) in cases {
            let mut r = route();
            break_it(&mut r);
            let error = r.validate().unwrap_err();
            assert!(error.contains(reason), "{reason}: {error}");
        }
    }

    #[test]
    fn the_block_list_wins_and_the_allow_list_limits() {
        let policy = ProviderPolicy {
            allow: Some(vec!["openai".into(), "anthropic".into()]),
            block: vec!["anthropic".into()],
        };
        assert!(policy.refusal("openai").is_none());
        assert!(policy.refusal("anthropic").unwrap().contains("blocked"));
        assert!(policy.refusal("mistral").unwrap().contains("allow list"));
        assert!(ProviderPolicy::default().refusal("anything").is_none());
    }

    #[test]
    fn credits_round_up_and_never_go_negative() {
        let mut r = route();
        assert_eq!(r.credits(10, 5), 15);
        r.credits_per_1k_input = 1;
        r.credits_per_1k_output = 2;
        assert_eq!(r.credits(1, 0), 1);
        assert_eq!(r.credits(-5, 0), 0);
    }

    #[test]
    fn the_audit_summary_keeps_no_system_prompt_text() {
        let mut r = route();
        r.system_prompt = Some("You are the Acme support bot. Codeword: heron.".into());
        let summary = r.audit_summary("default").to_string();
        assert!(!summary.contains("heron"));
        assert!(summary.contains("sha256"));
    }
}
