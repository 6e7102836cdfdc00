//! The OAuth 2 token broker: an OAuth connection stores a refresh token (a vault secret) and
//! its client's credentials; the broker mints short-lived access tokens from them (the
//! `refresh_token` grant, RFC 6749 §6) for injection into upstream requests.
//!
//! - Tokens are cached per connection and served while they have more than a minute left;
//!   no token is ever served longer than [`MAX_TOKEN_LIFETIME`] after it was minted, however
//!   long the provider says it lives.
//! - One token request is in flight per connection: concurrent callers wait for it.
//! - A refresh token the provider rotates is stored in the vault, as the secret's next
//!   version, before the access token is handed out.
//! - Every request goes through [`Egress`], so a token URL cannot reach the gateway's own
//!   network.
//! - Secrets, tokens and response bodies never appear in errors or logs.

use super::service::{Vault, VaultError, valid_secret_name};
use crate::clock::Clock;
use crate::egress::{Egress, EgressError, HostAllowList, Refusal};
use portcullis_core::UnixMillis;
use portcullis_core::id::{ConnectionId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// An OAuth 2 client as a connection's stored configuration names it (secrets by name only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    /// Vault secret holding the client secret (none for a public client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Vault secret holding the refresh token; replaced in the vault when the provider rotates it.
    pub refresh_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The longest an access token is served after it was minted, even when the provider offers
/// longer: a leaked token is useful for at most this long.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// How long before its expiry a cached token is replaced.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// Token responses larger than this are refused unread.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How long one token request may take, so a hung provider cannot hold the callers waiting
/// behind it forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The vault actor recorded when the broker stores a rotated refresh token.
const ACTOR: &str = "oauth-broker";

/// An access token, ready to be injected as `Authorization: Bearer …`. Not printable;
/// zeroised when dropped.
#[derive(Clone)]
pub struct AccessToken {
    value: Zeroizing<String>,
    expires_at: UnixMillis,
}

impl AccessToken {
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// When the broker stops serving this token (never more than [`MAX_TOKEN_LIFETIME`]
    /// after it was minted).
    pub fn expires_at(&self) -> UnixMillis {
        self.expires_at
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What minting a token can fail with. Never holds a secret, a token or a response body.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The stored grant no longer works (the provider answered `invalid_grant`, or the
    /// refresh token is gone): an administrator must connect the account again.
    #[error("the OAuth connection must be reconnected: {0}")]
    NeedsReconnection(String),
    /// The egress policy refused the token URL; nothing was sent.
    #[error(transparent)]
    Refused(Refusal),
    /// The provider answered with an error status (its body is not kept).
    #[error("the OAuth provider answered {status}")]
    Provider { status: u16 },
    /// The token request could not be exchanged (connect, timeout, broken response).
    #[error("the OAuth provider is unreachable: {0}")]
    Transport(String),
    #[error("vault: {0}")]
    Vault(VaultError),
    /// The configuration or the provider's answer is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// A cached token and the configuration it was minted under (a changed configuration
/// mints afresh).
struct Cached {
    client: OAuthClient,
    token: AccessToken,
}

/// One connection's cache entry. Its async mutex is held while a token is minted, so
/// concurrent callers wait for that one request (single flight).
#[derive(Default)]
struct Slot {
    token: tokio::sync::Mutex<Option<Cached>>,
    /// Set when the connection (or its tenant) is dropped: the slot is out of the map, and
    /// whoever still holds it must neither serve nor fill it.
    dropped: AtomicBool,
}

type Key = (TenantId, ConnectionId);

pub struct Broker {
    vault: Arc<Vault>,
    egress: Arc<Egress>,
    clock: Clock,
    cache: Mutex<HashMap<Key, Arc<Slot>>>,
    refresh_ahead: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("refresh_ahead", &self.refresh_ahead)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Broker {
    pub fn new(vault: Arc<Vault>, egress: Arc<Egress>, clock: Clock) -> Self {
        Self {
            vault,
            egress,
            clock,
            cache: Mutex::default(),
            refresh_ahead: REFRESH_AHEAD,
        }
    }

    fn slot(&self, tenant: &TenantId, connection: &ConnectionId) -> Arc<Slot> {
        self.cache
            .lock()
            .expect("lock poisoned")
            .entry((tenant.clone(), connection.clone()))
            .or_default()
            .clone()
    }

    /// A valid access token: from the cache while it has more than `refresh_ahead` left,
    /// else minted with the `refresh_token` grant. One request is in flight per connection:
    /// concurrent callers wait for it. A failed request is not shared: the next waiter tries
    /// again, one at a time.
    pub async fn access_token(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        client: &OAuthClient,
    ) -> Result<AccessToken, BrokerError> {
        loop {
            let slot = self.slot(tenant, connection);
            let mut cached = slot.token.lock().await;
            if slot.dropped.load(Ordering::SeqCst) {
                // Dropped while we waited: whatever it holds predates the drop.
                continue;
            }
            let now = self.clock.now();
            if let Some(c) = cached.as_ref()
                && c.client == *client
                && c.token.expires_at.saturating_sub(now) > millis(self.refresh_ahead)
            {
                return Ok(c.token.clone());
            }
            let minted = self.mint(tenant, connection, client).await;
            if matches!(minted, Err(BrokerError::NeedsReconnection(_))) {
                *cached = None;
            }
            let token = minted?;
            // A token whose request began before the connection was dropped goes to this
            // caller only; the slot is out of the map and nobody else will see it.
            if !slot.dropped.load(Ordering::SeqCst) {
                *cached = Some(Cached {
                    client: client.clone(),
                    token: token.clone(),
                });
            }
            return Ok(token);
        }
    }

    /// Revoking the connection drops its cached token at once.
    pub fn drop_connection(&self, tenant: &TenantId, connection: &ConnectionId) {
        let removed = self
            .cache
            .lock()
            .expect("lock poisoned")
            .remove(&(tenant.clone(), connection.clone()));
        if let Some(slot) = removed {
            slot.dropped.store(true, Ordering::SeqCst);
        }
    }

    /// Deleting the tenant drops every one of its cached tokens at once.
    pub fn drop_tenant(&self, tenant: &TenantId) {
        self.cache
            .lock()
            .expect("lock poisoned")
            .retain(|(t, _), slot| {
                let keep = t != tenant;
                if !keep {
                    slot.dropped.store(true, Ordering::SeqCst);
                }
                keep
            });
    }

    /// A secret's value as text; `missing` builds the error for a secret that is not there.
    async fn reveal_text(
        &self,
        tenant: &TenantId,
        name: &str,
        now: UnixMillis,
        missing: impl FnOnce() -> BrokerError,
    ) -> Result<Zeroizing<String>, BrokerError> {
        let revealed = match self.vault.reveal(tenant, name, now).await {
            Err(VaultError::NotFound) => return Err(missing()),
            other => other.map_err(BrokerError::Vault)?,
        };
        let text = revealed
            .expose_str()
            .map_err(|_| BrokerError::Invalid(format!("the secret `{name}` is not text")))?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// One `refresh_token` grant.
    async fn mint(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        client: &OAuthClient,
    ) -> Result<AccessToken, BrokerError> {
        validate(client)?;
        let url = self
            .egress
            .check_url(&client.token_url, &HostAllowList::any())
            .map_err(BrokerError::Refused)?;
        // The time the request starts: the provider cannot have minted the token earlier, so
        // the cap counts from no later than its real mint time.
        let started = self.clock.now();
        let refresh = self
            .reveal_text(tenant, &client.refresh_token, started, || {
                BrokerError::NeedsReconnection(format!(
                    "the refresh-token secret `{}` is missing",
                    client.refresh_token
                ))
            })
            .await?;
        let secret = match &client.client_secret {
            Some(name) => Some(
                self.reveal_text(tenant, name, started, || {
                    BrokerError::Invalid(format!("the client-secret secret `{name}` is missing"))
                })
                .await?,
            ),
            None => None,
        };

        let request = token_request(
            &self.egress,
            url,
            client,
            &refresh,
            secret.as_ref().map(|s| s.as_str()),
        )?;
        let response = self
            .egress
            .send(request, &HostAllowList::any())
            .await
            .map_err(|e| match e {
                EgressError::Refused(refusal) => BrokerError::Refused(refusal),
                EgressError::Transport(message) => BrokerError::Transport(message),
            })?;
        let status = response.status();
        let body = read_limited(response).await?;
        if !status.is_success() {
            let grant_refused = status.is_client_error()
                && serde_json::from_slice::<ErrorResponse>(&body)
                    .is_ok_and(|e| e.error == "invalid_grant");
            tracing::warn!(
                %tenant, %connection, status = status.as_u16(), grant_refused,
                "the OAuth provider refused a token request"
            );
            return Err(if grant_refused {
                BrokerError::NeedsReconnection(
                    "the provider no longer accepts the refresh token (`invalid_grant`)".into(),
                )
            } else {
                BrokerError::Provider {
                    status: status.as_u16(),
                }
            });
        }
        let answer = TokenAnswer::parse(&body)?;

        if let Some(next) = &answer.refresh_token
            && **next != *refresh
        {
            // The provider rotated the refresh token; the old one may already be dead, so the
            // new one is stored before anything else happens. The window that remains: a crash
            // (or a vault failure) between the provider's answer and this write commits loses
            // the only valid refresh token, and the connection must be reconnected. Providers
            // that keep the old token valid for a grace period close it.
            if let Err(e) = self
                .vault
                .put(
                    tenant,
                    &client.refresh_token,
                    next.as_bytes(),
                    None,
                    ACTOR,
                    self.clock.now(),
                )
                .await
            {
                tracing::error!(
                    %tenant, %connection, error = %e,
                    "cannot store a rotated OAuth refresh token; the connection will need reconnecting"
                );
                return Err(BrokerError::Vault(e));
            }
        }
        let lifetime = answer.expires_in.map_or(MAX_TOKEN_LIFETIME, |secs| {
            Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME)
        });
        tracing::info!(
            %tenant, %connection,
            rotated = answer.refresh_token.is_some(),
            lifetime_s = lifetime.as_secs(),
            "minted an OAuth access token"
        );
        Ok(AccessToken {
            value: answer.access_token,
            expires_at: started.saturating_add(millis(lifetime)),
        })
    }
}

/// Refuse a configuration that cannot work before anything is revealed or sent — above all a
/// refresh-token name the vault would not store, which would lose a rotated token.
fn validate(client: &OAuthClient) -> Result<(), BrokerError> {
    if client.client_id.is_empty() {
        return Err(BrokerError::Invalid("the OAuth client id is empty".into()));
    }
    for name in std::iter::once(&client.refresh_token).chain(&client.client_secret) {
        if !valid_secret_name(name) {
            return Err(BrokerError::Invalid(format!(
                "`{name}` is not a valid secret name"
            )));
        }
    }
    Ok(())
}

/// `value`, `application/x-www-form-urlencoded` (the WHATWG byte serializer, as the `url`
/// crate's `form_urlencoded` has it: alphanumerics and `*-._` as they are, space as `+`,
/// every other byte percent-encoded).
fn form_encode(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// The token request: form body, and HTTP Basic client authentication when there is a
/// client secret (RFC 6749 §2.3.1: id and secret form-encoded before base64), else the
/// client id in the body (a public client).
fn token_request(
    egress: &Egress,
    url: reqwest::Url,
    client: &OAuthClient,
    refresh: &str,
    secret: Option<&str>,
) -> Result<reqwest::Request, BrokerError> {
    use base64::Engine as _;
    let pairs = [
        Some(("grant_type", "refresh_token")),
        Some(("refresh_token", refresh)),
        client.scope.as_deref().map(|scope| ("scope", scope)),
        secret
            .is_none()
            .then_some(("client_id", client.client_id.as_str())),
    ];
    // Capacity up front, so the secret-holding buffers never reallocate (and leave copies).
    let room = |parts: &[&str]| parts.iter().map(|p| 3 * p.len() + 1).sum::<usize>();
    let mut body = Zeroizing::new(String::with_capacity(
        pairs
            .iter()
            .flatten()
            .map(|(k, v)| room(&[k, v]))
            .sum::<usize>(),
    ));
    for (name, value) in pairs.into_iter().flatten() {
        if !body.is_empty() {
            body.push('&');
        }
        form_encode(&mut body, name);
        body.push('=');
        form_encode(&mut body, value);
    }
    let mut builder = egress
        .client()
        .post(url)
        .timeout(REQUEST_TIMEOUT)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body.as_bytes().to_vec());
    if let Some(secret) = secret {
        let mut pair = Zeroizing::new(String::with_capacity(room(&[&client.client_id, secret])));
        form_encode(&mut pair, &client.client_id);
        pair.push(':');
        form_encode(&mut pair, secret);
        let encoded =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
        let mut value = http::HeaderValue::from_str(&format!("Basic {}", encoded.as_str()))
            .map_err(|_| BrokerError::Invalid("the client credentials are not text".into()))?;
        value.set_sensitive(true);
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    builder
        .build()
        .map_err(|_| BrokerError::Invalid("cannot build the token request".into()))
}

/// The response body, refused when larger than [`MAX_RESPONSE_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, BrokerError> {
    let too_large = || {
        BrokerError::Invalid(format!(
            "the token response is larger than {} KiB",
            MAX_RESPONSE_BYTES / 1024
        ))
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    // Full capacity up front: appending never reallocates, so no copy escapes zeroising.
    let mut body = Zeroizing::new(Vec::with_capacity(MAX_RESPONSE_BYTES));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BrokerError::Transport(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error answer (RFC 6749 §5.2); only its code is read.
#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// A successful answer as the wire has it (RFC 6749 §5.1). Not `Debug`: it holds tokens.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A successful answer, checked.
struct TokenAnswer {
    access_token: Zeroizing<String>,
    expires_in: Option<u64>,
    refresh_token: Option<Zeroizing<String>>,
}

impl TokenAnswer {
    fn parse(body: &[u8]) -> Result<Self, BrokerError> {
        let invalid = |what: &str| BrokerError::Invalid(format!("the token response {what}"));
        // serde's messages may quote the body, so none is passed on.
        let wire: TokenResponse =
            serde_json::from_slice(body).map_err(|_| invalid("is not a token response"))?;
        // A positive number of seconds, as RFC 6749 has it, or a numeric string, as some
        // providers send it.
        let positive = |secs: Option<u64>| {
            secs.filter(|s| *s > 0)
                .ok_or_else(|| invalid("holds an unusable `expires_in`"))
        };
        let expires_in = match wire.expires_in {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => Some(positive(n.as_u64())?),
            Some(serde_json::Value::String(s)) => Some(positive(s.parse().ok())?),
            Some(_) => return Err(invalid("holds an unusable `expires_in`")),
        };
        let answer = Self {
            access_token: Zeroizing::new(wire.access_token),
            expires_in,
            refresh_token: wire.refresh_token.map(Zeroizing::new),
        };
        if !wire.token_type.eq_ignore_ascii_case("bearer") {
            return Err(invalid("is not for a bearer token"));
        }
        // Visible ASCII only: the token goes into an `Authorization` header.
        if answer.access_token.is_empty()
            || !answer.access_token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid("holds an unusable access token"));
        }
        if answer.refresh_token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(invalid("holds an empty refresh token"));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    //! Against a fake OAuth provider on loopback that checks the client credentials and the
    //! refresh token, rotates the refresh token on every use and counts requests. Time moves
    //! only when a test moves the manual clock.
    use super::*;
    use crate::egress::{EgressPolicy, Rule, StaticLookup};
    use crate::vault::provider::KeyFileProvider;
    use axum::response::IntoResponse;
    use portcullis_core::keys::KeyRing;
    use portcullis_store::{Store, StoreOptions};
    use tokio::net::TcpListener;

    const START: UnixMillis = 1_700_000_000_000;
    const MINUTE: i64 = 60_000;
    const CLIENT_ID: &str = "client id:1";
    /// Needs form-encoding before base64 (RFC 6749 §2.3.1).
    const CLIENT_SECRET: &str = "csecret:+/ü";
    const PUBLIC_CLIENT_ID: &str = "public-app";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Normal,
        /// 500, with a body that repeats the refresh token.
        Fail,
        /// A 100 KiB answer.
        Huge,
        /// A 100 KiB answer in chunks, with no `Content-Length`.
        HugeChunked,
        /// `token_type: "mac"`.
        Mac,
        /// No `expires_in`.
        NoExpiry,
    }

    /// The fake provider's state. Access tokens are `atok<n>`, refresh tokens `rtok<n>`.
    struct Provider {
        clock: Clock,
        mode: Mode,
        current: String,
        issued: usize,
        hits: usize,
        /// The refresh token each accepted request presented, in order.
        used: Vec<String>,
        /// When each access token was minted.
        minted: HashMap<String, UnixMillis>,
    }

    type Shared = Arc<Mutex<Provider>>;

    fn form(body: &str) -> HashMap<String, String> {
        reqwest::Url::parse(&format!("http://x/?{body}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// Form-encoding by the `url` crate's own serializer, independent of `form_encode`.
    fn url_form_encode(value: &str) -> String {
        let mut url = reqwest::Url::parse("http://x/").unwrap();
        url.query_pairs_mut().append_pair("v", value);
        url.query().unwrap().strip_prefix("v=").unwrap().to_owned()
    }

    fn json(status: u16, body: serde_json::Value) -> axum::response::Response {
        (
            http::StatusCode::from_u16(status).unwrap(),
            [(http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }

    async fn token_endpoint(
        axum::extract::State(provider): axum::extract::State<Shared>,
        headers: http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use base64::Engine as _;
        let mut p = provider.lock().unwrap();
        p.hits += 1;
        if p.mode == Mode::Fail {
            return json(
                500,
                serde_json::json!({ "error": "server_error", "echo": p.current }),
            );
        }
        let form = form(&body);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                url_form_encode(CLIENT_ID),
                url_form_encode(CLIENT_SECRET)
            ))
        );
        let authorised = match headers.get(http::header::AUTHORIZATION) {
            Some(given) => given == basic.as_str() && !form.contains_key("client_id"),
            None => form.get("client_id").map(String::as_str) == Some(PUBLIC_CLIENT_ID),
        };
        if !authorised {
            return json(401, serde_json::json!({ "error": "invalid_client" }));
        }
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return json(
                400,
                serde_json::json!({ "error": "unsupported_grant_type" }),
            );
        }
        if form.get("refresh_token") != Some(&p.current) {
            return json(400, serde_json::json!({ "error": "invalid_grant" }));
        }
        let used = std::mem::take(&mut p.current);
        p.used.push(used);
        p.issued += 1;
        let access = format!("atok{}", p.issued);
        p.current = format!("rtok{}", p.issued);
        let now = p.clock.now();
        p.minted.insert(access.clone(), now);
        let mut answer = serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": p.current,
        });
        match p.mode {
            Mode::Huge => answer["padding"] = "x".repeat(100 * 1024).into(),
            Mode::HugeChunked => {
                answer["padding"] = "x".repeat(100 * 1024).into();
                let text = answer.to_string().into_bytes();
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    text.chunks(4096).map(|c| Ok(c.to_vec())).collect();
                return axum::body::Body::from_stream(futures::stream::iter(chunks))
                    .into_response();
            }
            Mode::Mac => answer["token_type"] = "mac".into(),
            Mode::NoExpiry => {
                answer.as_object_mut().unwrap().remove("expires_in");
            }
            Mode::Normal | Mode::Fail => {}
        }
        json(200, answer)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        vault: Arc<Vault>,
        egress: Arc<Egress>,
        clock: Clock,
        broker: Arc<Broker>,
        tenant: TenantId,
        connection: ConnectionId,
        client: OAuthClient,
        provider: Shared,
    }

    impl Fixture {
        async fn new(mode: Mode) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("vault.db").display());
            let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
            let tenant = store.create_tenant("acme", "test", 1).await.unwrap().id;
            let vault = Arc::new(Vault::new(
                store,
                Arc::new(KeyFileProvider::new(&KeyRing::generate())),
                portcullis_core::vault::FORMAT_V1,
            ));
            vault
                .put(
                    &tenant,
                    "acme-secret",
                    CLIENT_SECRET.as_bytes(),
                    None,
                    "t",
                    1,
                )
                .await
                .unwrap();
            vault
                .put(&tenant, "acme-refresh", b"rtok0", None, "t", 1)
                .await
                .unwrap();
            let clock = Clock::manual(START);
            let provider = Arc::new(Mutex::new(Provider {
                clock: clock.clone(),
                mode,
                current: "rtok0".into(),
                issued: 0,
                hits: 0,
                used: Vec::new(),
                minted: HashMap::new(),
            }));
            let app = axum::Router::new()
                .route("/token", axum::routing::post(token_endpoint))
                .with_state(provider.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let policy = EgressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], vec![]);
            let egress = Arc::new(Egress::new(policy, Arc::new(StaticLookup::new())).unwrap());
            let broker = Arc::new(Broker::new(vault.clone(), egress.clone(), clock.clone()));
            Self {
                _dir: dir,
                vault,
                egress,
                clock,
                broker,
                tenant,
                connection: ConnectionId::generate(),
                client: OAuthClient {
                    token_url: format!("http://127.0.0.1:{port}/token"),
                    client_id: CLIENT_ID.into(),
                    client_secret: Some("acme-secret".into()),
                    refresh_token: "acme-refresh".into(),
                    scope: Some("read write".into()),
                },
                provider,
            }
        }

        async fn token(&self) -> Result<AccessToken, BrokerError> {
            self.token_for(&self.client).await
        }

        async fn token_for(&self, client: &OAuthClient) -> Result<AccessToken, BrokerError> {
            self.broker
                .access_token(&self.tenant, &self.connection, client)
                .await
        }

        fn hits(&self) -> usize {
            self.provider.lock().unwrap().hits
        }

        fn minted_at(&self, token: &AccessToken) -> UnixMillis {
            self.provider.lock().unwrap().minted[token.expose()]
        }

        async fn stored_refresh(&self) -> String {
            let revealed = self
                .vault
                .reveal(&self.tenant, "acme-refresh", self.clock.now())
                .await
                .unwrap();
            revealed.expose_str().unwrap().to_owned()
        }
    }

    #[test]
    fn form_encoding_matches_the_url_crate() {
        for value in [
            "",
            "plain",
            "a b+c&d=e",
            "client id:1",
            "csecret:+/ü",
            "*-._~!'()%\n\u{0}😀",
        ] {
            let mut ours = String::new();
            form_encode(&mut ours, value);
            assert_eq!(ours, url_form_encode(value), "{value:?}");
        }
    }

    #[test]
    fn clients_round_trip_and_refuse_unknown_fields() {
        let json =
            r#"{"token_url":"https://idp.example/token","client_id":"c","refresh_token":"rt"}"#;
        let client: OAuthClient = serde_json::from_str(json).unwrap();
        assert_eq!(client.client_secret, None);
        assert_eq!(serde_json::to_string(&client).unwrap(), json);
        let extra = r#"{"token_url":"u","client_id":"c","refresh_token":"rt","secret":"x"}"#;
        assert!(serde_json::from_str::<OAuthClient>(extra).is_err());
    }

    #[tokio::test]
    async fn tokens_are_capped_at_fifteen_minutes_and_refreshed_ahead() {
        let f = Fixture::new(Mode::Normal).await;
        let first = f.token().await.unwrap();
        assert_eq!(first.expose(), "atok1");
        assert!(first.expires_at() <= START + 15 * MINUTE, "{first:?}");
        assert_eq!(first.expires_at(), START + 15 * MINUTE);

        f.clock.advance(14 * MINUTE - 1_000);
        assert_eq!(f.token().await.unwrap().expose(), "atok1");
        assert_eq!(f.hits(), 1);
        f.clock.advance(31_000); // 14 min 30 s after the mint
        let second = f.token().await.unwrap();
        assert_eq!(second.expose(), "atok2");
        assert_eq!(second.expires_at(), f.clock.now() + 15 * MINUTE);
        assert_eq!(f.hits(), 2);

        // Random steps: whatever is returned is unexpired and was minted at most 15 min ago.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut served = 0;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            f.clock.advance((seed % (5 * MINUTE as u64)) as i64);
            let token = f.token().await.unwrap();
            let (now, minted) = (f.clock.now(), f.minted_at(&token));
            assert!(
                now - minted <= 15 * MINUTE,
                "served {} min old",
                (now - minted) / MINUTE
            );
            assert!(token.expires_at() > now);
            assert!(token.expires_at() <= minted + 15 * MINUTE);
            served += 1;
        }
        let mints = f.hits() - 2;
        assert!(
            mints > 10 && mints < served,
            "{mints} mints for {served} calls"
        );
    }

    #[tokio::test]
    async fn a_missing_expiry_gets_the_cap() {
        let f = Fixture::new(Mode::NoExpiry).await;
        let token = f.token().await.unwrap();
        assert_eq!(token.expires_at(), START + 15 * MINUTE);
    }

    #[tokio::test]
    async fn rotated_refresh_tokens_are_stored_before_use() {
        let f = Fixture::new(Mode::Normal).await;
        for round in 1..=3 {
            let token = f.token().await.unwrap();
            assert_eq!(token.expose(), format!("atok{round}"));
            assert_eq!(f.stored_refresh().await, format!("rtok{round}"));
            f.clock.advance(15 * MINUTE);
        }
        assert_eq!(f.provider.lock().unwrap().used, ["rtok0", "rtok1", "rtok2"]);
        let secrets = f.vault.list(&f.tenant).await.unwrap();
        let meta = secrets.iter().find(|m| m.name == "acme-refresh").unwrap();
        assert_eq!(meta.version, 4, "the first version and three rotations");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_token_request() {
        let f = Arc::new(Fixture::new(Mode::Normal).await);
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.token().await.map(|t| t.expose().to_owned()) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), "atok1");
        }
        assert_eq!(f.hits(), 1);
    }

    #[tokio::test]
    async fn dropping_a_connection_or_tenant_forces_a_new_mint() {
        let f = Fixture::new(Mode::Normal).await;
        assert_eq!(f.token().await.unwrap().expose(), "atok1");
        assert_eq!(f.token().await.unwrap().expose(), "atok1");
        f.broker
            .drop_connection(&f.tenant, &ConnectionId::generate());
        assert_eq!(f.token().await.unwrap().expose(), "atok1");
        f.broker.drop_connection(&f.tenant, &f.connection);
        assert_eq!(f.token().await.unwrap().expose(), "atok2");
        f.broker.drop_tenant(&TenantId::generate());
        assert_eq!(f.token().await.unwrap().expose(), "atok2");
        f.broker.drop_tenant(&f.tenant);
        assert_eq!(f.token().await.unwrap().expose(), "atok3");
        // A changed configuration is not served the old configuration's token.
        let narrower = OAuthClient {
            scope: Some("read".into()),
            ..f.client.clone()
        };
        assert_eq!(f.token_for(&narrower).await.unwrap().expose(), "atok4");
        assert_eq!(f.hits(), 4);
    }

    #[tokio::test]
    async fn a_public_client_sends_its_id_in_the_body() {
        let f = Fixture::new(Mode::Normal).await;
        let public = OAuthClient {
            client_id: PUBLIC_CLIENT_ID.into(),
            client_secret: None,
            ..f.client.clone()
        };
        assert_eq!(f.token_for(&public).await.unwrap().expose(), "atok1");
        // And a confidential client's wrong secret is refused by the provider.
        f.vault
            .put(&f.tenant, "acme-secret", b"wrong", None, "t", 2)
            .await
            .unwrap();
        f.broker.drop_connection(&f.tenant, &f.connection);
        assert!(matches!(
            f.token().await,
            Err(BrokerError::Provider { status: 401 })
        ));
    }

    #[tokio::test]
    async fn a_dead_grant_needs_reconnection() {
        let f = Fixture::new(Mode::Normal).await;
        f.vault
            .put(&f.tenant, "acme-refresh", b"rtok-stale", None, "t", 2)
            .await
            .unwrap();
        let error = f.token().await.unwrap_err();
        assert!(
            matches!(error, BrokerError::NeedsReconnection(_)),
            "{error:?}"
        );
        assert_eq!(f.hits(), 1);

        let missing = OAuthClient {
            refresh_token: "never-stored".into(),
            ..f.client.clone()
        };
        let error = f.token_for(&missing).await.unwrap_err();
        assert!(
            matches!(error, BrokerError::NeedsReconnection(_)),
            "{error:?}"
        );
        assert_eq!(f.hits(), 1, "nothing is sent without a refresh token");
    }

    #[tokio::test]
    async fn a_refused_token_url_is_never_contacted() {
        let f = Fixture::new(Mode::Normal).await;
        for (url, rule) in [
            ("http://169.254.169.254/token", Rule::Metadata),
            ("http://10.0.0.1/token", Rule::Private),
            ("file:///etc/passwd", Rule::Scheme),
        ] {
            let client = OAuthClient {
                token_url: url.into(),
                ..f.client.clone()
            };
            match f.token_for(&client).await {
                Err(BrokerError::Refused(refusal)) => assert_eq!(refusal.rule, rule, "{url}"),
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(f.egress.refusals(), 3);
        assert_eq!(f.hits(), 0);
        assert_eq!(f.stored_refresh().await, "rtok0");
    }

    #[tokio::test]
    async fn provider_failures_are_reported_by_status_only() {
        let f = Fixture::new(Mode::Fail).await;
        assert!(matches!(
            f.token().await,
            Err(BrokerError::Provider { status: 500 })
        ));
        assert_eq!(f.hits(), 1);
    }

    #[tokio::test]
    async fn unusable_answers_are_refused() {
        for mode in [Mode::Huge, Mode::HugeChunked, Mode::Mac] {
            let f = Fixture::new(mode).await;
            let error = f.token().await.unwrap_err();
            assert!(
                matches!(error, BrokerError::Invalid(_)),
                "{mode:?}: {error:?}"
            );
        }
        for (body, ok) in [
            (r#"{"access_token":"a","token_type":"bearer"}"#, true),
            (
                r#"{"access_token":"a","token_type":"BEARER","expires_in":"60"}"#,
                true,
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":0}"#,
                false,
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
                false,
            ),
            (r#"{"access_token":"a b","token_type":"Bearer"}"#, false),
            (r#"{"access_token":"","token_type":"Bearer"}"#, false),
            (r#"{"access_token":"a"}"#, false),
            (
                r#"{"access_token":"a","token_type":"Bearer","refresh_token":""}"#,
                false,
            ),
        ] {
            assert_eq!(TokenAnswer::parse(body.as_bytes()).is_ok(), ok, "{body}");
        }
    }

    #[tokio::test]
    async fn secrets_and_tokens_never_appear_in_errors() {
        let mut errors = Vec::new();
        for mode in [Mode::Fail, Mode::Huge, Mode::Mac] {
            let f = Fixture::new(mode).await;
            errors.push(f.token().await.unwrap_err());
        }
        let f = Fixture::new(Mode::Normal).await;
        let token = f.token().await.unwrap();
        assert!(!format!("{token:?}").contains("atok"), "{token:?}");
        for url in ["http://169.254.169.254/token?rtok0", "http://127.0.0.1:1/t"] {
            let client = OAuthClient {
                token_url: url.into(),
                ..f.client.clone()
            };
            errors.push(f.token_for(&client).await.unwrap_err());
        }
        f.vault
            .put(&f.tenant, "acme-refresh", b"rtok-stale", None, "t", 2)
            .await
            .unwrap();
        f.broker.drop_connection(&f.tenant, &f.connection);
        errors.push(f.token().await.unwrap_err());
        assert_eq!(errors.len(), 6);
        assert!(matches!(errors[3], BrokerError::Refused(_)));
        assert!(
            matches!(errors[4], BrokerError::Transport(_)),
            "{:?}",
            errors[4]
        );
        for error in &errors {
            for shown in [error.to_string(), format!("{error:?}")] {
                for secret in ["csecret", "rtok", "atok", "Basic"] {
                    assert!(!shown.contains(secret), "{shown}");
                }
            }
        }
    }
}
