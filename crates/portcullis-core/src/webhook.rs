//! Webhooks, both ways: signing what we send and verifying what we receive, per the Standard
//! Webhooks specification (<https://www.standardwebhooks.com>: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>`), GitHub-style
//! `X-Hub-Signature-256` verification for code hosts and SaaS tools that sign that way, the
//! retry schedule for failed deliveries, and the event types an endpoint can subscribe to.
//!
//! Hand-written rather than taken from the `standardwebhooks` crate: what we need is a few
//! lines of HMAC glue, and that crate would bring HTTP types (`http` 0.2, an outdated major
//! this IO-free core has no use for), `time`, and second copies of base64 and HMAC-SHA256.
//! `tests/independent.rs` checks this module against the PyPI `standardwebhooks` package (the
//! specification's reference library) in both directions.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

use crate::UnixMillis;

/// The prefix of a Standard Webhooks signing secret in its text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest signing secret accepted, in bytes (the specification's lower bound).
pub const MIN_SECRET_BYTES: usize = 24;
/// The longest signing secret accepted, in bytes (the specification's upper bound).
pub const MAX_SECRET_BYTES: usize = 64;
/// How many entries of a `webhook-signature` header are looked at; the rest are ignored, so
/// an outsider cannot make one verification arbitrarily expensive.
pub const MAX_SIGNATURES: usize = 16;
/// The longest `webhook-id` accepted, in characters.
pub const MAX_MESSAGE_ID_LEN: usize = 256;
/// The default clock skew tolerated between a sender's timestamp and our clock: 5 minutes,
/// as the specification's reference libraries use.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;
/// The longest a receiver's `Retry-After` can push a retry out: 24 hours.
pub const MAX_RETRY_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// A Standard Webhooks signing secret: the raw HMAC key, wiped from memory when dropped.
/// Its `Debug` is redacted and it has no `Display` or `Serialize`; [`SigningSecret::to_text`]
/// is the one way out, used to show it once and to seal it for storage.
pub struct SigningSecret {
    key: Zeroizing<Vec<u8>>,
}

/// Signing secrets could not be built from what was given. Secrets are never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not `whsec_` plus base64 of 24 to 64 bytes.
    #[error("invalid webhook signing secret: expected `whsec_` and base64 of 24 to 64 bytes")]
    InvalidSecret,
    /// An event type name we do not know (truncated to 64 characters; names are not secret).
    #[error("unknown event type `{0}`")]
    UnknownEvent(String),
    /// An event filter with no event types in it.
    #[error("an event filter needs at least one event type (or `*`)")]
    NoEvents,
}

/// Why an inbound webhook was refused. None of these echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is not a plain decimal number of seconds.
    #[error("webhook timestamp is not a decimal number of seconds")]
    BadTimestamp,
    /// The timestamp is older than the tolerance allows (possibly a replay).
    #[error("webhook timestamp is too old")]
    Expired,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("webhook timestamp is too far in the future")]
    FromFuture,
    /// The message id is empty, too long or not printable ASCII.
    #[error("webhook id is empty, too long or not printable ASCII")]
    BadId,
    /// The signature header does not have the expected shape.
    #[error("webhook signature header is malformed")]
    BadSignatureFormat,
    /// No signature in the header matches any of our secrets.
    #[error("no webhook signature matches")]
    NoMatch,
}

/// When to retry a failed delivery: exponential backoff from `first_delay_ms`, multiplied by
/// `factor` per attempt and capped at `max_delay_ms`, plus up to `jitter_per_mille` ‰ of
/// random jitter so that retries to one recovering receiver do not arrive in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySchedule {
    /// The wait after the first failed attempt.
    pub first_delay_ms: i64,
    /// The growth of the wait per attempt (a factor below 1 counts as 1).
    pub factor: u32,
    /// The longest wait between two attempts, before jitter.
    pub max_delay_ms: i64,
    /// The number of attempts in all, the first one included.
    pub max_attempts: u32,
    /// The most jitter added to a wait, in thousandths of it.
    pub jitter_per_mille: u32,
}

/// An event a webhook endpoint can subscribe to. The wire names are the `as_str` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// An action was held for approval.
    #[serde(rename = "action.held")]
    ActionHeld,
    /// An approval request was approved or denied.
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    /// A held or allowed action ran upstream.
    #[serde(rename = "action.executed")]
    ActionExecuted,
    /// An action failed upstream.
    #[serde(rename = "action.failed")]
    ActionFailed,
    /// A guardrail was created, changed or removed.
    #[serde(rename = "guardrail.changed")]
    GuardrailChanged,
    /// A token was locked out after repeated failures.
    #[serde(rename = "token.locked_out")]
    TokenLockedOut,
    /// An upstream connection was revoked.
    #[serde(rename = "connection.revoked")]
    ConnectionRevoked,
    /// The audit chain published a signed checkpoint.
    #[serde(rename = "audit.checkpoint")]
    AuditCheckpoint,
    /// A webhook endpoint was disabled after failing for too long.
    #[serde(rename = "webhook.endpoint_disabled")]
    EndpointDisabled,
}

/// The event types a webhook endpoint receives: a non-empty set, `*` standing for all.
/// It serializes as a sorted JSON array of explicit names (`*` expanded).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventFilter {
    // INVARIANT: bit `EventType as u8` is set for each subscribed type, and at least one is.
    bits: u16,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

/// What a signature covers, hashed (hex SHA-256 over the parts joined with `.`): how a
/// receiver recognises a replay that arrives under a fresh delivery id the signature does
/// not cover — the body alone for an `X-Hub-Signature-256`; id, timestamp and body for
/// Standard Webhooks.
pub fn signed_digest(parts: &[&[u8]]) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update(b".");
        }
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// Standard base64 that accepts the padding or its absence, as the reference libraries do.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl SigningSecret {
    /// A fresh secret of 32 random bytes from the operating system.
    ///
    /// # Panics
    /// Panics when the OS has no entropy source; nothing secure can run without one.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut key).expect("the operating system has no usable random source");
        Self { key }
    }

    /// Read a secret in its text form: `whsec_` and standard base64 (the prefix and the
    /// padding may be left out, as the reference libraries allow), of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        // Decode straight into wiped memory, sized up front so nothing is reallocated and
        // left behind unwiped.
        let mut key = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
            encoded.len(),
        )));
        LENIENT_BASE64
            .decode_vec(encoded, &mut key)
            .map_err(|_| WebhookError::InvalidSecret)?;
        Self::checked(key)
    }

    /// A secret from raw key bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebhookError> {
        Self::checked(Zeroizing::new(bytes.to_vec()))
    }

    /// The text form, `whsec_` and standard base64 with padding, to show once or to seal.
    pub fn to_text(&self) -> Zeroizing<String> {
        let len = SECRET_PREFIX.len() + base64::encoded_len(self.key.len(), true).unwrap_or(0);
        let mut text = Zeroizing::new(String::with_capacity(len));
        text.push_str(SECRET_PREFIX);
        STANDARD.encode_string(&*self.key, &mut text);
        text
    }

    fn checked(key: Zeroizing<Vec<u8>>) -> Result<Self, WebhookError> {
        if (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            Ok(Self { key })
        } else {
            Err(WebhookError::InvalidSecret)
        }
    }

    /// The HMAC over `{msg_id}.{timestamp}.{body}`, not yet finalized.
    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The Standard Webhooks signature of one message: `v1,` and the base64 HMAC-SHA256 of
/// `{msg_id}.{timestamp_secs}.{body}`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = secret
        .mac(msg_id, &timestamp_secs.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one signature per secret, space-separated. While a
/// secret is being rotated both the old and the new one sign, so receivers holding either
/// accept the message.
pub fn signature_header(
    secrets: &[&SigningSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verify an inbound Standard Webhooks message from its `webhook-id`, `webhook-timestamp`
/// and `webhook-signature` headers and its raw body, at `now_secs`.
///
/// The timestamp must be plain decimal seconds within `tolerance_secs` of now (which bounds
/// replays). Signature entries other than `v1` are skipped, only the first
/// [`MAX_SIGNATURES`] entries are looked at, and each `v1` entry is compared in constant time
/// with the signature under each of `secrets`; one match anywhere is enough.
pub fn verify(
    secrets: &[&SigningSecret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if timestamp.is_empty()
        || timestamp.len() > 19
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(VerifyError::BadTimestamp);
    }
    let sent: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let tolerance = tolerance_secs.max(0);
    if now_secs.saturating_sub(sent) > tolerance {
        return Err(VerifyError::Expired);
    }
    if sent.saturating_sub(now_secs) > tolerance {
        return Err(VerifyError::FromFuture);
    }
    let id_ok = !msg_id.is_empty()
        && msg_id.len() <= MAX_MESSAGE_ID_LEN
        && msg_id.bytes().all(|b| (b' '..=b'~').contains(&b));
    if !id_ok {
        return Err(VerifyError::BadId);
    }
    // A v1 signature is 32 bytes, 44 characters of padded base64; anything much longer is
    // not one and is not worth decoding.
    let candidates: Vec<Vec<u8>> = signature_header
        .split(' ')
        .filter(|entry| !entry.is_empty())
        .take(MAX_SIGNATURES)
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, signature)| *version == "v1" && signature.len() <= 64)
        .filter_map(|(_, signature)| LENIENT_BASE64.decode(signature).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoMatch);
    }
    // Sign over the number as parsed, as the reference libraries do, so a zero-padded header
    // is read the same way everywhere.
    let sent = sent.to_string();
    for secret in secrets {
        let mac = secret.mac(msg_id, &sent, body);
        if candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// Verify a GitHub-style `X-Hub-Signature-256` header, `sha256=` and the 64-digit hex
/// HMAC-SHA256 of the raw body (either case), in constant time. The shared secret is
/// arbitrary text as the sender configured it; an empty secret never verifies, since anyone
/// could sign with it.
pub fn verify_hub_sha256(secret: &[u8], body: &[u8], header: &str) -> Result<(), VerifyError> {
    let digits = header
        .strip_prefix("sha256=")
        .filter(|digits| digits.len() == 64)
        .ok_or(VerifyError::BadSignatureFormat)?;
    let tag = hex::decode(digits).map_err(|_| VerifyError::BadSignatureFormat)?;
    if secret.is_empty() {
        return Err(VerifyError::NoMatch);
    }
    hub_mac(secret, body)
        .verify_slice(&tag)
        .map_err(|_| VerifyError::NoMatch)
}

/// The GitHub-style `X-Hub-Signature-256` value for a body: `sha256=` and lowercase hex.
pub fn hub_sha256(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hub_mac(secret, body).finalize().into_bytes())
    )
}

fn hub_mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

impl RetrySchedule {
    /// 5 s, then ×3 per attempt up to 6 h, 13 attempts in all, up to 25 % jitter: about 28.5
    /// hours from the first attempt to the last, so a receiver down for a day still gets it.
    pub const DEFAULT: RetrySchedule = RetrySchedule {
        first_delay_ms: 5_000,
        factor: 3,
        max_delay_ms: 6 * 60 * 60 * 1000,
        max_attempts: 13,
        jitter_per_mille: 250,
    };

    /// The wait before the next attempt after `attempts_made` attempts, before jitter:
    /// `min(first_delay_ms × factor^(attempts_made − 1), max_delay_ms)`, never negative.
    /// `None` when no attempt has been made or none is left.
    pub fn base_delay(&self, attempts_made: u32) -> Option<i64> {
        if attempts_made == 0 || attempts_made >= self.max_attempts {
            return None;
        }
        let growth = i64::from(self.factor.max(1)).saturating_pow(attempts_made - 1);
        Some(
            self.first_delay_ms
                .max(0)
                .saturating_mul(growth)
                .min(self.max_delay_ms.max(0)),
        )
    }

    /// The wait before the next attempt after `attempts_made` attempts: the base delay plus
    /// jitter, `random` read as a fraction of 2^64, so the result lies in
    /// `[base, base × (1 + jitter_per_mille / 1000))` (exactly `base` when `random` is 0).
    /// `None` when no attempt has been made or none is left.
    pub fn delay_after(&self, attempts_made: u32, random: u64) -> Option<i64> {
        let base = self.base_delay(attempts_made)?;
        // The most jitter, capped at i64::MAX (the sum saturates there anyway) so that the
        // product with `random` fits in a u128.
        let most = (base as u128 * u128::from(self.jitter_per_mille) / 1000).min(i64::MAX as u128);
        let jitter = (most * u128::from(random)) >> 64;
        // INVARIANT: jitter < most <= i64::MAX (or both are 0), so the cast is exact.
        Some(base.saturating_add(jitter as i64))
    }

    /// The sum of the base delays of all retries: the least time from the first attempt to
    /// the last.
    pub fn min_span_ms(&self) -> i64 {
        let mut total: i64 = 0;
        let mut previous = None;
        for attempts_made in 1..self.max_attempts {
            let Some(base) = self.base_delay(attempts_made) else {
                break;
            };
            if previous == Some(base) {
                // The base has stopped growing (capped, saturated or a factor of 1), so every
                // later retry waits the same: add them all at once rather than loop up to
                // u32::MAX times.
                let remaining = i64::from(self.max_attempts - attempts_made);
                return total.saturating_add(base.saturating_mul(remaining));
            }
            total = total.saturating_add(base);
            previous = Some(base);
        }
        total
    }

    /// When to make the next attempt after `attempts_made` attempts, the last failing at
    /// `now`: the later of the schedule's delay and the receiver's `Retry-After`
    /// (`retry_after_ms`, clamped to 0..=24 h). `None` when no attempt is left.
    pub fn retry_at(
        &self,
        now: UnixMillis,
        attempts_made: u32,
        random: u64,
        retry_after_ms: Option<i64>,
    ) -> Option<UnixMillis> {
        let scheduled = self.delay_after(attempts_made, random)?;
        let asked = retry_after_ms.map_or(0, |ms| ms.clamp(0, MAX_RETRY_AFTER_MS));
        Some(now.saturating_add(scheduled.max(asked)))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl EventType {
    /// Every event type, in declaration order.
    pub const ALL: [EventType; 9] = [
        Self::ActionHeld,
        Self::ApprovalDecided,
        Self::ActionExecuted,
        Self::ActionFailed,
        Self::GuardrailChanged,
        Self::TokenLockedOut,
        Self::ConnectionRevoked,
        Self::AuditCheckpoint,
        Self::EndpointDisabled,
    ];

    /// The wire name, as in the payload's `type` and in event filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActionHeld => "action.held",
            Self::ApprovalDecided => "approval.decided",
            Self::ActionExecuted => "action.executed",
            Self::ActionFailed => "action.failed",
            Self::GuardrailChanged => "guardrail.changed",
            Self::TokenLockedOut => "token.locked_out",
            Self::ConnectionRevoked => "connection.revoked",
            Self::AuditCheckpoint => "audit.checkpoint",
            Self::EndpointDisabled => "webhook.endpoint_disabled",
        }
    }

    /// The event type with this wire name.
    pub fn parse(name: &str) -> Result<Self, WebhookError> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == name)
            .ok_or_else(|| WebhookError::UnknownEvent(printable_prefix(name)))
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most 64 characters of a name, control characters replaced, safe to put in a message.
fn printable_prefix(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

impl EventFilter {
    /// Every event type.
    pub fn all() -> Self {
        Self {
            bits: EventType::ALL
                .iter()
                .fold(0, |bits, event| bits | event.bit()),
        }
    }

    /// A filter from event type names; `*` means all of them. An empty list is refused, as is
    /// an unknown name.
    pub fn parse(items: &[String]) -> Result<Self, WebhookError> {
        let mut bits = 0;
        for item in items {
            bits |= if item == "*" {
                Self::all().bits
            } else {
                EventType::parse(item)?.bit()
            };
        }
        if bits == 0 {
            return Err(WebhookError::NoEvents);
        }
        Ok(Self { bits })
    }

    /// Whether an event of this type goes to the endpoint.
    pub fn matches(&self, event: EventType) -> bool {
        self.bits & event.bit() != 0
    }

    /// The subscribed event types' names, sorted, each once, `*` expanded.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = EventType::ALL
            .into_iter()
            .filter(|event| self.matches(*event))
            .map(EventType::as_str)
            .collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventFilter").field(&self.names()).finish()
    }
}

impl Serialize for EventFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&items).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> SigningSecret {
        SigningSecret::parse(SPEC_SECRET).unwrap()
    }

    /// Verify with the spec's defaults: now is the signing time, 5 minutes' tolerance.
    fn check(
        secrets: &[&SigningSecret],
        msg_id: &str,
        timestamp: &str,
        header: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        verify(
            secrets,
            msg_id,
            timestamp,
            header,
            body,
            SPEC_TIMESTAMP,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn the_specification_test_vector_signs_and_verifies() {
        let secret = spec_secret();
        assert_eq!(
            sign(&secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(
            check(&[&secret], SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY),
            Ok(())
        );
        // Without the prefix and with the padding dropped, the same key.
        let bare = SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(&bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_eq!(&*secret.to_text(), SPEC_SECRET);
    }

    /// Secrets, id, timestamp, signature header, body and the expected outcome.
    type Case<'a> = (
        &'a [&'a SigningSecret],
        &'a str,
        &'a str,
        &'a str,
        &'a [u8],
        Result<(), VerifyError>,
    );

    #[test]
    fn tampering_and_bad_headers_are_refused() {
        let secret = spec_secret();
        let other = SigningSecret::generate();
        let ts = SPEC_TIMESTAMP.to_string();
        let sig = SPEC_SIGNATURE;
        let v2_only = "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let with_v2 = format!("v2,abc v1a,{} {sig}", &sig[3..]);
        let long_id = "m".repeat(257);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (&[&secret], SPEC_ID, &ts, sig, SPEC_BODY, Ok(())),
            (&[&secret], SPEC_ID, &ts, &with_v2, SPEC_BODY, Ok(())),
            (&[&other, &secret], SPEC_ID, &ts, sig, SPEC_BODY, Ok(())),
            (&[&secret], SPEC_ID, &ts, sig, br#"{"test": 2432232315}"#, Err(VerifyError::NoMatch)),
            (&[&secret], "msg_p5jXN8AQM9LWM0D4loKWxJel", &ts, sig, SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, "1614265331", sig, SPEC_BODY, Err(VerifyError::NoMatch)),
            // Read as a number, as the reference libraries do.
            (&[&secret], SPEC_ID, "01614265330", sig, SPEC_BODY, Ok(())),
            (&[&other], SPEC_ID, &ts, sig, SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[], SPEC_ID, &ts, sig, SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, v2_only, SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, "", SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, "v1", SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, "v1,!!!", SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, &sig[..20], SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, &ts, &sig.to_lowercase(), SPEC_BODY, Err(VerifyError::NoMatch)),
            (&[&secret], SPEC_ID, "1614264000", sig, SPEC_BODY, Err(VerifyError::Expired)),
            (&[&secret], SPEC_ID, "1614266000", sig, SPEC_BODY, Err(VerifyError::FromFuture)),
            (&[&secret], SPEC_ID, "", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, "-1614265330", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, "+1614265330", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, "1614265330.0", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, " 1614265330", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, "99999999999999999999", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], SPEC_ID, "9999999999999999999", sig, SPEC_BODY, Err(VerifyError::BadTimestamp)),
            (&[&secret], "", &ts, sig, SPEC_BODY, Err(VerifyError::BadId)),
            (&[&secret], &long_id, &ts, sig, SPEC_BODY, Err(VerifyError::BadId)),
            (&[&secret], "msg\n1", &ts, sig, SPEC_BODY, Err(VerifyError::BadId)),
            (&[&secret], "msg_é", &ts, sig, SPEC_BODY, Err(VerifyError::BadId)),
        ];
        for (i, (secrets, id, ts, header, body, want)) in cases.iter().enumerate() {
            assert_eq!(&check(secrets, id, ts, header, body), want, "case {i}");
        }
    }

    #[test]
    fn the_tolerance_is_inclusive_and_never_overflows() {
        let secret = SigningSecret::generate();
        let header = sign(&secret, "msg_1", 1_000, b"x");
        let at = |now| verify(&[&secret], "msg_1", "1000", &header, b"x", now, 300);
        assert_eq!(at(1_300), Ok(()));
        assert_eq!(at(700), Ok(()));
        assert_eq!(at(1_301), Err(VerifyError::Expired));
        assert_eq!(at(699), Err(VerifyError::FromFuture));
        assert_eq!(at(i64::MAX), Err(VerifyError::Expired));
        assert_eq!(at(i64::MIN), Err(VerifyError::FromFuture));
    }

    #[test]
    fn only_the_first_sixteen_signatures_are_looked_at() {
        let secret = SigningSecret::generate();
        let good = sign(&secret, "msg_1", SPEC_TIMESTAMP, b"");
        let ts = SPEC_TIMESTAMP.to_string();
        let filler = |n: usize| vec!["v1,AAAA"; n].join(" ");
        let late = format!("{} {good}", filler(16));
        let in_time = format!("{} {good}", filler(15));
        assert_eq!(
            check(&[&secret], "msg_1", &ts, &late, b""),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(check(&[&secret], "msg_1", &ts, &in_time, b""), Ok(()));
    }

    #[test]
    fn during_rotation_either_secret_verifies() {
        let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
        let body = "{\"type\":\"action.held\",\"note\":\"ü😀\"}".as_bytes();
        let header = signature_header(&[&old, &new], SPEC_ID, SPEC_TIMESTAMP, body);
        assert_eq!(header.split(' ').count(), 2);
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(check(&[&old], SPEC_ID, &ts, &header, body), Ok(()));
        assert_eq!(check(&[&new], SPEC_ID, &ts, &header, body), Ok(()));
        let stranger = SigningSecret::generate();
        assert_eq!(
            check(&[&stranger], SPEC_ID, &ts, &header, body),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn secrets_parse_strictly_and_print_redacted() {
        for bad in [
            "",
            "whsec_",
            "whsec_not base64!",
            "whsec_AAAA",                         // 3 bytes
            &format!("whsec_{}", "A".repeat(31)), // not a whole number of bytes
            &format!("whsec_{}", STANDARD.encode([7u8; 23])),
            &format!("whsec_{}", STANDARD.encode([7u8; 65])),
        ] {
            assert_eq!(
                SigningSecret::parse(bad).unwrap_err(),
                WebhookError::InvalidSecret,
                "{bad}"
            );
        }
        for len in [24, 32, 64] {
            let secret = SigningSecret::from_bytes(&vec![9u8; len]).unwrap();
            let again = SigningSecret::parse(&secret.to_text()).unwrap();
            assert_eq!(*again.key, vec![9u8; len]);
        }
        assert!(SigningSecret::from_bytes(&[1u8; 23]).is_err());
        assert!(SigningSecret::from_bytes(&[1u8; 65]).is_err());

        let secret = SigningSecret::generate();
        assert_eq!(secret.key.len(), 32);
        let text = secret.to_text();
        let debug = format!("{secret:?}");
        assert_eq!(debug, "SigningSecret([REDACTED])");
        assert!(!debug.contains(&text[SECRET_PREFIX.len()..]));
        assert!(
            !WebhookError::InvalidSecret
                .to_string()
                .contains(&text[SECRET_PREFIX.len()..])
        );
    }

    #[test]
    fn the_github_example_signature_verifies() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(hub_sha256(secret, body), want);
        assert_eq!(verify_hub_sha256(secret, body, want), Ok(()));
        let upper = format!("sha256={}", want[7..].to_uppercase());
        assert_eq!(verify_hub_sha256(secret, body, &upper), Ok(()));
        assert_eq!(
            verify_hub_sha256(secret, b"Hello, World?", want),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_hub_sha256(b"another", body, want),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_hub_sha256(b"", b"", &hub_sha256(b"", b"")),
            Err(VerifyError::NoMatch)
        );
        for bad in [
            "",
            &want[7..],
            &want[..70],
            &format!("{want}0"),
            &format!("sha1={}", &want[7..]),
            &format!("SHA256={}", &want[7..]),
            &format!("sha256={}g", &want[7..70]),
            &format!(" {want}"),
        ] {
            assert_eq!(
                verify_hub_sha256(secret, body, bad),
                Err(VerifyError::BadSignatureFormat),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_default_schedule_outlasts_a_day_of_downtime() {
        let schedule = RetrySchedule::DEFAULT;
        assert!(schedule.min_span_ms() >= 24 * 60 * 60 * 1000);
        assert_eq!(schedule.min_span_ms(), 102_800_000);
        assert_eq!(schedule.delay_after(0, 0), None);
        assert_eq!(schedule.delay_after(1, 0), Some(5_000));
        assert_eq!(schedule.delay_after(2, 0), Some(15_000));
        assert_eq!(schedule.delay_after(12, 0), Some(6 * 60 * 60 * 1000));
        assert_eq!(schedule.delay_after(13, 0), None);
        assert_eq!(schedule.delay_after(1, u64::MAX), Some(6_249));
        assert_eq!(schedule.delay_after(1, 1 << 63), Some(5_625));
    }

    #[test]
    fn retry_after_can_only_postpone_and_is_capped() {
        let schedule = RetrySchedule::DEFAULT;
        let now = 1_000_000;
        assert_eq!(schedule.retry_at(now, 1, 0, None), Some(now + 5_000));
        assert_eq!(schedule.retry_at(now, 1, 0, Some(1_000)), Some(now + 5_000));
        assert_eq!(schedule.retry_at(now, 1, 0, Some(-9)), Some(now + 5_000));
        assert_eq!(
            schedule.retry_at(now, 1, 0, Some(60_000)),
            Some(now + 60_000)
        );
        assert_eq!(
            schedule.retry_at(now, 1, 0, Some(i64::MAX)),
            Some(now + MAX_RETRY_AFTER_MS)
        );
        assert_eq!(schedule.retry_at(now, 13, 0, Some(60_000)), None);
        assert_eq!(
            schedule.retry_at(i64::MAX, 12, u64::MAX, None),
            Some(i64::MAX)
        );
    }

    #[test]
    fn min_span_handles_flat_and_huge_schedules_quickly() {
        let flat = RetrySchedule {
            factor: 1,
            max_attempts: u32::MAX,
            ..RetrySchedule::DEFAULT
        };
        assert_eq!(flat.min_span_ms(), 5_000 * i64::from(u32::MAX - 1));
        let huge = RetrySchedule {
            max_delay_ms: i64::MAX,
            max_attempts: u32::MAX,
            ..flat
        };
        assert_eq!(huge.min_span_ms(), 5_000 * i64::from(u32::MAX - 1));
        let steep = RetrySchedule {
            factor: u32::MAX,
            ..huge
        };
        assert_eq!(steep.min_span_ms(), i64::MAX);
        let once = RetrySchedule {
            max_attempts: 1,
            ..RetrySchedule::DEFAULT
        };
        assert_eq!(once.min_span_ms(), 0);
        assert_eq!(once.delay_after(1, 0), None);
    }

    #[test]
    fn event_types_round_trip_by_name_and_serde() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Ok(event));
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, serde_json::Value::String(event.as_str().into()));
            assert_eq!(serde_json::from_value::<EventType>(json).unwrap(), event);
        }
        let long = "x".repeat(100);
        match EventType::parse(&long) {
            Err(WebhookError::UnknownEvent(name)) => assert_eq!(name.chars().count(), 64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn event_filters_parse_match_and_serialize() {
        let items = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let filter =
            EventFilter::parse(&items(&["approval.decided", "action.held", "action.held"]))
                .unwrap();
        assert!(filter.matches(EventType::ActionHeld));
        assert!(!filter.matches(EventType::ActionFailed));
        assert_eq!(filter.names(), ["action.held", "approval.decided"]);
        let json = serde_json::to_string(&filter).unwrap();
        assert_eq!(json, r#"["action.held","approval.decided"]"#);
        assert_eq!(serde_json::from_str::<EventFilter>(&json).unwrap(), filter);

        let all = EventFilter::parse(&items(&["*"])).unwrap();
        assert_eq!(all, EventFilter::all());
        assert!(EventType::ALL.into_iter().all(|event| all.matches(event)));
        let mut sorted: Vec<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        sorted.sort_unstable();
        assert_eq!(all.names(), sorted);
        assert_eq!(
            EventFilter::parse(&items(&["action.held", "*"])).unwrap(),
            all
        );

        assert_eq!(EventFilter::parse(&[]), Err(WebhookError::NoEvents));
        assert_eq!(
            EventFilter::parse(&items(&["action.held", "action.hold"])),
            Err(WebhookError::UnknownEvent("action.hold".into()))
        );
        assert!(serde_json::from_str::<EventFilter>("[]").is_err());
        assert!(serde_json::from_str::<EventFilter>(r#"["nope"]"#).is_err());
        assert!(serde_json::from_str::<EventFilter>(r#""*""#).is_err());
    }

    fn any_schedule() -> impl Strategy<Value = RetrySchedule> {
        (
            any::<i64>(),
            any::<u32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(first_delay_ms, factor, max_delay_ms, max_attempts, jitter_per_mille)| {
                    RetrySchedule {
                        first_delay_ms,
                        factor,
                        max_delay_ms,
                        max_attempts,
                        jitter_per_mille,
                    }
                },
            )
    }

    fn plausible_schedule() -> impl Strategy<Value = RetrySchedule> {
        (
            0..100_000i64,
            0..10u32,
            0..100_000_000i64,
            0..40u32,
            0..2_000u32,
        )
            .prop_map(
                |(first_delay_ms, factor, max_delay_ms, max_attempts, jitter_per_mille)| {
                    RetrySchedule {
                        first_delay_ms,
                        factor,
                        max_delay_ms,
                        max_attempts,
                        jitter_per_mille,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn no_input_makes_the_schedule_panic(
            schedule in any_schedule(), n in any::<u32>(), random in any::<u64>(),
            now in any::<i64>(), retry_after in any::<Option<i64>>(),
        ) {
            let _ = schedule.delay_after(n, random);
            let _ = schedule.retry_at(now, n, random, retry_after);
            let _ = schedule.min_span_ms();
        }

        #[test]
        fn delays_lie_between_base_and_base_plus_jitter(
            schedule in prop_oneof![any_schedule(), plausible_schedule()],
            n in 0..64u32, random in any::<u64>(),
        ) {
            let delay = schedule.delay_after(n, random);
            prop_assert_eq!(delay.is_some(), n >= 1 && n < schedule.max_attempts);
            let Some(delay) = delay else { return Ok(()) };
            let base = schedule.base_delay(n).unwrap();
            prop_assert!(base >= 0);
            prop_assert_eq!(schedule.delay_after(n, 0), Some(base));
            let most = i128::from(base) * i128::from(schedule.jitter_per_mille) / 1000;
            prop_assert!(delay >= base);
            if most == 0 {
                prop_assert_eq!(delay, base);
            } else if delay < i64::MAX {
                prop_assert!(i128::from(delay) < i128::from(base) + most);
            }
        }

        #[test]
        fn the_base_delay_never_shrinks(
            schedule in prop_oneof![any_schedule(), plausible_schedule()], n in 1..64u32,
        ) {
            if let (Some(a), Some(b)) = (schedule.base_delay(n), schedule.base_delay(n + 1)) {
                prop_assert!(a <= b);
            }
        }

        #[test]
        fn min_span_is_the_sum_of_the_bases(schedule in plausible_schedule()) {
            let sum: i64 = (1..schedule.max_attempts)
                .map(|n| schedule.base_delay(n).unwrap())
                .fold(0, i64::saturating_add);
            prop_assert_eq!(schedule.min_span_ms(), sum);
        }

        #[test]
        fn what_we_sign_we_verify(
            id in "[!-~]{1,64}", ts in 0..4_000_000_000i64, body in any::<Vec<u8>>(),
            skew in -300..=300i64,
        ) {
            let secret = SigningSecret::generate();
            let header = signature_header(&[&SigningSecret::generate(), &secret], &id, ts, &body);
            prop_assert_eq!(
                verify(&[&secret], &id, &ts.to_string(), &header, &body, ts + skew, 300),
                Ok(())
            );
        }

        #[test]
        fn verification_never_panics(
            id in ".{0,300}", ts in ".{0,25}", header in ".{0,300}", body in any::<Vec<u8>>(),
            now in any::<i64>(), tolerance in any::<i64>(),
        ) {
            let secret = SigningSecret::generate();
            let _ = verify(&[&secret], &id, &ts, &header, &body, now, tolerance);
            let _ = verify_hub_sha256(b"k", &body, &header);
            let _ = SigningSecret::parse(&header);
        }
    }
}
