//! The periodic access review: every active connection, secret, grant and agent of a tenant
//! with its last use and (for secrets) its rotation status, and what to do about it — revoke
//! what went unused for `unused_days`, narrow `*` grants to the tools actually used, rotate
//! secrets that are due. Names, kinds and dates only: never a URL, a command, an environment
//! value or a secret's value. Approvers may read it too; it changes nothing.

use super::common::{ApiResult, AppRef, tenant_scope};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_store::{AccessFacts, SecretMeta, Tenant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub(super) fn routes() -> Router<AppRef> {
    Router::new().route("/access-review", get(access_review))
}

const DAY_MS: i64 = 86_400_000;

/// How long a rotation counts as due before it is overdue.
const DUE_WITHIN_DAYS: i64 = 7;

/// The default of [`ReviewQuery::unused_days`].
pub const DEFAULT_UNUSED_DAYS: u32 = 30;

/// The longest window a review may look back (ten years).
pub const MAX_UNUSED_DAYS: u32 = 3650;

/// `?tenant=NAME&unused_days=N`: one tenant (default: every tenant the human may see), and
/// after how many days without use something counts as unused (default 30, at most 3650).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    pub tenant: Option<String>,
    pub unused_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReview {
    pub generated_at: UnixMillis,
    pub unused_days: u32,
    pub tenants: Vec<TenantReview>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReview {
    pub tenant: String,
    pub connections: Vec<ConnectionReview>,
    pub secrets: Vec<SecretReview>,
    pub grants: Vec<GrantReview>,
    pub agents: Vec<AgentReview>,
    pub recommendations: Vec<Recommendation>,
}

/// Whether something was used within the review's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    Active,
    Unused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReview {
    pub name: String,
    /// `stdio`, `http` or `api`: the transport's kind only.
    pub kind: Option<String>,
    pub created_at: UnixMillis,
    /// The newest tool call, execution or resource read through it, by any agent.
    pub last_used_at: Option<UnixMillis>,
    /// How many grants (of active agents) it has.
    pub grants: usize,
    pub status: Usage,
}

/// Where a secret stands against its rotation period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// No rotation period.
    None,
    Ok,
    /// Due within seven days.
    Due,
    /// Past its due date.
    Overdue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretReview {
    pub name: String,
    pub version: u32,
    pub updated_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
    pub rotation_due_at: Option<UnixMillis>,
    pub rotation: Rotation,
    /// The active connections whose stored configuration names it.
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantReview {
    pub agent: String,
    pub connection: String,
    /// A tool name, or `*`.
    pub tool: String,
    pub created_at: UnixMillis,
    /// The agent's newest call of a tool the grant covers.
    pub last_used_at: Option<UnixMillis>,
    /// The tools the grant covers that the agent called within the window.
    pub tools_used: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReview {
    pub name: String,
    pub created_at: UnixMillis,
    pub last_call_at: Option<UnixMillis>,
    pub status: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RevokeConnection,
    DeleteSecret,
    RemoveGrant,
    NarrowGrant,
    RotateSecret,
}

impl Action {
    /// How a line of the review says it: `revoke connection`, `narrow grant`, ….
    pub fn words(self) -> &'static str {
        match self {
            Self::RevokeConnection => "revoke connection",
            Self::DeleteSecret => "delete secret",
            Self::RemoveGrant => "remove grant",
            Self::NarrowGrant => "narrow grant",
            Self::RotateSecret => "rotate secret",
        }
    }
}

/// One thing to do. `target`: a connection or secret name, or for a grant
/// `CONNECTION/TOOL for AGENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub action: Action,
    pub target: String,
    pub reason: String,
}

/// The review of every tenant this human may see (or the one it names).
pub(crate) async fn access_review(
    State(state): State<AppRef>,
    ctx: AdminContext,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> ApiResult<AccessReview> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let unused_days = q.unused_days.unwrap_or(DEFAULT_UNUSED_DAYS);
    if !(1..=MAX_UNUSED_DAYS).contains(&unused_days) {
        return Err(ApiError::BadRequest(format!(
            "unused_days must be between 1 and {MAX_UNUSED_DAYS}"
        )));
    }
    let tenants: Vec<Tenant> = match tenant_scope(&state, &ctx, q.tenant.as_deref()).await? {
        Some(id) => vec![state.store.tenant(&id).await?],
        None => state.store.list_tenants().await?,
    };
    let now = state.clock.now();
    let since = now - i64::from(unused_days) * DAY_MS;
    let mut reviews = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let facts = state.store.access_facts(&tenant.id, since).await?;
        reviews.push(review(tenant.name, &facts, now, unused_days));
    }
    Ok(Json(AccessReview {
        generated_at: now,
        unused_days,
        tenants: reviews,
    }))
}

/// Whole days from `then` to `now`.
fn days(now: UnixMillis, then: UnixMillis) -> i64 {
    (now - then).max(0) / DAY_MS
}

fn rotation(meta: &SecretMeta, now: UnixMillis) -> (Option<UnixMillis>, Rotation) {
    let Some(every) = meta.rotate_every_days else {
        return (None, Rotation::None);
    };
    let due_at = meta.updated_at + i64::from(every) * DAY_MS;
    let status = if now >= due_at {
        Rotation::Overdue
    } else if now >= due_at - DUE_WITHIN_DAYS * DAY_MS {
        Rotation::Due
    } else {
        Rotation::Ok
    };
    (Some(due_at), status)
}

/// One tenant's review from its facts: pure, so the judgement is tested without a server.
pub fn review(
    tenant: String,
    facts: &AccessFacts,
    now: UnixMillis,
    unused_days: u32,
) -> TenantReview {
    let since = now - i64::from(unused_days) * DAY_MS;
    let mut recommendations = Vec::new();

    let mut revoked = BTreeSet::new();
    let connections = facts
        .connections
        .iter()
        .map(|c| {
            let reference = c.last_used_at.unwrap_or(c.created_at);
            let status = if reference < since {
                Usage::Unused
            } else {
                Usage::Active
            };
            if status == Usage::Unused {
                revoked.insert(c.id.clone());
                let reason = match c.last_used_at {
                    Some(last) => format!("unused for {} days", days(now, last)),
                    None => format!(
                        "never used since created {} days ago",
                        days(now, c.created_at)
                    ),
                };
                recommendations.push(Recommendation {
                    action: Action::RevokeConnection,
                    target: c.name.clone(),
                    reason,
                });
            }
            ConnectionReview {
                name: c.name.clone(),
                kind: c.kind.clone(),
                created_at: c.created_at,
                last_used_at: c.last_used_at,
                grants: facts.grants.iter().filter(|g| g.connection == c.id).count(),
                status,
            }
        })
        .collect();

    let mut grants = Vec::with_capacity(facts.grants.len());
    for g in &facts.grants {
        let target = format!("{}/{} for {}", g.connection_name, g.tool, g.agent_name);
        // A grant is judged only after a whole window of evidence, and not at all when its
        // connection is to be revoked anyway.
        let observed = g.created_at < since && !revoked.contains(&g.connection);
        if observed && g.tools_used.is_empty() {
            recommendations.push(Recommendation {
                action: Action::RemoveGrant,
                target: target.clone(),
                reason: match g.last_used_at {
                    Some(last) => {
                        format!("{} last used it {} days ago", g.agent_name, days(now, last))
                    }
                    None => format!(
                        "{} never used it since it was granted {} days ago",
                        g.agent_name,
                        days(now, g.created_at)
                    ),
                },
            });
        } else if observed && g.tool == "*" {
            let known = facts.tools.get(&g.connection);
            let narrower = known.is_none_or(|all| g.tools_used.len() < all.len());
            if narrower {
                let used: Vec<&str> = g.tools_used.iter().map(String::as_str).collect();
                recommendations.push(Recommendation {
                    action: Action::NarrowGrant,
                    target: target.clone(),
                    reason: format!(
                        "{} used only {} in the last {unused_days} days{}: grant {} instead",
                        g.agent_name,
                        used.join(", "),
                        known.map_or(String::new(), |all| format!(" (of {} tools)", all.len())),
                        if used.len() == 1 { "it" } else { "them" },
                    ),
                });
            }
        }
        grants.push(GrantReview {
            agent: g.agent_name.clone(),
            connection: g.connection_name.clone(),
            tool: g.tool.clone(),
            created_at: g.created_at,
            last_used_at: g.last_used_at,
            tools_used: g.tools_used.iter().cloned().collect(),
        });
    }

    let mut secrets = Vec::with_capacity(facts.secrets.len());
    for s in &facts.secrets {
        let used_by: Vec<String> = facts
            .connections
            .iter()
            .filter(|c| c.secrets.contains(&s.name))
            .map(|c| c.name.clone())
            .collect();
        let (rotation_due_at, rotation) = rotation(s, now);
        let reference = s.last_used_at.unwrap_or(s.created_at);
        if used_by.is_empty() && reference < since {
            let reason = match s.last_used_at {
                Some(last) => format!(
                    "no connection uses it and it was unused for {} days",
                    days(now, last)
                ),
                None => format!(
                    "no connection uses it and it was never used since created {} days ago",
                    days(now, s.created_at)
                ),
            };
            recommendations.push(Recommendation {
                action: Action::DeleteSecret,
                target: s.name.clone(),
                reason,
            });
        } else if let (Some(due_at), Rotation::Due | Rotation::Overdue) =
            (rotation_due_at, rotation)
        {
            let every = s.rotate_every_days.unwrap_or_default();
            let reason = if rotation == Rotation::Overdue {
                format!(
                    "rotation overdue by {} days (every {every} days)",
                    days(now, due_at)
                )
            } else {
                format!(
                    "rotation due in {} days (every {every} days)",
                    days(due_at, now)
                )
            };
            recommendations.push(Recommendation {
                action: Action::RotateSecret,
                target: s.name.clone(),
                reason,
            });
        }
        secrets.push(SecretReview {
            name: s.name.clone(),
            version: s.version,
            updated_at: s.updated_at,
            last_used_at: s.last_used_at,
            rotation_due_at,
            rotation,
            used_by,
        });
    }

    let agents = facts
        .agents
        .iter()
        .map(|a| AgentReview {
            name: a.name.clone(),
            created_at: a.created_at,
            last_call_at: a.last_call_at,
            status: if a.last_call_at.unwrap_or(a.created_at) < since {
                Usage::Unused
            } else {
                Usage::Active
            },
        })
        .collect();

    recommendations.sort_by(|a, b| (a.action, &a.target).cmp(&(b.action, &b.target)));
    TenantReview {
        tenant,
        connections,
        secrets,
        grants,
        agents,
        recommendations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::id::{AgentId, ConnectionId, SecretId};
    use portcullis_store::{ReviewedAgent, ReviewedConnection, ReviewedGrant};

    const NOW: UnixMillis = 1_000 * DAY_MS;

    fn connection(name: &str, created: i64, last: Option<i64>) -> ReviewedConnection {
        ReviewedConnection {
            id: ConnectionId::generate(),
            name: name.into(),
            kind: Some("stdio".into()),
            secrets: vec![format!("{name}.KEY")],
            created_at: NOW - created * DAY_MS,
            last_used_at: last.map(|d| NOW - d * DAY_MS),
            tools_used: BTreeSet::new(),
        }
    }

    fn secret(name: &str, updated: i64, every: Option<u32>, last: Option<i64>) -> SecretMeta {
        SecretMeta {
            name: name.into(),
            id: SecretId::generate(),
            version: 1,
            kek_version: 1,
            created_at: NOW - updated * DAY_MS,
            updated_at: NOW - updated * DAY_MS,
            last_used_at: last.map(|d| NOW - d * DAY_MS),
            rotate_every_days: every,
            created_by: "admin:root".into(),
        }
    }

    fn lines(r: &TenantReview) -> Vec<String> {
        r.recommendations
            .iter()
            .map(|r| format!("{} {}: {}", r.action.words(), r.target, r.reason))
            .collect()
    }

    #[test]
    fn recommends_from_the_facts() {
        let crm = connection("crm", 60, Some(2));
        let mail = connection("mail", 42, None);
        let agent = AgentId::generate();
        let grant = |c: &ReviewedConnection, tool: &str, used: &[&str]| ReviewedGrant {
            agent: agent.clone(),
            agent_name: "bot".into(),
            connection: c.id.clone(),
            connection_name: c.name.clone(),
            tool: tool.into(),
            created_at: NOW - 40 * DAY_MS,
            last_used_at: (!used.is_empty()).then_some(NOW - 2 * DAY_MS),
            tools_used: used.iter().map(|s| (*s).to_owned()).collect(),
        };
        let facts = AccessFacts {
            grants: vec![
                grant(&crm, "*", &["get_contact"]),
                grant(&crm, "send_email", &[]),
                grant(&mail, "*", &[]),
            ],
            tools: [(
                crm.id.clone(),
                ["get_contact", "send_email"].map(String::from).into(),
            )]
            .into(),
            secrets: vec![
                secret("crm.KEY", 10, Some(15), Some(1)),
                secret("old", 50, None, None),
                secret("late", 40, Some(30), Some(40)),
                secret("fine", 1, Some(90), None),
            ],
            agents: vec![ReviewedAgent {
                id: agent.clone(),
                name: "bot".into(),
                created_at: NOW - 50 * DAY_MS,
                last_call_at: Some(NOW - 2 * DAY_MS),
            }],
            connections: vec![crm, mail],
        };
        let r = review("acme".into(), &facts, NOW, 30);
        assert_eq!(
            lines(&r),
            [
                "revoke connection mail: never used since created 42 days ago",
                "delete secret late: no connection uses it and it was unused for 40 days",
                "delete secret old: no connection uses it and it was never used since created 50 days ago",
                "remove grant crm/send_email for bot: bot never used it since it was granted 40 days ago",
                "narrow grant crm/* for bot: bot used only get_contact in the last 30 days (of 2 tools): grant it instead",
                "rotate secret crm.KEY: rotation due in 5 days (every 15 days)",
            ]
        );
        assert_eq!(r.connections[0].status, Usage::Active);
        assert_eq!(r.connections[0].grants, 2);
        assert_eq!(r.connections[1].status, Usage::Unused);
        let rotations: Vec<Rotation> = r.secrets.iter().map(|s| s.rotation).collect();
        assert_eq!(
            rotations,
            [
                Rotation::Due,
                Rotation::None,
                Rotation::Overdue,
                Rotation::Ok
            ]
        );
        assert_eq!(r.secrets[0].used_by, ["crm"]);
    }

    #[test]
    fn a_young_grant_is_not_judged_yet() {
        let crm = connection("crm", 5, Some(1));
        let facts = AccessFacts {
            grants: vec![ReviewedGrant {
                agent: AgentId::generate(),
                agent_name: "bot".into(),
                connection: crm.id.clone(),
                connection_name: "crm".into(),
                tool: "*".into(),
                created_at: NOW - 5 * DAY_MS,
                last_used_at: Some(NOW - DAY_MS),
                tools_used: ["get_contact".to_owned()].into(),
            }],
            connections: vec![crm],
            agents: Vec::new(),
            secrets: Vec::new(),
            tools: Default::default(),
        };
        assert!(
            review("t".into(), &facts, NOW, 30)
                .recommendations
                .is_empty()
        );
    }
}
