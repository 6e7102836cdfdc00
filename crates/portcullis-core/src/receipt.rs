//! Approval receipts: Ed25519 signatures over the canonical action hash, the approver, the
//! expiry and a single-use nonce. Verifiable offline with the public key.

use crate::UnixMillis;
use crate::action::Action;
use crate::decision::{ApprovedBy, Permit};
use crate::id::{ApprovalId, ReceiptId, TenantId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What the approver signed off, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub receipt_id: ReceiptId,
    pub approval_id: ApprovalId,
    pub tenant: TenantId,
    /// SHA-256 of the canonical action (see [`Action::hash`]).
    pub action_hash: String,
    /// The named human who approved.
    pub approver: String,
    pub approved_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// 128 random bits, hex; consumed once by the executor.
    pub nonce: String,
}

/// A receipt with its signature (hex Ed25519 over the canonical JSON of the body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub body: ReceiptBody,
    pub signature: String,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt signature is invalid")]
    BadSignature,
    #[error("receipt does not cover this action")]
    ActionMismatch,
    #[error("receipt belongs to another tenant")]
    TenantMismatch,
    #[error("receipt expired")]
    Expired,
    #[error("receipt is malformed: {0}")]
    Malformed(String),
}

impl SignedReceipt {
    /// Sign a body. The caller builds the body with a fresh nonce and an expiry it validated.
    pub fn sign(key: &SigningKey, body: ReceiptBody) -> Self {
        let bytes = crate::action::canonical_json(&body).expect("receipt bodies contain no floats");
        let signature = key.sign(&bytes);
        Self {
            body,
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// A fresh single-use nonce.
    pub fn new_nonce() -> String {
        hex::encode(crate::random_bytes::<16>())
    }
}

/// Verify a receipt against the action about to run. Only this function (and [`crate::decision::decide`]
/// for reads) produces a [`Permit`]. Consuming the nonce is the store's job and must happen in the
/// same transaction as the execution's audit entry, before the permit is used.
pub fn verify(
    receipt: &SignedReceipt,
    key: &VerifyingKey,
    action: Action,
    now: UnixMillis,
) -> Result<Permit, ReceiptError> {
    let bytes = crate::action::canonical_json(&receipt.body)
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&receipt.signature, &mut sig).map_err(|_| ReceiptError::BadSignature)?;
    key.verify(&bytes, &Signature::from_bytes(&sig))
        .map_err(|_| ReceiptError::BadSignature)?;
    if receipt.body.tenant != action.tenant {
        return Err(ReceiptError::TenantMismatch);
    }
    let hash = action
        .hash()
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if hash != receipt.body.action_hash {
        return Err(ReceiptError::ActionMismatch);
    }
    if now >= receipt.body.expires_at {
        return Err(ReceiptError::Expired);
    }
    let body = &receipt.body;
    Ok(Permit::approved(
        action,
        ApprovedBy {
            approval_id: body.approval_id.clone(),
            receipt_id: body.receipt_id.clone(),
            nonce: body.nonce.clone(),
            approver: body.approver.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ConnectionId;
    use crate::keys::KeyRing;
    use serde_json::json;

    fn fixture() -> (KeyRing, Action, SignedReceipt) {
        let keys = KeyRing::generate();
        let action = Action {
            tenant: TenantId::generate(),
            connection: ConnectionId::generate(),
            tool: "issue_refund".into(),
            tool_definition_hash: "h".into(),
            arguments: json!({"amount_cents": 1000}),
        };
        let body = ReceiptBody {
            receipt_id: ReceiptId::generate(),
            approval_id: ApprovalId::generate(),
            tenant: action.tenant.clone(),
            action_hash: action.hash().unwrap(),
            approver: "alice".into(),
            approved_at: 1_000,
            expires_at: 2_000,
            nonce: SignedReceipt::new_nonce(),
        };
        let receipt = SignedReceipt::sign(keys.signing_key(), body);
        (keys, action, receipt)
    }

    #[test]
    fn valid_receipt_yields_a_permit() {
        let (keys, action, receipt) = fixture();
        let permit = verify(&receipt, &keys.verifying_key(), action.clone(), 1_500).unwrap();
        assert_eq!(permit.action(), &action);
        assert_eq!(permit.approval().unwrap().approver, "alice");
    }

    #[test]
    fn tampered_expired_and_mismatched_receipts_are_refused() {
        let (keys, action, receipt) = fixture();
        let vk = keys.verifying_key();

        let mut tampered = receipt.clone();
        tampered.body.expires_at += 1_000_000;
        assert_eq!(
            verify(&tampered, &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::BadSignature
        );

        let mut approver = receipt.clone();
        approver.body.approver = "mallory".into();
        assert_eq!(
            verify(&approver, &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::BadSignature
        );

        assert_eq!(
            verify(&receipt, &vk, action.clone(), 2_000).unwrap_err(),
            ReceiptError::Expired
        );

        let mut changed = action.clone();
        changed.arguments = json!({"amount_cents": 1001});
        assert_eq!(
            verify(&receipt, &vk, changed, 1_500).unwrap_err(),
            ReceiptError::ActionMismatch
        );

        let other = KeyRing::generate();
        assert_eq!(
            verify(&receipt, &other.verifying_key(), action, 1_500).unwrap_err(),
            ReceiptError::BadSignature
        );
    }
}
