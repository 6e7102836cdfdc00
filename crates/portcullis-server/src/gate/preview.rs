//! Before/after previews: for a tool whose profile names a preview read, the target's state is
//! read when a call is held (shown to approvers, with its hash) and read again just before the
//! approved call executes. A different state refuses the call as stale — including a create
//! whose target was empty when approved and is not any more.
//!
//! The preview is a gateway-internal read for the approvers' benefit: it runs only when the
//! preview tool is classified `read` with an accepted definition and the tenant's policies
//! allow the agent that read (core decides it like any call), and its result never reaches
//! the agent.

use super::Target;
use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::AgentSide;
use portcullis_core::action::{Action, HashedAction};
use portcullis_core::decision::{Call, Decision};
use portcullis_core::effect::EffectClass;
use portcullis_core::policy::Engine;
use serde_json::{Value, json};

/// Read the preview for a call; `None` when the tool has no preview or it cannot be taken
/// (then the approval shows no before-state and execution checks nothing).
pub async fn capture(
    state: &AppState,
    caller: &Caller,
    engine: &Engine,
    target: &Target,
    action: &HashedAction,
    agent: Option<&AgentSide>,
) -> Option<Value> {
    let profile = &target.tool.profile;
    let preview = profile.preview.as_ref()?;
    let preview_arguments = profile.preview_arguments(&action.action().arguments)?;
    let tools = state
        .cache
        .tools(&state.store, &caller.tenant, &target.connection.id)
        .await
        .ok()?;
    let read = tools.iter().find(|t| t.name == preview.tool)?;
    let class = read.classification();
    if class.effective() != EffectClass::Read {
        return None;
    }
    let read_action = HashedAction::new(Action {
        tenant: caller.tenant.clone(),
        connection: target.connection.id.clone(),
        tool: read.name.clone(),
        tool_definition_hash: read.current_hash.clone(),
        arguments: preview_arguments.clone(),
    })
    .ok()?;
    let call = Call {
        agent_owner: caller.agent_owner.as_deref(),
        class,
        has_session: caller.session.is_some(),
        ..Call::new(
            &caller.tenant_name,
            &caller.agent_name,
            &target.connection.name,
            &read.profile,
            state.clock.now(),
        )
    };
    let Decision::Allow(permit) =
        portcullis_core::decision::decide(engine, &call, read_action).decision
    else {
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
    // Compared only by the gateway itself, so total over whatever the upstream returned.
    let hash = portcullis_core::action::internal_hash(&value)?;
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
    caller: &Caller,
    action: &HashedAction,
    before: &Value,
    agent: Option<&AgentSide>,
) -> Result<(), String> {
    let Some(expected) = before.get("hash").and_then(Value::as_str) else {
        return Ok(());
    };
    let a = action.action();
    let connection = state
        .store
        .connection(&caller.tenant, &a.connection)
        .await
        .map_err(|_| "the connection is gone".to_owned())?;
    let tool = state
        .store
        .tool(&caller.tenant, &a.connection, &a.tool)
        .await
        .map_err(|_| "the tool is gone".to_owned())?;
    let engine = match crate::policy::engine(state, &caller.tenant).await {
        Ok(Ok(engine)) => engine,
        _ => return Err("the tenant's policy cannot be read to take the preview".into()),
    };
    let target = Target { connection, tool };
    let now = capture(state, caller, &engine, &target, action, agent)
        .await
        .ok_or("the target's state could not be read again before executing")?;
    if now.get("hash").and_then(Value::as_str) == Some(expected) {
        Ok(())
    } else {
        Err("stale: the target changed since this action was approved".into())
    }
}
