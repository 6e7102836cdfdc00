//! Edits to the audit trail — the fifth approval point. Nothing is ever rewritten: a
//! correction or redaction is proposed as a new entry referencing the original (its sequence
//! number and hash), and takes effect only as a further new entry once a *different* human
//! approves it. Proposals, approvals and rejections all live in the chain itself.
//!
//! Approvals of one proposal are serialised in this process; with several replicas two
//! concurrent approvals of the same proposal could both append (each still a valid, approved
//! entry referencing it) — see ARCHITECTURE.md, known gaps.

use crate::admin::{ApiResult, AppRef, require_admin, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use portcullis_core::audit::{AuditDraft, AuditEvent, AuditKind};
use portcullis_core::id::TenantId;
use portcullis_store::AuditFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::LazyLock;

static APPROVING: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

pub fn router() -> Router<AppRef> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalIn {
    /// `correction` or `redaction`.
    kind: String,
    note: String,
}

/// Propose a correction or redaction of one entry (admin). The proposal is itself an entry.
async fn propose(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, seq)): Path<(String, i64)>,
    Json(body): Json<ProposalIn>,
) -> ApiResult<Value> {
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
    Ok(Json(
        json!({ "proposal": event.seq, "status": "pending", "detail": event.draft.detail }),
    ))
}

/// Proposals with their status: pending, approved (with the amending entry) or rejected.
async fn list(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<Value>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let proposals = events_of(&state, &tenant.id, AuditKind::AmendmentProposed).await?;
    let mut decided = events_of(&state, &tenant.id, AuditKind::AuditAmended).await?;
    decided.extend(events_of(&state, &tenant.id, AuditKind::AmendmentRejected).await?);
    Ok(Json(
        proposals
            .iter()
            .map(|p| {
                let decision = decided
                    .iter()
                    .find(|d| d.draft.detail["proposal_seq"].as_i64() == Some(p.seq));
                json!({
                    "proposal": p.seq,
                    "detail": p.draft.detail,
                    "status": match decision.map(|d| d.draft.kind) {
                        Some(AuditKind::AuditAmended) => "approved",
                        Some(_) => "rejected",
                        None => "pending",
                    },
                    "decided_in": decision.map(|d| d.seq),
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionIn {
    reason: Option<String>,
}

async fn approve(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
) -> ApiResult<Value> {
    decide(state, ctx, path, body, true).await
}

async fn reject(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
) -> ApiResult<Value> {
    decide(state, ctx, path, body, false).await
}

/// Approve or reject a proposal: by a human other than the proposer, once.
async fn decide(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, proposal)): Path<(String, i64)>,
    body: Option<Json<DecisionIn>>,
    approve: bool,
) -> ApiResult<Value> {
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
    Ok(Json(
        json!({ "proposal": proposal, "status": if approve { "approved" } else { "rejected" }, "entry": event.seq }),
    ))
}
