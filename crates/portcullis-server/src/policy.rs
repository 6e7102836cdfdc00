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
use portcullis_core::id::TenantId;
use portcullis_core::policy::{Engine, PolicyDocument, PolicySettings};
use portcullis_store::{Guardrail, StoreResult};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

/// Reads older than this do not count for a call made without an MCP session.
pub const SESSIONLESS_WINDOW_MS: UnixMillis = 60 * 60 * 1000;
/// How many of a session's reads are consulted.
const SESSION_READS: i64 = 1_000;
/// How many reads an approval request shows as evidence.
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

/// The session key of a call: the MCP session, or for sessionless (2026-07-28) clients a
/// per-agent key whose reads count for [`SESSIONLESS_WINDOW_MS`].
pub fn session_key(ctx: &AgentContext, session: &Option<String>) -> (String, bool) {
    match session {
        Some(s) => (s.clone(), true),
        None => (format!("agent:{}", ctx.agent), false),
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

/// The session's reads and the data classes they carried (from the tools' profiles).
pub async fn session_facts(
    state: &AppState,
    ctx: &AgentContext,
    session: &Option<String>,
    now: UnixMillis,
) -> StoreResult<SessionFacts> {
    let (key, real) = session_key(ctx, session);
    let events = state
        .store
        .session_calls(&ctx.tenant, &key, SESSION_READS)
        .await?;
    let connections = state.cache.connections(&state.store, &ctx.tenant).await?;
    let mut classes = BTreeSet::new();
    let mut facts = SessionFacts::default();
    let mut tools_by_connection = HashMap::new();
    for event in events {
        if !real && event.time < now - SESSIONLESS_WINDOW_MS {
            continue;
        }
        // Resources of allowed calls are `tool:{connection id}/{tool}`.
        let Some((connection_id, tool_name)) = event
            .draft
            .resource
            .as_deref()
            .and_then(|r| r.strip_prefix("tool:"))
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
                .tools(&state.store, &ctx.tenant, &connection.id)
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
        facts.reads += 1;
        classes.extend(tool.profile.data_classes.iter().cloned());
        if facts.evidence.len() < EVIDENCE_READS {
            facts.evidence.push(json!({
                "seq": event.seq,
                "time": crate::clock::rfc3339(event.time),
                "tool": format!("{}.{}", connection.name, tool.name),
                "data_classes": tool.profile.data_classes,
            }));
        }
    }
    facts.classes = classes.into_iter().collect();
    Ok(facts)
}

/// The guardrail that covers this call, if any: active, above approve-each, matching, and
/// (as far as a read can tell) inside today's count and cost. The charge made when the call
/// runs is the exact check; this only picks the candidate.
pub async fn covering_guardrail(
    state: &AppState,
    ctx: &AgentContext,
    connection: &str,
    tool: &str,
    arguments: &Value,
    cost_cents: i64,
    now: UnixMillis,
) -> StoreResult<Option<Guardrail>> {
    let guardrails = state.cache.guardrails(&state.store, &ctx.tenant).await?;
    for guardrail in guardrails.iter() {
        if guardrail.revoked_at.is_some()
            || guardrail.mode == GuardrailMode::ApproveEach
            || !guardrail
                .spec
                .matches(&ctx.agent_name, connection, tool, arguments, now)
        {
            continue;
        }
        let (runs, cents) = state
            .store
            .spend_since(
                &ctx.tenant,
                portcullis_core::guardrail::day_start(now),
                None,
                Some(&guardrail.id),
            )
            .await?;
        if runs < i64::from(guardrail.spec.max_per_day)
            && cents + cost_cents <= guardrail.spec.max_cost_cents_per_day
        {
            return Ok(Some(guardrail.clone()));
        }
    }
    Ok(None)
}
