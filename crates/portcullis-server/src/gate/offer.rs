//! What upstreams offer besides tools — resources, resource templates, prompts and argument
//! completions — under the same grants, token scopes and audit trail as tools.
//!
//! Listing and reading are reads: each listing and each read is an audit entry, durable
//! before the agent gets the answer. Names are namespaced like tools: a prompt is
//! `connection__prompt`, a resource URI `portcullis://connection/<the upstream's URI>`, so two
//! upstreams cannot collide and an agent can only name what its grants show it; anything
//! else is "not found" (the audit trail records why).

use super::GateError;
use super::resolve::{self, Granted, NAMESPACE_SEPARATOR, Offering};
use crate::identity::AgentContext;
use crate::state::AppState;
use crate::upstream::UpstreamError;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_store::StoreError;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptResult, JsonObject, Prompt, ReadResourceResult,
    Reference, Resource, ResourceContents, ResourceTemplate,
};
use serde_json::json;

/// The scheme of the resource URIs agents see.
const URI_PREFIX: &str = "portcullis://";

/// The URI an agent sees for `uri` of `connection`.
pub fn agent_uri(connection: &str, uri: &str) -> String {
    format!("{URI_PREFIX}{connection}/{uri}")
}

/// The connection and the upstream's own URI an agent's URI names.
fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let (connection, upstream) = uri.strip_prefix(URI_PREFIX)?.split_once('/')?;
    (!connection.is_empty() && !upstream.is_empty()).then_some((connection, upstream))
}

/// Audit one listing or read by the agent (durable before the answer).
async fn audit(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    kind: AuditKind,
    resource: Option<String>,
    decision: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), kind).detail(detail);
    if let Some(resource) = resource {
        draft = draft.resource(resource);
    }
    draft.session = session.map(str::to_owned);
    draft.decision = Some(decision.to_owned());
    state.store.append_audit(draft, state.clock.now()).await?;
    Ok(())
}

/// Collect one list from every granted connection; a connection that cannot answer is left
/// out (logged), so one dead upstream does not hide the others.
async fn gather<T, F, Fut>(
    state: &AppState,
    ctx: &AgentContext,
    offering: Offering,
    fetch: F,
) -> Result<Vec<T>, StoreError>
where
    F: Fn(Granted) -> Fut,
    Fut: std::future::Future<Output = (Granted, Result<Vec<T>, UpstreamError>)>,
{
    let mut out = Vec::new();
    for granted in resolve::offering(state, ctx, offering).await? {
        let (granted, listed) = fetch(granted).await;
        match listed {
            Ok(items) => out.extend(items),
            Err(e) => {
                tracing::warn!(connection = %granted.connection().id, error = %e, "upstream listing failed");
            }
        }
    }
    Ok(out)
}

/// `resources/list`: every granted connection's resources, URIs namespaced.
pub async fn list_resources(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<Resource>, StoreError> {
    let listed = gather(state, ctx, Offering::Resources, |g| async move {
        let listed = state.upstreams.resources(&g).await.map(|items| {
            let name = &g.connection().name;
            items
                .into_iter()
                .map(|mut r| {
                    r.uri = agent_uri(name, &r.uri);
                    r
                })
                .collect()
        });
        (g, listed)
    })
    .await?;
    let detail = json!({ "count": listed.len() });
    audit(
        state,
        ctx,
        session,
        AuditKind::ResourcesListed,
        None,
        "allow",
        detail,
    )
    .await?;
    Ok(listed)
}

/// `resources/templates/list`: every granted connection's templates, namespaced.
pub async fn list_resource_templates(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<ResourceTemplate>, StoreError> {
    let listed = gather(state, ctx, Offering::Resources, |g| async move {
        let listed = state.upstreams.resource_templates(&g).await.map(|items| {
            let name = &g.connection().name;
            items
                .into_iter()
                .map(|mut t| {
                    t.uri_template = agent_uri(name, &t.uri_template);
                    t
                })
                .collect()
        });
        (g, listed)
    })
    .await?;
    let detail = json!({ "count": listed.len(), "templates": true });
    audit(
        state,
        ctx,
        session,
        AuditKind::ResourcesListed,
        None,
        "allow",
        detail,
    )
    .await?;
    Ok(listed)
}

/// `resources/read`: a granted connection's resource, by the URI the agent saw.
pub async fn read_resource(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    uri: &str,
) -> Result<ReadResourceResult, GateError> {
    let refused = |why: &'static str| async move {
        let detail = json!({ "reasons": ["unknown resource"], "why": why });
        let resource = Some(format!("resource:{}", bounded(uri)));
        audit(
            state,
            ctx,
            session,
            AuditKind::ResourceRead,
            resource,
            "deny",
            detail,
        )
        .await?;
        state.metrics.decision("deny");
        Err::<ReadResourceResult, GateError>(GateError::UnknownResource(bounded(uri)))
    };
    let Some((connection, upstream_uri)) = split_uri(uri) else {
        return refused("not a gateway resource URI").await;
    };
    let granted = match resolve::offered(state, ctx, connection, Offering::Resources).await? {
        Ok(granted) => granted,
        Err(why) => return refused(why).await,
    };
    let resource = Some(format!("resource:{}", bounded(uri)));
    audit(
        state,
        ctx,
        session,
        AuditKind::ResourceRead,
        resource,
        "allow",
        json!({}),
    )
    .await?;
    state.metrics.decision("allow");
    let mut result = state
        .upstreams
        .read_resource(&granted, upstream_uri.to_owned())
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))?;
    for content in &mut result.contents {
        if let ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } = content
        {
            *uri = agent_uri(connection, uri);
        }
    }
    Ok(result)
}

/// `prompts/list`: every granted connection's prompts, named `connection__prompt`.
pub async fn list_prompts(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<Prompt>, StoreError> {
    let listed = gather(state, ctx, Offering::Prompts, |g| async move {
        let listed = state.upstreams.prompts(&g).await.map(|items| {
            let name = &g.connection().name;
            items
                .into_iter()
                .map(|mut p| {
                    p.name = format!("{name}{NAMESPACE_SEPARATOR}{}", p.name);
                    p
                })
                .collect()
        });
        (g, listed)
    })
    .await?;
    let detail = json!({ "count": listed.len() });
    audit(
        state,
        ctx,
        session,
        AuditKind::PromptsListed,
        None,
        "allow",
        detail,
    )
    .await?;
    Ok(listed)
}

/// `prompts/get`: a granted connection's prompt, by the name the agent saw.
pub async fn get_prompt(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<GetPromptResult, GateError> {
    let resource = Some(format!("prompt:{}", bounded(name)));
    let granted = match name.split_once(NAMESPACE_SEPARATOR) {
        Some((connection, prompt)) => resolve::offered(state, ctx, connection, Offering::Prompts)
            .await?
            .map(|g| (g, prompt)),
        None => Err("not a namespaced prompt name"),
    };
    let (granted, prompt) = match granted {
        Ok(found) => found,
        Err(why) => {
            let detail = json!({ "reasons": ["unknown prompt"], "why": why });
            audit(
                state,
                ctx,
                session,
                AuditKind::PromptGet,
                resource,
                "deny",
                detail,
            )
            .await?;
            state.metrics.decision("deny");
            return Err(GateError::UnknownPrompt(bounded(name)));
        }
    };
    audit(
        state,
        ctx,
        session,
        AuditKind::PromptGet,
        resource,
        "allow",
        json!({}),
    )
    .await?;
    state.metrics.decision("allow");
    state
        .upstreams
        .get_prompt(&granted, prompt.to_owned(), arguments)
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))
}

/// `completion/complete` for a prompt or resource template the agent may use; anything else
/// has no completions. Completions suggest values; they read nothing, so they are not audited.
pub async fn complete(
    state: &AppState,
    ctx: &AgentContext,
    mut params: CompleteRequestParams,
) -> Result<CompleteResult, GateError> {
    let target = match &mut params.r#ref {
        Reference::Prompt(prompt) => prompt
            .name
            .split_once(NAMESPACE_SEPARATOR)
            .map(|(c, p)| (c.to_owned(), p.to_owned(), Offering::Prompts)),
        Reference::Resource(template) => {
            split_uri(&template.uri).map(|(c, u)| (c.to_owned(), u.to_owned(), Offering::Resources))
        }
        _ => None,
    };
    let Some((connection, upstream_name, offering)) = target else {
        return Ok(CompleteResult::default());
    };
    let Ok(granted) = resolve::offered(state, ctx, &connection, offering).await? else {
        return Ok(CompleteResult::default());
    };
    match &mut params.r#ref {
        Reference::Prompt(prompt) => prompt.name = upstream_name,
        Reference::Resource(template) => template.uri = upstream_name,
        _ => {}
    }
    state
        .upstreams
        .complete(&granted, params)
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))
}

/// A name or URI as it may be echoed and recorded: at most 512 characters.
fn bounded(value: &str) -> String {
    value.chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_uris_round_trip_and_nothing_else_parses() {
        let uri = agent_uri("crm", "crm://contacts/c_1");
        assert_eq!(uri, "portcullis://crm/crm://contacts/c_1");
        assert_eq!(split_uri(&uri), Some(("crm", "crm://contacts/c_1")));
        for other in [
            "crm://contacts/c_1",
            "portcullis://crm",
            "portcullis:///x",
            "portcullis://crm/",
            "PORTCULLIS://crm/x",
        ] {
            assert_eq!(split_uri(other), None, "{other}");
        }
    }
}
