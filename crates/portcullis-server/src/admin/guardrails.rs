//! Guardrails — the trust ladder: let a proven workflow run without asking, within a daily
//! count and cost and until it expires. Create, list, change the spec, move the mode, revoke,
//! and suggestions drawn from runs of identical approvals. Every guardrail reads as a sentence.
//!
//! Who may do what: creating a guardrail or widening one (mode up the ladder, or a spec that
//! lets more through) needs the admin role; narrowing or revoking one — anything that only
//! makes the gateway stricter — is open to approvers too.

use super::common::{ApiResult, AppRef, draft, require_admin, tenant_for, valid_name};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use portcullis_core::audit::AuditKind;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec, PastDecision, Suggestion, suggest};
use portcullis_core::id::{GuardrailId, TenantId};
use portcullis_store::{ApprovalFilter, ApprovalStatus, Guardrail};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route(
            "/tenants/{tenant}/guardrails",
            post(create_guardrail).get(list_guardrails),
        )
        .route(
            "/tenants/{tenant}/guardrails/suggestions",
            get(guardrail_suggestions),
        )
        .route(
            "/tenants/{tenant}/guardrails/{guardrail}",
            put(set_guardrail_spec),
        )
        .route(
            "/tenants/{tenant}/guardrails/{guardrail}/mode",
            post(set_guardrail_mode),
        )
        .route(
            "/tenants/{tenant}/guardrails/{guardrail}/revoke",
            post(revoke_guardrail),
        )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailIn {
    pub name: String,
    pub spec: GuardrailSpec,
    /// Where it starts on the ladder (default: approve-each).
    #[serde(default = "approve_each")]
    pub mode: GuardrailMode,
}

fn approve_each() -> GuardrailMode {
    GuardrailMode::ApproveEach
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeIn {
    pub mode: GuardrailMode,
}

/// `?threshold=`: how many identical approvals (at least 2, default 5) make a suggestion.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuggestionQuery {
    pub threshold: Option<usize>,
}

/// A guardrail as the API shows it, with its sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailView {
    pub id: GuardrailId,
    pub name: String,
    pub mode: GuardrailMode,
    pub spec: GuardrailSpec,
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// What it lets through, in plain English.
    pub english: String,
}

impl From<&Guardrail> for GuardrailView {
    fn from(g: &Guardrail) -> Self {
        Self {
            id: g.id.clone(),
            name: g.name.clone(),
            mode: g.mode,
            spec: g.spec.clone(),
            created_by: g.created_by.clone(),
            created_at: crate::clock::rfc3339(g.created_at),
            english: g.spec.english(g.mode),
        }
    }
}

/// A guardrail someone could create, from a run of approvals of the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestionView {
    pub spec: GuardrailSpec,
    /// How many approvals (and no denials) of this shape it is based on.
    pub approvals: usize,
    pub english: String,
}

impl From<Suggestion> for SuggestionView {
    fn from(s: Suggestion) -> Self {
        Self {
            spec: s.spec,
            approvals: s.approvals,
            english: s.english,
        }
    }
}

/// A spec must name a live connection, one of its tools and (if any) an agent of the tenant.
async fn check_spec(
    state: &AppState,
    tenant: &TenantId,
    spec: &GuardrailSpec,
) -> Result<(), ApiError> {
    spec.validate(state.clock.now())
        .map_err(ApiError::BadRequest)?;
    let connections = state.store.list_connections(tenant).await?;
    let connection = connections
        .iter()
        .find(|c| c.name == spec.connection && c.revoked_at.is_none())
        .ok_or_else(|| ApiError::BadRequest(format!("no connection `{}`", spec.connection)))?;
    let tools = state.store.tools(tenant, &connection.id).await?;
    if !tools.iter().any(|t| t.name == spec.tool) {
        return Err(ApiError::BadRequest(format!(
            "connection `{}` has no tool `{}`",
            spec.connection, spec.tool
        )));
    }
    if let Some(agent) = &spec.agent {
        // Matched against the calling agent's name: an id would be accepted and never match.
        let agents = state.store.list_agents(tenant).await?;
        if !agents.iter().any(|a| &a.name == agent) {
            return Err(ApiError::BadRequest(format!(
                "no agent named `{agent}` (a guardrail names its agent by name)"
            )));
        }
    }
    Ok(())
}

pub(crate) async fn create_guardrail(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GuardrailIn>,
) -> ApiResult<GuardrailView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    valid_name("guardrail", &body.name)?;
    check_spec(&state, &tenant.id, &body.spec).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::GuardrailCreated,
        format!("guardrail:{}", body.name),
    );
    audit.detail =
        json!({ "spec": body.spec, "mode": body.mode, "english": body.spec.english(body.mode) });
    let (guardrail, _) = state
        .store
        .create_guardrail(
            &tenant.id,
            &body.name,
            &body.spec,
            body.mode,
            &ctx.admin.name,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(GuardrailView::from(&guardrail)))
}

pub(crate) async fn list_guardrails(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<GuardrailView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let guardrails = state.store.guardrails(&tenant.id).await?;
    Ok(Json(guardrails.iter().map(GuardrailView::from).collect()))
}

/// A guardrail of the tenant, by id or by name.
async fn guardrail_in(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
) -> Result<Guardrail, ApiError> {
    let guardrails = state.store.guardrails(tenant).await?;
    guardrails
        .into_iter()
        .find(|g| g.id.as_str() == key || g.name == key)
        .ok_or(ApiError::NotFound)
}

/// Move a guardrail on the ladder. Up needs an admin; down (to approve-each, at once, for
/// the very next call) is open to approvers.
pub(crate) async fn set_guardrail_mode(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
    Json(body): Json<ModeIn>,
) -> ApiResult<GuardrailView> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let current = guardrail_in(&state, &tenant.id, &guardrail).await?;
    if body.mode.rank() > current.mode.rank() {
        require_admin(&ctx)?;
    }
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::GuardrailChanged,
        format!("guardrail:{}", current.id),
    );
    audit.detail = json!({ "from": current.mode, "to": body.mode, "english": current.spec.english(body.mode) });
    let (updated, _) = state
        .store
        .set_guardrail_mode(&tenant.id, &current.id, body.mode, audit, state.clock.now())
        .await?;
    Ok(Json(GuardrailView::from(&updated)))
}

/// Replace a guardrail's spec; one that lets more through needs an admin.
async fn set_guardrail_spec(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
    Json(spec): Json<GuardrailSpec>,
) -> ApiResult<GuardrailView> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let current = guardrail_in(&state, &tenant.id, &guardrail).await?;
    let widened = current.spec.is_widened_by(&spec);
    if widened {
        require_admin(&ctx)?;
    }
    check_spec(&state, &tenant.id, &spec).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::GuardrailChanged,
        format!("guardrail:{}", current.id),
    );
    audit.detail = json!({ "from": current.spec, "to": spec, "widened": widened, "english": spec.english(current.mode) });
    let (updated, _) = state
        .store
        .set_guardrail_spec(&tenant.id, &current.id, &spec, audit, state.clock.now())
        .await?;
    Ok(Json(GuardrailView::from(&updated)))
}

pub(crate) async fn revoke_guardrail(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
) -> ApiResult<GuardrailView> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let current = guardrail_in(&state, &tenant.id, &guardrail).await?;
    let audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::GuardrailRevoked,
        format!("guardrail:{}", current.id),
    );
    let (revoked, _) = state
        .store
        .revoke_guardrail(&tenant.id, &current.id, audit, state.clock.now())
        .await?;
    Ok(Json(GuardrailView::from(&revoked)))
}

/// Guardrails worth proposing: runs of at least `threshold` (default 5) decided approvals of
/// the same shape with no denial.
pub(crate) async fn guardrail_suggestions(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(q): Query<SuggestionQuery>,
) -> ApiResult<Vec<SuggestionView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let now = state.clock.now();
    let approvals = state
        .store
        .list_approvals(&ApprovalFilter {
            tenant: Some(tenant.id.clone()),
            status: None,
            now,
            limit: 1_000,
        })
        .await?;
    let agents = state.store.list_agents(&tenant.id).await?;
    let connections = state.store.list_connections(&tenant.id).await?;
    let history: Vec<PastDecision> = approvals
        .iter()
        .filter(|a| {
            matches!(
                a.status,
                ApprovalStatus::Approved | ApprovalStatus::Executed | ApprovalStatus::Denied
            )
        })
        .filter_map(|a| {
            Some(PastDecision {
                agent: agents.iter().find(|x| x.id == a.agent)?.name.clone(),
                connection: connections
                    .iter()
                    .find(|c| c.id == a.connection)?
                    .name
                    .clone(),
                tool: a.tool.clone(),
                arguments: a.action.arguments.clone(),
                approved: a.status != ApprovalStatus::Denied,
            })
        })
        .collect();
    let existing = state.store.guardrails(&tenant.id).await?;
    Ok(Json(
        suggest(&history, q.threshold.unwrap_or(5).max(2), now)
            .into_iter()
            .filter(|s| {
                !existing.iter().any(|g| {
                    g.spec.connection == s.spec.connection
                        && g.spec.tool == s.spec.tool
                        && g.spec.agent == s.spec.agent
                })
            })
            .map(SuggestionView::from)
            .collect(),
    ))
}
