//! The vault: tenant secrets under envelope encryption (`service`), the key providers that
//! hold its master keys (`provider`, `pkcs11`), and credential injection at egress
//! (`inject`).

pub mod inject;
pub mod oauth;
pub mod pkcs11;
pub mod provider;
pub mod service;

pub use inject::{Credential, EnvValue};
pub use provider::*;
pub use service::{Revealed, Vault, VaultError, valid_secret_name};
