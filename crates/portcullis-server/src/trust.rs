//! The admin API for policy and trust (merged into `/admin/v1`): tenant policy documents,
//! tool profiles, approver votes and batches, guardrails and their suggestions, the spend
//! ledger, agent owners and the kill switch.
//!
//! Who may do what: changing policy, profiles, owners, creating a guardrail or widening one
//! (mode up the ladder, or a spec that lets more through) and lifting a suspension need the
//! admin role. Anything that only makes the gateway stricter — narrowing or revoking a
//! guardrail, suspending an agent or a tenant — is open to approvers too.

use crate::admin::{
    ApiResult, AppRef, approval_for, connection_in, require_admin, tenant_for, tool_json,
    valid_name,
};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec, PastDecision, day_start, suggest};
use portcullis_core::id::*;
use portcullis_core::policy::Engine;
use portcullis_core::profile::ToolProfile;
use portcullis_store::*;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/policy", put(put_policy).get(get_policy))
        .route(
            "/tenants/{tenant}/connections/{connection}/tools/{tool}/profile",
            put(put_profile),
        )
        .route("/tenants/{tenant}/suspend", post(suspend_tenant))
        .route("/tenants/{tenant}/resume", post(resume_tenant))
        .route(
            "/tenants/{tenant}/agents/{agent}/suspend",
            post(suspend_agent),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}/resume",
            post(resume_agent),
        )
        .route("/tenants/{tenant}/agents/{agent}/owner", put(set_owner))
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
        .route("/tenants/{tenant}/spend", get(spend))
        .route(
            "/tenants/{tenant}/approvals/batch/preview",
            post(batch_preview),
        )
        .route("/tenants/{tenant}/approvals/batch", post(batch_approve))
        .route("/approvals/{approval}/votes", get(votes))
        .route("/approvals/{approval}/revert", post(propose_revert))
}

fn draft(tenant: &TenantId, ctx: &AdminContext, kind: AuditKind, resource: String) -> AuditDraft {
    AuditDraft::new(tenant.clone(), ctx.actor(), kind).resource(resource)
}

// ---- policy

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyIn {
    cedar: String,
    #[serde(default = "empty_object")]
    settings: Value,
}

fn empty_object() -> Value {
    json!({})
}

fn engine_json(engine: &Engine, version: Option<i64>) -> Value {
    let rules: Vec<Value> = engine
        .rules()
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "kind": r.kind, "point": r.point, "builtin": r.builtin,
                "reason": r.reason, "english": r.english(),
            })
        })
        .collect();
    json!({
        "version": version,
        "hash": engine.hash(),
        "cedar": engine.document().cedar,
        "settings": engine.settings(),
        "policies": rules,
    })
}

/// Replace a tenant's policy document. Validated against the schema first; a refused
/// document changes nothing and lists every problem.
async fn put_policy(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<PolicyIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    if body.cedar.len() > 1_000_000 {
        return Err(ApiError::BadRequest(
            "a policy document is at most 1 MB".into(),
        ));
    }
    let document =
        crate::engines::document(&body.cedar, &body.settings).map_err(ApiError::BadRequest)?;
    let engine = Engine::compile(&document).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut audit = draft(&tenant.id, &ctx, AuditKind::PolicyUpdated, "policy".into());
    audit.detail = json!({
        "hash": engine.hash(),
        "policies": engine.rules().iter().filter(|r| !r.builtin).map(|r| r.id.clone()).collect::<Vec<_>>(),
    });
    let settings = serde_json::to_value(&document.settings).unwrap_or_default();
    let (version, _) = state
        .store
        .put_policy(
            &tenant.id,
            &document.cedar,
            &settings,
            engine.hash(),
            &ctx.admin.name,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(engine_json(&engine, Some(version.version))))
}

async fn get_policy(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Value> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let version = state.store.current_policy(&tenant.id).await?;
    // The engine the gate uses (compiled once per document), not a second compilation.
    let engine = crate::policy::engine(&state, &tenant.id)
        .await?
        .map_err(ApiError::Conflict)?;
    Ok(Json(engine_json(&engine, version.map(|v| v.version))))
}

async fn put_profile(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
    Json(profile): Json<ToolProfile>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ToolProfiled,
        format!("tool:{}/{tool}", connection.id),
    );
    audit.detail = json!({ "profile": profile });
    let (record, _) = state
        .store
        .set_tool_profile(
            &tenant.id,
            &connection.id,
            &tool,
            &profile,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(tool_json(&record)))
}

// ---- kill switch and owners

async fn agent_in(state: &AppState, tenant: &TenantId, key: &str) -> Result<Agent, ApiError> {
    let agents = state.store.list_agents(tenant).await?;
    agents
        .into_iter()
        .find(|a| a.id.as_str() == key || a.name == key)
        .ok_or(ApiError::NotFound)
}

async fn suspend_tenant(
    state: State<AppRef>,
    ctx: AdminContext,
    tenant: Path<String>,
) -> ApiResult<Tenant> {
    tenant_switch(state, ctx, tenant, true).await
}

async fn resume_tenant(
    state: State<AppRef>,
    ctx: AdminContext,
    tenant: Path<String>,
) -> ApiResult<Tenant> {
    tenant_switch(state, ctx, tenant, false).await
}

async fn tenant_switch(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    suspended: bool,
) -> ApiResult<Tenant> {
    if !suspended {
        require_admin(&ctx)?;
    }
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let kind = if suspended {
        AuditKind::TenantSuspended
    } else {
        AuditKind::TenantResumed
    };
    let audit = draft(&tenant.id, &ctx, kind, format!("tenant:{}", tenant.id));
    let (tenant, _) = state
        .store
        .set_tenant_suspended(&tenant.id, suspended, audit, state.clock.now())
        .await?;
    Ok(Json(tenant))
}

async fn suspend_agent(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, String)>,
) -> ApiResult<Agent> {
    agent_switch(state, ctx, path, true).await
}

async fn resume_agent(
    state: State<AppRef>,
    ctx: AdminContext,
    path: Path<(String, String)>,
) -> ApiResult<Agent> {
    agent_switch(state, ctx, path, false).await
}

async fn agent_switch(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    suspended: bool,
) -> ApiResult<Agent> {
    if !suspended {
        require_admin(&ctx)?;
    }
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent = agent_in(&state, &tenant.id, &agent).await?;
    let kind = if suspended {
        AuditKind::AgentSuspended
    } else {
        AuditKind::AgentResumed
    };
    let audit = draft(&tenant.id, &ctx, kind, format!("agent:{}", agent.id));
    let (agent, _) = state
        .store
        .set_agent_suspended(&tenant.id, &agent.id, suspended, audit, state.clock.now())
        .await?;
    Ok(Json(agent))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerIn {
    owner: Option<String>,
}

async fn set_owner(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    Json(body): Json<OwnerIn>,
) -> ApiResult<Agent> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent = agent_in(&state, &tenant.id, &agent).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ConfigChanged,
        format!("agent:{}", agent.id),
    );
    audit.detail = json!({ "owner": body.owner });
    let (agent, _) = state
        .store
        .set_agent_owner(
            &tenant.id,
            &agent.id,
            body.owner.as_deref(),
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(agent))
}

// ---- guardrails

fn guardrail_json(g: &Guardrail) -> Value {
    json!({
        "id": g.id, "name": g.name, "mode": g.mode, "spec": g.spec,
        "created_by": g.created_by, "created_at": crate::clock::rfc3339(g.created_at),
        "english": g.spec.english(g.mode),
    })
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardrailIn {
    name: String,
    spec: GuardrailSpec,
    #[serde(default = "approve_each")]
    mode: GuardrailMode,
}

fn approve_each() -> GuardrailMode {
    GuardrailMode::ApproveEach
}

async fn create_guardrail(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GuardrailIn>,
) -> ApiResult<Value> {
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
    Ok(Json(guardrail_json(&guardrail)))
}

async fn list_guardrails(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<Value>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let guardrails = state.store.guardrails(&tenant.id).await?;
    Ok(Json(guardrails.iter().map(guardrail_json).collect()))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeIn {
    mode: GuardrailMode,
}

/// Move a guardrail on the ladder. Up needs an admin; down (to approve-each, at once, for
/// the very next call) is open to approvers.
async fn set_guardrail_mode(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
    Json(body): Json<ModeIn>,
) -> ApiResult<Value> {
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
    Ok(Json(guardrail_json(&updated)))
}

async fn set_guardrail_spec(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
    Json(spec): Json<GuardrailSpec>,
) -> ApiResult<Value> {
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
    Ok(Json(guardrail_json(&updated)))
}

async fn revoke_guardrail(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, guardrail)): Path<(String, String)>,
) -> ApiResult<Value> {
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
    Ok(Json(guardrail_json(&revoked)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestionQuery {
    threshold: Option<usize>,
}

/// Guardrails worth proposing: runs of at least `threshold` (default 5) decided approvals of
/// the same shape with no denial.
async fn guardrail_suggestions(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(q): Query<SuggestionQuery>,
) -> ApiResult<Vec<Value>> {
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
            .map(|s| json!(s))
            .collect(),
    ))
}

// ---- spend

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// The itemised ledger for a period (default: today, UTC) with totals per agent and per
/// workflow (guardrail), against the tenant's caps.
async fn spend(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(q): Query<SpendQuery>,
) -> ApiResult<Value> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let now = state.clock.now();
    let from = q.from.unwrap_or_else(|| day_start(now));
    let to = q.to.unwrap_or(now + 1);
    if to <= from {
        return Err(ApiError::BadRequest("`to` must be after `from`".into()));
    }
    let entries = state.store.ledger_entries(&tenant.id, from, to).await?;
    let agents = state.store.list_agents(&tenant.id).await?;
    let guardrails = state.store.guardrails(&tenant.id).await?;
    let mut by_agent = std::collections::BTreeMap::<String, (i64, i64)>::new();
    let mut by_workflow = std::collections::BTreeMap::<String, (i64, i64)>::new();
    let mut total = 0;
    for e in &entries {
        let agent = agents
            .iter()
            .find(|a| a.id == e.agent)
            .map_or_else(|| e.agent.to_string(), |a| a.name.clone());
        let workflow = match &e.guardrail {
            None => "approved".to_owned(),
            Some(id) => guardrails
                .iter()
                .find(|g| &g.id == id)
                .map_or_else(|| id.to_string(), |g| format!("guardrail {}", g.name)),
        };
        for (map, key) in [(&mut by_agent, agent), (&mut by_workflow, workflow)] {
            let slot = map.entry(key).or_default();
            slot.0 += 1;
            slot.1 += e.cost_cents;
        }
        total += e.cost_cents;
    }
    let caps = match crate::policy::engine(&state, &tenant.id).await? {
        Ok(engine) => json!(engine.settings().money),
        Err(problem) => json!({ "error": problem }),
    };
    let totals = |map: std::collections::BTreeMap<String, (i64, i64)>| -> Value {
        map.into_iter()
            .map(|(k, (runs, cents))| (k, json!({ "runs": runs, "cents": cents })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    Ok(Json(json!({
        "from": from, "to": to, "total_cents": total, "caps": caps,
        "by_agent": totals(by_agent), "by_workflow": totals(by_workflow),
        "entries": entries.iter().map(|e| json!({
            "time": crate::clock::rfc3339(e.time), "agent": e.agent, "guardrail": e.guardrail,
            "approval": e.approval, "connection": e.connection, "tool": e.tool,
            "cost_cents": e.cost_cents, "action_hash": e.action_hash,
        })).collect::<Vec<_>>(),
    })))
}

// ---- votes and batches

async fn votes(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let votes = state.store.votes(&approval.tenant, &approval.id).await?;
    Ok(Json(json!({
        "approval": approval.id,
        "status": approval.status,
        "rules": crate::gate::approve::approval_rules(&approval).ok(),
        "votes": votes.iter().map(|v| json!({
            "voter": v.voter, "vote": v.vote.as_str(), "reason": v.reason, "at": crate::clock::rfc3339(v.at),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    items: Vec<String>,
    #[serde(default)]
    batch_hash: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

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

/// What an approver reviews before approving a batch: each item, in order, and the hash
/// their approval must name.
async fn batch_preview(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<BatchIn>,
) -> ApiResult<Value> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let items = batch_items(&state, &ctx, &tenant, &body.items).await?;
    let hashes: Vec<String> = items.iter().map(|a| a.action_hash.clone()).collect();
    Ok(Json(json!({
        "batch_hash": portcullis_core::receipt::batch_hash(&hashes),
        "items": items.iter().map(|a| json!({
            "id": a.id, "summary": a.summary, "action_hash": a.action_hash, "status": a.status,
            "tool": a.tool, "arguments": a.action.arguments,
            "cost_cents": a.cost_cents, "before_state": a.before_state, "evidence": a.evidence,
        })).collect::<Vec<_>>(),
    })))
}

async fn batch_approve(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<BatchIn>,
) -> ApiResult<Vec<Approval>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let claimed = body.batch_hash.ok_or_else(|| {
        ApiError::BadRequest("name the batch_hash you reviewed (see batch/preview)".into())
    })?;
    let items = batch_items(&state, &ctx, &tenant, &body.items).await?;
    Ok(Json(
        crate::gate::approve::approve_batch(&state, &ctx, &tenant.id, items, &claimed, body.reason)
            .await?,
    ))
}

/// Propose the inverse of an executed write (see `gate::revert::propose`).
async fn propose_revert(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<Approval> {
    let original = approval_for(&state, &ctx, &id).await?;
    Ok(Json(
        crate::gate::revert::propose(&state, &ctx, original).await?,
    ))
}
