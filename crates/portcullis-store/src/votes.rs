//! The rules of deciding an approval, shared by both backends: which vote or batch item is
//! accepted and what it does to the approval. A backend reads the approval and its votes
//! inside its transaction (the approval locked), asks these functions, and writes what they
//! return; a refusal is returned before anything is written.

use crate::rows::json;
use crate::*;
use portcullis_core::receipt::SignedReceipt;

/// What [`plan_vote`] needs of a [`Store::cast_vote`] call.
pub(crate) struct VoteRequest<'a> {
    pub voter: &'a str,
    pub vote: Vote,
    pub reason: Option<String>,
    pub expected_prior_approvers: &'a [String],
    pub receipt_if_final: Option<SignedReceipt>,
}

/// What [`batch_decision`] needs of a [`Store::approve_batch`] call.
pub(crate) struct BatchRequest<'a> {
    pub batch: &'a serde_json::Value,
    pub receipt: SignedReceipt,
}

/// What closes a pending approval: the values of its decision columns.
pub(crate) struct Decision {
    /// `approved` or `denied`.
    pub status: &'static str,
    pub decided_by: String,
    pub reason: Option<String>,
    /// The signed receipt, as stored (JSON text).
    pub receipt: Option<String>,
    /// The batch it was approved in, as stored (JSON text).
    pub batch: Option<String>,
}

impl Decision {
    pub fn from_verdict(verdict: Verdict, approver: &str) -> Self {
        let (status, reason, receipt) = match verdict {
            Verdict::Approve { receipt, reason } => ("approved", reason, Some(json(&receipt))),
            Verdict::Deny { reason } => ("denied", Some(reason), None),
        };
        Self {
            status,
            decided_by: approver.to_owned(),
            reason,
            receipt,
            batch: None,
        }
    }

    /// Approved by the holder of `receipt`.
    fn approved(receipt: &SignedReceipt, batch: Option<String>) -> Self {
        Self {
            status: "approved",
            decided_by: receipt.body.approver.clone(),
            reason: None,
            receipt: Some(json(receipt)),
            batch,
        }
    }
}

/// Only a pending approval (effectively: stored pending, unexpired, its connection live)
/// can be decided or voted on.
pub(crate) fn require_pending(current: &Approval) -> StoreResult<()> {
    if current.status == ApprovalStatus::Pending {
        Ok(())
    } else {
        Err(StoreError::Conflict(Conflict::Status(current.status)))
    }
}

/// Whether `request`'s vote is accepted given the approval and the votes already cast, and
/// if so, the decision it completes (`None`: recorded, still pending).
///
/// INVARIANT: an approve vote states the approve-voters it saw; if another vote landed
/// since, it is refused ("votes changed") and the caller re-reads and retries. So with N
/// approvers needed, exactly one vote is the final one and carries the receipt.
pub(crate) fn plan_vote(
    current: &Approval,
    votes: &[VoteRecord],
    request: &VoteRequest<'_>,
) -> StoreResult<Option<Decision>> {
    require_pending(current)?;
    if votes.iter().any(|v| v.voter == request.voter) {
        return Err(StoreError::Conflict(Conflict::AlreadyVoted));
    }
    match request.vote {
        Vote::Deny => Ok(Some(Decision {
            status: "denied",
            decided_by: request.voter.to_owned(),
            reason: request.reason.clone(),
            receipt: None,
            batch: None,
        })),
        Vote::Approve => {
            let mut prior: Vec<&str> = votes
                .iter()
                .filter(|v| v.vote == Vote::Approve)
                .map(|v| v.voter.as_str())
                .collect();
            let mut expected: Vec<&str> = request
                .expected_prior_approvers
                .iter()
                .map(String::as_str)
                .collect();
            prior.sort_unstable();
            expected.sort_unstable();
            if prior != expected {
                return Err(StoreError::Conflict(Conflict::VotesChanged));
            }
            // The deciding vote's reason is the approval's reason (earlier votes keep theirs).
            Ok(request.receipt_if_final.as_ref().map(|receipt| Decision {
                reason: request.reason.clone(),
                ..Decision::approved(receipt, None)
            }))
        }
    }
}

/// Every item of a batch must be distinct; refused naming the first repeated one.
pub(crate) fn distinct_items(items: &[ApprovalId]) -> StoreResult<Vec<&ApprovalId>> {
    if items.is_empty() {
        return Err(StoreError::Conflict(Conflict::BatchItem(
            "the batch is empty".into(),
        )));
    }
    // Sorted: concurrent batches lock their approvals in one order and cannot deadlock.
    let mut sorted: Vec<&ApprovalId> = items.iter().collect();
    sorted.sort();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StoreError::Conflict(Conflict::BatchItem(format!(
            "approval `{}` is in the batch twice",
            pair[0]
        ))));
    }
    Ok(sorted)
}

/// One batch item: it must exist in the tenant, be pending and have no votes yet; a refusal
/// names it.
pub(crate) fn check_batch_item(
    id: &ApprovalId,
    current: StoreResult<Approval>,
    n_votes: i64,
) -> StoreResult<()> {
    let current = match current {
        Err(StoreError::NotFound) => {
            return Err(StoreError::Conflict(Conflict::BatchItem(format!(
                "approval `{id}` is not found"
            ))));
        }
        other => other?,
    };
    require_pending(&current).map_err(|_| {
        StoreError::Conflict(Conflict::BatchItem(format!(
            "approval `{id}` is {}",
            current.status.as_str()
        )))
    })?;
    if n_votes > 0 {
        return Err(StoreError::Conflict(Conflict::BatchItem(format!(
            "approval `{id}` already has votes"
        ))));
    }
    Ok(())
}

/// The decision every item of an approved batch gets.
pub(crate) fn batch_decision(request: &BatchRequest<'_>) -> Decision {
    Decision::approved(&request.receipt, Some(json(request.batch)))
}
