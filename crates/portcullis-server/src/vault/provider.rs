//! Key providers: what holds the vault's master keys and wraps tenant key-encryption keys
//! (KEKs) under them.
//!
//! A provider never hands out a master key; it wraps and unwraps 256-bit keys, each bound to
//! associated data (for a tenant KEK, [`portcullis_core::vault::kek_aad`]). Two are built in:
//! [`KeyFileProvider`], whose master keys live in the installation key file, and
//! [`Pkcs11Provider`](super::pkcs11::Pkcs11Provider), whose master keys never leave an HSM.

use portcullis_core::keys::KeyRing;
use portcullis_core::vault::{self, Key256, VaultError};
use std::collections::BTreeMap;

/// A key wrapped by a provider, with the id of the master key it is wrapped under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_id: String,
    pub bytes: Vec<u8>,
}

/// The seam between the vault and whatever holds its master keys.
///
/// Methods are synchronous and may block (an HSM call crosses a network or a USB bus): async
/// callers run them under `tokio::task::spawn_blocking`.
///
/// A cloud KMS fits behind the same trait, though none is implemented: AWS KMS `Encrypt` and
/// `Decrypt` with the key id as master id and `EncryptionContext` carrying the associated data;
/// Google Cloud KMS `encrypt`/`decrypt` with `additionalAuthenticatedData`; Azure Key Vault
/// `wrapKey`/`unwrapKey` (which has no associated data, so the wrapped blob would have to be
/// authenticated separately).
pub trait KeyProvider: Send + Sync + 'static {
    /// What kind of provider this is (`key-file`, `pkcs11`), for logs and status pages.
    fn kind(&self) -> &'static str;
    /// The id of the master key new wraps use.
    fn current_master(&self) -> String;
    /// Wrap `key` under the current master key, bound to `aad`.
    fn wrap(&self, aad: &[u8], key: &Key256) -> Result<WrappedKey, ProviderError>;
    /// Unwrap a key with the master key its `master_id` names and the same `aad`.
    fn unwrap(&self, aad: &[u8], wrapped: &WrappedKey) -> Result<Key256, ProviderError>;
}

/// Why a provider could not wrap or unwrap. Never carries key bytes or PINs.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("unknown master key `{0}`")]
    UnknownMaster(String),
    #[error("wrapping a key under master key `{master_id}` failed: {reason}")]
    WrapFailed {
        master_id: String,
        reason: &'static str,
    },
    #[error("unwrapping a key under master key `{master_id}` failed")]
    UnwrapFailed {
        master_id: String,
        #[source]
        source: VaultError,
    },
    /// A PKCS#11 call failed; `code` is the return code's name (`CKR_PIN_INCORRECT`).
    #[error("hsm: {function} returned {code}")]
    Hsm { function: String, code: String },
    #[error("key provider configuration: {0}")]
    Config(String),
}

/// Master keys from the installation key file ([`KeyRing::vault_keys`]); wraps with
/// [`vault::wrap_key`] under the key file's current vault key.
pub struct KeyFileProvider {
    keys: BTreeMap<String, Key256>,
    // INVARIANT: names a key in `keys` (as `KeyRing::vault_current` does).
    current: String,
}

impl KeyFileProvider {
    /// A provider with copies of the key ring's vault keys, as they are now: a key added to
    /// the ring later needs a new provider.
    pub fn new(keys: &KeyRing) -> Self {
        Self {
            keys: keys
                .vault_keys()
                .map(|(id, key)| (id.to_owned(), Key256::from_bytes(*key.expose())))
                .collect(),
            current: keys.vault_current().to_owned(),
        }
    }
}

impl std::fmt::Debug for KeyFileProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFileProvider")
            .field("master_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl KeyProvider for KeyFileProvider {
    fn kind(&self) -> &'static str {
        "key-file"
    }

    fn current_master(&self) -> String {
        self.current.clone()
    }

    fn wrap(&self, aad: &[u8], key: &Key256) -> Result<WrappedKey, ProviderError> {
        let master = self
            .keys
            .get(&self.current)
            .ok_or_else(|| ProviderError::UnknownMaster(self.current.clone()))?;
        Ok(WrappedKey {
            master_id: self.current.clone(),
            bytes: vault::wrap_key(master, aad, key),
        })
    }

    fn unwrap(&self, aad: &[u8], wrapped: &WrappedKey) -> Result<Key256, ProviderError> {
        let master = self
            .keys
            .get(&wrapped.master_id)
            .ok_or_else(|| ProviderError::UnknownMaster(wrapped.master_id.clone()))?;
        vault::unwrap_key(master, aad, &wrapped.bytes).map_err(|source| {
            ProviderError::UnwrapFailed {
                master_id: wrapped.master_id.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::pkcs11::{Pkcs11Provider, test_token};
    use portcullis_core::id::TenantId;
    use portcullis_core::vault::{FORMAT_V1, SecretAt, kek_aad};

    /// The contract every provider keeps. `provider` wraps under one master key; `rotated` is
    /// the same installation after a master key rotation: its current master differs, and it
    /// still knows the old one.
    fn provider_contract(provider: &dyn KeyProvider, rotated: &dyn KeyProvider) {
        let tenant = TenantId::generate();
        let aad = kek_aad(&tenant, 1);
        let key = Key256::generate();

        // Round trip, under the current master key.
        let wrapped = provider.wrap(&aad, &key).unwrap();
        assert_eq!(wrapped.master_id, provider.current_master());
        assert_eq!(wrapped.bytes[0], FORMAT_V1);
        assert_eq!(
            provider.unwrap(&aad, &wrapped).unwrap().expose(),
            key.expose()
        );

        // Bound to its associated data: another tenant or KEK version does not open it.
        for other in [
            kek_aad(&TenantId::generate(), 1),
            kek_aad(&tenant, 2),
            vec![],
        ] {
            let result = provider.unwrap(&other, &wrapped);
            assert!(
                matches!(result, Err(ProviderError::UnwrapFailed { .. })),
                "{:?}",
                result.map(|_| ())
            );
        }

        // Any altered bit, a cut or an extended blob is refused.
        for bit in 0..wrapped.bytes.len() * 8 {
            let mut altered = wrapped.clone();
            altered.bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    provider.unwrap(&aad, &altered),
                    Err(ProviderError::UnwrapFailed { .. })
                ),
                "bit {bit}"
            );
        }
        for len in [0, 1, 13, wrapped.bytes.len() - 1] {
            let cut = WrappedKey {
                master_id: wrapped.master_id.clone(),
                bytes: wrapped.bytes[..len].to_vec(),
            };
            assert!(
                matches!(
                    provider.unwrap(&aad, &cut),
                    Err(ProviderError::UnwrapFailed { .. })
                ),
                "{len} bytes"
            );
        }
        let mut longer = wrapped.clone();
        longer.bytes.push(0);
        assert!(matches!(
            provider.unwrap(&aad, &longer),
            Err(ProviderError::UnwrapFailed { .. })
        ));

        // A master id the provider does not know.
        let stranger = WrappedKey {
            master_id: format!(
                "no-such-master-{}",
                hex::encode(portcullis_core::random_bytes::<4>())
            ),
            bytes: wrapped.bytes.clone(),
        };
        match provider.unwrap(&aad, &stranger) {
            Err(ProviderError::UnknownMaster(id)) => assert_eq!(id, stranger.master_id),
            other => panic!("expected an unknown master, got {other:?}"),
        }

        // Each wrap has a fresh nonce.
        let again = provider.wrap(&aad, &key).unwrap();
        assert_ne!(again.bytes, wrapped.bytes);
        assert_eq!(
            provider.unwrap(&aad, &again).unwrap().expose(),
            key.expose()
        );

        // The whole envelope: a tenant KEK wrapped by the provider seals a secret that opens
        // with the KEK as unwrapped again.
        let kek = Key256::generate();
        let stored_kek = provider.wrap(&aad, &kek).unwrap();
        let place = SecretAt {
            tenant: &tenant,
            secret_id: "github-token",
            version: 1,
        };
        let sealed = vault::seal(&kek, &place, b"ghp_example");
        drop(kek);
        let kek = provider.unwrap(&aad, &stored_kek).unwrap();
        assert_eq!(
            vault::unseal(&kek, &place, &sealed, FORMAT_V1)
                .unwrap()
                .as_slice(),
            b"ghp_example"
        );

        // After a master rotation, new wraps use the new master and old wraps still open.
        assert_ne!(rotated.current_master(), provider.current_master());
        assert_eq!(rotated.kind(), provider.kind());
        let new = rotated.wrap(&aad, &key).unwrap();
        assert_eq!(new.master_id, rotated.current_master());
        assert_eq!(rotated.unwrap(&aad, &new).unwrap().expose(), key.expose());
        assert_eq!(
            rotated.unwrap(&aad, &wrapped).unwrap().expose(),
            key.expose()
        );
        assert_eq!(
            rotated.unwrap(&aad, &stored_kek).unwrap().expose(),
            provider.unwrap(&aad, &stored_kek).unwrap().expose()
        );
    }

    #[test]
    fn key_file_provider_keeps_the_contract() {
        let mut keys = KeyRing::generate();
        let provider = KeyFileProvider::new(&keys);
        assert_eq!(provider.kind(), "key-file");
        assert_eq!(provider.current_master(), "k1");
        let added = keys.add_vault_key();
        let rotated = KeyFileProvider::new(&keys);
        assert_eq!(rotated.current_master(), added);
        provider_contract(&provider, &rotated);
        // A provider from before the rotation does not know the new master key.
        let new = rotated.wrap(b"aad", &Key256::generate()).unwrap();
        assert!(matches!(
            provider.unwrap(b"aad", &new),
            Err(ProviderError::UnknownMaster(_))
        ));
        // Its Debug shows ids, not keys.
        let debug = format!("{rotated:?}");
        assert!(debug.contains("k2"));
        for (_, key) in keys.vault_keys() {
            assert!(!debug.contains(&hex::encode(key.expose())));
        }
    }

    #[test]
    fn a_key_file_provider_opens_what_another_replica_wrapped() {
        let keys = KeyRing::generate();
        let replica = KeyRing::from_file_bytes(&keys.to_file_bytes()).unwrap();
        let key = Key256::generate();
        let wrapped = KeyFileProvider::new(&keys).wrap(b"aad", &key).unwrap();
        let opened = KeyFileProvider::new(&replica)
            .unwrap(b"aad", &wrapped)
            .unwrap();
        assert_eq!(opened.expose(), key.expose());
    }

    #[test]
    fn pkcs11_provider_keeps_the_contract() {
        let Some(token) = test_token() else {
            return;
        };
        let provider = Pkcs11Provider::open(token.config("contract-a")).unwrap();
        assert!(provider.ensure_master(&provider.current_master()).unwrap());
        assert!(!provider.ensure_master(&provider.current_master()).unwrap());
        let rotated = Pkcs11Provider::open(token.config("contract-b")).unwrap();
        assert!(rotated.ensure_master(&rotated.current_master()).unwrap());
        assert_eq!(provider.kind(), "pkcs11");
        provider_contract(&provider, &rotated);
    }
}
