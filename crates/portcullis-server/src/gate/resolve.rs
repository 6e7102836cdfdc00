//! Resolve: which tools an agent may see, what a namespaced tool name refers to, and whether
//! a stored action is still callable as approved. The grant check is written once, here.
//!
//! INVARIANT: a name resolves only among what this agent may see — a live connection, a tool
//! granted to the agent, inside the token's scope. Anything else (another tenant's name, a
//! tool that does not exist, an ungranted or out-of-scope tool) is the one answer "unknown
//! tool", so an agent learns nothing about what it may not use; the audit trail records which
//! it was.

use super::GateError;
use crate::identity::AgentContext;
use crate::state::AppState;
use crate::upstream::Names;
use portcullis_core::UnixMillis;
use portcullis_core::action::Action;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::ConnectionId;
use portcullis_store::{Connection, Grant, StoreError, ToolRecord};
use serde_json::json;

/// Separator between connection and tool in the names agents see: `crm__send_email`.
/// Connection names cannot contain `_`, so the first `__` splits unambiguously.
pub const NAMESPACE_SEPARATOR: &str = "__";

/// A tool an agent may call: a live connection and one of its tools.
#[derive(Debug, Clone)]
pub struct Target {
    pub connection: Connection,
    pub tool: ToolRecord,
}

impl Target {
    /// The name agents see.
    pub fn agent_name(&self) -> String {
        format!(
            "{}{NAMESPACE_SEPARATOR}{}",
            self.connection.name, self.tool.name
        )
    }
}

/// A tool as listed to an agent: the target and the name the agent sees.
#[derive(Debug, Clone)]
pub struct Listed {
    pub target: Target,
    pub name: String,
}

/// How a connection names things to agents, read from its stored configuration (an
/// unreadable one stays namespaced).
pub fn naming(connection: &Connection) -> (Names, std::collections::BTreeMap<String, String>) {
    crate::upstream::ConnectionSpec::from_json(&connection.transport)
        .map(|spec| (spec.names, spec.aliases))
        .unwrap_or_default()
}

/// The names agents see for `items` (connection name, the connection's naming, the
/// upstream's name), in order. Namespaced (`connection__name`) unless the connection gives an
/// alias or passes its own names through; a plain name that is not a valid plain name, or
/// that two items would share, stays namespaced for every item that wanted it — so what one
/// agent sees never collides, and the namespaced name always works too.
pub fn exposed_names(items: &[(&str, Option<String>, &str)]) -> Vec<String> {
    let mut wanted: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (_, plain, _) in items {
        if let Some(plain) = plain {
            *wanted.entry(plain.as_str()).or_default() += 1;
        }
    }
    items
        .iter()
        .map(|(connection, plain, name)| match plain {
            Some(plain)
                if wanted.get(plain.as_str()) == Some(&1)
                    && crate::upstream::valid_plain_name(plain) =>
            {
                plain.clone()
            }
            _ => format!("{connection}{NAMESPACE_SEPARATOR}{name}"),
        })
        .collect()
}

/// The plain name a connection would like `name` shown under, if any.
pub fn plain_name(
    names: Names,
    aliases: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    aliases
        .get(name)
        .cloned()
        .or_else(|| (names == Names::Upstream).then(|| name.to_owned()))
}

/// The grant check: whether an agent's grants cover a connection's tool (`*` covers all).
pub fn granted(grants: &[Grant], connection: &ConnectionId, tool: &str) -> bool {
    grants
        .iter()
        .any(|g| &g.connection == connection && (g.tool == "*" || g.tool == tool))
}

/// Whether the agent may use this tool at all: live, granted, in the token's scope.
fn usable(ctx: &AgentContext, grants: &[Grant], connection: &Connection, tool: &str) -> bool {
    connection.revoked_at.is_none()
        && granted(grants, &connection.id, tool)
        && ctx.scope_covers(&connection.name, tool)
}

/// What a connection offers besides tools. A grant or scope names it by its item (`*`, and a
/// scope naming the whole connection, cover it too); tool names cannot contain `:`, so an
/// item never collides with a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offering {
    /// Resources and resource templates: grant item `resources:*`.
    Resources,
    /// Prompts: grant item `prompts:*`.
    Prompts,
}

impl Offering {
    /// The grant and scope item.
    pub fn item(self) -> &'static str {
        match self {
            Offering::Resources => "resources:*",
            Offering::Prompts => "prompts:*",
        }
    }
}

/// A live connection whose resources or prompts this agent may use, found by the grant check
/// below. Only this module makes one (the field is private), and the upstream supervisor
/// serves resources, prompts and completions only for one: the counterpart, for what is not
/// a tool call, of the `Permit` a tool call needs.
#[derive(Debug, Clone)]
pub struct Granted {
    connection: Connection,
    offering: Offering,
}

impl Granted {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn offering(&self) -> Offering {
        self.offering
    }
}

/// Every connection whose `offering` this agent may use.
pub async fn offering(
    state: &AppState,
    ctx: &AgentContext,
    offering: Offering,
) -> Result<Vec<Granted>, StoreError> {
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let connections = state.cache.connections(&state.store, &ctx.tenant).await?;
    Ok(connections
        .iter()
        .filter(|c| usable(ctx, &grants, c, offering.item()))
        .map(|c| Granted {
            connection: c.clone(),
            offering,
        })
        .collect())
}

/// The connection named `connection_name`, when this agent may use its `offering`; `Err`
/// says why not (for the audit trail only: the agent hears "not found" whatever it was).
pub async fn offered(
    state: &AppState,
    ctx: &AgentContext,
    connection_name: &str,
    offering: Offering,
) -> Result<Result<Granted, &'static str>, StoreError> {
    let connection = match live_connection(state, ctx, connection_name).await? {
        Ok(connection) => connection,
        Err(why) => return Ok(Err(why)),
    };
    if let Err(why) = may_use(state, ctx, &connection, offering.item()).await? {
        return Ok(Err(why));
    }
    Ok(Ok(Granted {
        connection,
        offering,
    }))
}

/// Every tool this agent may see.
pub async fn visible(state: &AppState, ctx: &AgentContext) -> Result<Vec<Target>, StoreError> {
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let connections = state.cache.connections(&state.store, &ctx.tenant).await?;
    for connection in connections.iter() {
        if connection.revoked_at.is_some() || !grants.iter().any(|g| g.connection == connection.id)
        {
            continue;
        }
        let tools = state
            .cache
            .tools(&state.store, &ctx.tenant, &connection.id)
            .await?;
        for tool in tools.iter() {
            if usable(ctx, &grants, connection, &tool.name) {
                out.push(Target {
                    connection: connection.clone(),
                    tool: tool.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Every visible tool with the name the agent sees.
async fn listed(state: &AppState, ctx: &AgentContext) -> Result<Vec<Listed>, StoreError> {
    let visible = visible(state, ctx).await?;
    let mut namings = std::collections::HashMap::new();
    let items: Vec<(&str, Option<String>, &str)> = visible
        .iter()
        .map(|t| {
            let (names, aliases) = namings
                .entry(t.connection.id.clone())
                .or_insert_with(|| naming(&t.connection));
            (
                t.connection.name.as_str(),
                plain_name(*names, aliases, &t.tool.name),
                t.tool.name.as_str(),
            )
        })
        .collect();
    let names = exposed_names(&items);
    Ok(visible
        .into_iter()
        .zip(names)
        .map(|(target, name)| Listed { target, name })
        .collect())
}

/// `tools/list`: every visible tool; the listing is audited.
pub async fn list(
    state: &AppState,
    ctx: &AgentContext,
    session: Option<String>,
) -> Result<Vec<Listed>, StoreError> {
    let visible = listed(state, ctx).await?;
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolsListed)
        .detail(json!({ "count": visible.len() }));
    draft.session = session;
    state.store.append_audit(draft, state.clock.now()).await?;
    Ok(visible)
}

/// The tool a call names, when this agent may use it. Otherwise the refusal is audited (with
/// the real reason) and the agent gets [`GateError::UnknownTool`].
pub async fn target(
    state: &AppState,
    ctx: &AgentContext,
    name: &str,
    session: Option<&str>,
    now: UnixMillis,
) -> Result<Target, GateError> {
    let why = match find(state, ctx, name).await? {
        Ok(target) => return Ok(target),
        Err(why) => why,
    };
    let mut draft = AuditDraft::new(ctx.tenant.clone(), ctx.actor(), AuditKind::ToolCall)
        .resource(format!("tool:{name}"));
    draft.session = session.map(str::to_owned);
    draft.decision = Some("deny".into());
    draft.detail = json!({ "reasons": ["unknown tool"], "why": why });
    state.store.append_audit(draft, now).await?;
    state.metrics.decision("deny");
    Err(GateError::UnknownTool(name.to_owned()))
}

/// The tenant's live connection named `name`.
async fn live_connection(
    state: &AppState,
    ctx: &AgentContext,
    name: &str,
) -> Result<Result<Connection, &'static str>, StoreError> {
    let connections = state.cache.connections(&state.store, &ctx.tenant).await?;
    Ok(connections
        .iter()
        .find(|c| c.name == name && c.revoked_at.is_none())
        .cloned()
        .ok_or("no such connection"))
}

/// Whether the agent's grants and its token's scope cover `item` (a tool, or an
/// [`Offering`]'s item) of `connection`.
async fn may_use(
    state: &AppState,
    ctx: &AgentContext,
    connection: &Connection,
    item: &str,
) -> Result<Result<(), &'static str>, StoreError> {
    let grants = state
        .cache
        .grants(&state.store, &ctx.tenant, &ctx.agent)
        .await?;
    Ok(if !granted(&grants, &connection.id, item) {
        Err("not granted to this agent")
    } else if !ctx.scope_covers(&connection.name, item) {
        Err("outside this token's scope")
    } else {
        Ok(())
    })
}

async fn find(
    state: &AppState,
    ctx: &AgentContext,
    name: &str,
) -> Result<Result<Target, &'static str>, StoreError> {
    let Some((connection_name, tool_name)) = name.split_once(NAMESPACE_SEPARATOR) else {
        // A plain name: one the agent sees because its connection passes names through or
        // gives an alias (and it collides with nothing else the agent sees).
        let found = listed(state, ctx)
            .await?
            .into_iter()
            .find(|l| l.name == name);
        return Ok(found.map(|l| l.target).ok_or("no tool of that name"));
    };
    let connection = match live_connection(state, ctx, connection_name).await? {
        Ok(connection) => connection,
        Err(why) => return Ok(Err(why)),
    };
    let tools = state
        .cache
        .tools(&state.store, &ctx.tenant, &connection.id)
        .await?;
    let Some(tool) = tools.iter().find(|t| t.name == tool_name) else {
        return Ok(Err("no such tool"));
    };
    if let Err(why) = may_use(state, ctx, &connection, &tool.name).await? {
        return Ok(Err(why));
    }
    Ok(Ok(Target {
        connection,
        tool: tool.clone(),
    }))
}

/// Whether an approved action can still run exactly as approved, read fresh from the store:
/// its connection live, the tool's current definition the approved one, the agent still
/// granted and in scope. `Err` says why not.
pub async fn still_callable(
    state: &AppState,
    ctx: &AgentContext,
    action: &Action,
) -> Result<Result<Target, &'static str>, StoreError> {
    let connection = match state
        .store
        .connection(&ctx.tenant, &action.connection)
        .await
    {
        Ok(connection) => connection,
        Err(StoreError::NotFound) => return Ok(Err("the tool no longer exists")),
        Err(e) => return Err(e),
    };
    let tool = match state
        .store
        .tool(&ctx.tenant, &action.connection, &action.tool)
        .await
    {
        Ok(tool) => tool,
        Err(StoreError::NotFound) => return Ok(Err("the tool no longer exists")),
        Err(e) => return Err(e),
    };
    let grants = state
        .store
        .grants_for_agent(&ctx.tenant, &ctx.agent)
        .await?;
    Ok(if connection.revoked_at.is_some() {
        Err("the connection was revoked")
    } else if tool.current_hash != action.tool_definition_hash {
        Err("the tool's definition changed since approval")
    } else if !granted(&grants, &connection.id, &tool.name) {
        Err("the tool is no longer granted to this agent")
    } else if !ctx.scope_covers(&connection.name, &tool.name) {
        Err("the tool is outside this token's scope")
    } else {
        Ok(Target { connection, tool })
    })
}
