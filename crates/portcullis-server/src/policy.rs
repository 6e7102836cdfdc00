//! The policy side of the gate: each tenant's compiled policy engine (cached by document
//! hash), who a call is decided for, and what the agent has read (flow-aware escalation and
//! evidence for approvers).
//!
//! INVARIANT: fail closed. A tenant whose stored policy no longer compiles gets no engine, and
//! the gate denies its calls with that reason; a store error on any of these lookups is an
//! error on the call, never a default.

use crate::identity::AgentContext;
use crate::state::AppState;
use portcullis_core::UnixMillis;
use portcullis_core::id::{AgentId, TenantId};
use portcullis_core::policy::Engine;
use portcullis_store::StoreResult;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The data class a session has read once the injection spotter flagged a tool result in it.
pub const UNTRUSTED_CLASS: &str = "untrusted";

/// How far back an agent's reads in other sessions (and sessionless reads) count for a call.
pub const SESSIONLESS_WINDOW_MS: UnixMillis = 60 * 60 * 1000;
/// How many of the tools read an approval request shows as evidence (every read counts for
/// escalation).
const EVIDENCE_READS: usize = 20;

/// The engine in force for a tenant. `Ok(Err(reason))` when its stored policy does not compile.
pub async fn engine(
    state: &AppState,
    tenant: &TenantId,
) -> StoreResult<Result<Arc<Engine>, String>> {
    let Some(version) = state.cache.policy(&state.store, tenant).await? else {
        return Ok(Ok(crate::engines::builtin()));
    };
    let engine = match crate::engines::document(&version.cedar, &version.settings) {
        Ok(document) => state.engines.get_or_compile(document, &version.hash).await,
        Err(e) => Err(e),
    };
    Ok(engine.map_err(|e| {
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
/// profiles, and `untrusted` once a result in the history was flagged by the injection
/// spotter).
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
        // A result the injection spotter flagged marks the history untrusted, whatever
        // became of its tool since (revoked, reclassified, gone): fail closed.
        if read.untrusted {
            classes.insert(UNTRUSTED_CLASS.to_owned());
        }
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
        if tool.effect.is_effect() || read.calls == 0 {
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
                "untrusted": read.untrusted,
            }));
        }
    }
    facts.classes = classes.into_iter().collect();
    Ok(facts)
}
