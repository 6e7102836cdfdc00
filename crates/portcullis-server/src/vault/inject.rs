//! Credentials as a connection's stored configuration names them — by secret name only —
//! and their injection at egress: environment variables of a stdio upstream, and a header
//! or query parameter of an HTTP request. Values are revealed here, after policy and
//! approval, at the moment the process starts or the request leaves; nothing returns them.

use super::service::{Vault, VaultError};
use portcullis_core::UnixMillis;
use portcullis_core::id::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One environment variable of a stdio connection: a vault secret by name. `Plain` exists
/// only on the way in (a tenant's `--env KEY=VALUE`, sealed into the vault before the
/// connection is stored) and in rows written before the vault (moved by `portcullis
/// migrate`); a stored plain value is never launched.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Secret { secret: String },
    Plain(String),
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { secret } => write!(f, "Secret({secret})"),
            Self::Plain(_) => f.write_str("Plain([REDACTED])"),
        }
    }
}

/// How the gateway authenticates to an HTTP upstream, with a secret from the tenant's vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// `Authorization: Bearer <secret>`.
    Bearer { secret: String },
    /// `Authorization: Basic base64(<username>:<secret>)`.
    Basic { username: String, secret: String },
    /// `<name>: <secret>` (an API-key header).
    Header { name: String, secret: String },
    /// `?<name>=<secret>` added to every request URL.
    Query { name: String, secret: String },
    /// `Authorization: Bearer <access token>`, minted by the token broker from the refresh
    /// token in the vault (at most 15 minutes old; see [`super::oauth`]). HTTP API
    /// connections only: each of their requests gets a current token.
    Oauth {
        token_url: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        refresh_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
}

impl Credential {
    /// `bearer:SECRET`, `basic:USER:SECRET`, `header:NAME:SECRET` or `query:NAME:SECRET`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let credential = match parts.as_slice() {
            ["bearer", secret] => Self::Bearer {
                secret: (*secret).to_owned(),
            },
            ["basic", username, secret] => Self::Basic {
                username: (*username).to_owned(),
                secret: (*secret).to_owned(),
            },
            ["header", name, secret] => Self::Header {
                name: (*name).to_owned(),
                secret: (*secret).to_owned(),
            },
            ["query", name, secret] => Self::Query {
                name: (*name).to_owned(),
                secret: (*secret).to_owned(),
            },
            _ => {
                return Err(format!(
                    "credential `{text}`: use bearer:SECRET, basic:USER:SECRET, header:NAME:SECRET or query:NAME:SECRET"
                ));
            }
        };
        credential.validate()?;
        Ok(credential)
    }

    /// The vault secrets it names.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Self::Bearer { secret }
            | Self::Basic { secret, .. }
            | Self::Header { secret, .. }
            | Self::Query { secret, .. } => vec![secret],
            Self::Oauth {
                client_secret,
                refresh_token,
                ..
            } => std::iter::once(refresh_token.as_str())
                .chain(client_secret.as_deref())
                .collect(),
        }
    }

    /// The OAuth client this credential describes, if it is one.
    pub fn oauth_client(&self) -> Option<super::oauth::OAuthClient> {
        match self {
            Self::Oauth {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                scope,
            } => Some(super::oauth::OAuthClient {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                refresh_token: refresh_token.clone(),
                scope: scope.clone(),
            }),
            _ => None,
        }
    }

    /// The shape is usable: a valid secret name, a header name that is a token and not one
    /// the transport owns, a username without `:`.
    pub fn validate(&self) -> Result<(), String> {
        for secret in self.secrets() {
            if !super::service::valid_secret_name(secret) {
                return Err(format!("credential: `{secret}` is not a secret name"));
            }
        }
        match self {
            Self::Header { name, .. } => {
                let lower = name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || matches!(
                        lower.as_str(),
                        "host"
                            | "content-length"
                            | "content-type"
                            | "transfer-encoding"
                            | "connection"
                            | "accept"
                            | "mcp-session-id"
                            | "mcp-protocol-version"
                            | "last-event-id"
                    )
                {
                    return Err(format!("credential header `{name}` cannot be used"));
                }
            }
            Self::Query { name, .. } if name.is_empty() || name.len() > 64 => {
                return Err("credential query parameter: 1-64 characters".into());
            }
            Self::Basic { username, .. } if username.contains(':') || username.is_empty() => {
                return Err(
                    "credential basic: the username may not be empty or contain `:`".into(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// A credential ready for one request: the header to add, or the query parameter.
pub struct Injected {
    pub header: Option<(http::HeaderName, http::HeaderValue)>,
    pub query: Option<(String, zeroize::Zeroizing<String>)>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Injected([REDACTED])")
    }
}

/// Reveal the credential's secret and shape it for the wire. The header value is marked
/// sensitive (never printed by `http`'s Debug, never compressed into HPACK tables).
pub async fn inject(
    vault: &Vault,
    tenant: &TenantId,
    credential: &Credential,
    now: UnixMillis,
) -> Result<Injected, VaultError> {
    inject_with(vault, tenant, credential, now, false).await
}

/// [`inject`] for a request an agent is making now (sealed blobs from the access cache).
pub async fn inject_for_request(
    vault: &Vault,
    tenant: &TenantId,
    credential: &Credential,
    now: UnixMillis,
) -> Result<Injected, VaultError> {
    inject_with(vault, tenant, credential, now, true).await
}

async fn inject_with(
    vault: &Vault,
    tenant: &TenantId,
    credential: &Credential,
    now: UnixMillis,
    cached: bool,
) -> Result<Injected, VaultError> {
    use base64::Engine as _;
    let secret = match credential {
        Credential::Bearer { secret }
        | Credential::Basic { secret, .. }
        | Credential::Header { secret, .. }
        | Credential::Query { secret, .. } => secret,
        // Minted by the broker, not revealed: see `oauth_header`.
        Credential::Oauth { .. } => return Err(VaultError::InvalidValue),
    };
    let revealed = if cached {
        vault.reveal_for_request(tenant, secret, now).await?
    } else {
        vault.reveal(tenant, secret, now).await?
    };
    let value = revealed.expose_str()?;
    let header = |name: http::HeaderName, text: zeroize::Zeroizing<String>| {
        let mut value = http::HeaderValue::from_str(&text).map_err(|_| VaultError::InvalidValue)?;
        value.set_sensitive(true);
        Ok::<_, VaultError>(Injected {
            header: Some((name, value)),
            query: None,
        })
    };
    match credential {
        Credential::Bearer { .. } => header(
            http::header::AUTHORIZATION,
            zeroize::Zeroizing::new(format!("Bearer {value}")),
        ),
        Credential::Basic { username, .. } => {
            let pair = zeroize::Zeroizing::new(format!("{username}:{value}"));
            header(
                http::header::AUTHORIZATION,
                zeroize::Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
                )),
            )
        }
        Credential::Header { name, .. } => header(
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| VaultError::InvalidValue)?,
            zeroize::Zeroizing::new(value.to_owned()),
        ),
        Credential::Query { name, .. } => Ok(Injected {
            header: None,
            query: Some((name.clone(), zeroize::Zeroizing::new(value.to_owned()))),
        }),
        Credential::Oauth { .. } => Err(VaultError::InvalidValue),
    }
}

/// The `Authorization` header for an OAuth credential: a current access token from the
/// broker, marked sensitive.
pub async fn oauth_header(
    broker: &super::oauth::Broker,
    tenant: &TenantId,
    connection: &portcullis_core::id::ConnectionId,
    client: &super::oauth::OAuthClient,
) -> Result<Injected, super::oauth::BrokerError> {
    let token = broker.access_token(tenant, connection, client).await?;
    let text = zeroize::Zeroizing::new(format!("Bearer {}", token.expose()));
    let mut value = http::HeaderValue::from_str(&text).map_err(|_| {
        super::oauth::BrokerError::Invalid("the access token is not a header value".into())
    })?;
    value.set_sensitive(true);
    Ok(Injected {
        header: Some((http::header::AUTHORIZATION, value)),
        query: None,
    })
}

/// A stdio connection's environment with every secret revealed, for one launch. A stored
/// plain value is refused (it predates the vault; `portcullis migrate` moves it).
pub async fn reveal_env(
    vault: &Vault,
    tenant: &TenantId,
    env: &BTreeMap<String, EnvValue>,
    now: UnixMillis,
) -> Result<BTreeMap<String, zeroize::Zeroizing<String>>, String> {
    let mut out = BTreeMap::new();
    for (name, value) in env {
        let EnvValue::Secret { secret } = value else {
            return Err(format!(
                "environment variable `{name}` is stored in plain text; run `portcullis migrate` to move it into the vault"
            ));
        };
        let revealed = vault
            .reveal(tenant, secret, now)
            .await
            .map_err(|e| format!("environment variable `{name}` (secret `{secret}`): {e}"))?;
        let text = revealed
            .expose_str()
            .map_err(|_| format!("environment variable `{name}`: the secret is not text"))?;
        out.insert(name.clone(), zeroize::Zeroizing::new(text.to_owned()));
    }
    Ok(out)
}
