//! The PKCS#11 key provider: vault master keys are AES-256 keys inside an HSM, created there
//! and never extractable; wrapping and unwrapping a tenant KEK is one `C_Encrypt` or
//! `C_Decrypt` with `CKM_AES_GCM` in the token.
//!
//! Blobs have the vault's layout (see [`portcullis_core::vault`]): format byte, a 12-byte IV
//! this process draws from the operating system's CSPRNG, then ciphertext and 128-bit tag; the
//! GCM associated data is the format byte followed by the caller's associated data. A master
//! key's id is its `CKA_LABEL`.
//!
//! PKCS#11 state is per process: `C_Initialize` may run once per module, so every provider
//! for one module shares one context ([`shared_context`]), and a second provider logging in to
//! a token that is already logged in is no error. A session must not be used by two threads at
//! once, so each provider keeps one session behind a mutex: HSM calls from one provider are
//! serialised (they are short, and callers run them on blocking threads). A session the
//! token lost (a restarted network HSM, a replugged token) is reopened once per call.

use super::provider::{KeyProvider, ProviderError, WrappedKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use portcullis_core::vault::{FORMAT_V1, Key256, NONCE_LEN, TAG_LEN, VaultError};
use portcullis_core::vault::{blob_aad, split_blob};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Where the HSM is and which key is current. `Debug` does not show the PIN.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library) of the HSM vendor.
    pub module: PathBuf,
    /// The label of the token (slot) that holds the master keys.
    pub token_label: String,
    /// The user PIN of that token.
    pub pin: SecretString,
    /// The label of the master key new wraps use.
    pub key_label: String,
}

/// Master keys inside a PKCS#11 token.
pub struct Pkcs11Provider {
    context: Pkcs11,
    slot: Slot,
    pin: SecretString,
    token_label: String,
    key_label: String,
    // INVARIANT: the session is only used while this lock is held (a PKCS#11 session must not
    // be used by two threads at once).
    connection: Mutex<Connection>,
}

struct Connection {
    /// `None` after the token lost the session; reopened and logged in on next use.
    session: Option<Session>,
    /// Key handles by label. Bounded by the keys in the token: only found keys are cached.
    handles: HashMap<String, ObjectHandle>,
}

/// What went wrong inside a locked HSM call: a provider error as such, or a PKCS#11 failure
/// that may call for a fresh session.
enum Failure {
    Provider(ProviderError),
    Hsm(CryptokiError),
}

const TAG_BITS: u64 = (TAG_LEN * 8) as u64;
/// A wrapped 256-bit key: format byte, IV, 32 bytes of ciphertext and the tag.
const WRAPPED_LEN: usize = 1 + NONCE_LEN + 32 + TAG_LEN;

impl Pkcs11Provider {
    /// Load the module (once per process), find the token by label, open a read-write session
    /// and log in as the user. The configured master key need not exist yet: see
    /// [`Pkcs11Provider::ensure_master`].
    pub fn open(config: Pkcs11Config) -> Result<Self, ProviderError> {
        check_label(&config.key_label)?;
        let context = shared_context(&config.module)?;
        let mut matching = Vec::new();
        for slot in context.get_slots_with_token().map_err(hsm_error)? {
            let info = context.get_token_info(slot).map_err(hsm_error)?;
            if info.label() == config.token_label {
                matching.push(slot);
            }
        }
        let slot = match matching.as_slice() {
            [slot] => *slot,
            [] => {
                return Err(ProviderError::Config(format!(
                    "no PKCS#11 token labelled `{}`",
                    config.token_label
                )));
            }
            _ => {
                return Err(ProviderError::Config(format!(
                    "{} PKCS#11 tokens are labelled `{}`; labels must be unique",
                    matching.len(),
                    config.token_label
                )));
            }
        };
        let provider = Self {
            context,
            slot,
            pin: config.pin,
            token_label: config.token_label,
            key_label: config.key_label,
            connection: Mutex::new(Connection {
                session: None,
                handles: HashMap::new(),
            }),
        };
        // Log in now, so a wrong PIN or an unreachable token shows at startup.
        let session = provider.login().map_err(hsm_error)?;
        provider.lock().session = Some(session);
        Ok(provider)
    }

    /// Create the master key `label` in the token unless a key has that label. Returns whether
    /// it was created. The key is a token object, private, sensitive and not extractable; it
    /// may only encrypt and decrypt.
    ///
    /// Two processes creating the same label at once may both create one; later calls then
    /// refuse the ambiguous label. Create master keys from one place (an admin command).
    pub fn ensure_master(&self, label: &str) -> Result<bool, ProviderError> {
        check_label(label)?;
        self.run(|session, handles| {
            if let Some(handle) = find_key(session, label)? {
                handles.insert(label.to_owned(), handle);
                return Ok(false);
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
            ];
            let handle = session.generate_key(&Mechanism::AesKeyGen, &template)?;
            handles.insert(label.to_owned(), handle);
            Ok(true)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|poisoned| {
            // A panic mid-call may have left an operation active: start from a new session.
            let mut connection = poisoned.into_inner();
            connection.session = None;
            connection.handles.clear();
            connection
        })
    }

    fn login(&self) -> Result<Session, CryptokiError> {
        let session = self.context.open_rw_session(self.slot)?;
        match session.login(UserType::User, Some(&self.pin)) {
            // Login state is shared by all sessions of a process with the token.
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(e),
        }
    }

    /// Run one HSM operation on this provider's session, opening one if needed, and once more
    /// on a fresh session if the token lost the first.
    fn run<T>(
        &self,
        operation: impl Fn(&Session, &mut HashMap<String, ObjectHandle>) -> Result<T, Failure>,
    ) -> Result<T, ProviderError> {
        let mut connection = self.lock();
        let mut retried = false;
        loop {
            let Connection { session, handles } = &mut *connection;
            let session = match session {
                Some(session) => session,
                None => session.insert(self.login().map_err(hsm_error)?),
            };
            match operation(session, handles) {
                Ok(value) => return Ok(value),
                Err(Failure::Provider(e)) => return Err(e),
                Err(Failure::Hsm(e)) if !retried && session_lost(&e) => {
                    tracing::warn!(error = %hsm_error(e), "PKCS#11 session lost; reopening it");
                    connection.session = None;
                    connection.handles.clear();
                    retried = true;
                }
                Err(Failure::Hsm(e)) => return Err(hsm_error(e)),
            }
        }
    }
}

impl std::fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl KeyProvider for Pkcs11Provider {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn current_master(&self) -> String {
        self.key_label.clone()
    }

    fn wrap(&self, aad: &[u8], key: &Key256) -> Result<WrappedKey, ProviderError> {
        let label = &self.key_label;
        let gcm_aad = blob_aad(FORMAT_V1, aad);
        let (iv, ciphertext) = self.run(|session, handles| {
            let handle = key_handle(session, handles, label)?;
            // A fresh IV for every attempt: no IV is given to the token twice.
            let iv = portcullis_core::random_bytes::<NONCE_LEN>();
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, &gcm_aad, TAG_BITS.into())?;
            let ciphertext = session.encrypt(&Mechanism::AesGcm(params), handle, key.expose())?;
            Ok((iv, ciphertext))
        })?;
        if ciphertext.len() != 32 + TAG_LEN {
            return Err(ProviderError::WrapFailed {
                master_id: label.clone(),
                reason: "the token returned a ciphertext of unexpected length",
            });
        }
        let mut bytes = Vec::with_capacity(WRAPPED_LEN);
        bytes.push(FORMAT_V1);
        bytes.extend_from_slice(&iv);
        bytes.extend_from_slice(&ciphertext);
        Ok(WrappedKey {
            master_id: label.clone(),
            bytes,
        })
    }

    fn unwrap(&self, aad: &[u8], wrapped: &WrappedKey) -> Result<Key256, ProviderError> {
        let label = &wrapped.master_id;
        let refused = |source| ProviderError::UnwrapFailed {
            master_id: label.clone(),
            source,
        };
        let parts = split_blob(&wrapped.bytes, FORMAT_V1).map_err(refused)?;
        if wrapped.bytes.len() != WRAPPED_LEN {
            return Err(refused(VaultError::KeyLength(
                parts.body.len().saturating_sub(TAG_LEN),
            )));
        }
        let gcm_aad = blob_aad(parts.format, aad);
        let plaintext = self.run(|session, handles| {
            let handle = key_handle(session, handles, label)?;
            let mut iv = *parts.nonce;
            let params = GcmParams::new(&mut iv, &gcm_aad, TAG_BITS.into())?;
            match session.decrypt(&Mechanism::AesGcm(params), handle, parts.body) {
                Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
                // What tokens return when the tag does not verify: the specification's
                // CKR_ENCRYPTED_DATA_INVALID, or (SoftHSM2, some others) a generic failure of
                // C_Decrypt itself, after C_DecryptInit accepted the key and parameters.
                Err(CryptokiError::Pkcs11(rv, Function::Decrypt))
                    if matches!(
                        rv,
                        RvError::EncryptedDataInvalid
                            | RvError::EncryptedDataLenRange
                            | RvError::GeneralError
                            | RvError::FunctionFailed
                    ) =>
                {
                    tracing::debug!(
                        code = %return_code_name(rv),
                        master_id = %label,
                        "PKCS#11 decryption refused a wrapped key"
                    );
                    Err(Failure::Provider(refused(VaultError::Unauthentic)))
                }
                Err(e) => Err(Failure::Hsm(e)),
            }
        })?;
        let Ok(bytes) = <[u8; 32]>::try_from(plaintext.as_slice()) else {
            return Err(refused(VaultError::KeyLength(plaintext.len())));
        };
        let bytes = Zeroizing::new(bytes);
        Ok(Key256::from_bytes(*bytes))
    }
}

impl From<CryptokiError> for Failure {
    fn from(error: CryptokiError) -> Self {
        Failure::Hsm(error)
    }
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Failure::Provider(error)
    }
}

/// The PKCS#11 context of a module, loaded and initialised once per process: a second
/// `C_Initialize` in one process fails, and finalising would pull the module from under every
/// other provider. Contexts live until the process ends.
fn shared_context(module: &Path) -> Result<Pkcs11, ProviderError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module).map_err(|e| {
        ProviderError::Config(format!(
            "cannot load the PKCS#11 module `{}`: {e}",
            module.display()
        ))
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Already initialised: the same module under another path, or another library in
        // this process. Either way it is ready.
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm_error(e)),
    }
    contexts.insert(module.to_owned(), context.clone());
    Ok(context)
}

fn check_label(label: &str) -> Result<(), ProviderError> {
    if (1..=64).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ProviderError::Config(format!(
            "master key label `{}` is not 1 to 64 printable ASCII characters",
            label.escape_debug()
        )))
    }
}

/// The AES key labelled `label`, if there is one. Several are refused: which one a wrap used
/// would be a guess.
fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, Failure> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    match session.find_objects(&template)?.as_slice() {
        [] => Ok(None),
        [handle] => Ok(Some(*handle)),
        several => Err(Failure::Provider(ProviderError::Config(format!(
            "{} keys in the token are labelled `{label}`; labels must be unique",
            several.len()
        )))),
    }
}

fn key_handle(
    session: &Session,
    handles: &mut HashMap<String, ObjectHandle>,
    label: &str,
) -> Result<ObjectHandle, Failure> {
    if let Some(handle) = handles.get(label) {
        return Ok(*handle);
    }
    let handle =
        find_key(session, label)?.ok_or_else(|| ProviderError::UnknownMaster(label.to_owned()))?;
    handles.insert(label.to_owned(), handle);
    Ok(handle)
}

/// Failures after which a new session (and fresh key handles) may succeed.
fn session_lost(error: &CryptokiError) -> bool {
    matches!(
        error,
        CryptokiError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

fn hsm_error(error: CryptokiError) -> ProviderError {
    match error {
        CryptokiError::Pkcs11(rv, function) => ProviderError::Hsm {
            function: format!("C_{function:?}"),
            code: return_code_name(rv),
        },
        other => ProviderError::Hsm {
            function: "PKCS#11 binding".to_owned(),
            code: other.to_string(),
        },
    }
}

/// The specification's name of a return code (`CKR_PIN_INCORRECT`), from cryptoki's variant
/// name (`PinIncorrect`).
fn return_code_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED ({code:#x})"),
        RvError::UnknownErrorCode(code) => format!("unknown return code {code:#x}"),
        known => {
            let mut name = String::from("CKR");
            for c in format!("{known:?}").chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// The test token from `.ci/softhsm.sh`, while no test holds it exclusively; or `None` (after
/// saying so) when the environment names no token — unless `PORTCULLIS_TEST_REQUIRE_PKCS11=1`,
/// which makes a missing token a failure.
#[cfg(test)]
pub(crate) fn test_token() -> Option<TestToken> {
    TestToken::from_env(false)
}

/// The test token while no other test uses it: PKCS#11 login state is shared by every session
/// of the process, so only a test alone with the token sees what a fresh login does.
#[cfg(test)]
pub(crate) fn test_token_alone() -> Option<TestToken> {
    TestToken::from_env(true)
}

#[cfg(test)]
pub(crate) struct TestToken {
    module: PathBuf,
    token_label: String,
    pin: String,
    _turn: TestTurn,
}

#[cfg(test)]
enum TestTurn {
    Shared {
        _guard: std::sync::RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: std::sync::RwLockWriteGuard<'static, ()>,
    },
}

#[cfg(test)]
impl TestToken {
    fn from_env(alone: bool) -> Option<Self> {
        static TURNS: std::sync::RwLock<()> = std::sync::RwLock::new(());
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(module), Some(token_label), Some(pin)) = (
            var("PORTCULLIS_TEST_PKCS11_MODULE"),
            var("PORTCULLIS_TEST_PKCS11_TOKEN"),
            var("PORTCULLIS_TEST_PKCS11_PIN"),
        ) else {
            assert!(
                var("PORTCULLIS_TEST_REQUIRE_PKCS11").as_deref() != Some("1"),
                "PORTCULLIS_TEST_REQUIRE_PKCS11=1 but PORTCULLIS_TEST_PKCS11_MODULE, _TOKEN or \
                 _PIN is unset (run `eval \"$(bash .ci/softhsm.sh)\"`)"
            );
            eprintln!(
                "skipping a PKCS#11 test: PORTCULLIS_TEST_PKCS11_MODULE, _TOKEN and _PIN are \
                 unset (run `eval \"$(bash .ci/softhsm.sh)\"`)"
            );
            return None;
        };
        // A test that panicked while holding its turn left nothing behind but closed sessions.
        let turn = if alone {
            TestTurn::Alone {
                _guard: TURNS
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            }
        } else {
            TestTurn::Shared {
                _guard: TURNS
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            }
        };
        Some(Self {
            module: module.into(),
            token_label,
            pin,
            _turn: turn,
        })
    }

    /// A configuration for this token with a master key label unique to this call.
    pub(crate) fn config(&self, purpose: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            pin: self.pin.clone().into(),
            key_label: format!(
                "test-{purpose}-{}",
                hex::encode(portcullis_core::random_bytes::<6>())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::object::{AttributeInfo, AttributeType};

    #[test]
    fn master_keys_cannot_leave_the_token() {
        let Some(token) = test_token() else {
            return;
        };
        let provider = Pkcs11Provider::open(token.config("extract")).unwrap();
        let label = provider.current_master();
        assert!(provider.ensure_master(&label).unwrap());
        let connection = provider.lock();
        let session = connection.session.as_ref().unwrap();
        let handle = connection.handles[&label];
        assert!(matches!(
            session
                .get_attribute_info(handle, &[AttributeType::Value])
                .unwrap()
                .as_slice(),
            [AttributeInfo::Sensitive]
        ));
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Value,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Token,
                    AttributeType::Label,
                ],
            )
            .unwrap();
        assert!(
            !attributes.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the key's value was readable"
        );
        for expected in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ] {
            assert!(attributes.contains(&expected), "{expected:?} missing");
        }
        // Nor can it be made extractable afterwards.
        assert!(
            session
                .update_attributes(handle, &[Attribute::Extractable(true)])
                .is_err()
        );
    }

    #[test]
    fn open_refuses_a_wrong_pin_and_an_unknown_token_without_showing_the_pin() {
        let Some(token) = test_token_alone() else {
            return;
        };
        let mut config = token.config("pin");
        config.pin = "98765".to_owned().into();
        let error = Pkcs11Provider::open(config.clone()).unwrap_err();
        assert!(
            matches!(&error, ProviderError::Hsm { function, code }
                if function == "C_Login" && code == "CKR_PIN_INCORRECT"),
            "{error:?}"
        );
        assert!(!format!("{error} {error:?} {config:?}").contains("98765"));
        config.token_label = "no-such-token".to_owned();
        assert!(matches!(
            Pkcs11Provider::open(config),
            Err(ProviderError::Config(_))
        ));
    }

    #[test]
    fn two_providers_in_one_process_share_the_context() {
        let Some(token) = test_token() else {
            return;
        };
        let first = Pkcs11Provider::open(token.config("share-a")).unwrap();
        let second = Pkcs11Provider::open(token.config("share-b")).unwrap();
        assert!(first.ensure_master(&first.current_master()).unwrap());
        let key = Key256::generate();
        let wrapped = first.wrap(b"aad", &key).unwrap();
        drop(first);
        // Closing the first provider's session leaves the second one logged in.
        assert_eq!(
            second.unwrap(b"aad", &wrapped).unwrap().expose(),
            key.expose()
        );
    }

    #[test]
    fn stale_key_handles_and_lost_sessions_are_recovered() {
        let Some(token) = test_token() else {
            return;
        };
        let provider = Pkcs11Provider::open(token.config("reopen")).unwrap();
        let label = provider.current_master();
        assert!(provider.ensure_master(&label).unwrap());
        let key = Key256::generate();
        let wrapped = provider.wrap(b"aad", &key).unwrap();
        // Cache the handle of a key that no longer exists under the master's label, as after
        // the token was restored from a backup.
        let gone = {
            let mut connection = provider.lock();
            let session = connection.session.as_ref().unwrap();
            let gone = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ValueLen(32u64.into()),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                    ],
                )
                .unwrap();
            session.destroy_object(gone).unwrap();
            connection.handles.insert(label.clone(), gone);
            gone
        };
        assert_eq!(
            provider.unwrap(b"aad", &wrapped).unwrap().expose(),
            key.expose()
        );
        let cached = provider.lock().handles[&label];
        assert_ne!(cached, gone, "the stale handle was not replaced");
        // A session the token dropped is reopened (and logged in) on the next call.
        provider.lock().session = None;
        let again = provider.wrap(b"aad", &key).unwrap();
        assert_eq!(
            provider.unwrap(b"aad", &again).unwrap().expose(),
            key.expose()
        );
    }

    #[test]
    fn return_codes_are_named_as_in_the_specification() {
        assert_eq!(return_code_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            return_code_name(RvError::CryptokiAlreadyInitialized),
            "CKR_CRYPTOKI_ALREADY_INITIALIZED"
        );
        assert_eq!(
            return_code_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED (0x80000001)"
        );
    }
}
