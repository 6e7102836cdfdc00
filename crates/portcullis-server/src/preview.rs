//! Before/after previews: for a tool whose profile names a preview read, the target's state is
//! read when a call is held (shown to approvers, with its hash) and read again just before the
//! approved call executes. A different state refuses the call as stale — including a create
//! whose target was empty when approved and is not any more.
//!
//! The preview is a gateway-internal read for the approvers' benefit: it runs only when the
//! preview tool is classified `read` with an accepted definition, and its result never reaches
//! the agent.

use crate::state::AppState;
use crate::upstream::AgentSide;
use portcullis_core::action::Action;
use portcullis_core::decision::{Decision, DecisionInput, Outcome, decide};
use portcullis_core::effect::EffectClass;
use portcullis_core::id::TenantId;
use portcullis_core::policy::Evaluation;
use portcullis_store::{Connection, ToolRecord};
use serde_json::{Value, json};

/// Read the preview for a call; `None` when the tool has no preview or it cannot be taken
/// (then the approval shows no before-state and execution checks nothing).
pub async fn capture(
    state: &AppState,
    tenant: &TenantId,
    connection: &Connection,
    tool: &ToolRecord,
    arguments: &Value,
    agent: Option<&AgentSide>,
) -> Option<Value> {
    let preview = tool.profile.preview.as_ref()?;
    let preview_arguments = tool.profile.preview_arguments(arguments)?;
    let tools = state
        .cache
        .tools(&state.store, tenant, &connection.id)
        .await
        .ok()?;
    let read = tools.iter().find(|t| t.name == preview.tool)?;
    if read.effect != EffectClass::Read || read.definition_changed() {
        return None;
    }
    let action = Action {
        tenant: tenant.clone(),
        connection: connection.id.clone(),
        tool: read.name.clone(),
        tool_definition_hash: read.current_hash.clone(),
        arguments: preview_arguments.clone(),
    };
    // A read needs no approval; `decide` hands out read permits only.
    let input = DecisionInput {
        granted: true,
        in_token_scope: true,
        connection_active: connection.revoked_at.is_none(),
        effect: EffectClass::Read,
        guardrail: None,
    };
    let allow = Evaluation {
        outcome: Outcome::Allow,
        policies: vec!["gateway.preview".into()],
        reasons: Vec::new(),
        points: Vec::new(),
        policy_hash: String::new(),
    };
    let Decision::Allow(permit) = decide(action, &input, &allow) else {
        return None;
    };
    let result = match agent {
        Some(agent) => state.upstreams.call(*permit, agent.quiet()).await.ok()?,
        None => state.upstreams.call_unattended(*permit).await.ok()?,
    };
    // The state is what the read returned, error or not ("unknown id" is an empty target).
    let value = json!({
        "is_error": result.is_error.unwrap_or(false),
        "structured": result.structured_content,
        "content": result.content,
    });
    let hash = portcullis_core::sha256_hex(&portcullis_core::action::canonical_json(&value).ok()?);
    Some(json!({
        "tool": read.name,
        "arguments": preview_arguments,
        "hash": hash,
        "value": value,
        "captured_at": crate::clock::rfc3339(state.clock.now()),
    }))
}

/// Whether the target still looks as it did when the call was held. `Err` explains a
/// mismatch or a preview that can no longer be taken (both refuse the call).
pub async fn still_current(
    state: &AppState,
    tenant: &TenantId,
    connection: &Connection,
    tool: &ToolRecord,
    arguments: &Value,
    before: &Value,
    agent: Option<&AgentSide>,
) -> Result<(), String> {
    let Some(expected) = before.get("hash").and_then(Value::as_str) else {
        return Ok(());
    };
    let now = capture(state, tenant, connection, tool, arguments, agent)
        .await
        .ok_or("the target's state could not be read again before executing")?;
    if now.get("hash").and_then(Value::as_str) == Some(expected) {
        Ok(())
    } else {
        Err("stale: the target changed since this action was approved".into())
    }
}
