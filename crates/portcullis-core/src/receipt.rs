//! Approval receipts: Ed25519 signatures over the canonical action hash, the approver, the
//! expiry and a single-use nonce. Verifiable offline with the public key.
//!
//! Receipts are versioned by a signed `format` field. Format 2 (current) takes every hash and
//! the signature over RFC 8785 bytes ([`crate::jcs`]). Format 1 receipts carry no `format`
//! field; they were signed over the bytes of `serde_jcs` 0.1 and bound to action hashes taken
//! with it, so they keep verifying by recomputing both with that canonicaliser
//! ([`crate::jcs::legacy`]). The field is inside the signature: a format-2 receipt cannot be
//! passed off as format 1 or the other way round.

use crate::UnixMillis;
use crate::id::{ApprovalId, ReceiptId, TenantId};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// The receipt format new receipts are signed in (RFC 8785 canonicalisation).
pub const RECEIPT_FORMAT: u8 = 2;

fn format_1() -> u8 {
    1
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_format_1(format: &u8) -> bool {
    *format == 1
}

/// What the approver signed off, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// How the body and the action hash are canonicalised: 2 is RFC 8785; absent (1) is the
    /// format of receipts signed before it.
    #[serde(default = "format_1", skip_serializing_if = "is_format_1")]
    pub format: u8,
    pub receipt_id: ReceiptId,
    pub approval_id: ApprovalId,
    pub tenant: TenantId,
    /// SHA-256 of the canonical action (see [`crate::action::Action::hash`]).
    pub action_hash: String,
    /// The named human who approved.
    pub approver: String,
    pub approved_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// 128 random bits, hex; consumed once by the executor (once per item for a batch).
    pub nonce: String,
    /// For a batch: the ordered action hashes approved together. `action_hash` is then the
    /// batch hash ([`batch_hash`]) over exactly this list, so reordering, adding or removing
    /// an item breaks the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<String>>,
}

/// The hash a batch approval signs: SHA-256 over the canonical JSON of the ordered list of
/// the items' action hashes (a list of hex strings: the same bytes in every format).
pub fn batch_hash(items: &[String]) -> String {
    let bytes = crate::action::canonical_json(&items).expect("a list of strings is canonical");
    crate::sha256_hex(&bytes)
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

impl ReceiptBody {
    /// The bytes the signature covers, in the body's format.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        match self.format {
            1 => crate::jcs::legacy::to_vec(self),
            RECEIPT_FORMAT => crate::jcs::to_vec(self),
            other => {
                return Err(ReceiptError::Malformed(format!(
                    "unknown receipt format {other}"
                )));
            }
        }
        .map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The hash of `action` as this receipt's format takes it.
    pub fn action_hash_of(
        &self,
        action: &crate::action::HashedAction,
    ) -> Result<String, ReceiptError> {
        match self.format {
            1 => action
                .action()
                .legacy_hash()
                .map_err(|e| ReceiptError::Malformed(e.to_string())),
            _ => Ok(action.hash().to_owned()),
        }
    }
}

impl SignedReceipt {
    /// Sign a body. The caller builds the body with a fresh nonce and an expiry it validated.
    pub fn sign(key: &SigningKey, body: ReceiptBody) -> Self {
        let bytes = body
            .signed_bytes()
            .expect("a receipt body of a known format is canonical");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, HashedAction};
    use crate::decision::Permit;
    use crate::id::ConnectionId;
    use crate::keys::KeyRing;
    use ed25519_dalek::VerifyingKey;
    use serde_json::json;

    fn verify(
        receipt: &SignedReceipt,
        key: &VerifyingKey,
        action: Action,
        now: UnixMillis,
    ) -> Result<Permit, ReceiptError> {
        crate::decision::verify(receipt, key, HashedAction::new(action).unwrap(), now)
    }

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
            format: RECEIPT_FORMAT,
            receipt_id: ReceiptId::generate(),
            approval_id: ApprovalId::generate(),
            tenant: action.tenant.clone(),
            action_hash: action.hash().unwrap(),
            approver: "alice".into(),
            approved_at: 1_000,
            expires_at: 2_000,
            nonce: SignedReceipt::new_nonce(),
            batch: None,
        };
        let receipt = SignedReceipt::sign(keys.signing_key(), body);
        (keys, action, receipt)
    }

    #[test]
    fn a_batch_receipt_covers_exactly_its_items_in_order() {
        let (keys, action, receipt) = fixture();
        let vk = keys.verifying_key();
        let mut other = action.clone();
        other.arguments = json!({"amount_cents": 2000});
        let items = vec![action.hash().unwrap(), other.hash().unwrap()];
        let sign = |items: Vec<String>, hash: String| {
            let mut body = receipt.body.clone();
            body.action_hash = hash;
            body.batch = Some(items);
            SignedReceipt::sign(keys.signing_key(), body)
        };
        let batch = sign(items.clone(), batch_hash(&items));
        let first = verify(&batch, &vk, action.clone(), 1_500).unwrap();
        let second = verify(&batch, &vk, other.clone(), 1_500).unwrap();
        let (n1, n2) = (
            first.approval().unwrap().nonce().to_owned(),
            second.approval().unwrap().nonce().to_owned(),
        );
        assert_ne!(n1, n2, "each item spends its own nonce");

        // One cent more is not in the batch.
        let mut more = other.clone();
        more.arguments = json!({"amount_cents": 2001});
        assert_eq!(
            verify(&batch, &vk, more, 1_500).unwrap_err(),
            ReceiptError::ActionMismatch
        );
        // Reordered, added or removed items no longer match the signed batch hash.
        let reordered: Vec<String> = items.iter().rev().cloned().collect();
        let mut tampered = batch.clone();
        tampered.body.batch = Some(reordered.clone());
        assert_eq!(
            verify(&tampered, &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::BadSignature
        );
        let forged = sign(reordered, batch_hash(&items));
        assert!(matches!(
            verify(&forged, &vk, action.clone(), 1_500),
            Err(ReceiptError::Malformed(_))
        ));
        let mut added = items.clone();
        added.push("f".repeat(64));
        assert!(matches!(
            verify(&sign(added, batch_hash(&items)), &vk, action.clone(), 1_500),
            Err(ReceiptError::Malformed(_))
        ));
        let removed = vec![items[0].clone()];
        assert!(matches!(
            verify(&sign(removed, batch_hash(&items)), &vk, action, 1_500),
            Err(ReceiptError::Malformed(_))
        ));
    }

    /// Receipts signed before format 2 keep verifying under the canonicaliser they were
    /// signed with, and the format cannot be changed after signing.
    #[test]
    fn format_1_receipts_keep_verifying_and_formats_cannot_be_swapped() {
        let (keys, mut action, receipt) = fixture();
        let vk = keys.verifying_key();
        // Where the formats disagree: a 2^60 integer and keys ordered differently in UTF-16.
        action.arguments =
            json!({"\u{1F600}": 1, "\u{FB33}": 2, "amount": 1_152_921_504_606_846_976_u64});
        let legacy = action.legacy_hash().unwrap();
        let current = action.hash().unwrap();
        assert_ne!(legacy, current);
        let sign = |format: u8, hash: &str| {
            let mut body = receipt.body.clone();
            body.format = format;
            body.action_hash = hash.to_owned();
            SignedReceipt::sign(keys.signing_key(), body)
        };
        let old = sign(1, &legacy);
        assert!(!serde_json::to_string(&old.body).unwrap().contains("format"));
        verify(&old, &vk, action.clone(), 1_500).unwrap();
        let new = sign(RECEIPT_FORMAT, &current);
        verify(&new, &vk, action.clone(), 1_500).unwrap();
        // A receipt is bound to its own format's hash only.
        assert_eq!(
            verify(&sign(1, &current), &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::ActionMismatch
        );
        assert_eq!(
            verify(&sign(RECEIPT_FORMAT, &legacy), &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::ActionMismatch
        );
        let mut downgraded = new.clone();
        downgraded.body.format = 1;
        assert_eq!(
            verify(&downgraded, &vk, action.clone(), 1_500).unwrap_err(),
            ReceiptError::BadSignature
        );
        let mut unknown = new;
        unknown.body.format = 3;
        assert!(matches!(
            verify(&unknown, &vk, action, 1_500),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn valid_receipt_yields_a_permit() {
        let (keys, action, receipt) = fixture();
        let permit = verify(&receipt, &keys.verifying_key(), action.clone(), 1_500).unwrap();
        assert_eq!(permit.action(), &action);
        assert_eq!(permit.approval().unwrap().approver(), "alice");
        assert_eq!(permit.approval().unwrap().receipt(), &receipt);
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
