//! The facts of an access review: each active connection with its last use, every grant with
//! what its agent used of it, each agent's last call, and the tenant's secrets (metadata only).
//! What to recommend is the server's judgement; this module only reads, each query written
//! once for both backends.
//!
//! Use comes from the audit trail in one grouped query: every tool call, execution and
//! resource read of the tenant, whatever its decision (a refused attempt still shows that an
//! agent reaches for the tool), aggregated per resource and actor. A tool's resource is
//! `tool:{connection id}/{tool}`, a resource read's `resource:portcullis://{connection name}/…`;
//! a resource URI passed through unprefixed names no connection and counts for the agent only.

use crate::rows::parse_id;
use crate::sql::{Freshness, Scope, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::audit::AuditKind;
use std::collections::{BTreeMap, BTreeSet};

/// One active connection as a review sees it: never its URL, command or environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedConnection {
    pub id: ConnectionId,
    pub name: String,
    /// `stdio`, `http` (or any later kind), from the stored transport.
    pub kind: Option<String>,
    /// The vault secrets its stored transport names (stdio environment values
    /// `{"secret": NAME}`, an HTTP credential's `secret`).
    pub secrets: Vec<String>,
    pub created_at: UnixMillis,
    /// The newest tool call, execution or resource read that names it, by anyone.
    pub last_used_at: Option<UnixMillis>,
    /// The tools called through it at or after the review's `since`, by anyone.
    pub tools_used: BTreeSet<String>,
}

/// One grant of an active agent on an active connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedGrant {
    pub agent: AgentId,
    pub agent_name: String,
    pub connection: ConnectionId,
    pub connection_name: String,
    /// A tool name, or `*`.
    pub tool: String,
    pub created_at: UnixMillis,
    /// The agent's newest call of a tool the grant covers.
    pub last_used_at: Option<UnixMillis>,
    /// The tools the grant covers that the agent called at or after `since`.
    pub tools_used: BTreeSet<String>,
}

/// One active agent and its newest call of anything (a tool, an execution, a resource read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedAgent {
    pub id: AgentId,
    pub name: String,
    pub created_at: UnixMillis,
    pub last_call_at: Option<UnixMillis>,
}

/// Everything an access review of one tenant reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFacts {
    pub connections: Vec<ReviewedConnection>,
    pub grants: Vec<ReviewedGrant>,
    pub agents: Vec<ReviewedAgent>,
    pub secrets: Vec<SecretMeta>,
    /// The tools each active connection serves (as last synced), by connection.
    pub tools: BTreeMap<ConnectionId, BTreeSet<String>>,
}

/// The kind of a stored transport (`stdio`, `http`).
fn transport_kind(transport: &serde_json::Value) -> Option<String> {
    transport
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// The vault secret names a stored transport gives: the `secret` of each environment value
/// that is one (a stdio program's; a plain value names none), and the credential's `secret`
/// (`auth` of an HTTP upstream or API, whatever the kind).
fn transport_secrets(transport: &serde_json::Value) -> Vec<String> {
    let name = |v: &serde_json::Value| {
        v.get("secret")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let env = transport
        .get("env")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|env| env.values().filter_map(name));
    let auth = transport.get("auth").and_then(name);
    let mut names: Vec<String> = env.chain(auth).collect();
    names.sort();
    names.dedup();
    names
}

/// What one audited use names.
#[derive(Debug, PartialEq, Eq)]
enum Used<'a> {
    /// A tool of a connection, by connection id.
    Tool(&'a str, &'a str),
    /// A resource of a connection, by connection name.
    Resource(&'a str),
    Other,
}

fn used(resource: &str) -> Used<'_> {
    if let Some(rest) = resource.strip_prefix("tool:")
        && let Some((connection, tool)) = rest.split_once('/')
    {
        return Used::Tool(connection, tool);
    }
    if let Some(rest) = resource.strip_prefix("resource:portcullis://")
        && let Some((connection, _)) = rest.split_once('/')
    {
        return Used::Resource(connection);
    }
    Used::Other
}

/// One row of the grouped use query.
struct Use {
    resource: String,
    actor: String,
    last: UnixMillis,
}

fn later(a: Option<UnixMillis>, b: UnixMillis) -> Option<UnixMillis> {
    Some(a.map_or(b, |a| a.max(b)))
}

impl Store {
    /// The facts of an access review of `tenant`: what is used "recently" means at or after
    /// `since`. Revoked connections and agents, and grants touching them, are left out.
    pub async fn access_facts(
        &self,
        tenant: &TenantId,
        since: UnixMillis,
    ) -> StoreResult<AccessFacts> {
        let scope = Scope::Tenant(tenant);
        let t = tenant.as_str();
        let connections = all(
            self.read_all(
                scope,
                &sql("SELECT * FROM connections WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY name")
                    .text(t),
                Freshness::Any,
            )
            .await?,
            crate::rows::connection,
        )?;
        let agents = all(
            self.read_all(
                scope,
                &sql("SELECT * FROM agents WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY name")
                    .text(t),
                Freshness::Any,
            )
            .await?,
            crate::rows::agent,
        )?;
        let grants = self
            .read_all(
                scope,
                &sql("SELECT agent_id, connection_id, tool, created_at FROM grants WHERE tenant_id = $1 \
                      ORDER BY connection_id, agent_id, tool")
                .text(t),
                Freshness::Any,
            )
            .await?;
        let tool_rows = self
            .read_all(
                scope,
                &sql("SELECT connection_id, name FROM tools WHERE tenant_id = $1").text(t),
                Freshness::Any,
            )
            .await?;
        // Latest use per resource and actor, across the tenant's whole trail.
        let uses = self
            .read_all(
                scope,
                &sql(
                    "SELECT resource, actor, MAX(time) AS last FROM audit_events \
                     WHERE tenant_id = $1 AND kind IN ($2, $3, $4) AND resource IS NOT NULL \
                     GROUP BY resource, actor",
                )
                .text(t)
                .text(AuditKind::ToolCall.as_str())
                .text(AuditKind::Execute.as_str())
                .text(AuditKind::ResourceRead.as_str()),
                Freshness::Any,
            )
            .await?;
        let uses = all(uses, |row| {
            Ok(Use {
                resource: row.text("resource")?,
                actor: row.text("actor")?,
                last: row.int("last")?,
            })
        })?;
        let secrets = self.list_secrets(tenant).await?;

        let mut tools: BTreeMap<ConnectionId, BTreeSet<String>> = BTreeMap::new();
        for row in &tool_rows {
            let connection: ConnectionId = parse_id(row.text("connection_id")?)?;
            tools
                .entry(connection)
                .or_default()
                .insert(row.text("name")?);
        }
        tools.retain(|id, _| connections.iter().any(|c| &c.id == id));

        let mut reviewed: Vec<ReviewedConnection> = connections
            .iter()
            .map(|c| ReviewedConnection {
                id: c.id.clone(),
                name: c.name.clone(),
                kind: transport_kind(&c.transport),
                secrets: transport_secrets(&c.transport),
                created_at: c.created_at,
                last_used_at: None,
                tools_used: BTreeSet::new(),
            })
            .collect();
        let mut agent_last: BTreeMap<&str, UnixMillis> = BTreeMap::new();
        // (agent actor, connection id) → tool → its latest use by that agent.
        let mut by_agent: BTreeMap<(&str, &str), BTreeMap<&str, UnixMillis>> = BTreeMap::new();
        for u in &uses {
            if u.actor.starts_with("agent:") {
                let last = agent_last.entry(&u.actor).or_insert(u.last);
                *last = (*last).max(u.last);
            }
            let connection = match used(&u.resource) {
                Used::Tool(id, tool) => {
                    if u.actor.starts_with("agent:") {
                        let last = by_agent
                            .entry((&u.actor, id))
                            .or_default()
                            .entry(tool)
                            .or_insert(u.last);
                        *last = (*last).max(u.last);
                    }
                    let mut found = reviewed.iter_mut().find(|c| c.id.as_str() == id);
                    if let Some(c) = found.as_deref_mut()
                        && u.last >= since
                    {
                        c.tools_used.insert(tool.to_owned());
                    }
                    found
                }
                Used::Resource(name) => reviewed.iter_mut().find(|c| c.name == name),
                Used::Other => None,
            };
            if let Some(c) = connection {
                c.last_used_at = later(c.last_used_at, u.last);
            }
        }

        let agent_rows: Vec<ReviewedAgent> = agents
            .iter()
            .map(|a| ReviewedAgent {
                id: a.id.clone(),
                name: a.name.clone(),
                created_at: a.created_at,
                last_call_at: agent_last.get(format!("agent:{}", a.id).as_str()).copied(),
            })
            .collect();

        let mut reviewed_grants = Vec::new();
        for row in &grants {
            let agent: AgentId = parse_id(row.text("agent_id")?)?;
            let connection: ConnectionId = parse_id(row.text("connection_id")?)?;
            let (Some(a), Some(c)) = (
                agents.iter().find(|a| a.id == agent),
                connections.iter().find(|c| c.id == connection),
            ) else {
                continue;
            };
            let tool = row.text("tool")?;
            let actor = format!("agent:{agent}");
            let covered = by_agent
                .get(&(actor.as_str(), connection.as_str()))
                .into_iter()
                .flatten()
                .filter(|(name, _)| tool == "*" || **name == tool);
            let mut last_used_at = None;
            let mut tools_used = BTreeSet::new();
            for (name, last) in covered {
                last_used_at = later(last_used_at, *last);
                if *last >= since {
                    tools_used.insert((*name).to_owned());
                }
            }
            reviewed_grants.push(ReviewedGrant {
                agent,
                agent_name: a.name.clone(),
                connection,
                connection_name: c.name.clone(),
                tool,
                created_at: row.int("created_at")?,
                last_used_at,
                tools_used,
            });
        }
        reviewed_grants.sort_by(|a, b| {
            (&a.connection_name, &a.agent_name, &a.tool).cmp(&(
                &b.connection_name,
                &b.agent_name,
                &b.tool,
            ))
        });

        Ok(AccessFacts {
            connections: reviewed,
            grants: reviewed_grants,
            agents: agent_rows,
            secrets,
            tools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transport_secrets_names_only_vault_references() {
        let stdio = json!({
            "kind": "stdio", "program": "demo",
            "env": { "A": { "secret": "crm.A" }, "B": "plain value", "C": { "secret": "shared" } }
        });
        assert_eq!(transport_secrets(&stdio), vec!["crm.A", "shared"]);
        assert_eq!(transport_kind(&stdio).as_deref(), Some("stdio"));
        let http = json!({
            "kind": "http", "url": "https://example.test/mcp?key=x",
            "auth": { "kind": "bearer", "secret": "api-token" }
        });
        assert_eq!(transport_secrets(&http), vec!["api-token"]);
        let api = json!({ "kind": "api", "base_url": "https://x", "auth": { "kind": "header", "name": "X-Key", "secret": "k" } });
        assert_eq!(transport_secrets(&api), vec!["k"]);
        assert!(transport_secrets(&json!({ "kind": "http", "url": "https://x" })).is_empty());
        assert!(transport_secrets(&json!({ "command": "old" })).is_empty());
    }

    #[test]
    fn resources_name_their_connection() {
        assert_eq!(used("tool:c1/get_contact"), Used::Tool("c1", "get_contact"));
        assert_eq!(
            used("resource:portcullis://crm/contacts/1"),
            Used::Resource("crm")
        );
        assert_eq!(used("resource:file:///etc/x"), Used::Other);
        assert_eq!(used("tool:crm__get_contact"), Used::Other);
    }
}
