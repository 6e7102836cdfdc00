//! Approve: the people's side of a held request. A vote approves when, with the votes
//! before it, every approver rule of the request is satisfied (N of M per approval point,
//! named approvers, no self-approval by the agent's owner or identities it controls); then a
//! receipt is signed over the action hash and stored with the vote in one transaction. One
//! denial ends a request. A batch approves several requests under one receipt over the hash
//! of the list the approver reviewed.
//!
//! INVARIANT: concurrent final votes produce one receipt — a vote commits only if the approve
//! votes stored are exactly those the voter saw ("votes changed" otherwise: read and retry).

use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{ApprovalId, ReceiptId, TenantId};
use portcullis_core::policy::{
    ApproverRule, Point, VoterIdentity, refuse_identity, refuse_voter, satisfied,
};
use portcullis_core::receipt::{ReceiptBody, SignedReceipt};
use portcullis_store::{Admin, Approval, ApprovalStatus, StoreError, Vote};
use serde_json::json;

pub(crate) fn require_approver(ctx: &AdminContext) -> Result<(), ApiError> {
    // Both roles may decide; agents never reach this code (their tokens are refused by the
    // admin API), so a requesting agent cannot approve its own action.
    match ctx.admin.role {
        portcullis_store::AdminRole::Admin | portcullis_store::AdminRole::Approver => Ok(()),
        portcullis_store::AdminRole::Auditor | portcullis_store::AdminRole::Viewer => Err(
            ApiError::Forbidden("deciding needs the admin or approver role".into()),
        ),
    }
}

/// The approver rules an approval was held under. Requests held before rules existed (stored
/// as `{}`) take the general rule: one approver, no self-approval.
pub fn approval_rules(approval: &Approval) -> Result<Vec<(Point, ApproverRule)>, ApiError> {
    if approval.rules.as_object().is_some_and(|o| o.is_empty()) || approval.rules.is_null() {
        return Ok(vec![(Point::Effect, ApproverRule::default())]);
    }
    let rules: Vec<(Point, ApproverRule)> = serde_json::from_value(approval.rules.clone())
        .map_err(|_| {
            ApiError::Conflict("this request's approver rules are unreadable; deny it".into())
        })?;
    if rules.is_empty() {
        return Err(ApiError::Conflict(
            "this request has no approver rules; deny it".into(),
        ));
    }
    Ok(rules)
}

/// The owner of the agent that made a request (who may not approve it).
async fn agent_owner(state: &AppState, approval: &Approval) -> Result<Option<String>, ApiError> {
    let agents = state.store.list_agents(&approval.tenant).await?;
    Ok(agents
        .into_iter()
        .find(|a| a.id == approval.agent)
        .and_then(|a| a.owner))
}

/// `name` and the identities that created it, nearest first, followed transitively (bounded;
/// a name that no longer resolves ends the chain).
async fn chain_from(
    state: &AppState,
    name: Option<String>,
    chain: &mut Vec<String>,
) -> Result<(), ApiError> {
    let mut next = name;
    while let Some(name) = next.take() {
        if chain.contains(&name) || chain.len() >= 32 {
            break;
        }
        chain.push(name.clone());
        match state.store.admin_by_name(&name).await {
            Ok(creator) => next = creator.created_by,
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Who controls or controlled `admin`'s credential besides itself: its creators and, when
/// another identity replaced its token, that identity and its creators. And since when the
/// credential has been in its present hands.
async fn controllers_of(
    state: &AppState,
    admin: &Admin,
) -> Result<(Vec<String>, portcullis_core::UnixMillis), ApiError> {
    let mut chain: Vec<String> = Vec::new();
    chain_from(state, admin.created_by.clone(), &mut chain).await?;
    let mut since = admin.created_at;
    if let Some(rotator) = admin.rotated_by.as_ref().filter(|r| **r != admin.name) {
        chain_from(state, Some(rotator.clone()), &mut chain).await?;
        since = since.max(admin.rotated_at.unwrap_or(since));
    }
    Ok((chain, since))
}

/// Refuse a vote to approve `approval` by this human when any rule says so: not named by the
/// rules, the agent's owner or an identity it created or re-keyed, a credential created or
/// handed over after the request was held, or (for a revert) its proposer.
pub(crate) async fn check_voter(
    state: &AppState,
    ctx: &AdminContext,
    approval: &Approval,
    rules: &[(Point, ApproverRule)],
) -> Result<(), ApiError> {
    let owner = agent_owner(state, approval).await?;
    let (controllers, since) = controllers_of(state, &ctx.admin).await?;
    let voter = VoterIdentity {
        name: &ctx.admin.name,
        creators: &controllers,
        created_at: since,
    };
    let proposer = approval.evidence["proposed_by"].as_str();
    match refuse_identity(
        rules,
        &voter,
        owner.as_deref(),
        proposer,
        approval.created_at,
    ) {
        Some(why) => Err(ApiError::Forbidden(why)),
        None => Ok(()),
    }
}

/// Vote to approve a pending request. When the votes so far plus this one satisfy every
/// approver rule of the request, sign a receipt over its action hash naming all approvers and
/// store it with the vote, in one transaction; otherwise record the vote and leave it pending.
/// A concurrent vote makes the store refuse with "votes changed"; then read again and retry.
pub async fn approve(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
    reason: Option<String>,
) -> Result<Approval, ApiError> {
    require_approver(ctx)?;
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "approval is {}",
            approval.status.as_str()
        )));
    }
    let rules = approval_rules(&approval)?;
    check_voter(state, ctx, &approval, &rules).await?;
    let me = ctx.admin.name.clone();
    for _ in 0..8 {
        let now = state.clock.now();
        let votes = state.store.votes(&approval.tenant, &approval.id).await?;
        if votes.iter().any(|v| v.voter == me) {
            return Err(ApiError::Conflict(format!(
                "`{me}` already voted on this request"
            )));
        }
        let mut prior: Vec<String> = votes
            .iter()
            .filter(|v| v.vote == Vote::Approve)
            .map(|v| v.voter.clone())
            .collect();
        prior.sort();
        let mut all = prior.clone();
        all.push(me.clone());
        all.sort();
        let receipt = satisfied(&rules, &all).then(|| {
            SignedReceipt::sign(
                state.keys.signing_key(),
                ReceiptBody {
                    format: portcullis_core::receipt::RECEIPT_FORMAT,
                    receipt_id: ReceiptId::generate(),
                    approval_id: approval.id.clone(),
                    tenant: approval.tenant.clone(),
                    action_hash: approval.action_hash.clone(),
                    approver: all.join(","),
                    approved_at: now,
                    expires_at: approval.expires_at,
                    nonce: SignedReceipt::new_nonce(),
                    batch: None,
                },
            )
        });
        let final_vote = receipt.is_some();
        let mut draft = AuditDraft::new(
            approval.tenant.clone(),
            ctx.actor(),
            if final_vote {
                AuditKind::Approve
            } else {
                AuditKind::Vote
            },
        )
        .resource(format!("approval:{}", approval.id));
        draft.decision = Some("approve".into());
        draft.receipt_id = receipt.as_ref().map(|r| r.body.receipt_id.to_string());
        draft.detail = json!({
            "action_hash": approval.action_hash,
            "reason_given": reason.is_some(),
            "approvers": all,
            "final": final_vote,
        });
        match state
            .store
            .cast_vote(
                &approval.tenant,
                &approval.id,
                &me,
                Vote::Approve,
                reason.clone(),
                &prior,
                receipt,
                draft,
                now,
            )
            .await
        {
            Ok((approval, _)) => {
                if final_vote {
                    state
                        .metrics
                        .approvals
                        .get_or_create(&crate::metrics::OutcomeLabel {
                            outcome: "approved",
                        })
                        .inc();
                    tracing::info!(approval = %approval.id, approvers = %all.join(","), "approved");
                    // Every approval is anchored by a witnessed checkpoint soon after.
                    state.anchors.nudge(&approval.tenant);
                }
                return Ok(approval);
            }
            Err(StoreError::Conflict(portcullis_store::Conflict::VotesChanged)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict("votes keep changing; try again".into()))
}

/// Deny a pending request with a reason. One denial by anyone who may vote on it ends it.
pub async fn deny(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
    reason: String,
) -> Result<Approval, ApiError> {
    require_approver(ctx)?;
    let now = state.clock.now();
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "approval is {}",
            approval.status.as_str()
        )));
    }
    let rules = approval_rules(&approval)?;
    // The owner may stop their own agent; only the approver lists apply to a denial.
    if let Some(why) = refuse_voter(&rules, &ctx.admin.name, None) {
        return Err(ApiError::Forbidden(why));
    }
    let votes = state.store.votes(&approval.tenant, &approval.id).await?;
    let mut prior: Vec<String> = votes
        .iter()
        .filter(|v| v.vote == Vote::Approve)
        .map(|v| v.voter.clone())
        .collect();
    prior.sort();
    let mut draft = AuditDraft::new(approval.tenant.clone(), ctx.actor(), AuditKind::Deny)
        .resource(format!("approval:{}", approval.id));
    draft.decision = Some("deny".into());
    draft.detail = json!({ "action_hash": approval.action_hash });
    let (approval, _) = state
        .store
        .cast_vote(
            &approval.tenant,
            &approval.id,
            &ctx.admin.name,
            Vote::Deny,
            Some(reason),
            &prior,
            None,
            draft,
            now,
        )
        .await?;
    state
        .metrics
        .approvals
        .get_or_create(&crate::metrics::OutcomeLabel { outcome: "denied" })
        .inc();
    Ok(approval)
}

/// Approve several pending requests together under one receipt over the batch hash (the
/// ordered list of their action hashes). `claimed_hash` is the hash the approver reviewed: if
/// the list changed since (an item added, removed, reordered or altered), nothing is approved.
/// Only requests one vote from this approver fully approves can join a batch.
pub async fn approve_batch(
    state: &AppState,
    ctx: &AdminContext,
    tenant: &TenantId,
    items: Vec<Approval>,
    claimed_hash: &str,
    reason: Option<String>,
) -> Result<Vec<Approval>, ApiError> {
    require_approver(ctx)?;
    let now = state.clock.now();
    let me = ctx.admin.name.clone();
    if items.is_empty() || items.len() > 100 {
        return Err(ApiError::BadRequest(
            "a batch holds 1 to 100 requests".into(),
        ));
    }
    for item in &items {
        if item.status != ApprovalStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "approval {} is {}",
                item.id,
                item.status.as_str()
            )));
        }
        if item.revert_of.is_some() {
            return Err(ApiError::Conflict(format!(
                "approval {} is a revert; approve it on its own",
                item.id
            )));
        }
        let rules = approval_rules(item)?;
        match check_voter(state, ctx, item, &rules).await {
            Ok(()) => {}
            Err(ApiError::Forbidden(why)) => {
                return Err(ApiError::Forbidden(format!("approval {}: {why}", item.id)));
            }
            Err(other) => return Err(other),
        }
        if !satisfied(&rules, std::slice::from_ref(&me)) {
            return Err(ApiError::Conflict(format!(
                "approval {} needs more than one approver; approve it on its own",
                item.id
            )));
        }
    }
    let hashes: Vec<String> = items.iter().map(|a| a.action_hash.clone()).collect();
    let hash = portcullis_core::receipt::batch_hash(&hashes);
    // The refusal does not name the current hash: an approver must review the batch again
    // (`batch/preview`) rather than copy a hash they never looked at.
    if hash != claimed_hash {
        return Err(ApiError::Conflict(
            "the batch is not the one reviewed (an item was added, removed, reordered or changed); preview it again and approve what you reviewed".into(),
        ));
    }
    let receipt = SignedReceipt::sign(
        state.keys.signing_key(),
        ReceiptBody {
            format: portcullis_core::receipt::RECEIPT_FORMAT,
            receipt_id: ReceiptId::generate(),
            approval_id: items[0].id.clone(),
            tenant: tenant.clone(),
            action_hash: hash.clone(),
            approver: me.clone(),
            approved_at: now,
            expires_at: items.iter().map(|a| a.expires_at).min().unwrap_or(now),
            nonce: SignedReceipt::new_nonce(),
            batch: Some(hashes.clone()),
        },
    );
    let ids: Vec<ApprovalId> = items.iter().map(|a| a.id.clone()).collect();
    let mut draft = AuditDraft::new(tenant.clone(), ctx.actor(), AuditKind::Approve)
        .resource(format!("batch:{hash}"));
    draft.decision = Some("approve".into());
    draft.receipt_id = Some(receipt.body.receipt_id.to_string());
    draft.detail = json!({ "batch_hash": hash, "items": ids, "action_hashes": hashes, "reason_given": reason.is_some() });
    let batch = json!({ "hash": hash, "items": ids });
    let (approved, _) = state
        .store
        .approve_batch(tenant, &ids, &me, &batch, receipt, draft, now)
        .await?;
    Ok(approved)
}
