//! The signed posture report of one tenant over a period (`portcullis attest`): what share of
//! model requests left with zero-retention settings, how many used the tenant's own key, the
//! providers and their configured policy, the redaction rules in force and what they found,
//! and every configuration change — signed with the gateway's Ed25519 key over its RFC 8785
//! form, so anyone holding the public key can check it offline ([`verify`]).

use crate::UnixMillis;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The report format this code writes and reads.
pub const FORMAT: &str = "portcullis-attestation/1";

/// What is attested. Counts only: never a prompt, a value or a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub format: String,
    pub tenant: String,
    pub tenant_id: String,
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub model_requests: ModelRequests,
    /// The routes in force when the report was made, as configured (no system prompt text).
    pub routes: Vec<serde_json::Value>,
    /// The tenant's provider allow and block lists (`null`: every provider).
    pub provider_policy: serde_json::Value,
    pub redaction: RedactionPosture,
    /// Configuration changes in the period, oldest first (at most `MAX_CHANGES`; `changes_total`
    /// counts them all).
    pub config_changes: Vec<ConfigChange>,
    pub changes_total: u64,
    /// The tenant's audit chain head when the report was made: the report is anchored there.
    pub audit_head: AuditHead,
}

/// Model requests that reached a provider in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRequests {
    pub total: u64,
    pub zero_retention: u64,
    /// `zero_retention / total` in thousandths (1000 when there were none).
    pub zero_retention_permille: u64,
    pub byo_key: u64,
    /// Requests refused before anything was sent (credential in a prompt, blocked provider…).
    pub refused: u64,
    pub by_provider: BTreeMap<String, ProviderCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCount {
    pub requests: u64,
    pub zero_retention: u64,
    pub byo_key: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionPosture {
    /// The personal-data kinds the redactor detects.
    pub pii_kinds: Vec<String>,
    /// How many credential rules it applies (provider rules plus JWT, PEM and bearer values).
    pub secret_rules: u64,
    /// Every log line is masked (always true: it cannot be switched off).
    pub logs_masked: bool,
    /// What each live connection does to what its tools return: `{"crm": {"pii": "mask",
    /// "secrets": "mask"}}`. Effect arguments are always scanned (credentials refused,
    /// personal data held at the export point).
    pub tool_results: BTreeMap<String, serde_json::Value>,
    /// What was found in the period, by kind (from the `redaction` audit events).
    pub found: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    pub seq: i64,
    pub time: UnixMillis,
    pub actor: String,
    pub kind: String,
    pub resource: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// At most this many changes are listed one by one.
pub const MAX_CHANGES: usize = 1000;

/// A report and its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttestation {
    pub attestation: Attestation,
    /// Hex Ed25519 public key of the signer (as `portcullis public-key` prints it).
    pub public_key: String,
    /// Base64 Ed25519 signature over the RFC 8785 form of `attestation`.
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    #[error("not a report of format {FORMAT}")]
    Format,
    #[error("the report cannot be put in canonical form: {0}")]
    Canonical(String),
    #[error("the signature is not base64 Ed25519")]
    Malformed,
    #[error("the report was not signed by the given key")]
    WrongKey,
    #[error("the signature does not match the report: it was changed after signing")]
    BadSignature,
}

/// Sign a report with the gateway's key.
pub fn sign(
    attestation: Attestation,
    key: &SigningKey,
) -> Result<SignedAttestation, AttestationError> {
    let bytes =
        crate::jcs::to_vec(&attestation).map_err(|e| AttestationError::Canonical(e.to_string()))?;
    let signature = key.sign(&bytes);
    Ok(SignedAttestation {
        attestation,
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    })
}

/// Check a report against the key the reader trusts (not the one the report names).
pub fn verify(signed: &SignedAttestation, key: &VerifyingKey) -> Result<(), AttestationError> {
    if signed.attestation.format != FORMAT {
        return Err(AttestationError::Format);
    }
    if !signed
        .public_key
        .eq_ignore_ascii_case(&hex::encode(key.as_bytes()))
    {
        return Err(AttestationError::WrongKey);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&signed.signature)
        .map_err(|_| AttestationError::Malformed)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| AttestationError::Malformed)?;
    let canonical = crate::jcs::to_vec(&signed.attestation)
        .map_err(|e| AttestationError::Canonical(e.to_string()))?;
    key.verify(&canonical, &signature)
        .map_err(|_| AttestationError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Attestation {
        Attestation {
            format: FORMAT.into(),
            tenant: "acme".into(),
            tenant_id: "ten_1".into(),
            from: 1,
            to: 2,
            model_requests: ModelRequests {
                total: 4,
                zero_retention: 3,
                zero_retention_permille: 750,
                ..Default::default()
            },
            routes: vec![serde_json::json!({"name": "gpt", "zero_retention": true})],
            provider_policy: serde_json::Value::Null,
            redaction: RedactionPosture {
                pii_kinds: vec!["email".into()],
                secret_rules: 93,
                logs_masked: true,
                tool_results: BTreeMap::new(),
                found: BTreeMap::from([("email".into(), 2)]),
            },
            config_changes: vec![],
            changes_total: 0,
            audit_head: AuditHead {
                seq: 9,
                hash: "ab".into(),
            },
        }
    }

    #[test]
    fn a_signed_report_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign(report(), &key).unwrap();
        assert_eq!(verify(&signed, &key.verifying_key()), Ok(()));

        let mut tampered = signed.clone();
        tampered.attestation.model_requests.zero_retention = 4;
        assert_eq!(
            verify(&tampered, &key.verifying_key()),
            Err(AttestationError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            verify(&signed, &other.verifying_key()),
            Err(AttestationError::WrongKey)
        );
        // A forger who re-signs with their own key and names it is still refused.
        let forged = sign(tampered.attestation, &other).unwrap();
        assert_eq!(
            verify(&forged, &key.verifying_key()),
            Err(AttestationError::WrongKey)
        );
        let mut garbled = signed;
        garbled.signature = "not base64!".into();
        assert_eq!(
            verify(&garbled, &key.verifying_key()),
            Err(AttestationError::Malformed)
        );
    }
}
