//! The spend ledger: every run that cost (or could have cost) money, itemised for a period,
//! with totals per agent and per workflow (approved, or the guardrail that let it run) and
//! the tenant's caps.

use super::common::{ApiResult, AppRef, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::guardrail::day_start;
use portcullis_core::id::{AgentId, ApprovalId, ConnectionId, GuardrailId};
use portcullis_core::policy::settings::MoneyLimits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppRef> {
    Router::new().route("/tenants/{tenant}/spend", get(spend))
}

/// The period, in Unix milliseconds: `from` (default: the start of today, UTC) up to `to`
/// (default: now).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendReport {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub total_cents: i64,
    pub caps: Caps,
    /// By agent name.
    pub by_agent: BTreeMap<String, RunTotals>,
    /// By workflow: `approved`, or `guardrail NAME`.
    pub by_workflow: BTreeMap<String, RunTotals>,
    pub entries: Vec<LedgerLine>,
}

/// The tenant's money caps, or why its policy cannot say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Caps {
    Limits(MoneyLimits),
    Unusable { error: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTotals {
    pub runs: i64,
    pub cents: i64,
}

/// One run in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerLine {
    /// RFC 3339.
    pub time: String,
    pub agent: AgentId,
    /// The guardrail that let it run unasked, if any.
    pub guardrail: Option<GuardrailId>,
    /// The approval that let it run, if any.
    pub approval: Option<ApprovalId>,
    pub connection: ConnectionId,
    pub tool: String,
    pub cost_cents: i64,
    pub action_hash: String,
}

/// The itemised ledger for a period (default: today, UTC) with totals per agent and per
/// workflow (guardrail), against the tenant's caps.
async fn spend(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(q): Query<SpendQuery>,
) -> ApiResult<SpendReport> {
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
    let mut by_agent = BTreeMap::<String, RunTotals>::new();
    let mut by_workflow = BTreeMap::<String, RunTotals>::new();
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
            slot.runs += 1;
            slot.cents += e.cost_cents;
        }
        total += e.cost_cents;
    }
    let caps = match crate::policy::engine(&state, &tenant.id).await? {
        Ok(engine) => Caps::Limits(engine.settings().money),
        Err(problem) => Caps::Unusable { error: problem },
    };
    Ok(Json(SpendReport {
        from,
        to,
        total_cents: total,
        caps,
        by_agent,
        by_workflow,
        entries: entries
            .into_iter()
            .map(|e| LedgerLine {
                time: crate::clock::rfc3339(e.time),
                agent: e.agent,
                guardrail: e.guardrail,
                approval: e.approval,
                connection: e.connection,
                tool: e.tool,
                cost_cents: e.cost_cents,
                action_hash: e.action_hash,
            })
            .collect(),
    }))
}
