//! The policy side of the gate: each tenant's compiled policy engine (cached by document
//! hash), what a session has read (flow-aware escalation and evidence for approvers), and the
//! guardrail that covers a call.
//!
//! INVARIANT: fail closed. A tenant whose stored policy no longer compiles gets no engine, and
//! the gate denies its calls with that reason; a store error on any of these lookups is an
//! error on the call, never a default.

use crate::auth::AgentContext;
use crate::state::AppState;
use portcullis_core::UnixMillis;
use portcullis_core::guardrail::GuardrailMode;
use portcullis_core::id::{AgentId, TenantId};
use portcullis_core::policy::{Engine, PolicyDocument, PolicySettings};
use portcullis_store::{Guardrail, StoreResult};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

/// How far back an agent's reads in other sessions (and sessionless reads) count for a call.
pub const SESSIONLESS_WINDOW_MS: UnixMillis = 60 * 60 * 1000;
/// How many of the tools read an approval request shows as evidence (every read counts for
/// escalation).
const EVIDENCE_READS: usize = 20;

static BUILTIN: LazyLock<Arc<Engine>> = LazyLock::new(|| Arc::new(Engine::builtin_only()));

/// The built-in policies alone, compiled once per process.
pub fn builtin() -> Arc<Engine> {
    BUILTIN.clone()
}

/// Compiled engines by policy-document hash: recompiled only when a document changes.
#[derive(Default)]
pub struct Engines {
    by_hash: RwLock<HashMap<String, Arc<Engine>>>,
}

impl Engines {
    fn get_or_compile(&self, document: &PolicyDocument, hash: &str) -> Result<Arc<Engine>, String> {
        if let Some(engine) = self.by_hash.read().expect("lock poisoned").get(hash) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(Engine::compile(document).map_err(|e| e.to_string())?);
        let mut map = self.by_hash.write().expect("lock poisoned");
        if map.len() >= 1_024 {
            map.clear();
        }
        map.insert(hash.to_owned(), engine.clone());
        Ok(engine)
    }
}

/// Parse a stored or uploaded document.
pub fn document(cedar: &str, settings: &Value) -> Result<PolicyDocument, String> {
    let settings: PolicySettings = serde_json::from_value(settings.clone())
        .map_err(|e| format!("policy settings are invalid: {e}"))?;
    Ok(PolicyDocument {
        cedar: cedar.to_owned(),
        settings,
    })
}

/// The engine in force for a tenant. `Ok(Err(reason))` when its stored policy does not compile.
pub async fn engine(
    state: &AppState,
    tenant: &TenantId,
) -> StoreResult<Result<Arc<Engine>, String>> {
    let Some(version) = state.cache.policy(&state.store, tenant).await? else {
        return Ok(Ok(builtin()));
    };
    Ok(document(&version.cedar, &version.settings)
        .and_then(|doc| state.engines.get_or_compile(&doc, &version.hash))
        .map_err(|e| {
            format!(
                "the tenant's policy (version {}) cannot be used: {e}",
                version.version
            )
        }))
}

/// Who a call is decided for: the agent (id, name, owner), its tenant and its session. Built
/// from an authenticated agent request, or from the stored agent for work a person starts on
/// an agent's behalf (a revert).
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub tenant_name: String,
    pub agent: AgentId,
    pub agent_name: String,
    /// The human the agent acts for, if recorded.
    pub agent_owner: Option<String>,
    /// The MCP session of a legacy client; `None` for sessionless (2026-07-28) calls and for
    /// work done on a person's behalf.
    pub session: Option<String>,
    /// The agent stated a reason or plan for this call.
    pub stated_reason: bool,
    /// Who the audit trail names as acting, when not the agent itself (an approver whose vote
    /// made the gateway run a revert).
    pub recorded_as: Option<String>,
}

impl Caller {
    pub fn of(ctx: &AgentContext, session: Option<String>, stated_reason: bool) -> Self {
        Self {
            tenant: ctx.tenant.clone(),
            tenant_name: ctx.tenant_name.clone(),
            agent: ctx.agent.clone(),
            agent_name: ctx.agent_name.clone(),
            agent_owner: ctx.agent_owner.clone(),
            session,
            stated_reason,
            recorded_as: None,
        }
    }

    /// The agent as an actor: what its own calls are recorded under.
    pub fn actor(&self) -> String {
        format!("agent:{}", self.agent)
    }

    /// The actor the audit trail names for work done for this caller.
    pub fn recorded_actor(&self) -> String {
        self.recorded_as.clone().unwrap_or_else(|| self.actor())
    }

    /// The session key the audit trail records a call under: the MCP session, or for
    /// sessionless calls a per-agent key.
    pub fn session_key(&self) -> String {
        match &self.session {
            Some(s) => s.clone(),
            None => format!("agent:{}", self.agent),
        }
    }
}

/// What the session read before this call.
#[derive(Debug, Default)]
pub struct SessionFacts {
    pub classes: Vec<String>,
    pub reads: i64,
    /// The most recent reads, newest first, for approvers.
    pub evidence: Vec<Value>,
}

/// The reads that count for a call, and the data classes they carried (from the tools'
/// profiles).
///
/// INVARIANT: flow escalation follows the agent, not the connection. A call sees the union of
/// its own session's reads (any age) and every read the agent made in any session, of either
/// protocol era, within [`SESSIONLESS_WINDOW_MS`]: opening a fresh session does not wash away
/// what the agent read.
pub async fn session_facts(
    state: &AppState,
    caller: &Caller,
    now: UnixMillis,
) -> StoreResult<SessionFacts> {
    let touched = state
        .store
        .session_reads(
            &caller.tenant,
            caller.session.as_deref(),
            &caller.actor(),
            now - SESSIONLESS_WINDOW_MS,
        )
        .await?;
    let connections = state
        .cache
        .connections(&state.store, &caller.tenant)
        .await?;
    let mut classes = BTreeSet::new();
    let mut facts = SessionFacts::default();
    let mut tools_by_connection = HashMap::new();
    for read in touched {
        // Resources of allowed calls are `tool:{connection id}/{tool}`.
        let Some((connection_id, tool_name)) = read
            .resource
            .strip_prefix("tool:")
            .and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        let Some(connection) = connections.iter().find(|c| c.id.as_str() == connection_id) else {
            continue;
        };
        if !tools_by_connection.contains_key(connection_id) {
            let tools = state
                .cache
                .tools(&state.store, &caller.tenant, &connection.id)
                .await?;
            tools_by_connection.insert(connection_id.to_owned(), tools);
        }
        let Some(tool) = tools_by_connection[connection_id]
            .iter()
            .find(|t| t.name == tool_name)
        else {
            continue;
        };
        if tool.effect.is_effect() {
            continue;
        }
        facts.reads += read.calls;
        classes.extend(tool.profile.data_classes.iter().cloned());
        if facts.evidence.len() < EVIDENCE_READS {
            facts.evidence.push(json!({
                "seq": read.last_seq,
                "time": crate::clock::rfc3339(read.last_time),
                "tool": format!("{}.{}", connection.name, tool.name),
                "calls": read.calls,
                "data_classes": tool.profile.data_classes,
            }));
        }
    }
    facts.classes = classes.into_iter().collect();
    Ok(facts)
}

/// Which guardrail covers a call, and which would have but for today's limits.
#[derive(Debug, Clone, Default)]
pub struct GuardrailCover {
    pub covering: Option<Guardrail>,
    /// One sentence per matching guardrail whose daily count or budget is used up, naming it.
    pub exhausted: Vec<String>,
}

/// Why a matching guardrail cannot admit one more run today, if it cannot.
pub fn exhausted_reason(
    guardrail: &Guardrail,
    runs_today: i64,
    cents_today: i64,
    cost_cents: i64,
) -> Option<String> {
    let spec = &guardrail.spec;
    if runs_today >= i64::from(spec.max_per_day) {
        Some(format!(
            "guardrail `{}` has used today's {} runs (UTC day)",
            guardrail.name, spec.max_per_day
        ))
    } else if cents_today + cost_cents > spec.max_cost_cents_per_day {
        Some(format!(
            "guardrail `{}` has used today's budget: {} of {} spent, this call costs {} (UTC day)",
            guardrail.name,
            cents(cents_today),
            cents(spec.max_cost_cents_per_day),
            cents(cost_cents)
        ))
    } else {
        None
    }
}

fn cents(value: i64) -> String {
    format!("${}.{:02}", value / 100, (value % 100).abs())
}

/// The guardrail that covers this call, if any: active, above approve-each, matching, and
/// (as far as a read can tell) inside today's count and cost. The charge made when the call
/// runs is the exact check; this only picks the candidate. Matching guardrails whose limits
/// are used up are named, so the hold can say why no guardrail covered the call.
pub async fn covering_guardrail(
    state: &AppState,
    caller: &Caller,
    connection: &str,
    tool: &str,
    arguments: &Value,
    cost_cents: i64,
    now: UnixMillis,
) -> StoreResult<GuardrailCover> {
    let guardrails = state.cache.guardrails(&state.store, &caller.tenant).await?;
    let mut cover = GuardrailCover::default();
    for guardrail in guardrails.iter() {
        if guardrail.revoked_at.is_some()
            || guardrail.mode == GuardrailMode::ApproveEach
            || !guardrail
                .spec
                .matches(&caller.agent_name, connection, tool, arguments, now)
        {
            continue;
        }
        let (runs, cents) = state
            .store
            .spend_since(
                &caller.tenant,
                portcullis_core::guardrail::day_start(now),
                None,
                Some(&guardrail.id),
            )
            .await?;
        match exhausted_reason(guardrail, runs, cents, cost_cents) {
            None => {
                cover.covering = Some(guardrail.clone());
                return Ok(cover);
            }
            Some(reason) => cover.exhausted.push(reason),
        }
    }
    Ok(cover)
}
