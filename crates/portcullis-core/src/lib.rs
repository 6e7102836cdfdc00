//! Portcullis domain logic: typed ids, effect classes, canonical actions and their hashes,
//! the decision rule, signed approval receipts and the tamper-evident audit chain.
//!
//! INVARIANT: this crate does no IO. It knows nothing of HTTP, SQL, tokio or MCP transports;
//! callers hand it plain values (including the current time) and get plain values back.

pub mod account;
pub mod action;
pub mod attestation;
pub mod audit;
pub mod decision;
pub mod effect;
pub mod guardrail;
pub mod id;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod profile;
pub mod receipt;
pub mod summary;
pub mod token;
pub mod vault;
pub mod webhook;

/// The Ed25519 implementation signatures are made and checked with (for embedders of the
/// offline verifier).
pub use ed25519_dalek as ed25519;

/// Milliseconds since the Unix epoch. The core never reads the clock; callers pass `now`.
pub type UnixMillis = i64;

/// The longest an approval request (and so its receipt) may live: 24 hours.
pub const MAX_APPROVAL_TTL_MS: UnixMillis = 24 * 60 * 60 * 1000;
/// The default life of an approval request: 1 hour.
pub const DEFAULT_APPROVAL_TTL_MS: UnixMillis = 60 * 60 * 1000;

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Fill a fixed-size array from the operating system's CSPRNG.
///
/// # Panics
/// Panics when the OS has no entropy source; nothing secure can run without one.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system has no usable random source");
    out
}
