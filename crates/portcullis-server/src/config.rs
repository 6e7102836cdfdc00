//! Configuration: embedded commented defaults, then `portcullis.toml`, then `PORTCULLIS_*`
//! environment variables; validated once at start-up into typed values.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The defaults file, shipped as documentation and printed by `portcullis print-default-config`.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub data: DataConfig,
    pub auth: AuthConfig,
    pub approvals: ApprovalsConfig,
    pub audit: AuditConfig,
    pub upstream: UpstreamConfig,
    pub egress: EgressConfig,
    pub vault: VaultConfig,
    pub webhooks: WebhooksConfig,
    pub console: ConsoleConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub sandbox: SandboxConfig,
    /// The operator's program catalog: what stdio connections may launch, by name.
    #[serde(default)]
    pub programs: BTreeMap<String, crate::programs::ProgramConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`https://host[:port]`) whose pages may call the gateway. Empty: a
    /// request carrying any `Origin` header is refused.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (addresses or CIDR blocks) whose forwarding header names the client.
    /// From anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// The one header those proxies write the client into: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: ForwardedHeader,
}

/// How launched programs are confined (see `crate::sandbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Protections switched off on this host, by name.
    pub off: Vec<String>,
    /// The first user id of launched programs when the gateway runs as root.
    pub uid_base: u32,
    /// The folder of the connections' own folders (empty: see the defaults file).
    pub rooms: String,
}

impl SandboxConfig {
    /// The protections switched off, checked.
    pub fn off(
        &self,
    ) -> Result<std::collections::BTreeSet<portcullis_sandbox::Protection>, String> {
        use portcullis_sandbox::Protection;
        self.off
            .iter()
            .map(|name| match Protection::parse(name) {
                Some(Protection::Environment | Protection::ProcessGroup) | None => Err(format!(
                    "sandbox.off: `{name}` is not a protection that can be switched off"
                )),
                Some(p) => Ok(p),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
    pub database_url: String,
    pub key_file: String,
    pub max_connections: u32,
    /// Start even when the data folder or database files are readable by group or others
    /// (with a warning). Off: such a start is refused.
    pub allow_open_permissions: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub lockout_threshold: u32,
    pub lockout_window_secs: u64,
    pub lockout_secs: u64,
    /// After this many seconds of a lockout, a valid credential from the locked-out address
    /// is served again (wrong ones stay refused until the lockout ends).
    pub lockout_valid_credential_secs: u64,
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    pub default_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// T: seconds between checkpoints of every trail with new entries (0: no timer).
    pub checkpoint_interval_secs: u64,
    /// N: a trail is checkpointed once this many entries were appended since its last one
    /// (0: only on the timer, approvals, executions and shutdown).
    pub checkpoint_every_entries: u64,
    /// The checkpoint witness log (empty: `audit-witness.log` in the data folder).
    pub witness_file: String,
    /// The origin prefix of every tenant's checkpoint (`<origin>/<tenant id>`).
    pub origin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub call_timeout_secs: u64,
    pub restart_backoff_max_secs: u64,
    /// Seconds between liveness pings of a connected upstream (0: none).
    pub ping_interval_secs: u64,
    /// Seconds an upstream has to answer a ping before it is taken down and reconnected.
    pub ping_timeout_secs: u64,
}

/// Where outbound requests (HTTP upstreams, HTTP API connections, token endpoints) may go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Networks (CIDR blocks or addresses) that are not public but that outbound requests
    /// may reach anyway: development, tests, on-premises upstreams. Operator-only; a tenant
    /// can only narrow what it reaches. Empty: public addresses only.
    pub allow_private: Vec<String>,
    /// A PEM file of certificate authorities trusted for `https://` upstreams besides the
    /// system's (a private CA). Empty: the system's only.
    pub ca_file: String,
}

/// The vault's key provider: the key file (embedded default) or an HSM over PKCS#11.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    pub provider: VaultProvider,
    /// Sealed values of an older ciphertext format are refused.
    pub min_format: u8,
    /// The PKCS#11 module (a shared library), the token's label and the label of the
    /// master key in it (`provider = "pkcs11"`). The PIN is read from the environment
    /// variable `PORTCULLIS_PKCS11_PIN`, never from a file.
    pub pkcs11_module: String,
    pub pkcs11_token: String,
    pub pkcs11_key_label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultProvider {
    Keyfile,
    Pkcs11,
}

/// The console: sessions, sign-in lockout and the fresh second factor for large decisions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A session ends this many seconds after sign-in, however busy.
    pub session_absolute_secs: u64,
    /// Failed sign-ins of one human that pause their sign-in …
    pub login_lockout_threshold: u32,
    /// … for this many seconds.
    pub login_lockout_secs: u64,
    /// A decision on a request of at least this dollar impact (in cents) needs a fresh code
    /// from the authenticator app.
    pub fresh_factor_above_cents: i64,
}

/// Outbound webhook delivery and inbound webhook verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Time limit of one delivery attempt (connect, send, answer), in seconds.
    pub timeout_secs: u64,
    /// Deliveries in flight at once, per process.
    pub concurrency: usize,
    /// How often each process looks for new audit entries and due deliveries when nothing
    /// wakes it (another replica's entries, retries coming due), in milliseconds.
    pub poll_interval_ms: u64,
    /// An endpoint whose every delivery failed for this long is disabled, with a
    /// notification to the tenant's other endpoints.
    pub disable_after_secs: u64,
    /// After a secret rotation the previous secret signs too for this long.
    pub rotation_grace_secs: u64,
    /// Default replay window of inbound webhooks (a source may set its own, at most 1 hour).
    pub inbound_tolerance_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A separate listen address for `/metrics` (no credentials there: keep it private).
    /// Empty: none.
    pub listen: String,
    /// SHA-256 (hex) of the bearer token that may read `/metrics` on the main listener.
    /// Empty: `/metrics` on the main listener is refused.
    pub token_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load the layers. `file` is `portcullis.toml` in the working directory unless given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Invalid(format!(
                        "config file `{}` does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("portcullis.toml")),
        }
        // Every setting lives in a section, so only `PORTCULLIS_SECTION__KEY` variables are
        // configuration; the others (`PORTCULLIS_ADMIN_TOKEN`, `PORTCULLIS_URL`, …) belong
        // to the CLI.
        figment = figment.merge(
            Env::prefixed("PORTCULLIS_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults alone (for tests).
    pub fn defaults() -> Self {
        let config: Config = Figment::from(Toml::string(DEFAULT_CONFIG))
            .extract()
            .expect("default config parses");
        config
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.server.max_body_bytes < 1024 {
            return invalid("server.max_body_bytes must be at least 1024");
        }
        if self.approvals.default_ttl_secs == 0 || self.approvals.default_ttl_secs > 24 * 3600 {
            return invalid("approvals.default_ttl_secs must be between 1 and 86400 (24 hours)");
        }
        if self.auth.lockout_threshold == 0 {
            return invalid("auth.lockout_threshold must be at least 1");
        }
        if self.auth.rate_limit_per_minute == 0 || self.auth.rate_limit_burst == 0 {
            return invalid(
                "auth.rate_limit_per_minute and auth.rate_limit_burst must be at least 1",
            );
        }
        if self.auth.token_ttl_secs == 0 || self.auth.token_ttl_secs > 366 * 24 * 3600 {
            return invalid("auth.token_ttl_secs must be between 1 and 31622400 (a year)");
        }
        if self.data.max_connections == 0 || self.data.max_connections > 1000 {
            return invalid("data.max_connections must be between 1 and 1000");
        }
        if self.upstream.call_timeout_secs == 0 {
            return invalid("upstream.call_timeout_secs must be at least 1");
        }
        let c = &self.console;
        if c.session_idle_secs == 0 || c.session_idle_secs > c.session_absolute_secs {
            return invalid(
                "console.session_idle_secs must be between 1 and console.session_absolute_secs",
            );
        }
        if c.session_absolute_secs > 7 * 86_400 {
            return invalid("console.session_absolute_secs must be at most 604800 (a week)");
        }
        if c.login_lockout_threshold == 0 {
            return invalid("console.login_lockout_threshold must be at least 1");
        }
        if c.fresh_factor_above_cents < 0 {
            return invalid("console.fresh_factor_above_cents must be 0 or more");
        }
        let w = &self.webhooks;
        if w.timeout_secs == 0 || w.timeout_secs > 300 {
            return invalid("webhooks.timeout_secs must be between 1 and 300");
        }
        if w.concurrency == 0 || w.concurrency > 1024 {
            return invalid("webhooks.concurrency must be between 1 and 1024");
        }
        if w.poll_interval_ms < 10 || w.poll_interval_ms > 60_000 {
            return invalid("webhooks.poll_interval_ms must be between 10 and 60000");
        }
        if w.inbound_tolerance_secs == 0 || w.inbound_tolerance_secs > 3600 {
            return invalid("webhooks.inbound_tolerance_secs must be between 1 and 3600");
        }
        if w.rotation_grace_secs > 30 * 86_400 {
            return invalid("webhooks.rotation_grace_secs must be at most 2592000 (30 days)");
        }
        if self.upstream.ping_timeout_secs == 0 {
            return invalid("upstream.ping_timeout_secs must be at least 1");
        }
        self.trusted_proxies().map_err(ConfigError::Invalid)?;
        self.sites().map_err(ConfigError::Invalid)?;
        self.metrics_listen().map_err(ConfigError::Invalid)?;
        self.allow_private().map_err(ConfigError::Invalid)?;
        if self.vault.min_format == 0 || self.vault.min_format > portcullis_core::vault::FORMAT_V1 {
            return invalid("vault.min_format must be 1 (the only ciphertext format)");
        }
        if self.vault.provider == VaultProvider::Pkcs11
            && (self.vault.pkcs11_module.is_empty()
                || self.vault.pkcs11_token.is_empty()
                || self.vault.pkcs11_key_label.is_empty())
        {
            return invalid(
                "vault.provider = \"pkcs11\" needs vault.pkcs11_module, vault.pkcs11_token and vault.pkcs11_key_label",
            );
        }
        let hash = &self.metrics.token_sha256;
        if !hash.is_empty() && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit())) {
            return invalid("metrics.token_sha256 must be 64 hex digits (sha256 of the token)");
        }
        self.sandbox.off().map_err(ConfigError::Invalid)?;
        // Every program user (uid_base .. uid_base + 65535) must be above the usual account
        // ranges and below the invalid id 4294967295.
        if self.sandbox.uid_base < 100_000
            || self.sandbox.uid_base > u32::MAX - crate::sandbox::USER_IDS - 1
        {
            return invalid("sandbox.uid_base must be between 100000 and 4294901758");
        }
        // `@self` resolves later, to the running binary.
        crate::programs::Catalog::build(&self.programs, Some(std::path::Path::new("/")))
            .map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The allowed hosts and origins, parsed.
    pub fn sites(&self) -> Result<crate::web::Sites, String> {
        crate::web::Sites::new(&self.server.allowed_hosts, &self.server.allowed_origins)
    }

    /// The trusted reverse proxies, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks("server.trusted_proxies", &self.server.trusted_proxies)
    }

    /// The networks outbound requests may reach although they are not public.
    pub fn allow_private(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks("egress.allow_private", &self.egress.allow_private)
    }

    /// The separate metrics listener, if configured.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).map_err(|_| {
            format!(
                "metrics.listen: `{}` is not an address:port",
                self.metrics.listen
            )
        })
    }

    pub fn database_url(&self) -> String {
        if self.data.database_url.is_empty() {
            format!("sqlite://{}", self.data.dir.join("portcullis.db").display())
        } else {
            self.data.database_url.clone()
        }
    }

    /// The checkpoint witness log (outside the database).
    pub fn witness_file(&self) -> PathBuf {
        if self.audit.witness_file.is_empty() {
            self.data.dir.join("audit-witness.log")
        } else {
            PathBuf::from(&self.audit.witness_file)
        }
    }

    pub fn key_file(&self) -> PathBuf {
        if self.data.key_file.is_empty() {
            self.data.dir.join("keys.json")
        } else {
            PathBuf::from(&self.data.key_file)
        }
    }
}

/// Addresses or CIDR blocks of the setting `name`.
fn networks(name: &str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{name}: `{entry}` is not an address or CIDR block"))
        })
        .collect()
}

/// Which header the trusted proxies write the client into. Only that one is read: a proxy
/// that appends to `X-Forwarded-For` passes a client's own `Forwarded` header through
/// untouched, so believing the other header would let any client name any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert!(config.server.listen.ip().is_loopback());
        assert_eq!(config.approvals.default_ttl_secs, 3600);
    }

    #[test]
    fn ttl_above_a_day_is_refused() {
        let mut config = Config::defaults();
        config.approvals.default_ttl_secs = 24 * 3600 + 1;
        assert!(config.validate().is_err());
    }
}
