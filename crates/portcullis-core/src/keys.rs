//! Key material of one installation: the Ed25519 key that signs receipts and audit checkpoints,
//! and the HMAC key that turns tool arguments into keyed hashes for the audit trail.
//!
//! The bytes are parsed and serialised here; reading and writing the key file (mode 0600) is the
//! caller's job, because this crate does no IO.

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A key file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("key file field `{0}` is not 32 hex-encoded bytes")]
    Field(&'static str),
    #[error("key file version {0} is not supported by this binary")]
    Version(u32),
}

/// The installation's secret keys. `Debug` never prints them.
pub struct KeyRing {
    signing: SigningKey,
    audit_hmac: SecretBox<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    signing_key: String,
    audit_hmac_key: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "verifying_key",
                &hex::encode(self.verifying_key().as_bytes()),
            )
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

impl KeyRing {
    /// Fresh keys from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::from_bytes(&crate::random_bytes::<32>()),
            audit_hmac: SecretBox::new(Box::new(crate::random_bytes::<32>())),
        }
    }

    /// Parse the contents of a key file.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| KeyFileError::Shape(e.to_string()))?;
        if file.version != 1 {
            return Err(KeyFileError::Version(file.version));
        }
        let decode = |field: &'static str, value: &str| -> Result<[u8; 32], KeyFileError> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(value.trim(), &mut out).map_err(|_| KeyFileError::Field(field))?;
            Ok(out)
        };
        Ok(Self {
            signing: SigningKey::from_bytes(&decode("signing_key", &file.signing_key)?),
            audit_hmac: SecretBox::new(Box::new(decode("audit_hmac_key", &file.audit_hmac_key)?)),
        })
    }

    /// The contents of a key file for these keys. Handle with care: this is the secret.
    pub fn to_file_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let file = KeyFile {
            version: 1,
            signing_key: hex::encode(self.signing.to_bytes()),
            audit_hmac_key: hex::encode(self.audit_hmac.expose_secret()),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("key file serialises");
        bytes.push(b'\n');
        zeroize::Zeroizing::new(bytes)
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Keyed hash of a value for the audit trail: HMAC-SHA256 over the tenant and the canonical
    /// JSON of the value. Equal arguments are recognisable within a tenant, but not readable.
    pub fn keyed_hash(&self, tenant: &crate::id::TenantId, canonical: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.audit_hmac.expose_secret())
            .expect("any key size works");
        mac.update(tenant.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(canonical);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Parse a hex-encoded Ed25519 public key, as printed by `portcullis keys public`.
pub fn parse_verifying_key(hex_key: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_debug_hides_secrets() {
        let keys = KeyRing::generate();
        let again = KeyRing::from_file_bytes(&keys.to_file_bytes()).unwrap();
        assert_eq!(keys.verifying_key(), again.verifying_key());
        let tenant = crate::id::TenantId::generate();
        assert_eq!(
            keys.keyed_hash(&tenant, b"x"),
            again.keyed_hash(&tenant, b"x")
        );
        let debug = format!("{keys:?}");
        assert!(!debug.contains(&hex::encode(keys.signing.to_bytes())));
        assert!(KeyRing::from_file_bytes(b"{}").is_err());
    }
}
