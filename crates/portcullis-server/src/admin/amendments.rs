//! Edits to the audit trail — the fifth approval point. Nothing is ever rewritten: a
//! correction or redaction is proposed as a new entry referencing the original (its sequence
//! number and hash), and takes effect only as a further new entry once a *different* human
//! approves it. Proposals, approvals and rejections all live in the chain itself.
//!
//! Approvals of one proposal are serialised in this process; with several replicas two
//! concurrent approvals of the same proposal could both append (each still a valid, approved
//! entry referencing it) — see ARCHITECTURE.md, known gaps.

use super::common::{ApiResult, AppRef, require_admin, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::audit::{AuditDraft, AuditEvent, AuditKind};
use portcullis_core::id::TenantId;
use portcullis_store::AuditFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::LazyLock;

static APPROVING: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/audit/{seq}/amendments", post(propose))
        .route("/tenants/{tenant}/audit/amendments", get(list))
        .route(
            "/tenants/{tenant}/audit/amendments/{proposal}/approve",
            post(approve),
        )
        .route(
            "/tenants/{tenant}/audit/amendments/{proposal}/reject",
            post(reject),
        )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalIn {
    /// `correction` or `redaction`; checked by the server.
    pub kind: String,
    /// What is wrong (1–2000 characters).
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionIn {
    pub reason: Option<String>,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmendmentStatus {
    Pending,
    Approved,
    Rejected,
}

/// A proposal just made: its entry's sequence number and what it records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposed {
    pub proposal: i64,
    pub status: AmendmentStatus,
    /// The proposal entry's detail: target, amendment, note, proposer.
    pub detail: Value,
}

/// A proposal and, once decided, the entry that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmendmentView {
    pub proposal: i64,
    /// The proposal entry's detail: target, amendment, note, proposer.
    pub detail: Value,
    pub status: AmendmentStatus,
    pub decided_in: Option<i64>,
}

/// A decision just recorded, as the entry `entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendmentDecided {
    pub proposal: i64,
    pub status: AmendmentStatus,
    pub entry: i64,
}

async fn event_at(state: &AppState, tenant: &TenantId, seq: i64) -> Result<AuditEvent, ApiError> {
    if seq < 1 {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .audit_page(tenant, seq - 1, 1)
        .await?
        .into_iter()
        .find(|e| e.seq == seq)
        .ok_or(ApiError::NotFound)
}

async fn events_of(
    state: &AppState,
    tenant: &TenantId,
    kind: AuditKind,
) -> Result<Vec<AuditEvent>, ApiError> {
    let filter = AuditFilter {
        tenant: Some(tenant.clone()),
        kind: Some(kind.as_str().to_owned()),
        ..AuditFilter::default()
    };
    Ok(state.store.audit_query(&filter, None, 10_000).await?)
}

/// Propose a correction or redaction of one entry (admin). The proposal is itself an entry.
async fn propose(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, seq)): Path<(String, i64)>,
    Json(body): Json<ProposalIn>,
) -> ApiResult<Proposed> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    if !matches!(body.kind.as_str(), "correction" | "redaction") {
        return Err(ApiError::BadRequest(
            "kind is `correction` or `redaction`".into(),
        ));
    }
    let note = body.note.trim();
    if note.is_empty() || note.len() > 2_000 {
        return Err(ApiError::BadRequest(
            "a note of 1 to 2000 characters says what is wrong".into(),
        ));
    }
    let target = event_at(&state, &tenant.id, seq).await?;
    let mut draft = AuditDraft::new(tenant.id.clone(), ctx.actor(), AuditKind::AmendmentProposed)
        .resource(format!("audit:{seq}"));
    draft.decision = Some("hold".into());
    draft.detail = json!({
        "target_seq": target.seq, "target_hash": target.hash, "target_kind": target.draft.kind.as_str(),
        "amendment": body.kind, "note": note, "proposed_by": ctx.admin.name,
    });
    let event = state.store.append_audit(draft, state.clock.now()).await?;
    Ok(Json(Proposed {
        proposal: event.seq,
        status: AmendmentStatus::Pending,
        detail: event.draft.detail,
    }))
}

/// Proposals with their status: pending, approved (with the amending entry) or rejected.
async fn list(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<AmendmentView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let proposals = events_of(&state, &tenant.id, AuditKind::AmendmentProposed).await?;
    let mut decided = events_of(&state, &tenant.id, AuditKind::AuditAmended).await?;
    decided.extend(events_of(&state, &tenant.id, AuditKind::AmendmentRejected).await?);
    Ok(Json(
        proposals
            .into_iter()
            .map(|p| {
                let decision = decided
                    .iter()
                    .find(|d| d.draft.detail["proposal_seq"].as_i64() == Some(p.seq));
                AmendmentView {
                    proposal: p.seq,
                    detail: p.draft.detail,
                    status: match decision.map(|d| d.draft.kind) {
                        Some(AuditKind::AuditAmended) => AmendmentStatus::Approved,
                        Some(_) => AmendmentStatus::Rejected,
                        None => AmendmentStatus::Pending,
                    },
                    decided_in: decision.map(|d| d.seq),
                }
            })
            .collect(),
    ))
}

async fn approve(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
) -> ApiResult<AmendmentDecided> {
    decide(state, ctx, path, body, true).await
}

async fn reject(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
) -> ApiResult<AmendmentDecided> {
    decide(state, ctx, path, body, false).await
}

/// Approve or reject a proposal: by a human other than the proposer, once.
async fn decide(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, proposal)): Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
    approve: bool,
) -> ApiResult<AmendmentDecided> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let _serial = APPROVING.lock().await;
    let proposed = event_at(&state, &tenant.id, proposal).await?;
    if proposed.draft.kind != AuditKind::AmendmentProposed {
        return Err(ApiError::NotFound);
    }
    let detail = &proposed.draft.detail;
    if detail["proposed_by"].as_str() == Some(ctx.admin.name.as_str()) {
        return Err(ApiError::Forbidden(
            "the proposer may not decide their own audit amendment".into(),
        ));
    }
    for kind in [AuditKind::AuditAmended, AuditKind::AmendmentRejected] {
        if events_of(&state, &tenant.id, kind)
            .await?
            .iter()
            .any(|d| d.draft.detail["proposal_seq"].as_i64() == Some(proposal))
        {
            return Err(ApiError::Conflict(
                "this proposal was already decided".into(),
            ));
        }
    }
    let kind = if approve {
        AuditKind::AuditAmended
    } else {
        AuditKind::AmendmentRejected
    };
    let mut draft = AuditDraft::new(tenant.id.clone(), ctx.actor(), kind)
        .resource(format!("audit:{}", detail["target_seq"]));
    draft.decision = Some(if approve { "approve" } else { "deny" }.into());
    draft.detail = json!({
        "proposal_seq": proposal,
        "target_seq": detail["target_seq"],
        "target_hash": detail["target_hash"],
        "amendment": detail["amendment"],
        "note": detail["note"],
        "proposed_by": detail["proposed_by"],
        "decided_by": ctx.admin.name,
        "reason": body.and_then(|b| b.0.reason),
    });
    let event = state.store.append_audit(draft, state.clock.now()).await?;
    Ok(Json(AmendmentDecided {
        proposal,
        status: if approve {
            AmendmentStatus::Approved
        } else {
            AmendmentStatus::Rejected
        },
        entry: event.seq,
    }))
}
