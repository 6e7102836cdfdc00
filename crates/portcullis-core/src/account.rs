//! Human sign-in, without IO: argon2id password hashes (RustCrypto `argon2`, OWASP's
//! parameters) and RFC 6238 time-based one-time passwords.
//!
//! TOTP is written here (HMAC-SHA1 over the 30-second step, dynamic truncation, six digits):
//! the crates that offer it do not say which step a code matched, and a code must be good
//! only once — the caller stores the matched step and refuses any step not after it.

use crate::UnixMillis;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest (argon2 hashes any length; this bounds the work a request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password or code cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("a password is at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
    #[error("the stored password hash is unusable")]
    BadHash,
}

fn argon2() -> argon2::Argon2<'static> {
    // OWASP's argon2id choice: 19 MiB, 2 passes, one lane.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hash a new password (argon2id, a fresh random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::PasswordTooLong);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).map_err(|_| AccountError::BadHash)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AccountError::BadHash)
}

/// Whether `password` matches the PHC string (constant time in the comparison).
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc)
        .is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Percent-encode everything but RFC 3986's unreserved characters (for a URI's label or a
/// query value).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A TOTP secret: 32 random bytes (above RFC 4226's 160-bit recommendation; wrapped by the
/// key provider like any key). Never printed.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

/// The TOTP step length, in seconds.
pub const STEP_SECS: i64 = 30;

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as an authenticator app holds it: base32, any case, padded or not (what
    /// [`TotpSecret::base32`] wrote, or a human typed); `None` if it is not base32.
    pub fn from_base32(text: &str) -> Option<Self> {
        let upper = Zeroizing::new(text.trim().trim_end_matches('=').to_ascii_uppercase());
        data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .ok()
            .map(|bytes| Self(Zeroizing::new(bytes)))
    }

    /// Base32 (RFC 4648, no padding), as authenticator apps take it.
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.0))
    }

    /// The `otpauth://` URI an authenticator app enrolls from.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let label = percent_encode;
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECS}",
            label(issuer),
            label(account),
            self.base32().as_str(),
            label(issuer)
        ))
    }

    /// The six-digit code of one step.
    pub fn code_at_step(&self, step: i64) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(&(step as u64).to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[19] & 0x0f);
        let binary = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        format!("{:06}", binary % 1_000_000)
    }

    /// The step `code` is for, within one step of `now` either way, if it is one.
    pub fn matching_step(&self, code: &str, now: UnixMillis) -> Option<i64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.div_euclid(1000).div_euclid(STEP_SECS);
        let mut found = None;
        // Every candidate is compared (no early exit on the first match).
        for step in [current - 1, current, current + 1] {
            let expected = self.code_at_step(step);
            let equal = expected
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if equal && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B: the ASCII secret "12345678901234567890", eight digits there;
        // the last six are ours.
        let secret = TotpSecret::from_bytes(b"12345678901234567890");
        for (time, eight) in [
            (59i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(secret.code_at_step(time / 30), eight[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_neighbours_only() {
        let secret = TotpSecret::generate();
        let now = 1_800_000_000_000;
        let step = now / 1000 / 30;
        let code = secret.code_at_step(step);
        assert_eq!(secret.matching_step(&code, now), Some(step));
        assert_eq!(secret.matching_step(&code, now + 30_000), Some(step));
        assert_eq!(secret.matching_step(&code, now - 30_000), Some(step));
        assert_eq!(secret.matching_step(&code, now + 61_000), None);
        assert_eq!(secret.matching_step("12345", now), None);
        assert_eq!(secret.matching_step("abcdef", now), None);
        assert_eq!(TotpSecret::generate().matching_step(&code, now), None);
        assert!(!format!("{secret:?}").contains(&secret.base32().to_string()));
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_secret() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890");
        let uri = secret.otpauth_uri("Portcullis", "alice smith");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Portcullis:alice%20smith?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Portcullis&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(
            phc,
            hash_password("correct horse battery").unwrap(),
            "fresh salts"
        );
        assert_eq!(hash_password("short"), Err(AccountError::PasswordTooShort));
        assert_eq!(
            hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(AccountError::PasswordTooLong)
        );
    }

    #[test]
    fn base32_secrets_read_back_in_any_case_and_refuse_what_is_not_base32() {
        let secret = TotpSecret::generate();
        let text = secret.base32();
        let back = TotpSecret::from_base32(&text.to_ascii_lowercase()).unwrap();
        assert_eq!(back.expose(), secret.expose());
        assert_eq!(
            TotpSecret::from_base32("MZXW6===").unwrap().expose(),
            b"foo"
        );
        assert!(TotpSecret::from_base32("not base32!").is_none());
        assert!(TotpSecret::from_base32("0189").is_none());
    }
}
