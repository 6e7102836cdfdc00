//! Bearer secrets (agent tokens, admin tokens): 256 random bits, shown once, stored only as
//! a SHA-256 hash. The secret type cannot be printed by accident.

use secrecy::{ExposeSecret, SecretString};

/// What a token authenticates: an agent on the MCP endpoint, or a human on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Agent,
    Admin,
    /// A console session (the cookie of a signed-in human).
    Console,
    /// A share link (the last segment of its URL).
    Share,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Agent => "pca_",
            Self::Admin => "pcadm_",
            Self::Console => "pccs_",
            Self::Share => "pcsh_",
        }
    }
}

/// A freshly minted bearer secret. Its `Debug` is redacted; `expose` is the one way out, used
/// only to show it once to whoever created it.
pub struct BearerSecret(SecretString);

impl std::fmt::Debug for BearerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerSecret([REDACTED])")
    }
}

impl BearerSecret {
    /// A new secret of 256 random bits, hex-encoded behind a kind prefix.
    pub fn generate(kind: TokenKind) -> Self {
        let bytes = crate::random_bytes::<32>();
        Self(SecretString::from(format!(
            "{}{}",
            kind.prefix(),
            hex::encode(bytes)
        )))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The only form that is ever stored.
    pub fn hash(&self) -> String {
        token_hash(self.expose())
    }
}

/// SHA-256 (hex) of a presented bearer string, for lookup.
pub fn token_hash(presented: &str) -> String {
    crate::sha256_hex(presented.as_bytes())
}

/// Whether a presented string looks like a token of this kind (cheap pre-check before lookup).
pub fn looks_like(kind: TokenKind, presented: &str) -> bool {
    presented
        .strip_prefix(kind.prefix())
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_unique_and_hashed() {
        let a = BearerSecret::generate(TokenKind::Agent);
        let b = BearerSecret::generate(TokenKind::Agent);
        assert_ne!(a.expose(), b.expose());
        assert!(looks_like(TokenKind::Agent, a.expose()));
        assert!(!looks_like(TokenKind::Admin, a.expose()));
        assert_eq!(a.hash(), token_hash(a.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
