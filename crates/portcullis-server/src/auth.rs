//! Authentication of agents (MCP endpoint) and humans (admin API), with per-IP lockout after
//! repeated failures and a per-token rate limit. Every refusal is audited.
//!
//! With SQLite (one process) the counters live in memory. With a shared store (several
//! replicas on PostgreSQL) they live in the database, so spreading requests over replicas
//! does not multiply a client's budget; if the database cannot be reached, requests are
//! refused (fail closed).

use crate::state::AppState;
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{AgentId, TenantId, TokenId};
use portcullis_core::token::{TokenKind, looks_like, token_hash};
use portcullis_store::{Admin, AdminRole, StoreError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

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

/// Why a request was refused before it reached the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Missing, malformed, unknown, revoked or expired credentials, or another tenant's token.
    /// One answer for all of them, so a prober learns nothing.
    Unauthenticated,
    LockedOut {
        retry_after_secs: u64,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    /// The agent or its whole tenant is suspended (the kill switch). Valid credentials, so
    /// it says so; not counted towards the address's lockout.
    Suspended,
    /// The store could not be read: fail closed.
    Unavailable,
}

#[derive(Default)]
struct Failures {
    window_start: UnixMillis,
    count: u32,
    locked_until: UnixMillis,
}

struct Bucket {
    tokens: f64,
    last: UnixMillis,
    limited: bool,
}

/// In-memory lockout and rate-limit counters.
#[derive(Default)]
pub struct Guards {
    failures: Mutex<HashMap<IpAddr, Failures>>,
    buckets: Mutex<HashMap<TokenId, Bucket>>,
}

impl Guards {
    fn lockout_rule(state: &AppState) -> portcullis_store::LockoutRule {
        let auth = &state.config.auth;
        portcullis_store::LockoutRule {
            threshold: auth.lockout_threshold,
            window_ms: (auth.lockout_window_secs * 1000) as i64,
            lockout_ms: (auth.lockout_secs * 1000) as i64,
        }
    }

    /// Seconds until `ip` may try again, if it is locked out.
    async fn locked(
        &self,
        ip: IpAddr,
        now: UnixMillis,
        state: &AppState,
    ) -> Result<Option<u64>, AuthRefusal> {
        if let Some(shared) = state.store.shared_counters() {
            let check = shared
                .request_check(&ip.to_string())
                .await
                .map_err(|_| AuthRefusal::Unavailable)?;
            // INVARIANT: before anything is served from the cache, a change committed on any
            // replica since this replica last looked invalidates it.
            state
                .cache
                .observe_shared_generation(check.access_generation);
            let until = check.locked_until;
            return Ok((until > now).then(|| ((until - now) as u64).div_ceil(1000)));
        }
        Ok(self.locked_in_memory(ip, now))
    }

    async fn fail(&self, ip: IpAddr, now: UnixMillis, state: &AppState) -> bool {
        if let Some(shared) = state.store.shared_counters() {
            return match shared
                .record_auth_failure(&ip.to_string(), now, &Self::lockout_rule(state))
                .await
            {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!(error = %e, "cannot count an authentication failure");
                    false
                }
            };
        }
        self.fail_in_memory(ip, now, state)
    }

    async fn take(
        &self,
        token: &TokenId,
        now: UnixMillis,
        state: &AppState,
    ) -> Result<Result<(), (u64, bool)>, AuthRefusal> {
        if let Some(shared) = state.store.shared_counters() {
            let auth = &state.config.auth;
            let rule = portcullis_store::RateRule {
                per_ms: f64::from(auth.rate_limit_per_minute) / 60_000.0,
                burst: f64::from(auth.rate_limit_burst),
            };
            return match shared
                .take_rate_token(token, now, &rule)
                .await
                .map_err(|_| AuthRefusal::Unavailable)?
            {
                portcullis_store::RateDecision::Allowed => Ok(Ok(())),
                portcullis_store::RateDecision::Limited {
                    retry_after_ms,
                    first_refusal,
                } => Ok(Err((
                    (retry_after_ms.max(0) as u64).div_ceil(1000),
                    first_refusal,
                ))),
            };
        }
        Ok(self.take_in_memory(token, now, state))
    }

    fn locked_in_memory(&self, ip: IpAddr, now: UnixMillis) -> Option<u64> {
        let map = self.failures.lock().expect("lock poisoned");
        map.get(&ip)
            .filter(|f| f.locked_until > now)
            .map(|f| ((f.locked_until - now) as u64).div_ceil(1000))
    }

    /// Count one failure; returns true when this failure starts a lockout.
    fn fail_in_memory(&self, ip: IpAddr, now: UnixMillis, state: &AppState) -> bool {
        let auth = &state.config.auth;
        let mut map = self.failures.lock().expect("lock poisoned");
        let entry = map.entry(ip).or_default();
        if now - entry.window_start > (auth.lockout_window_secs * 1000) as i64 {
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count += 1;
        if entry.count >= auth.lockout_threshold && entry.locked_until <= now {
            entry.locked_until = now + (auth.lockout_secs * 1000) as i64;
            entry.count = 0;
            return true;
        }
        false
    }

    /// Take one request from the token's bucket. `Err((retry_after, first))` when empty;
    /// `first` is true for the first refusal of an episode (that one is audited).
    fn take_in_memory(
        &self,
        token: &TokenId,
        now: UnixMillis,
        state: &AppState,
    ) -> Result<(), (u64, bool)> {
        let auth = &state.config.auth;
        let per_ms = f64::from(auth.rate_limit_per_minute) / 60_000.0;
        let burst = f64::from(auth.rate_limit_burst);
        let mut map = self.buckets.lock().expect("lock poisoned");
        let bucket = map.entry(token.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
            limited: false,
        });
        bucket.tokens = (bucket.tokens + (now - bucket.last).max(0) as f64 * per_ms).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = false;
            Ok(())
        } else {
            let first = !bucket.limited;
            bucket.limited = true;
            Err((
                ((1.0 - bucket.tokens) / per_ms / 1000.0).ceil() as u64,
                first,
            ))
        }
    }
}

fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Record a failed authentication: count it against the address and audit it (and the
/// lockout, if it starts one). The audit goes to the named tenant's chain when that tenant
/// exists, else to the system chain.
async fn record_failure(
    state: &AppState,
    ip: IpAddr,
    chain: TenantId,
    surface: &str,
    reason: &str,
) {
    let now = state.clock.now();
    state.metrics.auth_failures.inc();
    let locked = state.guards.fail(ip, now, state).await;
    let draft = AuditDraft::new(chain.clone(), format!("ip:{ip}"), AuditKind::AuthFailed)
        .resource(surface.to_owned())
        .detail(serde_json::json!({ "reason": reason }));
    if let Err(e) = state.store.append_audit(draft, now).await {
        tracing::error!(error = %e, "could not audit an authentication failure");
    }
    if locked {
        tracing::warn!(%ip, "address locked out after repeated authentication failures");
        let draft = AuditDraft::new(chain, format!("ip:{ip}"), AuditKind::LockedOut)
            .resource(surface.to_owned())
            .detail(serde_json::json!({ "lockout_secs": state.config.auth.lockout_secs }));
        if let Err(e) = state.store.append_audit(draft, now).await {
            tracing::error!(error = %e, "could not audit a lockout");
        }
    }
}

/// Authenticate an agent for the MCP endpoint of the tenant named `tenant_name`.
pub async fn authenticate_agent(
    state: &AppState,
    ip: IpAddr,
    tenant_name: &str,
    authorization: Option<&str>,
) -> Result<AgentContext, AuthRefusal> {
    let now = state.clock.now();
    if let Some(retry_after_secs) = state.guards.locked(ip, now, state).await? {
        return Err(AuthRefusal::LockedOut { retry_after_secs });
    }
    let path_tenant = match state.cache.tenant_by_name(&state.store, tenant_name).await {
        Ok(t) => Some(t),
        Err(StoreError::NotFound) => None,
        Err(_) => return Err(AuthRefusal::Unavailable),
    };
    let chain = path_tenant
        .as_ref()
        .map_or_else(TenantId::system, |t| t.id.clone());
    let surface = "mcp";
    let Some(presented) = bearer(authorization).filter(|t| looks_like(TokenKind::Agent, t)) else {
        record_failure(
            state,
            ip,
            chain,
            surface,
            "missing or malformed agent token",
        )
        .await;
        return Err(AuthRefusal::Unauthenticated);
    };
    let auth = match state
        .cache
        .agent_token(&state.store, &token_hash(presented))
        .await
    {
        Ok(auth) => auth,
        Err(StoreError::NotFound) => {
            record_failure(state, ip, chain, surface, "unknown agent token").await;
            return Err(AuthRefusal::Unauthenticated);
        }
        Err(_) => return Err(AuthRefusal::Unavailable),
    };
    let reason = if path_tenant
        .as_ref()
        .is_none_or(|t| t.id != auth.token.tenant)
    {
        Some("token belongs to another tenant")
    } else if auth.token.revoked_at.is_some() {
        Some("token revoked")
    } else if auth.agent_revoked {
        Some("agent revoked")
    } else if now >= auth.token.expires_at {
        Some("token expired")
    } else {
        None
    };
    if let Some(reason) = reason {
        record_failure(state, ip, chain, surface, reason).await;
        return Err(AuthRefusal::Unauthenticated);
    }
    if auth.agent_suspended || auth.tenant_suspended {
        return Err(AuthRefusal::Suspended);
    }
    if let Err((retry_after_secs, first)) = state.guards.take(&auth.token.id, now, state).await? {
        if first {
            let draft = AuditDraft::new(
                auth.token.tenant.clone(),
                format!("agent:{}", auth.token.agent),
                AuditKind::RateLimited,
            )
            .resource(format!("token:{}", auth.token.id));
            if let Err(e) = state.store.append_audit(draft, now).await {
                tracing::error!(error = %e, "could not audit a rate limit");
            }
        }
        return Err(AuthRefusal::RateLimited { retry_after_secs });
    }
    Ok(AgentContext {
        tenant: auth.token.tenant,
        tenant_name: auth.tenant_name,
        agent: auth.token.agent,
        agent_name: auth.agent_name,
        agent_owner: auth.agent_owner,
        token: auth.token.id,
        scope: auth.token.scope,
        ip,
    })
}

/// Authenticate a human for the admin API. Agent tokens are never accepted here, so an agent
/// can never approve its own (or any) action.
pub async fn authenticate_admin(
    state: &AppState,
    ip: IpAddr,
    authorization: Option<&str>,
) -> Result<AdminContext, AuthRefusal> {
    let now = state.clock.now();
    if let Some(retry_after_secs) = state.guards.locked(ip, now, state).await? {
        return Err(AuthRefusal::LockedOut { retry_after_secs });
    }
    let surface = "admin";
    let Some(presented) = bearer(authorization).filter(|t| looks_like(TokenKind::Admin, t)) else {
        record_failure(
            state,
            ip,
            TenantId::system(),
            surface,
            "missing or malformed admin token",
        )
        .await;
        return Err(AuthRefusal::Unauthenticated);
    };
    match state
        .store
        .admin_by_token_hash(&token_hash(presented))
        .await
    {
        Ok(admin) if admin.revoked_at.is_none() => Ok(AdminContext { admin, ip }),
        Ok(_) => {
            record_failure(
                state,
                ip,
                TenantId::system(),
                surface,
                "admin credential revoked",
            )
            .await;
            Err(AuthRefusal::Unauthenticated)
        }
        Err(StoreError::NotFound) => {
            record_failure(
                state,
                ip,
                TenantId::system(),
                surface,
                "unknown admin token",
            )
            .await;
            Err(AuthRefusal::Unauthenticated)
        }
        Err(_) => Err(AuthRefusal::Unavailable),
    }
}
