//! Approval requests — the people's side of a held action: list, show, approve, deny, the
//! votes cast so far, batches (preview, then approve under the reviewed hash) and reverts of
//! executed writes. The deciding itself is `gate::approve` and `gate::revert`.

use super::common::{ApiResult, AppRef, approval_for, from_wire, tenant_for, tenant_scope};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::action::Action;
use portcullis_core::effect::EffectClass;
use portcullis_core::id::{AgentId, ApprovalId, ConnectionId, TenantId};
use portcullis_core::policy::{ApproverRule, Point};
use portcullis_core::receipt::SignedReceipt;
use portcullis_store::{Approval, ApprovalFilter, ApprovalStatus, ExecutionOutcome, Tenant};
use portcullis_store::{Vote, VoteRecord};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/approvals", get(list_approvals))
        .route("/approvals/{approval}", get(show_approval))
        .route("/approvals/{approval}/approve", post(approve))
        .route("/approvals/{approval}/deny", post(deny))
        .route("/approvals/{approval}/votes", get(votes))
        .route("/approvals/{approval}/revert", post(propose_revert))
        .route(
            "/tenants/{tenant}/approvals/batch/preview",
            post(batch_preview),
        )
        .route("/tenants/{tenant}/approvals/batch", post(batch_approve))
}

/// `GET /approvals`: newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApprovalQuery {
    pub tenant: Option<String>,
    /// `pending`, `approved`, `denied`, `executed`, `expired`, `needs_reconnection` or
    /// `unknown`; checked by the server.
    pub status: Option<String>,
    /// The same as `status`.
    pub state: Option<String>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
}

/// An approval request as approvers see it: the action with every argument, why it was held,
/// the evidence, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub id: ApprovalId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub session: Option<String>,
    pub connection: ConnectionId,
    pub tool: String,
    pub effect: EffectClass,
    pub action: Action,
    pub action_hash: String,
    pub summary: String,
    pub reasons: Vec<String>,
    /// Effective status: `expired` and `needs_reconnection` are derived when they apply.
    #[serde(deserialize_with = "status_from_wire")]
    pub status: ApprovalStatus,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub decided_by: Option<String>,
    pub decided_at: Option<UnixMillis>,
    pub decision_reason: Option<String>,
    pub receipt: Option<SignedReceipt>,
    /// The approver rules in force when the call was held.
    pub rules: Value,
    /// What the approver is shown as evidence (the session's reads, the agent's reason).
    pub evidence: Value,
    /// The declared dollar impact, in cents.
    pub cost_cents: i64,
    /// The target's state captured by a preview read when the call was held.
    pub before_state: Option<Value>,
    /// Set when it was approved as part of a batch.
    pub batch: Option<Value>,
    /// For a revert: the executed approval it undoes.
    pub revert_of: Option<ApprovalId>,
    /// When its receipt was redeemed.
    pub executed_at: Option<UnixMillis>,
    /// What the upstream call produced, once recorded.
    #[serde(deserialize_with = "outcome_from_wire")]
    pub outcome: Option<ExecutionOutcome>,
}

impl From<Approval> for ApprovalView {
    fn from(a: Approval) -> Self {
        Self {
            id: a.id,
            tenant: a.tenant,
            agent: a.agent,
            session: a.session,
            connection: a.connection,
            tool: a.tool,
            effect: a.effect,
            action: a.action,
            action_hash: a.action_hash,
            summary: a.summary,
            reasons: a.reasons,
            status: a.status,
            created_at: a.created_at,
            expires_at: a.expires_at,
            decided_by: a.decided_by,
            decided_at: a.decided_at,
            decision_reason: a.decision_reason,
            receipt: a.receipt,
            rules: a.rules,
            evidence: a.evidence,
            cost_cents: a.cost_cents,
            before_state: a.before_state,
            batch: a.batch,
            revert_of: a.revert_of,
            executed_at: a.executed_at,
            outcome: a.outcome,
        }
    }
}

fn status_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<ApprovalStatus, D::Error> {
    from_wire(d, ApprovalStatus::parse, "approval status")
}

fn outcome_from_wire<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ExecutionOutcome>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|value| {
            ExecutionOutcome::parse(&value).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown execution outcome `{value}`"))
            })
        })
        .transpose()
}

fn views(approvals: Vec<Approval>) -> Vec<ApprovalView> {
    approvals.into_iter().map(ApprovalView::from).collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictIn {
    /// Optional when approving; a denial needs one.
    pub reason: Option<String>,
}

/// The votes cast on a request and the approver rules it was held under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VotesView {
    pub approval: ApprovalId,
    #[serde(deserialize_with = "status_from_wire")]
    pub status: ApprovalStatus,
    /// Per approval point, who may approve and how many must; none when unreadable.
    pub rules: Option<Vec<(Point, ApproverRule)>>,
    pub votes: Vec<VoteView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteView {
    pub voter: String,
    #[serde(deserialize_with = "vote_from_wire")]
    pub vote: Vote,
    pub reason: Option<String>,
    /// RFC 3339.
    pub at: String,
}

impl From<&VoteRecord> for VoteView {
    fn from(v: &VoteRecord) -> Self {
        Self {
            voter: v.voter.clone(),
            vote: v.vote,
            reason: v.reason.clone(),
            at: crate::clock::rfc3339(v.at),
        }
    }
}

fn vote_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<Vote, D::Error> {
    from_wire(d, Vote::parse, "vote")
}

/// A batch: approval ids in the order reviewed; approving it names the hash reviewed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    pub items: Vec<String>,
    /// The hash the preview showed; needed to approve, ignored by the preview.
    #[serde(default)]
    pub batch_hash: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What an approver reviews before approving a batch: every item, in order, and the hash
/// their approval must name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPreview {
    pub batch_hash: String,
    pub items: Vec<BatchItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub id: ApprovalId,
    pub summary: String,
    pub action_hash: String,
    #[serde(deserialize_with = "status_from_wire")]
    pub status: ApprovalStatus,
    pub tool: String,
    pub arguments: Value,
    pub cost_cents: i64,
    pub before_state: Option<Value>,
    pub evidence: Value,
}

async fn list_approvals(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<ApprovalQuery>,
) -> ApiResult<Vec<ApprovalView>> {
    let tenant = tenant_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let status = q
        .status
        .as_deref()
        .or(q.state.as_deref())
        .map(|s| {
            ApprovalStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown status `{s}`")))
        })
        .transpose()?;
    let filter = ApprovalFilter {
        tenant,
        status,
        now: state.clock.now(),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(views(state.store.list_approvals(&filter).await?)))
}

async fn show_approval(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    Ok(Json(approval_for(&state, &ctx, &id).await?.into()))
}

async fn approve(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
    body: Option<Json<VerdictIn>>,
) -> ApiResult<ApprovalView> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let reason = body.and_then(|b| b.0.reason);
    let decided = crate::gate::approve(&state, &ctx, approval, reason).await?;
    Ok(Json(decided.into()))
}

async fn deny(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
    body: Option<Json<VerdictIn>>,
) -> ApiResult<ApprovalView> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let reason = body
        .and_then(|b| b.0.reason)
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("a denial needs a reason".into()))?;
    let decided = crate::gate::approve::deny(&state, &ctx, approval, reason).await?;
    Ok(Json(decided.into()))
}

async fn votes(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<VotesView> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let votes = state.store.votes(&approval.tenant, &approval.id).await?;
    Ok(Json(VotesView {
        rules: crate::gate::approve::approval_rules(&approval).ok(),
        approval: approval.id,
        status: approval.status,
        votes: votes.iter().map(VoteView::from).collect(),
    }))
}

/// The batch's items, each one this human may see and of this tenant.
async fn batch_items(
    state: &AppState,
    ctx: &AdminContext,
    tenant: &Tenant,
    items: &[String],
) -> Result<Vec<Approval>, ApiError> {
    let mut out = Vec::new();
    for id in items {
        let approval = approval_for(state, ctx, id).await?;
        if approval.tenant != tenant.id {
            return Err(ApiError::NotFound);
        }
        out.push(approval);
    }
    Ok(out)
}

async fn batch_preview(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<BatchIn>,
) -> ApiResult<BatchPreview> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let items = batch_items(&state, &ctx, &tenant, &body.items).await?;
    let hashes: Vec<String> = items.iter().map(|a| a.action_hash.clone()).collect();
    Ok(Json(BatchPreview {
        batch_hash: portcullis_core::receipt::batch_hash(&hashes),
        items: items
            .into_iter()
            .map(|a| BatchItem {
                id: a.id,
                summary: a.summary,
                action_hash: a.action_hash,
                status: a.status,
                tool: a.tool,
                arguments: a.action.arguments,
                cost_cents: a.cost_cents,
                before_state: a.before_state,
                evidence: a.evidence,
            })
            .collect(),
    }))
}

/// Approve a batch under one receipt, only under the hash the approver reviewed.
async fn batch_approve(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<BatchIn>,
) -> ApiResult<Vec<ApprovalView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let claimed = body.batch_hash.ok_or_else(|| {
        ApiError::BadRequest("name the batch_hash you reviewed (see batch/preview)".into())
    })?;
    let items = batch_items(&state, &ctx, &tenant, &body.items).await?;
    let approved =
        crate::gate::approve::approve_batch(&state, &ctx, &tenant.id, items, &claimed, body.reason)
            .await?;
    Ok(Json(views(approved)))
}

/// Propose the inverse of an executed write (see `gate::revert::propose`).
async fn propose_revert(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    let original = approval_for(&state, &ctx, &id).await?;
    let proposed = crate::gate::revert::propose(&state, &ctx, original).await?;
    Ok(Json(proposed.into()))
}
