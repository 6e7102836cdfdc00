//! What upstreams offer besides tools — resources, resource templates, prompts and argument
//! completions — under the same grants, token scopes and audit trail as tools.
//!
//! Listing and reading are reads: each listing and each read is an audit entry, durable
//! before the agent gets the answer. Names are namespaced like tools by default: a prompt is
//! `connection__prompt`, a resource URI `portcullis://connection/<the upstream's URI>`, so two
//! upstreams cannot collide and an agent can only name what its grants show it; a connection
//! may pass its own names through where they collide with nothing the agent sees. Anything
//! else is "not found" (the audit trail records why).

use super::GateError;
use super::resolve::{self, Granted, NAMESPACE_SEPARATOR, Offering};
use crate::identity::AgentContext;
use crate::state::AppState;
use crate::upstream::Names;
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

/// The one connection whose resource URIs reach this agent as the upstream gives them: when
/// exactly one of the connections whose resources it may read passes names through (two
/// could serve the same URI). Every other connection's URIs stay namespaced.
async fn passthrough(state: &AppState, ctx: &AgentContext) -> Result<Option<Granted>, StoreError> {
    let mut through = resolve::offering(state, ctx, Offering::Resources)
        .await?
        .into_iter()
        .filter(|g| resolve::naming(g.connection()).0 == Names::Upstream);
    let first = through.next();
    Ok(if through.next().is_some() {
        None
    } else {
        first
    })
}

/// The URI an agent sees for `uri` of `granted`'s connection.
fn uri_for(granted: &Granted, through: Option<&Granted>, uri: &str) -> String {
    let passes = through.is_some_and(|t| t.connection().id == granted.connection().id);
    if passes && !uri.starts_with(URI_PREFIX) {
        uri.to_owned()
    } else {
        agent_uri(&granted.connection().name, uri)
    }
}

/// The connection and the upstream's own URI an agent's URI names: a namespaced URI, or any
/// other URI when one connection passes its URIs through to this agent. `Err` says why not.
async fn resolve_uri(
    state: &AppState,
    ctx: &AgentContext,
    uri: &str,
) -> Result<Result<(Granted, String, Option<Granted>), &'static str>, StoreError> {
    let through = passthrough(state, ctx).await?;
    if let Some((connection, upstream)) = split_uri(uri) {
        return Ok(
            resolve::offered(state, ctx, connection, Offering::Resources)
                .await?
                .map(|g| (g, upstream.to_owned(), through)),
        );
    }
    Ok(match through {
        Some(g) if !uri.starts_with(URI_PREFIX) => Ok((g.clone(), uri.to_owned(), Some(g))),
        _ => Err("not a gateway resource URI"),
    })
}

/// Every prompt of every connection whose prompts this agent may use, with the name the
/// agent sees (see [`resolve::exposed_names`]).
async fn prompts_listed(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<(Granted, Prompt, String)>, StoreError> {
    let listed = gather(state, ctx, session, Offering::Prompts, |g| async move {
        let listed = state
            .upstreams
            .prompts(&g)
            .await
            .map(|items| items.into_iter().map(|p| (g.clone(), p)).collect());
        (g, listed)
    })
    .await?;
    let namings: Vec<_> = listed
        .iter()
        .map(|(g, p)| {
            let (names, aliases) = resolve::naming(g.connection());
            resolve::plain_name(names, &aliases, &p.name)
        })
        .collect();
    let items: Vec<(&str, Option<String>, &str)> = listed
        .iter()
        .zip(namings)
        .map(|((g, p), plain)| (g.connection().name.as_str(), plain, p.name.as_str()))
        .collect();
    let names = resolve::exposed_names(&items);
    Ok(listed
        .into_iter()
        .zip(names)
        .map(|((g, p), name)| (g, p, name))
        .collect())
}

/// The connection and upstream name of the prompt an agent names: namespaced, or a plain
/// name it was listed under.
async fn resolve_prompt(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    name: &str,
) -> Result<Result<(Granted, String), &'static str>, StoreError> {
    if let Some((connection, prompt)) = name.split_once(NAMESPACE_SEPARATOR) {
        return Ok(resolve::offered(state, ctx, connection, Offering::Prompts)
            .await?
            .map(|g| (g, prompt.to_owned())));
    }
    Ok(prompts_listed(state, ctx, session)
        .await?
        .into_iter()
        .find(|(_, _, exposed)| exposed == name)
        .map(|(g, p, _)| (g, p.name))
        .ok_or("no prompt of that name"))
}

/// What the tenant's policies make of reading through `connection`: `item` names the kind of
/// read as the policies see it — a tool `connection/item` with effect `read` (`resources:list`,
/// `resources:read`, `prompts:list`, `prompts:get`; tool names cannot contain `:`, so these
/// never collide with a tool) and `arguments` as the call's `context.args`. `Err` carries the
/// reasons; a hold is a refusal too (a read cannot wait for a person). Either way the
/// evaluation's policies and hash go to the audit entry.
async fn policy(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    connection: &str,
    item: &str,
    arguments: &serde_json::Value,
) -> Result<(Result<(), Vec<String>>, serde_json::Value), StoreError> {
    let caller = crate::policy::Caller::of(ctx, session.map(str::to_owned), false);
    let engine = match crate::policy::engine(state, &caller.tenant).await? {
        Ok(engine) => engine,
        // A stored policy that no longer compiles refuses everything, as it does for tools.
        Err(problem) => return Ok((Err(vec![problem]), json!({}))),
    };
    let profile = portcullis_core::profile::ToolProfile::default();
    let evaluation = engine.evaluate(&portcullis_core::policy::CallFacts {
        tenant: &caller.tenant_name,
        agent: &caller.agent_name,
        agent_owner: caller.agent_owner.as_deref(),
        connection,
        tool: item,
        effect: portcullis_core::effect::EffectClass::Read,
        profile: &profile,
        arguments,
        cost_cents: 0,
        spent_today_cents: 0,
        agent_spent_today_cents: 0,
        session_read_classes: &[],
        session_reads: 0,
        has_session: caller.session.is_some(),
        argument_classes: &[],
        guardrail: None,
        definition_changed: false,
        stated_reason: false,
        now: state.clock.now(),
    });
    let detail = json!({
        "policies": evaluation.policies(),
        "policy_hash": evaluation.policy_hash(),
    });
    let verdict = match evaluation.outcome() {
        portcullis_core::policy::Outcome::Allow => Ok(()),
        portcullis_core::policy::Outcome::Deny => Err(evaluation.reasons().to_vec()),
        portcullis_core::policy::Outcome::Hold => {
            let mut reasons = evaluation.reasons().to_vec();
            reasons.push("held by policy; a read cannot wait for approval".to_owned());
            Err(reasons)
        }
    };
    Ok((verdict, detail))
}

/// One read through a granted connection, as the tenant's policies see it (see [`policy`]):
/// audited either way — the detail says which policies decided — and refused with their
/// reasons.
struct Read<'a> {
    kind: AuditKind,
    resource: Option<String>,
    item: &'static str,
    arguments: serde_json::Value,
    detail: serde_json::Value,
    granted: &'a Granted,
}

async fn permitted(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    read: Read<'_>,
) -> Result<(), GateError> {
    let connection = read.granted.connection().name.clone();
    let (verdict, policy_detail) =
        policy(state, ctx, session, &connection, read.item, &read.arguments).await?;
    let mut detail = read.detail;
    detail["policy"] = policy_detail;
    match verdict {
        Ok(()) => {
            audit_allow(state, ctx, session, read.kind, read.resource, detail).await?;
            Ok(())
        }
        Err(reasons) => {
            detail["reasons"] = json!(reasons);
            audit_deny(state, ctx, session, read.kind, read.resource, detail).await?;
            Err(GateError::Refused(reasons))
        }
    }
}

/// Audit one listing or read by the agent (durable before the answer).
async fn audit(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    kind: AuditKind,
    resource: Option<String>,
    decision: &'static str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let read = resource.is_some();
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), kind).detail(detail);
    if let Some(resource) = resource {
        draft = draft.resource(resource);
    }
    draft.session = session.map(str::to_owned);
    draft.decision = Some(decision.to_owned());
    state.store.append_audit(draft, state.clock.now()).await?;
    if read {
        state.metrics.decision(decision);
    }
    Ok(())
}

async fn audit_allow(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    kind: AuditKind,
    resource: Option<String>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    audit(state, ctx, session, kind, resource, "allow", detail).await
}

async fn audit_deny(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    kind: AuditKind,
    resource: Option<String>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    audit(state, ctx, session, kind, resource, "deny", detail).await
}

/// Collect one list from every granted connection; a connection that cannot answer is left
/// out (logged), so one dead upstream does not hide the others.
async fn gather<T, F, Fut>(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    offering: Offering,
    fetch: F,
) -> Result<Vec<T>, StoreError>
where
    F: Fn(Granted) -> Fut,
    Fut: std::future::Future<Output = (Granted, Result<Vec<T>, UpstreamError>)>,
{
    let item = match offering {
        Offering::Resources => "resources:list",
        Offering::Prompts => "prompts:list",
    };
    let mut out = Vec::new();
    for granted in resolve::offering(state, ctx, offering).await? {
        // A connection whose listing the tenant's policies refuse lists nothing.
        let name = granted.connection().name.clone();
        if policy(state, ctx, session, &name, item, &json!({}))
            .await?
            .0
            .is_err()
        {
            continue;
        }
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

/// A listed item with a URI the agent sees rewritten: a resource or a resource template.
trait UriItem: Sized + Send {
    /// Recorded in the listing's audit detail.
    const TEMPLATES: bool;
    fn uri_mut(&mut self) -> &mut String;
    fn fetch<'a>(
        upstreams: &'a crate::upstream::Upstreams,
        granted: &'a Granted,
    ) -> impl std::future::Future<Output = Result<Vec<Self>, UpstreamError>> + Send + 'a;
}

impl UriItem for Resource {
    const TEMPLATES: bool = false;
    fn uri_mut(&mut self) -> &mut String {
        &mut self.uri
    }
    fn fetch<'a>(
        upstreams: &'a crate::upstream::Upstreams,
        granted: &'a Granted,
    ) -> impl std::future::Future<Output = Result<Vec<Self>, UpstreamError>> + Send + 'a {
        upstreams.resources(granted)
    }
}

impl UriItem for ResourceTemplate {
    const TEMPLATES: bool = true;
    fn uri_mut(&mut self) -> &mut String {
        &mut self.uri_template
    }
    fn fetch<'a>(
        upstreams: &'a crate::upstream::Upstreams,
        granted: &'a Granted,
    ) -> impl std::future::Future<Output = Result<Vec<Self>, UpstreamError>> + Send + 'a {
        upstreams.resource_templates(granted)
    }
}

/// Every granted connection's resources (or templates), URIs as the agent sees them; the
/// listing is audited.
async fn list_uris<T: UriItem>(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<T>, StoreError> {
    let through = passthrough(state, ctx).await?;
    let through = through.as_ref();
    let listed = gather(state, ctx, session, Offering::Resources, |g| async move {
        let listed = T::fetch(&state.upstreams, &g).await.map(|items| {
            items
                .into_iter()
                .map(|mut item| {
                    let uri = item.uri_mut();
                    *uri = uri_for(&g, through, uri);
                    item
                })
                .collect()
        });
        (g, listed)
    })
    .await?;
    let detail = json!({ "count": listed.len(), "templates": T::TEMPLATES });
    audit_allow(
        state,
        ctx,
        session,
        AuditKind::ResourcesListed,
        None,
        detail,
    )
    .await?;
    Ok(listed)
}

/// `resources/list`: every granted connection's resources.
pub async fn list_resources(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<Resource>, StoreError> {
    list_uris(state, ctx, session).await
}

/// `resources/templates/list`: every granted connection's templates.
pub async fn list_resource_templates(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<ResourceTemplate>, StoreError> {
    list_uris(state, ctx, session).await
}

/// `resources/read`: a granted connection's resource, by the URI the agent saw.
pub async fn read_resource(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
    uri: &str,
) -> Result<ReadResourceResult, GateError> {
    let resource = Some(format!("resource:{}", bounded(uri)));
    let (granted, upstream_uri, through) = match resolve_uri(state, ctx, uri).await? {
        Ok(found) => found,
        Err(why) => {
            let detail = json!({ "reasons": ["unknown resource"], "why": why });
            audit_deny(
                state,
                ctx,
                session,
                AuditKind::ResourceRead,
                resource,
                detail,
            )
            .await?;
            return Err(GateError::UnknownResource(bounded(uri)));
        }
    };
    let read = Read {
        kind: AuditKind::ResourceRead,
        resource,
        item: "resources:read",
        arguments: json!({ "uri": upstream_uri }),
        detail: json!({}),
        granted: &granted,
    };
    permitted(state, ctx, session, read).await?;
    let mut result = state
        .upstreams
        .read_resource(&granted, upstream_uri)
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))?;
    for content in &mut result.contents {
        if let ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } = content
        {
            *uri = uri_for(&granted, through.as_ref(), uri);
        }
    }
    Ok(result)
}

/// `resources/subscribe` (legacy sessions): the agent's session hears of updates to a
/// resource it may read, by the URI it named. Audited like a read.
pub async fn subscribe(
    state: &AppState,
    ctx: &AgentContext,
    session: &str,
    peer: rmcp::Peer<rmcp::RoleServer>,
    uri: &str,
) -> Result<(), GateError> {
    let resource = Some(format!("resource:{}", bounded(uri)));
    let (granted, upstream_uri, _) = match resolve_uri(state, ctx, uri).await? {
        Ok(found) => found,
        Err(why) => {
            let detail = json!({ "reasons": ["unknown resource"], "why": why, "subscribe": true });
            audit_deny(
                state,
                ctx,
                Some(session),
                AuditKind::ResourceRead,
                resource,
                detail,
            )
            .await?;
            return Err(GateError::UnknownResource(bounded(uri)));
        }
    };
    let read = Read {
        kind: AuditKind::ResourceRead,
        resource,
        item: "resources:read",
        arguments: json!({ "uri": upstream_uri }),
        detail: json!({ "subscribe": true }),
        granted: &granted,
    };
    permitted(state, ctx, Some(session), read).await?;
    state
        .upstreams
        .subscribe(
            &granted,
            upstream_uri,
            session.to_owned(),
            peer,
            uri.to_owned(),
        )
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))
}

/// `resources/unsubscribe`: the session stops hearing of the resource. Unknown URIs are
/// answered like any other (nothing to undo).
pub async fn unsubscribe(
    state: &AppState,
    ctx: &AgentContext,
    session: &str,
    uri: &str,
) -> Result<(), GateError> {
    let Ok((granted, upstream_uri, _)) = resolve_uri(state, ctx, uri).await? else {
        return Err(GateError::UnknownResource(bounded(uri)));
    };
    state
        .upstreams
        .unsubscribe(&granted, upstream_uri, session)
        .await
        .map_err(|e| GateError::Upstream(e.to_string()))
}

/// `prompts/list`: every granted connection's prompts, under the names the agent sees.
pub async fn list_prompts(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<&str>,
) -> Result<Vec<Prompt>, StoreError> {
    let listed: Vec<Prompt> = prompts_listed(state, ctx, session)
        .await?
        .into_iter()
        .map(|(_, mut p, name)| {
            p.name = name;
            p
        })
        .collect();
    let detail = json!({ "count": listed.len() });
    audit_allow(state, ctx, session, AuditKind::PromptsListed, None, detail).await?;
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
    let (granted, prompt) = match resolve_prompt(state, ctx, session, name).await? {
        Ok(found) => found,
        Err(why) => {
            let detail = json!({ "reasons": ["unknown prompt"], "why": why });
            audit_deny(state, ctx, session, AuditKind::PromptGet, resource, detail).await?;
            return Err(GateError::UnknownPrompt(bounded(name)));
        }
    };
    // The policies see the prompt's arguments, and its upstream name as `prompt`.
    let mut facts = arguments.clone().unwrap_or_default();
    facts.insert("prompt".to_owned(), json!(prompt));
    let read = Read {
        kind: AuditKind::PromptGet,
        resource,
        item: "prompts:get",
        arguments: serde_json::Value::Object(facts),
        detail: json!({}),
        granted: &granted,
    };
    permitted(state, ctx, session, read).await?;
    state
        .upstreams
        .get_prompt(&granted, prompt, arguments)
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
    let found = match &params.r#ref {
        Reference::Prompt(prompt) => resolve_prompt(state, ctx, None, &prompt.name).await?,
        Reference::Resource(template) => resolve_uri(state, ctx, &template.uri)
            .await?
            .map(|(g, uri, _)| (g, uri)),
        _ => Err("no such reference"),
    };
    let Ok((granted, upstream_name)) = found else {
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
