//! Who is calling: an authenticated agent (MCP endpoint) or human (admin API). Plain values
//! the rest of the server passes around; authentication itself is `auth`.

use portcullis_core::id::{AgentId, TenantId, TokenId};
use portcullis_store::{Admin, AdminRole};
use std::net::IpAddr;

/// An authenticated agent request: which tenant, which agent, which token and its scope.
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub tenant: TenantId,
    pub tenant_name: String,
    pub agent: AgentId,
    pub agent_name: String,
    /// The human the agent acts for, if recorded (may not approve its actions).
    pub agent_owner: Option<String>,
    pub token: TokenId,
    pub scope: Vec<String>,
    pub ip: IpAddr,
    /// When the presented token stops working (a session's: its own or its parent's, the
    /// earlier).
    pub token_expires_at: portcullis_core::UnixMillis,
    /// Set when the presented token is a short-lived session: the token it was exchanged for.
    pub parent_token: Option<TokenId>,
}

impl AgentContext {
    pub fn actor(&self) -> String {
        format!("agent:{}", self.agent)
    }

    /// Whether the token's scope covers this connection and tool (empty scope: everything granted).
    pub fn scope_covers(&self, connection: &str, tool: &str) -> bool {
        self.scope.is_empty()
            || self.scope.iter().any(|s| {
                s == connection
                    || s.split_once('/')
                        .is_some_and(|(c, t)| c == connection && t == tool)
            })
    }
}

/// An authenticated human on the admin API.
#[derive(Debug, Clone)]
pub struct AdminContext {
    pub admin: Admin,
    pub ip: IpAddr,
}

impl AdminContext {
    pub fn actor(&self) -> String {
        format!("admin:{}", self.admin.name)
    }

    /// Whether this human may act on `tenant` at all.
    pub fn may_access(&self, tenant: &TenantId) -> bool {
        self.admin.tenant.as_ref().is_none_or(|t| t == tenant)
    }

    pub fn is_admin(&self) -> bool {
        self.admin.role == AdminRole::Admin
    }
}
