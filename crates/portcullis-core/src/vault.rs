//! The vault's cryptography: envelope encryption of tenant secrets with AES-256-GCM.
//!
//! Every secret version is sealed under a fresh random data key (DEK); the DEK is wrapped under
//! the tenant's key-encryption key (KEK); the KEK in turn is wrapped by a key provider (the
//! installation key file or an HSM, outside this crate). Rotating a KEK therefore rewraps
//! 61-byte DEK blobs and never decrypts a secret.
//!
//! Every blob has one layout: a format byte ([`FORMAT_V1`]), a 12-byte random nonce, then the
//! AES-256-GCM ciphertext with its 16-byte tag. The associated data given to GCM is the format
//! byte followed by the caller's associated data, so a blob cannot be relabelled as another
//! format, and the associated data of every use names its purpose (a domain string) and binds
//! what it protects with length-prefixed fields, so a blob sealed for one tenant, secret or
//! version — or for one purpose — opens for no other.
//!
//! Pure: no IO, no clock. Randomness comes from the operating system's CSPRNG.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::id::TenantId;

/// The first (and so far only) format of sealed blobs: AES-256-GCM, 12-byte random nonce.
pub const FORMAT_V1: u8 = 1;

/// Bytes of a GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext: format byte, nonce and tag.
pub const BLOB_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A 256-bit secret key. Zeroized on drop; `Debug` prints no bytes; not `Clone`, so each copy
/// of key material is a deliberate [`Key256::from_bytes`].
pub struct Key256(SecretBox<[u8; 32]>);

/// Where a secret version lives: what its ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct SecretAt<'a> {
    pub tenant: &'a TenantId,
    pub secret_id: &'a str,
    pub version: u32,
}

/// One sealed secret version: its wrapped data key and its ciphertext, each a blob of the
/// layout described in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Why sealed data did not open. Never carries key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("sealed data has format {found}, below the minimum accepted format {minimum}")]
    FormatTooOld { found: u8, minimum: u8 },
    #[error("sealed data has unknown format {0}")]
    UnknownFormat(u8),
    #[error("sealed data is truncated")]
    Truncated,
    #[error("sealed data does not open: wrong key, wrong associated data, or the data was altered")]
    Unauthentic,
    #[error("an unwrapped key is {0} bytes, not 32")]
    KeyLength(usize),
}

/// The parts of a blob, after its format was checked.
#[derive(Debug, Clone, Copy)]
pub struct BlobParts<'a> {
    pub format: u8,
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext followed by the tag (at least [`TAG_LEN`] bytes).
    pub body: &'a [u8],
}

const SECRET_DOMAIN: &[u8] = b"portcullis/secret/v1";
const DEK_DOMAIN: &[u8] = b"portcullis/secret-dek/v1";
const KEK_DOMAIN: &[u8] = b"portcullis/tenant-kek/v1";

impl Key256 {
    /// A fresh key from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Panics when the OS has no entropy source (see [`crate::random_bytes`]).
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(|bytes: &mut [u8; 32]| {
            getrandom::fill(bytes).expect("the operating system has no usable random source")
        }))
    }

    /// A key from its bytes. The argument (a copy) is zeroized; the caller's own copy is the
    /// caller's to clear.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let key = Self(SecretBox::init_with_mut(|inner: &mut [u8; 32]| {
            *inner = bytes
        }));
        zeroize::Zeroize::zeroize(&mut bytes);
        key
    }

    /// A key from a slice that must be 32 bytes long.
    fn from_slice(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != 32 {
            return Err(VaultError::KeyLength(bytes.len()));
        }
        Ok(Self(SecretBox::init_with_mut(|inner: &mut [u8; 32]| {
            inner.copy_from_slice(bytes)
        })))
    }

    /// The key bytes. Handle with care.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.expose().into())
    }
}

impl std::fmt::Debug for Key256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key256([REDACTED])")
    }
}

impl SecretAt<'_> {
    /// The associated data a secret version's ciphertext is sealed with.
    pub fn aad(&self) -> Vec<u8> {
        self.aad_in(SECRET_DOMAIN)
    }

    /// The associated data its data key is wrapped with: the same fields in another domain, so
    /// a wrapped DEK never opens as a ciphertext, nor a ciphertext as a wrapped DEK.
    fn dek_aad(&self) -> Vec<u8> {
        self.aad_in(DEK_DOMAIN)
    }

    fn aad_in(&self, domain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.secret_id.len());
        put_field(&mut out, domain);
        put_field(&mut out, self.tenant.as_str().as_bytes());
        put_field(&mut out, self.secret_id.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// The associated data a tenant's KEK (version `kek_version`) is wrapped with by a key provider.
pub fn kek_aad(tenant: &TenantId, kek_version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_field(&mut out, KEK_DOMAIN);
    put_field(&mut out, tenant.as_str().as_bytes());
    out.extend_from_slice(&kek_version.to_be_bytes());
    out
}

/// Seal a secret version's plaintext under a fresh data key, itself wrapped under `kek`.
pub fn seal(kek: &Key256, at: &SecretAt, plaintext: &[u8]) -> Sealed {
    let dek = Key256::generate();
    Sealed {
        ciphertext: seal_blob(&dek, &at.aad(), plaintext),
        wrapped_dek: seal_blob(kek, &at.dek_aad(), dek.expose()),
    }
}

/// Open a sealed secret version. Refuses blobs of a format below `min_format` or unknown to
/// this build, truncated blobs, and any wrong key, wrong place (`at`) or altered byte.
pub fn unseal(
    kek: &Key256,
    at: &SecretAt,
    sealed: &Sealed,
    min_format: u8,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    // Both formats are checked before any decryption, so a downgrade is refused as such.
    split_blob(&sealed.wrapped_dek, min_format)?;
    split_blob(&sealed.ciphertext, min_format)?;
    let dek = open_key(kek, &at.dek_aad(), &sealed.wrapped_dek, min_format)?;
    open_blob(&dek, &at.aad(), &sealed.ciphertext, min_format)
}

/// Move a sealed secret version from `old_kek` to `new_kek`: the data key is unwrapped and
/// wrapped again (with a fresh nonce); the ciphertext is copied unchanged and never decrypted.
pub fn rewrap(
    old_kek: &Key256,
    new_kek: &Key256,
    at: &SecretAt,
    sealed: &Sealed,
) -> Result<Sealed, VaultError> {
    let dek = open_key(old_kek, &at.dek_aad(), &sealed.wrapped_dek, FORMAT_V1)?;
    Ok(Sealed {
        wrapped_dek: seal_blob(new_kek, &at.dek_aad(), dek.expose()),
        ciphertext: sealed.ciphertext.clone(),
    })
}

/// Wrap a key under another (for example a tenant KEK under a master key), bound to `aad`.
pub fn wrap_key(wrapping: &Key256, aad: &[u8], key: &Key256) -> Vec<u8> {
    seal_blob(wrapping, aad, key.expose())
}

/// Unwrap a key wrapped by [`wrap_key`] with the same wrapping key and associated data.
pub fn unwrap_key(wrapping: &Key256, aad: &[u8], wrapped: &[u8]) -> Result<Key256, VaultError> {
    open_key(wrapping, aad, wrapped, FORMAT_V1)
}

/// Check a blob's format and length and split it into its parts. Key providers that encrypt
/// elsewhere (an HSM) use the same layout and call this before decrypting.
pub fn split_blob(blob: &[u8], min_format: u8) -> Result<BlobParts<'_>, VaultError> {
    let Some((&format, rest)) = blob.split_first() else {
        return Err(VaultError::Truncated);
    };
    if format != FORMAT_V1 {
        return Err(VaultError::UnknownFormat(format));
    }
    if format < min_format {
        return Err(VaultError::FormatTooOld {
            found: format,
            minimum: min_format,
        });
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Truncated);
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok(BlobParts {
        format,
        nonce: nonce.try_into().expect("split at the nonce length"),
        body,
    })
}

/// The associated data handed to the AEAD for a blob: its format byte, then the caller's.
pub fn blob_aad(format: u8, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(format);
    out.extend_from_slice(aad);
    out
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).expect("associated data fields are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

fn seal_blob(key: &Key256, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = crate::random_bytes::<NONCE_LEN>();
    let mut blob = Vec::with_capacity(BLOB_OVERHEAD + plaintext.len());
    blob.push(FORMAT_V1);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(plaintext);
    let header = 1 + NONCE_LEN;
    // Encrypted in place: the plaintext is never copied anywhere but into the blob, where it is
    // overwritten by its ciphertext.
    let tag = key
        .cipher()
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &blob_aad(FORMAT_V1, aad),
            &mut blob[header..],
        )
        .expect("AES-GCM encrypts anything below 64 GiB");
    blob.extend_from_slice(&tag);
    blob
}

fn open_blob(
    key: &Key256,
    aad: &[u8],
    blob: &[u8],
    min_format: u8,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let parts = split_blob(blob, min_format)?;
    let (ciphertext, tag) = parts.body.split_at(parts.body.len() - TAG_LEN);
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    key.cipher()
        .decrypt_in_place_detached(
            Nonce::from_slice(parts.nonce),
            &blob_aad(parts.format, aad),
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| VaultError::Unauthentic)?;
    Ok(plaintext)
}

fn open_key(key: &Key256, aad: &[u8], blob: &[u8], min_format: u8) -> Result<Key256, VaultError> {
    let bytes = open_blob(key, aad, blob, min_format)?;
    Key256::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at<'a>(tenant: &'a TenantId, secret_id: &'a str, version: u32) -> SecretAt<'a> {
        SecretAt {
            tenant,
            secret_id,
            version,
        }
    }

    #[test]
    fn seal_then_unseal_returns_the_plaintext() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let place = at(&tenant, "github-token", 1);
        let sealed = seal(&kek, &place, b"ghp_example");
        assert_eq!(sealed.wrapped_dek.len(), BLOB_OVERHEAD + 32);
        assert_eq!(sealed.ciphertext.len(), BLOB_OVERHEAD + 11);
        assert_eq!(sealed.ciphertext[0], FORMAT_V1);
        assert!(
            !sealed
                .ciphertext
                .windows(11)
                .any(|window| window == b"ghp_example")
        );
        let opened = unseal(&kek, &place, &sealed, FORMAT_V1).unwrap();
        assert_eq!(opened.as_slice(), b"ghp_example");
        // An empty secret is a secret too.
        let empty = seal(&kek, &place, b"");
        assert!(unseal(&kek, &place, &empty, FORMAT_V1).unwrap().is_empty());
    }

    #[test]
    fn another_tenant_cannot_open_a_secret() {
        let (kek_a, kek_b) = (Key256::generate(), Key256::generate());
        let (tenant_a, tenant_b) = (TenantId::generate(), TenantId::generate());
        let sealed = seal(&kek_a, &at(&tenant_a, "db", 1), b"hunter2");
        for (kek, tenant) in [
            (&kek_a, &tenant_b),
            (&kek_b, &tenant_a),
            (&kek_b, &tenant_b),
        ] {
            assert_eq!(
                unseal(kek, &at(tenant, "db", 1), &sealed, FORMAT_V1).unwrap_err(),
                VaultError::Unauthentic
            );
        }
    }

    #[test]
    fn a_secret_opens_only_under_its_own_id_and_version() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let sealed = seal(&kek, &at(&tenant, "db", 2), b"hunter2");
        for (id, version) in [("db2", 2), ("d", 2), ("db", 1), ("db", 3), ("", 2)] {
            assert_eq!(
                unseal(&kek, &at(&tenant, id, version), &sealed, FORMAT_V1).unwrap_err(),
                VaultError::Unauthentic,
                "{id} v{version}"
            );
        }
        // Swapping the blobs of two secrets of one tenant opens neither.
        let other = seal(&kek, &at(&tenant, "api", 2), b"other");
        let mixed = Sealed {
            wrapped_dek: other.wrapped_dek.clone(),
            ciphertext: sealed.ciphertext.clone(),
        };
        assert!(unseal(&kek, &at(&tenant, "db", 2), &mixed, FORMAT_V1).is_err());
        assert!(unseal(&kek, &at(&tenant, "api", 2), &mixed, FORMAT_V1).is_err());
    }

    #[test]
    fn a_wrapped_dek_and_a_ciphertext_are_not_interchangeable() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 1);
        // A 32-byte plaintext makes both blobs the same length.
        let sealed = seal(&kek, &place, &[7u8; 32]);
        let swapped = Sealed {
            wrapped_dek: sealed.ciphertext.clone(),
            ciphertext: sealed.wrapped_dek.clone(),
        };
        assert_eq!(
            unseal(&kek, &place, &swapped, FORMAT_V1).unwrap_err(),
            VaultError::Unauthentic
        );
        // Field boundaries are unambiguous: ("ab", "c") and ("a", "bc") differ.
        let t = TenantId::generate();
        assert_ne!(at(&t, "ab", 1).aad(), at(&t, "a", 1).aad());
        assert_ne!(at(&t, "db", 1).aad(), at(&t, "db", 1).dek_aad());
        assert_ne!(kek_aad(&t, 1), kek_aad(&t, 2));
        assert_ne!(kek_aad(&t, 1), kek_aad(&TenantId::generate(), 1));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 1);
        let sealed = seal(&kek, &place, b"correct horse");
        for blob in 0..2 {
            let len = if blob == 0 {
                sealed.wrapped_dek.len()
            } else {
                sealed.ciphertext.len()
            };
            for bit in 0..len * 8 {
                let mut altered = sealed.clone();
                let target = if blob == 0 {
                    &mut altered.wrapped_dek
                } else {
                    &mut altered.ciphertext
                };
                target[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    unseal(&kek, &place, &altered, FORMAT_V1).is_err(),
                    "blob {blob} bit {bit}"
                );
            }
        }
        assert!(unseal(&kek, &place, &sealed, FORMAT_V1).is_ok());
    }

    #[test]
    fn truncated_and_unknown_formats_are_refused() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 1);
        let sealed = seal(&kek, &place, b"x");
        for len in 0..BLOB_OVERHEAD {
            let cut = Sealed {
                wrapped_dek: sealed.wrapped_dek.clone(),
                ciphertext: sealed.ciphertext[..len].to_vec(),
            };
            assert_eq!(
                unseal(&kek, &place, &cut, FORMAT_V1).unwrap_err(),
                VaultError::Truncated,
                "{len} bytes"
            );
        }
        let mut longer = sealed.clone();
        longer.ciphertext.push(0);
        assert_eq!(
            unseal(&kek, &place, &longer, FORMAT_V1).unwrap_err(),
            VaultError::Unauthentic
        );
        let mut future = sealed.clone();
        future.wrapped_dek[0] = 2;
        assert_eq!(
            unseal(&kek, &place, &future, FORMAT_V1).unwrap_err(),
            VaultError::UnknownFormat(2)
        );
        assert_eq!(
            unwrap_key(&kek, b"", &[0u8; 61]).unwrap_err(),
            VaultError::UnknownFormat(0)
        );
    }

    #[test]
    fn min_format_refuses_older_formats() {
        let kek = Key256::generate();
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 1);
        let sealed = seal(&kek, &place, b"x");
        assert!(unseal(&kek, &place, &sealed, 0).is_ok());
        assert!(unseal(&kek, &place, &sealed, FORMAT_V1).is_ok());
        assert_eq!(
            unseal(&kek, &place, &sealed, FORMAT_V1 + 1).unwrap_err(),
            VaultError::FormatTooOld {
                found: FORMAT_V1,
                minimum: FORMAT_V1 + 1
            }
        );
    }

    #[test]
    fn rewrap_moves_the_data_key_and_leaves_the_ciphertext_alone() {
        let (old_kek, new_kek) = (Key256::generate(), Key256::generate());
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 4);
        let sealed = seal(&old_kek, &place, b"hunter2");
        let moved = rewrap(&old_kek, &new_kek, &place, &sealed).unwrap();
        assert_eq!(moved.ciphertext, sealed.ciphertext);
        assert_ne!(moved.wrapped_dek, sealed.wrapped_dek);
        assert_eq!(
            unseal(&new_kek, &place, &moved, FORMAT_V1)
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert_eq!(
            unseal(&old_kek, &place, &moved, FORMAT_V1).unwrap_err(),
            VaultError::Unauthentic
        );
        // Rewrapping needs the key the data key is wrapped under, and the right place.
        assert!(rewrap(&new_kek, &old_kek, &place, &sealed).is_err());
        assert!(rewrap(&old_kek, &new_kek, &at(&tenant, "db", 5), &sealed).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_with_their_key_and_aad() {
        let (master, other) = (Key256::generate(), Key256::generate());
        let tenant = TenantId::generate();
        let kek = Key256::generate();
        let wrapped = wrap_key(&master, &kek_aad(&tenant, 1), &kek);
        assert_eq!(wrapped.len(), BLOB_OVERHEAD + 32);
        let again = unwrap_key(&master, &kek_aad(&tenant, 1), &wrapped).unwrap();
        assert_eq!(again.expose(), kek.expose());
        assert_ne!(wrap_key(&master, &kek_aad(&tenant, 1), &kek), wrapped);
        assert_eq!(
            unwrap_key(&other, &kek_aad(&tenant, 1), &wrapped).unwrap_err(),
            VaultError::Unauthentic
        );
        assert_eq!(
            unwrap_key(&master, &kek_aad(&tenant, 2), &wrapped).unwrap_err(),
            VaultError::Unauthentic
        );
        // A blob of another length is not a key, even when it authenticates.
        let short = seal_blob(&master, b"aad", &[1u8; 16]);
        assert_eq!(
            unwrap_key(&master, b"aad", &short).unwrap_err(),
            VaultError::KeyLength(16)
        );
    }

    #[test]
    fn debug_and_errors_show_no_key_bytes() {
        let key = Key256::from_bytes([0xab; 32]);
        assert_eq!(key.expose(), &[0xab; 32]);
        let debug = format!("{key:?}");
        assert_eq!(debug, "Key256([REDACTED])");
        let tenant = TenantId::generate();
        let place = at(&tenant, "db", 1);
        let sealed = seal(&key, &place, b"plaintext-marker");
        let error = unseal(&Key256::generate(), &place, &sealed, FORMAT_V1).unwrap_err();
        for shown in [format!("{error}"), format!("{error:?}")] {
            assert!(!shown.contains("plaintext-marker"));
            assert!(!shown.to_lowercase().contains("abab"));
        }
        assert!(!format!("{sealed:?}").contains("plaintext-marker"));
    }

    proptest! {
        #[test]
        fn any_plaintext_round_trips(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
            secret_id in "[a-z0-9_-]{0,40}",
            version in any::<u32>(),
        ) {
            let kek = Key256::generate();
            let tenant = TenantId::generate();
            let place = at(&tenant, &secret_id, version);
            let sealed = seal(&kek, &place, &plaintext);
            prop_assert_eq!(sealed.ciphertext.len(), BLOB_OVERHEAD + plaintext.len());
            let opened = unseal(&kek, &place, &sealed, FORMAT_V1).unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
            let moved = rewrap(&kek, &Key256::generate(), &place, &sealed).unwrap();
            prop_assert_eq!(moved.ciphertext, sealed.ciphertext);
        }
    }
}
