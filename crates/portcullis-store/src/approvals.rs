//! Approval requests, votes, batches, receipt redemption and execution outcomes — each query
//! written once for both backends.

use crate::rows::{self as parse, json};
use crate::sql::{Freshness, Lock, Scope, Sql, sql};
use crate::tx::{Tx, all};
use crate::votes::{self, BatchRequest, Decision, VoteRequest};
use crate::*;

/// SQLite treats a negative limit as "no limit"; this says so for both backends.
pub(crate) fn limit(limit: i64) -> i64 {
    if limit < 0 { i64::MAX } else { limit }
}

/// One approval, read inside a write transaction, optionally locked until commit.
async fn approval_in(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &ApprovalId,
    lock: Option<Lock>,
    now: UnixMillis,
) -> StoreResult<Approval> {
    let suffix = lock.map_or("", |l| tx.lock(l));
    let q = sql(format!(
        "{} WHERE a.tenant_id = $1 AND a.id = $2{suffix}",
        parse::APPROVAL_SELECT
    ))
    .text(tenant.as_str())
    .text(id.as_str());
    parse::approval(&tx.one(&q).await?, now)
}

/// Close a pending, live approval.
async fn decide_in(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &ApprovalId,
    decision: &Decision,
    now: UnixMillis,
) -> StoreResult<()> {
    let q = sql("UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_reason = $4, receipt = $5, batch = COALESCE($6, batch) \
                 WHERE tenant_id = $7 AND id = $8 AND status = 'pending' AND superseded_at IS NULL")
    .text(decision.status)
    .text(decision.decided_by.as_str())
    .int(now)
    .opt_text(decision.reason.as_deref())
    .opt_text(decision.receipt.as_deref())
    .opt_text(decision.batch.as_deref())
    .text(tenant.as_str())
    .text(id.as_str());
    if tx.execute(&q).await? == 0 {
        return Err(StoreError::Conflict(Conflict::NoLongerPending));
    }
    Ok(())
}

fn votes_query<'q>(tenant: &'q TenantId, approval: &'q ApprovalId) -> Sql<'q> {
    sql("SELECT * FROM approval_votes WHERE tenant_id = $1 AND approval_id = $2 ORDER BY created_at, voter")
        .text(tenant.as_str())
        .text(approval.as_str())
}

async fn insert_vote_in(
    tx: &mut Tx,
    tenant: &TenantId,
    approval: &ApprovalId,
    voter: &str,
    vote: Vote,
    reason: Option<&str>,
    now: UnixMillis,
) -> StoreResult<()> {
    tx.execute(
        &sql("INSERT INTO approval_votes (tenant_id, approval_id, voter, vote, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .text(tenant.as_str())
            .text(approval.as_str())
            .text(voter)
            .text(vote.as_str())
            .opt_text(reason)
            .int(now),
    )
    .await?;
    Ok(())
}

impl Store {
    /// Store a held action as a pending approval, together with its `hold` audit event.
    pub async fn create_approval(
        &self,
        new: NewApproval,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        self.create_approval_with(new, ApprovalExtras::default(), audit, now)
            .await
    }

    /// [`Store::create_approval`] with what the hold found beyond the action: the rules in
    /// force, the evidence, the declared cost and the target's state before the call.
    ///
    /// INVARIANT (enforced by unique indexes): at most one pending-or-approved request per
    /// (tenant, agent, action hash), and at most one live or executed revert per original.
    /// When one exists, nothing is written and it is returned as [`HoldOutcome::Joined`];
    /// an expired one is superseded first, so it never blocks a new request. On PostgreSQL a
    /// concurrent identical insert waits on the index for the first transaction: if it
    /// commits, this insert does nothing and the read below (a new snapshot at READ
    /// COMMITTED) finds it.
    pub async fn create_approval_with(
        &self,
        new: NewApproval,
        extras: ApprovalExtras,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<HoldOutcome> {
        let mut tx = self.begin(Scope::Tenant(&new.tenant)).await?;
        let revert_of = new.revert_of.as_ref().map(ApprovalId::as_str);
        tx.execute(
            &sql("UPDATE approvals SET superseded_at = $5 \
                  WHERE tenant_id = $1 AND superseded_at IS NULL AND expires_at <= $5 \
                  AND status IN ('pending', 'approved') \
                  AND ((agent_id = $2 AND action_hash = $3) OR ($4 IS NOT NULL AND revert_of = $4))")
            .text(new.tenant.as_str())
            .text(new.agent.as_str())
            .text(new.action_hash.as_str())
            .opt_text(revert_of)
            .int(now),
        )
        .await?;
        let inserted = tx
            .execute(
                &sql("INSERT INTO approvals (id, tenant_id, agent_id, session, connection_id, tool, effect, action, action_hash, summary, \
                      reasons, status, created_at, expires_at, point_rules, evidence, cost_cents, before_state, revert_of) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $14, $15, $16, $17, $18) \
                      ON CONFLICT DO NOTHING")
                .text(new.id.as_str())
                .text(new.tenant.as_str())
                .text(new.agent.as_str())
                .opt_text(new.session.as_deref())
                .text(new.action.connection.as_str())
                .text(new.action.tool.as_str())
                .text(new.effect.as_str())
                .text(json(&new.action))
                .text(new.action_hash.as_str())
                .text(new.summary.as_str())
                .text(json(&new.reasons))
                .int(now)
                .int(new.expires_at)
                .text(json(&extras.rules))
                .text(json(&extras.evidence))
                .int(extras.cost_cents)
                .opt_text(extras.before_state.as_ref().map(json))
                .opt_text(revert_of),
            )
            .await?;
        if inserted == 0 {
            // The request this one collided with: the live one for the same action first,
            // then the revert of the same original.
            let q = sql(format!(
                "{} WHERE a.tenant_id = $1 AND a.superseded_at IS NULL \
                 AND ((a.agent_id = $2 AND a.action_hash = $3 AND a.status IN ('pending', 'approved')) \
                      OR ($4 IS NOT NULL AND a.revert_of = $4 AND a.status IN ('pending', 'approved', 'executed'))) \
                 ORDER BY CASE WHEN a.agent_id = $2 AND a.action_hash = $3 THEN 0 ELSE 1 END LIMIT 1",
                parse::APPROVAL_SELECT
            ))
            .text(new.tenant.as_str())
            .text(new.agent.as_str())
            .text(new.action_hash.as_str())
            .opt_text(revert_of);
            let existing = parse::approval(&tx.one(&q).await?, now)?;
            tx.commit().await?;
            return Ok(HoldOutcome::Joined(existing));
        }
        let approval = approval_in(&mut tx, &new.tenant, &new.id, None, now).await?;
        let (approval, event) = tx.audited(approval, audit, now).await?;
        Ok(HoldOutcome::Created(approval, event))
    }

    /// The request that decides an identical call by this agent now: approved first (a retry
    /// executes it), then pending, then an unexpired denial (a denial stands until its request
    /// would have expired, so an agent cannot wear approvers down by repeating a call).
    pub async fn live_approval_for(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        action_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<Approval>> {
        let q = sql(format!(
            "{} WHERE a.tenant_id = $1 AND a.agent_id = $2 AND a.action_hash = $3 \
             AND a.status IN ('pending', 'approved', 'denied') AND a.expires_at > $4 AND a.superseded_at IS NULL \
             ORDER BY CASE a.status WHEN 'approved' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, a.created_at DESC LIMIT 1",
            parse::APPROVAL_SELECT
        ))
        .text(tenant.as_str())
        .text(agent.as_str())
        .text(action_hash)
        .int(now);
        self.read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
            .map(|r| parse::approval(&r, now))
            .transpose()
    }

    /// One approval by id, within `tenant` (or any tenant when `None`, for unscoped admins).
    pub async fn find_approval(
        &self,
        tenant: Option<&TenantId>,
        id: &ApprovalId,
        now: UnixMillis,
    ) -> StoreResult<Approval> {
        let q = sql(format!(
            "{} WHERE ($1 IS NULL OR a.tenant_id = $1) AND a.id = $2",
            parse::APPROVAL_SELECT
        ))
        .opt_text(tenant.map(TenantId::as_str))
        .text(id.as_str());
        parse::approval(&self.read_one(Scope::of(tenant), &q).await?, now)
    }

    /// Approvals newest first, filtered by tenant (none: every tenant, for unscoped admins)
    /// and by effective status (derived in SQL, so the filter pages correctly).
    pub async fn list_approvals(&self, filter: &ApprovalFilter) -> StoreResult<Vec<Approval>> {
        let status_sql = parse::effective_status_condition(filter.status, "$3");
        let q = sql(format!(
            "{} WHERE ($1 IS NULL OR a.tenant_id = $1) AND ({status_sql}) AND $3 IS NOT NULL \
             ORDER BY a.created_at DESC LIMIT $2",
            parse::APPROVAL_SELECT
        ))
        .opt_text(filter.tenant.as_ref().map(TenantId::as_str))
        .int(if filter.limit <= 0 { 100 } else { filter.limit })
        .int(filter.now);
        all(
            self.read_all(Scope::of(filter.tenant.as_ref()), &q, Freshness::Any)
                .await?,
            |row| parse::approval(row, filter.now),
        )
    }

    /// Approve (with a signed receipt) or deny a pending, unexpired approval, with its audit
    /// event. A second decision is a conflict.
    pub async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
        verdict: Verdict,
        approver: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // Locked until commit: two approvers deciding at once (on two replicas) take turns,
        // and the second sees the first's decision.
        let current = approval_in(&mut tx, tenant, id, Some(Lock::UpdateApproval), now).await?;
        votes::require_pending(&current)?;
        let decision = Decision::from_verdict(verdict, approver);
        decide_in(&mut tx, tenant, id, &decision, now).await?;
        let approval = approval_in(&mut tx, tenant, id, None, now).await?;
        tx.audited(approval, audit, now).await
    }

    /// The votes cast on an approval, oldest first (empty for another tenant's approval).
    pub async fn votes(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
    ) -> StoreResult<Vec<VoteRecord>> {
        all(
            self.read_all(
                Scope::Tenant(tenant),
                &votes_query(tenant, approval),
                Freshness::Any,
            )
            .await?,
            parse::vote,
        )
    }

    /// Cast one vote on a pending, unexpired approval, with its audit event, in one
    /// transaction with the approval locked.
    ///
    /// A deny vote denies the approval. An approve vote must name the approve-voters its
    /// caller saw (`expected_prior_approvers`, any order): if they changed meanwhile the vote
    /// is refused with [`Conflict::VotesChanged`] and the caller re-reads and retries. With
    /// `receipt_if_final` the vote completes the approval: approved, by the receipt's
    /// approver, with that receipt. A voter votes once ([`Conflict::AlreadyVoted`]); a
    /// decided or expired approval is [`Conflict::Status`]. A refused vote writes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn cast_vote(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        voter: &str,
        vote: Vote,
        reason: Option<String>,
        expected_prior_approvers: &[String],
        receipt_if_final: Option<portcullis_core::receipt::SignedReceipt>,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Approval, AuditEvent)> {
        let request = VoteRequest {
            voter,
            vote,
            reason,
            expected_prior_approvers,
            receipt_if_final,
        };
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: the approval stays locked until commit (SQLite: the one writer), so
        // votes on it take turns and each sees every vote before it.
        let current =
            approval_in(&mut tx, tenant, approval, Some(Lock::UpdateApproval), now).await?;
        let votes = all(tx.all(&votes_query(tenant, approval)).await?, parse::vote)?;
        let decision = votes::plan_vote(&current, &votes, &request)?;
        insert_vote_in(
            &mut tx,
            tenant,
            approval,
            voter,
            request.vote,
            request.reason.as_deref(),
            now,
        )
        .await?;
        if let Some(decision) = decision {
            decide_in(&mut tx, tenant, approval, &decision, now).await?;
        }
        let approval = approval_in(&mut tx, tenant, approval, None, now).await?;
        tx.audited(approval, draft, now).await
    }

    /// Approve several approvals at once with one receipt and one audit event. Every item
    /// must be in the tenant, pending, unexpired and without votes, else nothing is written
    /// and the conflict names the item. Each gets `voter`'s approve vote and `batch`.
    /// Returned in the order of `items`.
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_batch(
        &self,
        tenant: &TenantId,
        items: &[ApprovalId],
        voter: &str,
        batch: &serde_json::Value,
        receipt: portcullis_core::receipt::SignedReceipt,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(Vec<Approval>, AuditEvent)> {
        let request = BatchRequest { batch, receipt };
        // Sorted: concurrent batches lock their approvals in one order.
        let sorted = votes::distinct_items(items)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        for id in &sorted {
            let current = approval_in(&mut tx, tenant, id, Some(Lock::UpdateApproval), now).await;
            let n_votes = tx
                .one(
                    &sql("SELECT COUNT(*) FROM approval_votes WHERE tenant_id = $1 AND approval_id = $2")
                        .text(tenant.as_str())
                        .text(id.as_str()),
                )
                .await?
                .first_int()?;
            votes::check_batch_item(id, current, n_votes)?;
        }
        let decision = votes::batch_decision(&request);
        for id in &sorted {
            insert_vote_in(&mut tx, tenant, id, voter, Vote::Approve, None, now).await?;
            decide_in(&mut tx, tenant, id, &decision, now).await?;
        }
        let mut approvals = Vec::with_capacity(items.len());
        for id in items {
            approvals.push(approval_in(&mut tx, tenant, id, None, now).await?);
        }
        tx.audited(approvals, draft, now).await
    }

    /// Consume a receipt's nonce, mark its approval executed (recording when) and append the
    /// `execute` audit event, all in one transaction. A nonce already consumed, or an approval
    /// that is no longer live (superseded, its connection revoked), is a conflict and changes
    /// nothing.
    pub async fn redeem_receipt(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        receipt: &ReceiptId,
        nonce: &str,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // INVARIANT: exactly once, also across processes. A concurrent insert of the same
        // nonce waits for the first transaction: if it commits, this one inserts nothing and
        // stops here; if it rolls back, this one proceeds. Nonces are never deleted.
        let inserted = tx
            .execute(
                &sql("INSERT INTO receipt_nonces (nonce, tenant_id, receipt_id, consumed_at) VALUES ($1, $2, $3, $4) \
                      ON CONFLICT (nonce) DO NOTHING")
                .text(nonce)
                .text(tenant.as_str())
                .text(receipt.as_str())
                .int(now),
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(Conflict::ReceiptUsed));
        }
        let marked = tx
            .execute(
                &sql("UPDATE approvals SET status = 'executed', executed_at = $3 \
                      WHERE tenant_id = $1 AND id = $2 AND status = 'approved' AND superseded_at IS NULL \
                      AND connection_id IN (SELECT id FROM connections WHERE revoked_at IS NULL AND needs_reconnection_at IS NULL)")
                .text(tenant.as_str())
                .text(approval.as_str())
                .int(now),
            )
            .await?;
        if marked == 0 {
            return Err(StoreError::Conflict(Conflict::NotRedeemable));
        }
        Ok(tx.audited((), audit, now).await?.1)
    }

    /// Record what an executed approval's upstream call produced, with its audit event. A
    /// real outcome replaces `unknown`; nothing replaces a real outcome (then nothing is
    /// written and the answer is `None`).
    pub async fn record_outcome(
        &self,
        tenant: &TenantId,
        approval: &ApprovalId,
        outcome: ExecutionOutcome,
        audit: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<Option<AuditEvent>> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let recorded = tx
            .execute(
                &sql("UPDATE approvals SET outcome = $3 WHERE tenant_id = $1 AND id = $2 AND status = 'executed' \
                      AND (outcome IS NULL OR (outcome = 'unknown' AND $3 <> 'unknown'))")
                .text(tenant.as_str())
                .text(approval.as_str())
                .text(outcome.as_str()),
            )
            .await?;
        if recorded == 0 {
            return Ok(None);
        }
        Ok(Some(tx.audited((), audit, now).await?.1))
    }

    /// Executed approvals, in every tenant, whose receipt was redeemed before
    /// `redeemed_before` and whose outcome was never recorded. Oldest first, at most `limit`.
    pub async fn unfinished_executions(
        &self,
        redeemed_before: UnixMillis,
        limit: i64,
        now: UnixMillis,
    ) -> StoreResult<Vec<Approval>> {
        let q = sql(format!(
            "{} WHERE a.status = 'executed' AND a.outcome IS NULL \
             AND a.executed_at IS NOT NULL AND a.executed_at < $1 ORDER BY a.executed_at LIMIT $2",
            parse::APPROVAL_SELECT
        ))
        .int(redeemed_before)
        .int(self::limit(limit));
        all(
            self.read_all(Scope::AllTenants, &q, Freshness::Latest)
                .await?,
            |row| parse::approval(row, now),
        )
    }
}
