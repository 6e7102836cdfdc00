//! Key material of one installation: the Ed25519 key that signs receipts and audit checkpoints,
//! the HMAC key that turns tool arguments into keyed hashes for the audit trail, and the vault's
//! master keys, which wrap tenant key-encryption keys when no HSM holds them.
//!
//! Vault master keys have short ids (`k1`, `k2`, …); one is current and wraps new keys, the
//! others stay so that keys wrapped under them still open. A key file written before the vault
//! existed has none: its single master key `k0` is derived from the audit HMAC key, so replicas
//! sharing such a file agree on it without rewriting the file.
//!
//! The bytes are parsed and serialised here; reading and writing the key file (mode 0600) is the
//! caller's job, because this crate does no IO.

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

use crate::vault::Key256;

/// A key file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("key file field `{0}` is not 32 hex-encoded bytes")]
    Field(&'static str),
    #[error("key file version {0} is not supported by this binary")]
    Version(u32),
    #[error("key file vault keys: {0}")]
    Vault(String),
}

/// The installation's secret keys. `Debug` never prints them.
pub struct KeyRing {
    signing: SigningKey,
    audit_hmac: SecretBox<[u8; 32]>,
    vault_keys: BTreeMap<String, Key256>,
    // INVARIANT: names a key in `vault_keys`.
    vault_current: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    signing_key: String,
    audit_hmac_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vault_keys: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vault_current: Option<String>,
}

/// The id of the vault master key derived for key files without `vault_keys`.
const DERIVED_VAULT_KEY_ID: &str = "k0";
/// What the derived vault master key is the HMAC of, under the audit HMAC key.
const DERIVED_VAULT_KEY_LABEL: &[u8] =
    b"portcullis vault master key, derived for key files without vault_keys";

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "verifying_key",
                &hex::encode(self.verifying_key().as_bytes()),
            )
            .field("vault_current", &self.vault_current)
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

impl KeyRing {
    /// Fresh keys from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let first = "k1".to_owned();
        Self {
            signing: SigningKey::from_bytes(&crate::random_bytes::<32>()),
            audit_hmac: SecretBox::new(Box::new(crate::random_bytes::<32>())),
            vault_keys: BTreeMap::from([(first.clone(), Key256::generate())]),
            vault_current: first,
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
        let audit_hmac = SecretBox::new(Box::new(decode("audit_hmac_key", &file.audit_hmac_key)?));
        let (vault_keys, vault_current) = match (file.vault_keys, file.vault_current) {
            (None, None) => {
                let derived = derive_vault_key(audit_hmac.expose_secret());
                let id = DERIVED_VAULT_KEY_ID.to_owned();
                (BTreeMap::from([(id.clone(), derived)]), id)
            }
            (Some(encoded), Some(current)) => {
                let mut keys = BTreeMap::new();
                for (id, value) in encoded {
                    if !is_vault_key_id(&id) {
                        return Err(KeyFileError::Vault(format!(
                            "id `{id}` is not 1 to 32 of a-z, 0-9 and -"
                        )));
                    }
                    let bytes =
                        zeroize::Zeroizing::new(decode("vault_keys", &value).map_err(|_| {
                            KeyFileError::Vault(format!("key `{id}` is not 32 hex-encoded bytes"))
                        })?);
                    keys.insert(id, Key256::from_bytes(*bytes));
                }
                if !keys.contains_key(&current) {
                    return Err(KeyFileError::Vault(format!(
                        "current key `{current}` is not among the keys"
                    )));
                }
                (keys, current)
            }
            _ => {
                return Err(KeyFileError::Vault(
                    "`vault_keys` and `vault_current` go together".to_owned(),
                ));
            }
        };
        Ok(Self {
            signing: SigningKey::from_bytes(&decode("signing_key", &file.signing_key)?),
            audit_hmac,
            vault_keys,
            vault_current,
        })
    }

    /// The contents of a key file for these keys. Handle with care: this is the secret.
    pub fn to_file_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let file = KeyFile {
            version: 1,
            signing_key: hex::encode(self.signing.to_bytes()),
            audit_hmac_key: hex::encode(self.audit_hmac.expose_secret()),
            vault_keys: Some(
                self.vault_keys
                    .iter()
                    .map(|(id, key)| (id.clone(), hex::encode(key.expose())))
                    .collect(),
            ),
            vault_current: Some(self.vault_current.clone()),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("key file serialises");
        bytes.push(b'\n');
        zeroize::Zeroizing::new(bytes)
    }

    /// The vault master keys by id, in id order.
    pub fn vault_keys(&self) -> impl Iterator<Item = (&str, &Key256)> {
        self.vault_keys.iter().map(|(id, key)| (id.as_str(), key))
    }

    /// The id of the vault master key that wraps new keys.
    pub fn vault_current(&self) -> &str {
        &self.vault_current
    }

    /// Add a fresh random vault master key and make it current; returns its id (`k<N+1>`,
    /// where N is the highest number among ids of the form `k<number>`). The older keys stay,
    /// so keys wrapped under them still open. Write the key file again to keep it.
    pub fn add_vault_key(&mut self) -> String {
        let highest = self
            .vault_keys
            .keys()
            .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
            .max();
        let id = format!("k{}", highest.map_or(1, |n| n + 1));
        self.vault_keys.insert(id.clone(), Key256::generate());
        self.vault_current = id.clone();
        id
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

/// `[a-z0-9-]{1,32}`: what a vault master key id may be.
fn is_vault_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The master key of key files without `vault_keys`: HMAC-SHA256 of a fixed label under the
/// audit HMAC key.
fn derive_vault_key(audit_hmac: &[u8; 32]) -> Key256 {
    let mut mac = Hmac::<Sha256>::new_from_slice(audit_hmac).expect("any key size works");
    mac.update(DERIVED_VAULT_KEY_LABEL);
    let mut bytes: [u8; 32] = mac.finalize().into_bytes().into();
    let key = Key256::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    key
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

    fn vault_key_bytes(keys: &KeyRing) -> Vec<(String, [u8; 32])> {
        keys.vault_keys()
            .map(|(id, key)| (id.to_owned(), *key.expose()))
            .collect()
    }

    #[test]
    fn generated_vault_keys_round_trip_through_the_file() {
        let keys = KeyRing::generate();
        assert_eq!(keys.vault_current(), "k1");
        assert_eq!(keys.vault_keys().count(), 1);
        let bytes = keys.to_file_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["vault_current"], "k1");
        assert_eq!(json["vault_keys"]["k1"].as_str().unwrap().len(), 64);
        let again = KeyRing::from_file_bytes(&bytes).unwrap();
        assert_eq!(again.vault_current(), "k1");
        assert_eq!(vault_key_bytes(&again), vault_key_bytes(&keys));
        // Two installations do not share a vault key.
        assert_ne!(
            vault_key_bytes(&KeyRing::generate()),
            vault_key_bytes(&keys)
        );
        let debug = format!("{keys:?}");
        assert!(!debug.contains(json["vault_keys"]["k1"].as_str().unwrap()));
    }

    #[test]
    fn old_key_files_get_a_derived_vault_key() {
        let old = r#"{
            "version": 1,
            "signing_key": "0101010101010101010101010101010101010101010101010101010101010101",
            "audit_hmac_key": "0202020202020202020202020202020202020202020202020202020202020202"
        }"#;
        let keys = KeyRing::from_file_bytes(old.as_bytes()).unwrap();
        assert_eq!(keys.vault_current(), "k0");
        let mut mac = Hmac::<Sha256>::new_from_slice(&[2u8; 32]).unwrap();
        mac.update(b"portcullis vault master key, derived for key files without vault_keys");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(vault_key_bytes(&keys), vec![("k0".to_owned(), expected)]);
        // Another replica reading the same file derives the same key.
        let replica = KeyRing::from_file_bytes(old.as_bytes()).unwrap();
        assert_eq!(vault_key_bytes(&replica), vault_key_bytes(&keys));
        // Writing the file again keeps the derived key under its id.
        let rewritten = KeyRing::from_file_bytes(&keys.to_file_bytes()).unwrap();
        assert_eq!(rewritten.vault_current(), "k0");
        assert_eq!(vault_key_bytes(&rewritten), vault_key_bytes(&keys));
        // Another audit key derives another vault key.
        let other = KeyRing::from_file_bytes(old.replace("0202", "0303").as_bytes()).unwrap();
        assert_ne!(vault_key_bytes(&other), vault_key_bytes(&keys));
        // Rotating away from the derived key keeps it.
        let mut rotated = KeyRing::from_file_bytes(old.as_bytes()).unwrap();
        assert_eq!(rotated.add_vault_key(), "k1");
        assert_eq!(rotated.vault_current(), "k1");
        assert_eq!(rotated.vault_keys().next().unwrap().1.expose(), &expected);
    }

    #[test]
    fn added_vault_keys_become_current_and_keep_the_old_ones() {
        let mut keys = KeyRing::generate();
        let first = *keys.vault_keys().next().unwrap().1.expose();
        assert_eq!(keys.add_vault_key(), "k2");
        assert_eq!(keys.add_vault_key(), "k3");
        assert_eq!(keys.vault_current(), "k3");
        let ids: Vec<_> = keys.vault_keys().map(|(id, _)| id.to_owned()).collect();
        assert_eq!(ids, ["k1", "k2", "k3"]);
        assert_eq!(keys.vault_keys().next().unwrap().1.expose(), &first);
        let again = KeyRing::from_file_bytes(&keys.to_file_bytes()).unwrap();
        assert_eq!(again.vault_current(), "k3");
        assert_eq!(vault_key_bytes(&again), vault_key_bytes(&keys));

        let mut named = KeyRing::generate();
        named.vault_keys = BTreeMap::from([("prod-a".to_owned(), Key256::generate())]);
        named.vault_current = "prod-a".to_owned();
        assert_eq!(named.add_vault_key(), "k1");
    }

    #[test]
    fn invalid_vault_fields_are_refused() {
        let keys = KeyRing::generate();
        let mut json: serde_json::Value = serde_json::from_slice(&keys.to_file_bytes()).unwrap();
        let load =
            |json: &serde_json::Value| KeyRing::from_file_bytes(&serde_json::to_vec(json).unwrap());
        assert!(load(&json).is_ok());
        let good = json["vault_keys"]["k1"].clone();
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("vault_current", serde_json::json!("k9")),
            ("vault_keys", serde_json::json!({ "K1": good })),
            ("vault_keys", serde_json::json!({ "k1": good, "": good })),
            (
                "vault_keys",
                serde_json::json!({ "k1": good, "a".repeat(33): good }),
            ),
            ("vault_keys", serde_json::json!({ "k1": good, "k_2": good })),
            ("vault_keys", serde_json::json!({ "k1": "abcd" })),
            ("vault_keys", serde_json::json!({})),
        ];
        for (field, value) in cases {
            let mut altered = json.clone();
            altered[field] = value.clone();
            let error = load(&altered).unwrap_err();
            assert!(matches!(error, KeyFileError::Vault(_)), "{field}: {value}");
            assert!(!error.to_string().contains(good.as_str().unwrap()));
        }
        // A current id without keys, or keys without a current id, is a broken file.
        json.as_object_mut().unwrap().remove("vault_current");
        assert!(matches!(load(&json), Err(KeyFileError::Vault(_))));
        // 32 characters is the longest id.
        let mut longest =
            serde_json::from_slice::<serde_json::Value>(&keys.to_file_bytes()).unwrap();
        let id = "a".repeat(32);
        longest["vault_keys"][&id] = good.clone();
        longest["vault_current"] = serde_json::json!(id);
        assert_eq!(load(&longest).unwrap().vault_current(), id);
    }
}
