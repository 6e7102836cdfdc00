//! The audit trail over the API: verify chains, write signed checkpoints on demand, and page
//! through a tenant's events. A human reads one tenant's chain, or — unscoped — all of them.
//! The chain operations themselves are `crate::audit`.

use super::common::{ApiResult, AppRef, TenantQuery, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::audit::AuditEvent;
use portcullis_core::id::TenantId;
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/audit/verify", get(verify_audit))
        .route("/audit/checkpoint", post(checkpoint_audit))
        .route("/audit/events", get(audit_events))
}

/// Every chain verified: `ok` only when each of them is intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub tenants: Vec<ChainVerification>,
}

/// One chain's verdict: intact (with its length, head and checkpoints) or the first problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChainVerification {
    // Listed first: only a broken chain names a problem, so reading it back is unambiguous.
    Broken {
        tenant: TenantId,
        /// Always false.
        ok: bool,
        problem: String,
    },
    Intact {
        tenant: TenantId,
        /// Always true.
        ok: bool,
        entries: i64,
        head: String,
        checkpoints: usize,
        /// The size of the last checkpoint in the witness log (0: none yet).
        #[serde(default)]
        witnessed: i64,
        /// Entries past it: what a database-level rewrite could still hide.
        #[serde(default)]
        unwitnessed: i64,
    },
}

impl ChainVerification {
    pub fn is_intact(&self) -> bool {
        matches!(self, Self::Intact { .. })
    }
}

/// The checkpoints written: chains already checkpointed at their size, or empty, are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub checkpoints: Vec<CheckpointView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    pub tenant: TenantId,
    pub size: i64,
    pub head: String,
}

/// `GET /audit/events`: one tenant's events after a sequence number, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventsQuery {
    pub tenant: Option<String>,
    /// Events after this sequence number (default 0: from the start).
    pub after: Option<i64>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
}

async fn verify_audit(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Verification> {
    let keys = [portcullis_core::note::NoteVerifier {
        name: portcullis_core::note::KEY_NAME.into(),
        key: state.keys.verifying_key(),
    }];
    let witness = [state.config.witness_file()];
    let mut reports = Vec::new();
    let scope = match (q.tenant.as_deref(), &ctx.admin.tenant) {
        (None, None) => None,
        (name, _) => Some(audit_scope(&state, &ctx, name).await?),
    };
    let only = scope.as_ref().and_then(|s| s.first());
    let verdicts =
        match crate::audit::verify_trails(&state.store, &keys, &witness, only, &|_| {}).await {
            Ok(verdicts) => verdicts,
            Err(crate::audit::VerifyError::Store(e)) => return Err(e.into()),
            Err(e) => {
                return Ok(Json(Verification {
                    ok: false,
                    tenants: vec![ChainVerification::Broken {
                        tenant: only.cloned().unwrap_or_else(TenantId::system),
                        ok: false,
                        problem: e.to_string(),
                    }],
                }));
            }
        };
    for verdict in verdicts {
        let tenant = verdict.tenant;
        match verdict.outcome {
            Ok(report) => reports.push(ChainVerification::Intact {
                tenant,
                ok: true,
                entries: report.entries,
                head: report.head_hash,
                checkpoints: report.checkpoints,
                witnessed: report.witnessed,
                unwitnessed: report.unwitnessed,
            }),
            Err(problem) => reports.push(ChainVerification::Broken {
                tenant,
                ok: false,
                problem,
            }),
        }
    }
    Ok(Json(Verification {
        ok: reports.iter().all(ChainVerification::is_intact),
        tenants: reports,
    }))
}

/// The chains this human may read: one tenant, or (for an unscoped human) all of them.
async fn audit_scope(
    state: &AppState,
    ctx: &AdminContext,
    tenant: Option<&str>,
) -> Result<Vec<TenantId>, ApiError> {
    match (tenant, &ctx.admin.tenant) {
        (Some(name), _) => Ok(vec![tenant_for(state, ctx, name).await?.id]),
        (None, Some(scoped)) => Ok(vec![scoped.clone()]),
        (None, None) => Ok(state.store.audit_tenants().await?),
    }
}

async fn checkpoint_audit(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Checkpoints> {
    let tenants = audit_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let mut written = Vec::new();
    for tenant in tenants {
        if let Some(cp) =
            crate::audit::checkpoint_in(&state, &tenant)
                .await
                .map_err(|e| match e {
                    crate::audit::CheckpointError::Store(e) => ApiError::from(e),
                    other => ApiError::Internal(other.to_string()),
                })?
        {
            written.push(CheckpointView {
                tenant,
                size: cp.body.size,
                head: cp.body.head_hash,
            });
        }
    }
    Ok(Json(Checkpoints {
        checkpoints: written,
    }))
}

async fn audit_events(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<AuditEvent>> {
    let tenants = audit_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let [tenant] = tenants.as_slice() else {
        return Err(ApiError::BadRequest("name one tenant with ?tenant=".into()));
    };
    Ok(Json(
        state
            .store
            .audit_page(
                tenant,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}
