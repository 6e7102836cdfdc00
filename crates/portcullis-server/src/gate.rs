//! The gate: what an agent may see and call, and what happens to each call — allow and
//! forward, hold as a durable approval request, execute an approved action exactly once, or
//! deny. Also the approvers' side: approve (signing a receipt) or deny.
//!
//! INVARIANT: the audit event for a decision is durable before anything reaches the upstream
//! and before the agent gets an answer; if it cannot be written, nothing is sent upstream.

use crate::auth::{AdminContext, AgentContext};
use crate::error::ApiError;
use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::{AgentSide, UpstreamError};
use portcullis_core::action::{Action, canonical_json};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::decision::{Decision, DecisionInput, DefinitionStatus, Permit, decide};
use portcullis_core::guardrail::GuardrailMode;
use portcullis_core::id::{ApprovalId, ReceiptId, TenantId};
use portcullis_core::policy::{
    ApproverRule, CallFacts, Engine, Evaluation, Point, VoterIdentity, refuse_identity,
    refuse_voter, satisfied,
};
use portcullis_core::receipt::{self, ReceiptBody, SignedReceipt};
use portcullis_store::{
    Admin, Approval, ApprovalExtras, ApprovalStatus, Charge, ChargeLimit, Connection,
    ExecutionOutcome, Guardrail, HoldOutcome, NewApproval, StoreError, ToolRecord, Vote,
};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock as Content, JsonObject, Tool, ToolAnnotations,
};
use serde_json::json;
use std::sync::Arc;

/// Separator between connection and tool in the names agents see: `crm__send_email`.
/// Connection names cannot contain `_`, so the first `__` splits unambiguously.
pub const NAMESPACE_SEPARATOR: &str = "__";

fn store_error(e: StoreError) -> McpError {
    tracing::error!(error = %e, "store error on the MCP path");
    McpError::internal_error("the gateway cannot reach its store; nothing was done", None)
}

/// Every (connection, tool) this agent may see: active connection, granted, in token scope.
async fn visible_tools(
    state: &AppState,
    ctx: &AgentContext,
) -> Result<Vec<(Connection, ToolRecord)>, StoreError> {
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for connection in state
        .cache
        .connections(&state.store, &ctx.tenant)
        .await?
        .iter()
    {
        if connection.revoked_at.is_some() {
            continue;
        }
        let granted: Vec<&str> = grants
            .iter()
            .filter(|g| g.connection == connection.id)
            .map(|g| g.tool.as_str())
            .collect();
        if granted.is_empty() {
            continue;
        }
        for tool in state
            .cache
            .tools(&state.store, &ctx.tenant, &connection.id)
            .await?
            .iter()
        {
            if (granted.contains(&"*") || granted.contains(&tool.name.as_str()))
                && ctx.scope_covers(&connection.name, &tool.name)
            {
                out.push((connection.clone(), tool.clone()));
            }
        }
    }
    Ok(out)
}

fn agent_tool(connection: &Connection, tool: &ToolRecord) -> Tool {
    let schema = match &tool.definition.input_schema {
        serde_json::Value::Object(map) => map.clone(),
        _ => JsonObject::new(),
    };
    let mut out = Tool::new_with_raw(
        format!("{}{NAMESPACE_SEPARATOR}{}", connection.name, tool.name),
        tool.definition.description.clone().map(Into::into),
        Arc::new(schema),
    );
    // Agents see the gateway's classification, not the upstream's claims.
    let read_only = !tool.effect.is_effect() && !tool.definition_changed();
    out = out.with_annotations(ToolAnnotations::new().read_only(read_only));
    out
}

/// `tools/list`: only granted tools, namespaced per connection. Audited.
pub async fn list_tools(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<String>,
) -> Result<Vec<Tool>, McpError> {
    let visible = visible_tools(state, ctx).await.map_err(store_error)?;
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolsListed)
        .detail(json!({ "count": visible.len() }));
    draft.session = session;
    state
        .store
        .append_audit(draft, state.clock.now())
        .await
        .map_err(store_error)?;
    Ok(visible.iter().map(|(c, t)| agent_tool(c, t)).collect())
}

/// One agent tool call.
pub struct CallRequest {
    /// The client declared the tasks extension: answer holds with a task.
    pub tasks: bool,
    pub name: String,
    pub arguments: Option<JsonObject>,
    pub session: Option<String>,
    /// The agent's stated reason or plan (`_meta` `dev.portcullis/reason`), shown to approvers.
    pub stated_reason: Option<String>,
    pub agent: AgentSide,
}

/// The `_meta` key an agent states its reason or plan under.
pub const REASON_META_KEY: &str = "dev.portcullis/reason";

fn result_json(value: serde_json::Value, is_error: bool) -> CallToolResult {
    let text = Content::text(serde_json::to_string_pretty(&value).unwrap_or_default());
    let mut result = if is_error {
        CallToolResult::error(vec![text])
    } else {
        CallToolResult::success(vec![text])
    };
    result.structured_content = Some(value);
    result
}

fn denied(reasons: &[String]) -> CallToolResult {
    result_json(
        json!({ "status": "denied", "executed": false, "reasons": reasons }),
        true,
    )
}

/// The answer to a held call: an MCP task when the client supports the tasks extension (the
/// task is the approval request), otherwise a structured `pending_approval` result.
fn held(approval: &Approval, tasks: bool, now: i64) -> CallToolResponse {
    if tasks {
        CallToolResponse::Task(crate::tasks::created(approval, now))
    } else {
        pending(approval).into()
    }
}

fn pending(approval: &Approval) -> CallToolResult {
    result_json(
        json!({
            "status": "pending_approval",
            "executed": false,
            "approval_id": approval.id,
            "expires_at": crate::clock::rfc3339(approval.expires_at),
            "summary": approval.summary,
            "reasons": approval.reasons,
            "message": format!(
                "Not executed: this action is held for human approval ({}). Re-send the identical call after it is approved to execute it once; a call with any changed argument is a new request.",
                approval.id
            ),
        }),
        true,
    )
}

/// The audit skeleton shared by every event about one call.
fn call_draft(state: &AppState, caller: &Caller, action: &Action, kind: AuditKind) -> AuditDraft {
    let canonical = canonical_json(&action.arguments).unwrap_or_default();
    let mut draft = AuditDraft::new(caller.tenant.clone(), caller.recorded_actor(), kind)
        .resource(format!("tool:{}/{}", action.connection, action.tool));
    // Sessionless (2026-07-28) calls are recorded under the agent's session key; every call
    // also carries the agent as its actor, which is where `policy::session_facts` finds the
    // reads that escalate a later send from any session.
    draft.session = Some(caller.session_key());
    draft.args_hash = Some(state.keys.keyed_hash(&caller.tenant, &canonical));
    draft
}

/// What approvers read in lists: every argument, the profile's important ones first.
fn summary_of(
    effect: portcullis_core::effect::EffectClass,
    connection: &str,
    tool: &ToolRecord,
    arguments: &serde_json::Value,
) -> String {
    portcullis_core::summary::summary(
        effect,
        connection,
        &tool.name,
        arguments,
        &tool.profile.summary_keys,
    )
}

/// The one answer for every tool name the agent may not use.
fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool `{name}`"), None)
}

/// The connection and tool a call names, when this agent may see them; otherwise why not (for
/// the audit trail only: the agent is told "unknown tool" whatever the reason).
async fn resolve_visible(
    state: &AppState,
    ctx: &AgentContext,
    connection_name: &str,
    tool_name: &str,
) -> Result<(Option<Connection>, Option<ToolRecord>, &'static str), StoreError> {
    let connections = state.cache.connections(&state.store, &ctx.tenant).await?;
    let Some(connection) = connections
        .iter()
        .find(|c| c.name == connection_name && c.revoked_at.is_none())
        .cloned()
    else {
        return Ok((None, None, "no such connection"));
    };
    let tools = state
        .cache
        .tools(&state.store, &ctx.tenant, &connection.id)
        .await?;
    let Some(tool) = tools.iter().find(|t| t.name == tool_name).cloned() else {
        return Ok((None, None, "no such tool"));
    };
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    if !grants
        .iter()
        .any(|g| g.connection == connection.id && (g.tool == "*" || g.tool == tool.name))
    {
        return Ok((None, None, "not granted to this agent"));
    }
    if !ctx.scope_covers(&connection.name, &tool.name) {
        return Ok((None, None, "outside this token's scope"));
    }
    Ok((Some(connection), Some(tool), "visible"))
}

/// `tools/call`.
pub async fn call_tool(
    state: &AppState,
    ctx: &AgentContext,
    req: CallRequest,
) -> Result<CallToolResponse, McpError> {
    let now = state.clock.now();
    let tasks = req.tasks;
    let Some((connection_name, tool_name)) = req.name.split_once(NAMESPACE_SEPARATOR) else {
        return Err(unknown_tool(&req.name));
    };
    // INVARIANT: resolve only among what this agent may see (a live connection, a tool
    // granted to the agent, inside the token's scope). Anything else — another tenant's name,
    // a tool that does not exist, an ungranted or out-of-scope tool — gets the one answer
    // "unknown tool", so an agent learns nothing about what it may not use.
    let (connection, tool, why_unknown) = resolve_visible(state, ctx, connection_name, tool_name)
        .await
        .map_err(store_error)?;
    let (Some(connection), Some(tool)) = (connection, tool) else {
        let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolCall)
            .resource(format!("tool:{}", req.name));
        draft.session.clone_from(&req.session);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "reasons": ["unknown tool"], "why": why_unknown });
        state
            .store
            .append_audit(draft, now)
            .await
            .map_err(store_error)?;
        state.metrics.decision("deny");
        return Err(unknown_tool(&req.name));
    };
    let caller = Caller::of(ctx, req.session.clone(), req.stated_reason.is_some());
    let action = Action {
        tenant: ctx.tenant.clone(),
        connection: connection.id.clone(),
        tool: tool.name.clone(),
        tool_definition_hash: tool.current_hash.clone(),
        arguments: serde_json::Value::Object(req.arguments.clone().unwrap_or_default()),
    };
    let action_hash = action.hash().map_err(|e| {
        McpError::invalid_params(format!("arguments cannot be canonicalised: {e}"), None)
    })?;
    let definition = if tool.definition_changed() {
        DefinitionStatus::Changed
    } else {
        DefinitionStatus::Accepted
    };
    let effect = definition.effective(tool.effect);
    let world = effect.is_effect();
    let facts = gather(
        state,
        &caller,
        &connection,
        &tool,
        &action,
        effect,
        Guardrails::Consider,
        now,
    )
    .await
    .map_err(store_error)?;
    let mut evaluation = evaluate(
        &facts,
        &caller,
        &connection.name,
        &tool,
        &action,
        effect,
        definition,
        now,
    );
    // Resolution above admits only granted, in-scope tools of live connections.
    let mut input = DecisionInput {
        granted: true,
        in_token_scope: true,
        connection_active: connection.revoked_at.is_none(),
        effect,
        guardrail: facts.guardrail.as_ref().map(|g| g.id.clone()),
    };
    let mut decision = decide(action.clone(), &input, &evaluation);
    // Why no guardrail let this call run, when one matched but its day is used up.
    let mut extra_reasons = facts.guardrails_exhausted.clone();
    // A guardrail lets the call run only if today's count and cost still admit it: the charge
    // is the exact, concurrency-safe check. Over the limit, the call is decided again without
    // the guardrail (and so held).
    if let (Decision::Allow(permit), Some(guardrail)) = (&decision, &facts.guardrail)
        && permit.guardrail().is_some()
    {
        let charge = Charge {
            tenant: ctx.tenant.clone(),
            agent: ctx.agent.clone(),
            guardrail: Some(guardrail.id.clone()),
            approval: None,
            connection: connection.id.clone(),
            tool: tool.name.clone(),
            cost_cents: facts.cost_cents,
            action_hash: action_hash.clone(),
        };
        let limit = ChargeLimit {
            since: portcullis_core::guardrail::day_start(now),
            max_count: Some(i64::from(guardrail.spec.max_per_day)),
            max_cents: Some(guardrail.spec.max_cost_cents_per_day),
        };
        let admitted = match state.store.charge(&charge, Some(&limit), now).await {
            Ok(admitted) => admitted,
            // Revoked since it was read: it covers nothing any more.
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(store_error(e)),
        };
        if !admitted {
            let (runs, cents) = state
                .store
                .spend_since(&ctx.tenant, limit.since, None, Some(&guardrail.id))
                .await
                .map_err(store_error)?;
            extra_reasons.push(
                crate::policy::exhausted_reason(guardrail, runs, cents, facts.cost_cents)
                    .unwrap_or_else(|| format!("guardrail `{}` was revoked", guardrail.name)),
            );
            let mut without = facts.clone();
            without.guardrail = None;
            evaluation = evaluate(
                &without,
                &caller,
                &connection.name,
                &tool,
                &action,
                effect,
                definition,
                now,
            );
            input.guardrail = None;
            decision = decide(action.clone(), &input, &evaluation);
        }
    }
    state.metrics.decision(decision.outcome().as_str());
    // Names only: arguments and results never reach the log, at any level.
    tracing::debug!(tenant = %ctx.tenant_name, tool = %req.name, outcome = decision.outcome().as_str(), "tool call decided");
    let policy_detail = json!({
        "policies": evaluation.policies,
        "policy_hash": evaluation.policy_hash,
        "points": evaluation.points,
    });
    match decision {
        Decision::Deny { reasons } => {
            let mut draft = call_draft(state, &caller, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.detail = json!({ "effect": effect, "reasons": reasons, "policy": policy_detail });
            state
                .store
                .append_audit(draft, now)
                .await
                .map_err(store_error)?;
            Ok(denied(&reasons).into())
        }
        Decision::Allow(permit) => {
            let guardrail = permit.guardrail().cloned();
            let mut draft = call_draft(state, &caller, &action, AuditKind::ToolCall);
            draft.decision = Some("allow".into());
            draft.detail =
                json!({ "effect": effect, "policy": policy_detail, "guardrail": guardrail });
            state
                .store
                .append_audit(draft, now)
                .await
                .map_err(store_error)?;
            if let Some(g) = facts.guardrail.as_ref().filter(|_| guardrail.is_some())
                && g.mode == GuardrailMode::AutoWithNotice
            {
                let mut notice = call_draft(state, &caller, &action, AuditKind::Notice);
                notice.detail = json!({
                    "guardrail": g.id,
                    "guardrail_name": g.name,
                    "summary": summary_of(effect, &connection.name, &tool, &action.arguments),
                    "cost_cents": facts.cost_cents,
                });
                state
                    .store
                    .append_audit(notice, now)
                    .await
                    .map_err(store_error)?;
            }
            Ok(forward(state, *permit, Some(req.agent)).await.0.into())
        }
        Decision::Hold { mut reasons } => {
            reasons.extend(extra_reasons);
            // INVARIANT: one live request per action. An identical call joins the request
            // that already decides it (approved first: a retry executes it), and the store's
            // unique index makes concurrent first calls join one new request.
            let live = state
                .store
                .live_approval_for(&ctx.tenant, &ctx.agent, &action_hash, now)
                .await
                .map_err(store_error)?;
            let approval = match live {
                Some(approval) => approval,
                None => {
                    let expires_at = now
                        + (state.config.approvals.default_ttl_secs as i64 * 1000)
                            .min(portcullis_core::MAX_APPROVAL_TTL_MS);
                    let id = ApprovalId::generate();
                    let rules = facts.engine.approver_rules(&evaluation);
                    let mut draft = call_draft(state, &caller, &action, AuditKind::Hold);
                    draft.decision = Some("hold".into());
                    draft.detail = json!({ "effect": effect, "reasons": reasons, "approval": id, "action_hash": action_hash, "policy": policy_detail });
                    let before_state = if world {
                        crate::preview::capture(
                            state,
                            &ctx.tenant,
                            &connection,
                            &tool,
                            &action.arguments,
                            Some(&req.agent),
                        )
                        .await
                    } else {
                        None
                    };
                    let extras = ApprovalExtras {
                        rules: serde_json::to_value(&rules).unwrap_or_default(),
                        evidence: json!({
                            "reads": facts.session.evidence,
                            "read_classes": facts.session.classes,
                            "stated_reason": req.stated_reason,
                            "policies": evaluation.policies,
                            "policy_hash": evaluation.policy_hash,
                        }),
                        cost_cents: facts.cost_cents,
                        before_state,
                    };
                    let new = NewApproval {
                        id,
                        tenant: ctx.tenant.clone(),
                        agent: ctx.agent.clone(),
                        session: req.session.clone(),
                        summary: summary_of(effect, &connection.name, &tool, &action.arguments),
                        action: action.clone(),
                        action_hash: action_hash.clone(),
                        effect,
                        reasons,
                        expires_at,
                        revert_of: None,
                    };
                    match state
                        .store
                        .create_approval_with(new, extras, draft, now)
                        .await
                        .map_err(store_error)?
                    {
                        HoldOutcome::Created(approval, _) => {
                            state.metrics.holds.inc();
                            tracing::info!(approval = %approval.id, tenant = %ctx.tenant_name, "action held for approval");
                            return Ok(held(&approval, tasks, now));
                        }
                        // A concurrent identical call stored its request first: join it.
                        HoldOutcome::Joined(approval) => approval,
                    }
                }
            };
            match approval.status {
                ApprovalStatus::Pending => {
                    let mut draft = call_draft(state, &caller, &action, AuditKind::ToolCall);
                    draft.decision = Some("hold".into());
                    draft.detail =
                        json!({ "effect": effect, "approval": approval.id, "status": "pending" });
                    state
                        .store
                        .append_audit(draft, now)
                        .await
                        .map_err(store_error)?;
                    Ok(held(&approval, tasks, now))
                }
                ApprovalStatus::Denied => {
                    let reason = format!(
                        "denied by {}: {}",
                        approval.decided_by.as_deref().unwrap_or("an approver"),
                        approval
                            .decision_reason
                            .as_deref()
                            .unwrap_or("no reason given")
                    );
                    let mut draft = call_draft(state, &caller, &action, AuditKind::ToolCall);
                    draft.decision = Some("deny".into());
                    draft.detail =
                        json!({ "effect": effect, "approval": approval.id, "status": "denied" });
                    state
                        .store
                        .append_audit(draft, now)
                        .await
                        .map_err(store_error)?;
                    Ok(denied(&[reason]).into())
                }
                ApprovalStatus::Approved => {
                    execute_approved(state, &caller, Some(req.agent), action, approval)
                        .await
                        .map(Into::into)
                        .map_err(store_error)
                }
                other => {
                    // Not reachable through the lookups above; refuse rather than guess.
                    let reason = format!("approval {} is {}", approval.id, other.as_str());
                    Ok(denied(&[reason]).into())
                }
            }
        }
    }
}

/// Everything the policy engine needs beyond the call itself, read once per call.
#[derive(Clone)]
struct Facts {
    engine: Arc<Engine>,
    /// Set when the tenant's policy cannot be used: every call is denied with this reason.
    engine_problem: Option<String>,
    cost_cents: i64,
    cost_problem: Option<String>,
    spent_today_cents: i64,
    agent_spent_today_cents: i64,
    session: Arc<crate::policy::SessionFacts>,
    guardrail: Option<Guardrail>,
    /// Matching guardrails whose daily count or budget is used up, one sentence each.
    guardrails_exhausted: Vec<String>,
}

/// Whether a guardrail may let the call run without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guardrails {
    /// An agent's own call: a covering guardrail may let it run.
    Consider,
    /// Work a person proposed (a revert): always decided by people, never by a guardrail.
    Ignore,
}

#[allow(clippy::too_many_arguments)]
async fn gather(
    state: &AppState,
    caller: &Caller,
    connection: &Connection,
    tool: &ToolRecord,
    action: &Action,
    effect: portcullis_core::effect::EffectClass,
    guardrails: Guardrails,
    now: i64,
) -> Result<Facts, StoreError> {
    let (engine, engine_problem) = match crate::policy::engine(state, &caller.tenant).await? {
        Ok(engine) => (engine, None),
        // Every call is denied with `problem`; the built-ins only fill the evaluation's shape.
        Err(problem) => (crate::policy::builtin(), Some(problem)),
    };
    let (cost_cents, cost_problem) = match tool.profile.cost_of(&action.arguments) {
        Ok(cost) => (cost, None),
        Err(problem) => (0, Some(problem)),
    };
    // Session history, spend and guardrails matter to world-changing calls; reads and drafts
    // skip these lookups (their `context.session` is empty, see the schema).
    let mut facts = Facts {
        engine,
        engine_problem,
        cost_cents,
        cost_problem,
        spent_today_cents: 0,
        agent_spent_today_cents: 0,
        session: Arc::default(),
        guardrail: None,
        guardrails_exhausted: Vec::new(),
    };
    if effect.is_effect() {
        facts.session = Arc::new(crate::policy::session_facts(state, caller, now).await?);
        let since = portcullis_core::guardrail::day_start(now);
        facts.spent_today_cents = state
            .store
            .spend_since(&caller.tenant, since, None, None)
            .await?
            .1;
        facts.agent_spent_today_cents = state
            .store
            .spend_since(&caller.tenant, since, Some(&caller.agent), None)
            .await?
            .1;
        if guardrails == Guardrails::Consider {
            let cover = crate::policy::covering_guardrail(
                state,
                caller,
                &connection.name,
                &tool.name,
                &action.arguments,
                cost_cents,
                now,
            )
            .await?;
            facts.guardrail = cover.covering;
            facts.guardrails_exhausted = cover.exhausted;
        }
    }
    Ok(facts)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    facts: &Facts,
    caller: &Caller,
    connection: &str,
    tool: &ToolRecord,
    action: &Action,
    effect: portcullis_core::effect::EffectClass,
    definition: DefinitionStatus,
    now: i64,
) -> Evaluation {
    let problem = facts
        .engine_problem
        .clone()
        .or_else(|| facts.cost_problem.clone());
    if let Some(problem) = problem {
        return Evaluation {
            outcome: portcullis_core::decision::Outcome::Deny,
            policies: Vec::new(),
            reasons: vec![problem],
            points: Vec::new(),
            policy_hash: facts.engine.hash().to_owned(),
        };
    }
    facts.engine.evaluate(&CallFacts {
        tenant: &caller.tenant_name,
        agent: &caller.agent_name,
        agent_owner: caller.agent_owner.as_deref(),
        connection,
        tool: &tool.name,
        effect,
        profile: &tool.profile,
        arguments: &action.arguments,
        cost_cents: facts.cost_cents,
        spent_today_cents: facts.spent_today_cents,
        agent_spent_today_cents: facts.agent_spent_today_cents,
        session_read_classes: &facts.session.classes,
        session_reads: facts.session.reads,
        has_session: caller.session.is_some(),
        guardrail: facts.guardrail.as_ref().map(|g| (g.id.as_str(), g.mode)),
        definition_changed: definition == DefinitionStatus::Changed,
        stated_reason: caller.stated_reason,
        now,
    })
}

/// An approved action: verify its receipt, consume the nonce together with the `execute`
/// audit event, then call the upstream exactly once and record what it produced. `agent` is
/// the calling agent's request (a retried call or a task), or `None` when the gateway runs the
/// action for a person (an approved revert).
async fn execute_approved(
    state: &AppState,
    caller: &Caller,
    agent: Option<AgentSide>,
    action: Action,
    approval: Approval,
) -> Result<CallToolResult, StoreError> {
    let now = state.clock.now();
    let refuse = |reason: String| {
        let mut draft = call_draft(state, caller, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [reason.clone()] });
        (draft, reason)
    };
    let Some(signed) = approval.receipt.as_ref() else {
        let (draft, reason) = refuse("approved request has no receipt".into());
        state.store.append_audit(draft, now).await?;
        return Ok(denied(&[reason]));
    };
    let permit = match receipt::verify(signed, &state.keys.verifying_key(), action.clone(), now) {
        Ok(permit) => permit,
        Err(e) => {
            tracing::warn!(approval = %approval.id, error = %e, "receipt refused");
            let (draft, reason) = refuse(format!("approval receipt refused: {e}"));
            state.store.append_audit(draft, now).await?;
            state
                .metrics
                .executions
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "refused" })
                .inc();
            return Ok(denied(&[reason]));
        }
    };
    let approved_by = permit
        .approval()
        .expect("verified permits carry their receipt")
        .clone();
    // Redeeming spends the approval; with no upstream to send to (crashed, restarting) that
    // would burn it without executing anything. Keep it for a retry instead.
    if !matches!(
        state.upstreams.status(&action.connection),
        crate::upstream::Status::Ready { .. }
    ) {
        let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
        draft.decision = Some("hold".into());
        draft.detail = json!({ "approval": approval.id, "status": "upstream_unavailable" });
        state.store.append_audit(draft, now).await?;
        return Ok(result_json(
            json!({ "status": "upstream_unavailable", "executed": false, "approval_id": approval.id,
                    "message": "The upstream is not connected; nothing was done and the approval is kept. Re-send the identical call once it is back." }),
            true,
        ));
    }
    if let Some(before) = &approval.before_state
        && let Err(reason) =
            check_before_state(state, caller, &action, before, agent.as_ref()).await
    {
        let (draft, reason) = refuse(reason);
        state.store.append_audit(draft, now).await?;
        return Ok(result_json(
            json!({ "status": "stale", "executed": false, "approval_id": approval.id, "reasons": [reason],
                    "message": "Not executed: the target changed since this action was approved. Send the call again to request a fresh approval once this one expires." }),
            true,
        ));
    }
    let mut draft = call_draft(state, caller, &action, AuditKind::Execute);
    draft.decision = Some("allow".into());
    draft.receipt_id = Some(approved_by.receipt_id.to_string());
    draft.detail = json!({ "approval": approval.id, "approver": approved_by.approver, "revert_of": approval.revert_of });
    match state
        .store
        .redeem_receipt(
            &caller.tenant,
            &approval.id,
            &approved_by.receipt_id,
            &approved_by.nonce,
            draft,
            now,
        )
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            // Another request redeemed it first (or it is no longer redeemable): this call is
            // refused, and like every decision that refusal is recorded before the answer.
            let mut draft = call_draft(state, caller, &action, AuditKind::ToolCall);
            draft.decision = Some("deny".into());
            draft.receipt_id = Some(approved_by.receipt_id.to_string());
            draft.detail = json!({ "approval": approval.id, "status": "already_executed" });
            state.store.append_audit(draft, state.clock.now()).await?;
            return Ok(result_json(
                json!({ "status": "already_executed", "executed": false, "approval_id": approval.id,
                        "message": "This approval was already used; an approval executes its action once. Send the call again to request a new approval." }),
                true,
            ));
        }
        Err(e) => return Err(e),
    }
    // The spend ledger records what ran (reverts included); an approved call is not limited
    // by a guardrail.
    let charge = Charge {
        tenant: caller.tenant.clone(),
        agent: caller.agent.clone(),
        guardrail: None,
        approval: Some(approval.id.clone()),
        connection: action.connection.clone(),
        tool: action.tool.clone(),
        cost_cents: approval.cost_cents,
        action_hash: approval.action_hash.clone(),
    };
    if let Err(e) = state.store.charge(&charge, None, now).await {
        tracing::error!(error = %e, approval = %approval.id, "could not record an approved call's spend");
    }
    let (result, outcome) = forward(state, permit, agent).await;
    let mut draft = call_draft(state, caller, &action, AuditKind::ExecutionResult);
    draft.receipt_id = Some(approved_by.receipt_id.to_string());
    draft.detail = json!({
        "approval": approval.id,
        "outcome": outcome,
        "upstream_error": outcome != ExecutionOutcome::Ok,
    });
    if let Err(e) = state
        .store
        .record_outcome(
            &caller.tenant,
            &approval.id,
            outcome,
            draft,
            state.clock.now(),
        )
        .await
    {
        // The `execute` event is already durable; without a recorded outcome the approval is
        // reported as `unknown` by the sweep (never re-run).
        tracing::error!(error = %e, approval = %approval.id, "could not record an execution's outcome");
    }
    Ok(result)
}

/// Read the target again and compare with the state captured when the call was held.
async fn check_before_state(
    state: &AppState,
    caller: &Caller,
    action: &Action,
    before: &serde_json::Value,
    agent: Option<&AgentSide>,
) -> Result<(), String> {
    let connection = state
        .store
        .connection(&caller.tenant, &action.connection)
        .await
        .map_err(|_| "the connection is gone".to_owned())?;
    let tool = state
        .store
        .tool(&caller.tenant, &action.connection, &action.tool)
        .await
        .map_err(|_| "the tool is gone".to_owned())?;
    crate::preview::still_current(
        state,
        &caller.tenant,
        &connection,
        &tool,
        &action.arguments,
        before,
        agent,
    )
    .await
}

/// Run an approved request reached through its task (`tasks/get`) rather than a retried call.
/// The stored action must still be callable exactly as approved: its connection active, the
/// tool's current definition the approved one, the agent still granted and in scope.
pub async fn execute_held(
    state: &AppState,
    ctx: &AgentContext,
    approval: Approval,
    agent: AgentSide,
    session: Option<String>,
) -> Result<CallToolResult, McpError> {
    let caller = Caller::of(ctx, session, false);
    let action = approval.action.clone();
    let connection = state
        .store
        .connection(&ctx.tenant, &action.connection)
        .await;
    let tool = state
        .store
        .tool(&ctx.tenant, &action.connection, &action.tool)
        .await;
    let grants = state
        .store
        .grants_for_agent(&ctx.tenant, &ctx.agent)
        .await
        .map_err(store_error)?;
    let problem = match (&connection, &tool) {
        (Err(StoreError::NotFound), _) | (_, Err(StoreError::NotFound)) => {
            Some("the tool no longer exists")
        }
        (Err(_), _) | (_, Err(_)) => {
            return Err(store_error(StoreError::Unavailable("lookup failed".into())));
        }
        (Ok(c), _) if c.revoked_at.is_some() => Some("the connection was revoked"),
        (_, Ok(t)) if t.current_hash != action.tool_definition_hash => {
            Some("the tool's definition changed since approval")
        }
        (Ok(c), Ok(t))
            if !grants
                .iter()
                .any(|g| g.connection == c.id && (g.tool == "*" || g.tool == t.name)) =>
        {
            Some("the tool is no longer granted to this agent")
        }
        (Ok(c), Ok(t)) if !ctx.scope_covers(&c.name, &t.name) => {
            Some("the tool is outside this token's scope")
        }
        _ => None,
    };
    if let Some(problem) = problem {
        let mut draft = call_draft(state, &caller, &action, AuditKind::Deny);
        draft.decision = Some("deny".into());
        draft.detail = json!({ "approval": approval.id, "reasons": [problem] });
        state
            .store
            .append_audit(draft, state.clock.now())
            .await
            .map_err(store_error)?;
        return Ok(denied(&[format!(
            "the approved action cannot run as approved: {problem}"
        )]));
    }
    execute_approved(state, &caller, Some(agent), action, approval)
        .await
        .map_err(store_error)
}

/// Send a permitted action upstream and turn any failure into a tool error the agent can read.
/// Returns the result with what it means for the execution record.
async fn forward(
    state: &AppState,
    permit: Permit,
    agent: Option<AgentSide>,
) -> (CallToolResult, ExecutionOutcome) {
    let started = std::time::Instant::now();
    let outcome = match agent {
        Some(agent) => state.upstreams.call(permit, agent).await,
        None => state.upstreams.call_unattended(permit).await,
    };
    state
        .metrics
        .upstream_latency
        .observe(started.elapsed().as_secs_f64());
    let label = |outcome: &'static str| {
        state
            .metrics
            .executions
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc()
    };
    match outcome {
        Ok(mut result) => {
            let tool_error = result.is_error == Some(true);
            label(if tool_error { "tool_error" } else { "ok" });
            // Results from an upstream on an older protocol lack `resultType`; agents on
            // 2026-07-28 need it (rmcp strips it again for older agents).
            result.result_type = Some(rmcp::model::ResultType::COMPLETE);
            let outcome = if tool_error {
                ExecutionOutcome::ToolError
            } else {
                ExecutionOutcome::Ok
            };
            (result, outcome)
        }
        Err(e) => {
            label(match e {
                UpstreamError::Timeout => "timeout",
                UpstreamError::Cancelled => "cancelled",
                _ => "error",
            });
            (
                result_json(
                    json!({ "status": "upstream_error", "detail": e.to_string() }),
                    true,
                ),
                ExecutionOutcome::UpstreamError,
            )
        }
    }
}

fn require_approver(ctx: &AdminContext) -> Result<(), ApiError> {
    // Both roles may decide; agents never reach this code (their tokens are refused by the
    // admin API), so a requesting agent cannot approve its own action.
    match ctx.admin.role {
        portcullis_store::AdminRole::Admin | portcullis_store::AdminRole::Approver => Ok(()),
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
async fn check_voter(
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
                    // A revert has no agent to re-send it: the gateway runs it on approval.
                    if approval.revert_of.is_some() {
                        return execute_revert(state, ctx, approval).await;
                    }
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

/// Propose the inverse of an executed write: the tool profile's `revert` call, its arguments
/// taken from the before-state captured when the original was held.
///
/// INVARIANT: a revert is an action like any other. It is decided by the same policy
/// evaluation as the forward call the original agent would make (a deny policy refuses it;
/// the approval points and their approver rules apply), it is refused while the agent or its
/// tenant is suspended, it is charged to the spend ledger when it runs, at most one revert per
/// original is live or executed (a unique index), and its own before-state is captured so a
/// target that changed since refuses it as stale. It never runs under a guardrail: a person
/// proposed it and other people approve it.
pub async fn propose_revert(
    state: &AppState,
    ctx: &AdminContext,
    original: Approval,
) -> Result<Approval, ApiError> {
    require_approver(ctx)?;
    let conflict = |m: &str| ApiError::Conflict(m.to_owned());
    if original.status != ApprovalStatus::Executed {
        return Err(conflict("only an executed action can be reverted"));
    }
    let before = original
        .before_state
        .as_ref()
        .ok_or_else(|| conflict("no before-state was captured for this action"))?;
    if before["value"]["is_error"] == json!(true) {
        return Err(conflict(
            "the target did not exist before this action; there is no state to restore",
        ));
    }
    let structured = before["value"]["structured"].clone();
    let tenant = original.tenant.clone();
    let tool = state
        .store
        .tool(&tenant, &original.connection, &original.tool)
        .await?;
    let revert = tool
        .profile
        .revert
        .as_ref()
        .ok_or_else(|| conflict("this tool's profile names no revert"))?;
    let arguments = revert
        .arguments_from(&structured)
        .ok_or_else(|| conflict("the before-state lacks a field the revert needs"))?;
    let connection = state
        .store
        .connection(&tenant, &original.connection)
        .await?;
    if connection.revoked_at.is_some() {
        return Err(conflict("the connection was revoked"));
    }
    let target = state
        .store
        .tool(&tenant, &original.connection, &revert.tool)
        .await
        .map_err(|_| conflict("the revert tool does not exist"))?;
    if target.definition_changed() {
        return Err(conflict(
            "the revert tool's definition changed; accept it before proposing a revert",
        ));
    }
    // The agent's own call of the revert tool: it must be granted to the agent.
    let grants = state
        .store
        .grants_for_agent(&tenant, &original.agent)
        .await?;
    if !grants
        .iter()
        .any(|g| g.connection == connection.id && (g.tool == "*" || g.tool == target.name))
    {
        return Err(conflict(
            "the revert tool is not granted to the agent; a revert is the agent's own call",
        ));
    }
    let caller = revert_caller(state, &original).await?;
    let action = Action {
        tenant: tenant.clone(),
        connection: connection.id.clone(),
        tool: target.name.clone(),
        tool_definition_hash: target.current_hash.clone(),
        arguments,
    };
    let action_hash = action
        .hash()
        .map_err(|e| ApiError::BadRequest(format!("the revert's arguments: {e}")))?;
    let now = state.clock.now();
    let me = ctx.admin.name.clone();
    // The same evaluation as the agent's own call of the revert tool, minus guardrails.
    let effect = DefinitionStatus::Accepted.effective(target.effect);
    let facts = gather(
        state,
        &caller,
        &connection,
        &target,
        &action,
        effect,
        Guardrails::Ignore,
        now,
    )
    .await?;
    let evaluation = evaluate(
        &facts,
        &caller,
        &connection.name,
        &target,
        &action,
        effect,
        DefinitionStatus::Accepted,
        now,
    );
    let policy_detail = json!({
        "policies": evaluation.policies,
        "policy_hash": evaluation.policy_hash,
        "points": evaluation.points,
    });
    if evaluation.outcome == portcullis_core::decision::Outcome::Deny {
        let mut draft = AuditDraft::new(tenant.clone(), ctx.actor(), AuditKind::Deny)
            .resource(format!("tool:{}/{}", connection.id, target.name));
        draft.decision = Some("deny".into());
        draft.detail = json!({ "revert_of": original.id, "action_hash": action_hash, "reasons": evaluation.reasons, "policy": policy_detail });
        state.store.append_audit(draft, now).await?;
        return Err(ApiError::Forbidden(format!(
            "policy denies this revert: {}",
            evaluation.reasons.join("; ")
        )));
    }
    let mut rules = facts.engine.approver_rules(&evaluation);
    if rules.is_empty() {
        rules.push((Point::Effect, ApproverRule::default()));
    }
    let id = ApprovalId::generate();
    let mut draft = AuditDraft::new(tenant.clone(), ctx.actor(), AuditKind::Hold)
        .resource(format!("tool:{}/{}", connection.id, target.name));
    draft.decision = Some("hold".into());
    draft.detail = json!({ "approval": id, "revert_of": original.id, "action_hash": action_hash, "policy": policy_detail });
    // The revert's own before-state: what the target looks like now, checked again just
    // before the revert runs.
    let before_state = crate::preview::capture(
        state,
        &tenant,
        &connection,
        &target,
        &action.arguments,
        None,
    )
    .await;
    let mut reasons = evaluation.reasons.clone();
    reasons.push(format!(
        "revert of {} proposed by {me}: restores the state captured before it ran",
        original.id
    ));
    let new = NewApproval {
        id,
        tenant: tenant.clone(),
        agent: original.agent.clone(),
        session: None,
        summary: format!(
            "revert of {}: {}",
            original.id,
            summary_of(effect, &connection.name, &target, &action.arguments)
        ),
        action,
        action_hash,
        effect,
        reasons,
        expires_at: now
            + (state.config.approvals.default_ttl_secs as i64 * 1000)
                .min(portcullis_core::MAX_APPROVAL_TTL_MS),
        revert_of: Some(original.id.clone()),
    };
    let extras = ApprovalExtras {
        rules: serde_json::to_value(&rules).unwrap_or_default(),
        evidence: json!({
            "revert_of": original.id, "proposed_by": me, "before_state": before,
            "policies": evaluation.policies, "policy_hash": evaluation.policy_hash,
        }),
        cost_cents: facts.cost_cents,
        before_state,
    };
    match state
        .store
        .create_approval_with(new, extras, draft, now)
        .await?
    {
        HoldOutcome::Created(approval, _) => Ok(approval),
        HoldOutcome::Joined(existing) if existing.revert_of.as_ref() == Some(&original.id) => {
            Err(ApiError::Conflict(format!(
                "{} already has a revert ({}, {}); an action is reverted at most once",
                original.id,
                existing.id,
                existing.status.as_str()
            )))
        }
        HoldOutcome::Joined(existing) => Err(ApiError::Conflict(format!(
            "an identical action by this agent is already waiting for approval ({}); decide that request instead",
            existing.id
        ))),
    }
}

/// The agent a revert acts for, as policy sees it: the original's agent, no session. Refused
/// while the agent or its tenant is suspended (the kill switch stops reverts too).
async fn revert_caller(state: &AppState, approval: &Approval) -> Result<Caller, ApiError> {
    let tenant = state.store.tenant(&approval.tenant).await?;
    let agent = state
        .store
        .list_agents(&approval.tenant)
        .await?
        .into_iter()
        .find(|a| a.id == approval.agent)
        .ok_or(ApiError::NotFound)?;
    if tenant.suspended_at.is_some() || agent.suspended_at.is_some() {
        return Err(ApiError::Conflict(
            "the agent or its tenant is suspended; nothing was done".into(),
        ));
    }
    if agent.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "the agent was revoked; nothing was done".into(),
        ));
    }
    Ok(Caller {
        tenant: tenant.id,
        tenant_name: tenant.name,
        agent: agent.id,
        agent_name: agent.name,
        agent_owner: agent.owner,
        session: None,
        stated_reason: false,
        recorded_as: None,
    })
}

/// Run an approved revert once, on behalf of the approvers (no agent request to forward to),
/// through the same verify-redeem-execute path as an agent's retried call. Policy decides it
/// again first, as it decides every retried call: a deny added since the proposal wins.
async fn execute_revert(
    state: &AppState,
    ctx: &AdminContext,
    approval: Approval,
) -> Result<Approval, ApiError> {
    let refuse = |reasons: Vec<String>| {
        let (tenant, actor, id) = (approval.tenant.clone(), ctx.actor(), approval.id.clone());
        let revert_of = approval.revert_of.clone();
        async move {
            let mut draft =
                AuditDraft::new(tenant, actor, AuditKind::Deny).resource(format!("approval:{id}"));
            draft.decision = Some("deny".into());
            draft.detail = json!({ "approval": id, "revert_of": revert_of, "reasons": reasons });
            state.store.append_audit(draft, state.clock.now()).await?;
            Ok::<(), ApiError>(())
        }
    };
    let mut caller = match revert_caller(state, &approval).await {
        Ok(caller) => caller,
        Err(refusal) => {
            refuse(vec![
                "the agent or its tenant is suspended or revoked; the revert did not run".into(),
            ])
            .await?;
            return Err(refusal);
        }
    };
    caller.recorded_as = Some(ctx.actor());
    let connection = state
        .store
        .connection(&approval.tenant, &approval.connection)
        .await?;
    let tool = state
        .store
        .tool(
            &approval.tenant,
            &approval.connection,
            &approval.action.tool,
        )
        .await?;
    if connection.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "approved, but the connection was revoked; the revert did not run".into(),
        ));
    }
    if tool.current_hash != approval.action.tool_definition_hash {
        return Err(ApiError::Conflict(
            "approved, but the revert tool's definition changed; the revert did not run".into(),
        ));
    }
    let now = state.clock.now();
    let effect = DefinitionStatus::Accepted.effective(tool.effect);
    let facts = gather(
        state,
        &caller,
        &connection,
        &tool,
        &approval.action,
        effect,
        Guardrails::Ignore,
        now,
    )
    .await?;
    let evaluation = evaluate(
        &facts,
        &caller,
        &connection.name,
        &tool,
        &approval.action,
        effect,
        DefinitionStatus::Accepted,
        now,
    );
    if evaluation.outcome == portcullis_core::decision::Outcome::Deny {
        refuse(evaluation.reasons.clone()).await?;
        return Err(ApiError::Forbidden(format!(
            "approved, but policy now denies this revert: {}",
            evaluation.reasons.join("; ")
        )));
    }
    let result = execute_approved(
        state,
        &caller,
        None,
        approval.action.clone(),
        approval.clone(),
    )
    .await?;
    let status = result
        .structured_content
        .as_ref()
        .and_then(|v| v.get("status"))
        .and_then(|s| s.as_str())
        .unwrap_or("ok")
        .to_owned();
    let refused = [
        "denied",
        "stale",
        "already_executed",
        "upstream_unavailable",
    ];
    if refused.contains(&status.as_str()) {
        return Err(ApiError::Conflict(format!(
            "approved, but the revert did not run: {status}"
        )));
    }
    Ok(state
        .store
        .find_approval(Some(&approval.tenant), &approval.id, state.clock.now())
        .await?)
}
