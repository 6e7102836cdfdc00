//! Authentication of agents (MCP endpoint) and humans (admin API), with per-IP lockout after
//! repeated failures and a per-token rate limit. Every refusal is audited.
//!
//! With SQLite (one process) the counters live in memory. With a shared store (several
//! replicas on PostgreSQL) they live in the database, so spreading requests over replicas
//! does not multiply a client's budget; if the database cannot be reached, requests are
//! refused (fail closed).

use crate::config::ForwardedHeader;
use crate::guards::ClientKey;
use crate::identity::{AdminContext, AgentContext};
use crate::state::AppState;
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{TenantId, TokenId};
use portcullis_core::token::{TokenKind, looks_like, token_hash};
use portcullis_store::StoreError;
use std::net::IpAddr;

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

/// The client a request comes from. The forwarding header is believed only when the
/// connecting peer is a trusted proxy; then the client is the right-most address in it that
/// is not itself a trusted proxy (anything left of it could have been written by the client).
pub fn client_ip(
    peer: IpAddr,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    if header == ForwardedHeader::XForwardedFor {
        for value in headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            hops.extend(value.split(',').filter_map(|h| parse_hop(h.trim())));
        }
    } else {
        let forwarded = headers
            .get_all(http::header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for value in forwarded {
            for element in value.split(',') {
                let client = element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| value.trim().trim_matches('"'))
                });
                if let Some(hop) = client.and_then(parse_hop) {
                    hops.push(hop);
                }
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|hop| !is_trusted(hop))
        .unwrap_or(peer)
}

/// One forwarding hop: `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`. Obfuscated or unknown hops are skipped.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(inside, _)| inside.parse().ok())
}

fn lockout_rule(state: &AppState) -> portcullis_store::LockoutRule {
    let auth = &state.config.auth;
    portcullis_store::LockoutRule {
        threshold: auth.lockout_threshold,
        window_ms: (auth.lockout_window_secs * 1000) as i64,
        lockout_ms: (auth.lockout_secs * 1000) as i64,
    }
}

/// A lockout in force: it ends at `until`; from `valid_from` on, a valid credential from the
/// address is served again (`auth.lockout_valid_credential_secs`), so failures one process
/// provokes cannot keep everyone else at that address out for the whole lockout.
#[derive(Debug, Clone, Copy)]
struct Lockout {
    until: UnixMillis,
    valid_from: UnixMillis,
}

fn secs_until(at: UnixMillis, now: UnixMillis) -> u64 {
    (at.saturating_sub(now).max(1) as u64).div_ceil(1000)
}

impl Lockout {
    /// Before any credential is read: inside the lockout's first seconds everything is
    /// refused (told when valid credentials are served again); after them, the request goes
    /// on, and only a valid credential gets through ([`Lockout::refusal`]).
    fn admit_attempt(lockout: Option<Self>, now: UnixMillis) -> Result<(), AuthRefusal> {
        match lockout {
            Some(l) if now < l.valid_from => Err(AuthRefusal::LockedOut {
                retry_after_secs: secs_until(l.valid_from.min(l.until), now),
            }),
            _ => Ok(()),
        }
    }

    /// A wrong credential during a lockout: refused until the lockout ends, not counted
    /// again (the lockout was already audited).
    fn refusal(self, now: UnixMillis) -> AuthRefusal {
        AuthRefusal::LockedOut {
            retry_after_secs: secs_until(self.until, now),
        }
    }
}

/// The lockout `ip` is under, if any.
async fn locked(
    state: &AppState,
    ip: IpAddr,
    now: UnixMillis,
) -> Result<Option<Lockout>, AuthRefusal> {
    let until = locked_until(state, ip, now).await?;
    let auth = &state.config.auth;
    Ok(until.map(|until| {
        let started = until - (auth.lockout_secs * 1000) as i64;
        Lockout {
            until,
            valid_from: started + (auth.lockout_valid_credential_secs * 1000) as i64,
        }
    }))
}

/// When `ip`'s lockout ends, if it is locked out.
async fn locked_until(
    state: &AppState,
    ip: IpAddr,
    now: UnixMillis,
) -> Result<Option<UnixMillis>, AuthRefusal> {
    let key = ClientKey::of(ip);
    if let Some(shared) = state.store.shared_counters() {
        let check = shared
            .request_check(&key.to_string())
            .await
            .map_err(|_| AuthRefusal::Unavailable)?;
        // INVARIANT: before anything is served from the cache, a change committed on any
        // replica since this replica last looked invalidates it.
        state
            .cache
            .observe_shared_generation(check.access_generation);
        let until = check.locked_until;
        if until > now {
            return Ok(Some(until));
        }
        // Failures this replica could not write to the shared counters (see `fail`).
        return Ok(state.guards.locked_in_memory(key, now));
    }
    Ok(state.guards.locked_in_memory(key, now))
}

/// Count one failure; `Ok(true)` when this failure starts a lockout. On PostgreSQL a
/// failure that cannot be written to the shared counters is still counted here (`Err`,
/// with the same meaning), and the request answers "unavailable": counting fails closed.
async fn fail(state: &AppState, ip: IpAddr, now: UnixMillis) -> Result<bool, bool> {
    let key = ClientKey::of(ip);
    if let Some(shared) = state.store.shared_counters() {
        return match shared
            .record_auth_failure(&key.to_string(), now, &lockout_rule(state))
            .await
        {
            Ok(started) => Ok(started),
            Err(e) => {
                tracing::error!(error = %e, "cannot count an authentication failure in the shared counters; counting in memory");
                Err(state.guards.fail_in_memory(key, now, &lockout_rule(state)))
            }
        };
    }
    Ok(state.guards.fail_in_memory(key, now, &lockout_rule(state)))
}

/// Take one request from the token's rate budget. With shared counters (PostgreSQL) this
/// replica spends a lease of tokens taken from the shared bucket in advance, and asks the
/// database only when its lease is spent or lapsed (see [`crate::guards::lease_size`]).
async fn take(
    state: &AppState,
    token: &TokenId,
    now: UnixMillis,
) -> Result<Result<(), (u64, bool)>, AuthRefusal> {
    let auth = &state.config.auth;
    let rule = portcullis_store::RateRule {
        per_ms: f64::from(auth.rate_limit_per_minute) / 60_000.0,
        burst: f64::from(auth.rate_limit_burst),
    };
    let Some(shared) = state.store.shared_counters() else {
        return Ok(state
            .guards
            .take_in_memory(token, now, rule.per_ms, rule.burst));
    };
    if state.guards.spend_lease(token, now) {
        return Ok(Ok(()));
    }
    let _refill = state.guards.refill_lock(token).lock().await;
    // Another request may have refilled the lease while this one waited.
    if state.guards.spend_lease(token, now) {
        return Ok(Ok(()));
    }
    let want = crate::guards::lease_size(auth.rate_limit_burst);
    match shared
        .take_rate_tokens(token, now, &rule, want)
        .await
        .map_err(|_| AuthRefusal::Unavailable)?
    {
        portcullis_store::RateLease::Granted(granted) => {
            // This request spends one; the rest wait in memory for the next ones.
            state.guards.lease(token, granted - 1, now);
            Ok(Ok(()))
        }
        portcullis_store::RateLease::Limited {
            retry_after_ms,
            first_refusal,
        } => Ok(Err((
            (retry_after_ms.max(0) as u64).div_ceil(1000),
            first_refusal,
        ))),
    }
}

fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Record a failed authentication: count it against the client and audit it (and the
/// lockout, if it starts one). The audit goes to the named tenant's chain when that tenant
/// exists, else to the system chain. `Err` when the failure could not be counted where it
/// should have been (the shared counters): the request is then refused as unavailable.
async fn record_failure(
    state: &AppState,
    ip: IpAddr,
    chain: TenantId,
    surface: &str,
    reason: &str,
) -> Result<(), AuthRefusal> {
    let now = state.clock.now();
    state.metrics.auth_failures.inc();
    let counted = fail(state, ip, now).await;
    let locked = match counted {
        Ok(started) | Err(started) => started,
    };
    let client = ClientKey::of(ip);
    let draft = AuditDraft::new(chain.clone(), format!("ip:{ip}"), AuditKind::AuthFailed)
        .resource(surface.to_owned())
        .detail(serde_json::json!({ "reason": reason, "counted_as": client.to_string() }));
    if let Err(e) = state.store.append_audit(draft, now).await {
        tracing::error!(error = %e, "could not audit an authentication failure");
    }
    if locked {
        tracing::warn!(%ip, counted_as = %client, "address locked out after repeated authentication failures");
        let draft = AuditDraft::new(chain, format!("ip:{ip}"), AuditKind::LockedOut)
            .resource(surface.to_owned())
            .detail(serde_json::json!({ "lockout_secs": state.config.auth.lockout_secs, "counted_as": client.to_string() }));
        if let Err(e) = state.store.append_audit(draft, now).await {
            tracing::error!(error = %e, "could not audit a lockout");
        }
    }
    match counted {
        Ok(_) => Ok(()),
        Err(_) => Err(AuthRefusal::Unavailable),
    }
}

/// The refusal after a failed authentication: unauthenticated, or unavailable when the
/// failure could not be counted.
async fn refuse(
    state: &AppState,
    ip: IpAddr,
    lockout: Option<Lockout>,
    chain: TenantId,
    surface: &str,
    reason: &str,
) -> AuthRefusal {
    if let Some(lockout) = lockout {
        state.metrics.auth_failures.inc();
        return lockout.refusal(state.clock.now());
    }
    match record_failure(state, ip, chain, surface, reason).await {
        Ok(()) => AuthRefusal::Unauthenticated,
        Err(refusal) => refusal,
    }
}

/// A request that proves itself by something other than a token — a signature over its body
/// (an inbound webhook), a password and code (console sign-in) — under the same lockout as
/// every other credential.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    lockout: Option<Lockout>,
    ip: IpAddr,
}

/// Before the proof is checked: refused while `ip` is in the first seconds of a lockout.
pub async fn admit_attempt(state: &AppState, ip: IpAddr) -> Result<Attempt, AuthRefusal> {
    let now = state.clock.now();
    let lockout = locked(state, ip, now).await?;
    Lockout::admit_attempt(lockout, now)?;
    Ok(Attempt { lockout, ip })
}

/// A proof that failed: counted and audited on `surface` (the reason, never the proof) like
/// any failed authentication, towards the address's lockout.
pub async fn refuse_attempt(
    state: &AppState,
    attempt: Attempt,
    chain: TenantId,
    surface: &str,
    reason: &str,
) -> AuthRefusal {
    refuse(state, attempt.ip, attempt.lockout, chain, surface, reason).await
}

/// Authenticate a scrape of `/metrics` on the main listener: the bearer token's SHA-256 must
/// be `metrics.token_sha256` (compared in constant time). Without one configured, refused.
pub async fn authenticate_metrics(
    state: &AppState,
    peer: IpAddr,
    headers: &http::HeaderMap,
) -> Result<(), AuthRefusal> {
    let now = state.clock.now();
    let ip = client_ip(
        peer,
        headers,
        &state.trusted_proxies,
        state.config.server.forwarded_header,
    );
    let lockout = locked(state, ip, now).await?;
    Lockout::admit_attempt(lockout, now)?;
    let expected = state.config.metrics.token_sha256.to_ascii_lowercase();
    let presented = bearer(
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let matches = match presented {
        Some(token) if !expected.is_empty() => {
            let hash = portcullis_core::sha256_hex(token.as_bytes());
            constant_time_eq(hash.as_bytes(), expected.as_bytes())
        }
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(refuse(
            state,
            ip,
            lockout,
            TenantId::system(),
            "metrics",
            "missing or wrong metrics token",
        )
        .await)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authenticate an agent for the MCP endpoint of the tenant named `tenant_name`.
pub async fn authenticate_agent(
    state: &AppState,
    ip: IpAddr,
    tenant_name: &str,
    authorization: Option<&str>,
) -> Result<AgentContext, AuthRefusal> {
    let now = state.clock.now();
    let lockout = locked(state, ip, now).await?;
    Lockout::admit_attempt(lockout, now)?;
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
        return Err(refuse(
            state,
            ip,
            lockout,
            chain,
            surface,
            "missing or malformed agent token",
        )
        .await);
    };
    let auth = match state
        .cache
        .agent_token(&state.store, &token_hash(presented))
        .await
    {
        Ok(auth) => auth,
        Err(StoreError::NotFound) => {
            return Err(refuse(state, ip, lockout, chain, surface, "unknown agent token").await);
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
        return Err(refuse(state, ip, lockout, chain, surface, reason).await);
    }
    if auth.agent_suspended || auth.tenant_suspended {
        return Err(AuthRefusal::Suspended);
    }
    // A session spends its parent's budget: minting sessions never multiplies a rate limit.
    let bucket = auth.token.parent.as_ref().unwrap_or(&auth.token.id);
    if let Err((retry_after_secs, first)) = take(state, bucket, now).await? {
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
        token_expires_at: auth.token.expires_at,
        parent_token: auth.token.parent,
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
    let lockout = locked(state, ip, now).await?;
    Lockout::admit_attempt(lockout, now)?;
    let surface = "admin";
    let Some(presented) = bearer(authorization).filter(|t| looks_like(TokenKind::Admin, t)) else {
        return Err(refuse(
            state,
            ip,
            lockout,
            TenantId::system(),
            surface,
            "missing or malformed admin token",
        )
        .await);
    };
    // INVARIANT: every request reads the credential from the store, so a revocation,
    // rotation or expiry is honoured on the very next request, on every replica.
    match state
        .store
        .admin_by_token_hash(&token_hash(presented))
        .await
    {
        Ok(admin) if admin.is_usable(now) => Ok(AdminContext { admin, ip }),
        Ok(admin) => {
            let reason = if admin.revoked_at.is_some() {
                "admin credential revoked"
            } else {
                "admin credential expired"
            };
            Err(refuse(state, ip, lockout, TenantId::system(), surface, reason).await)
        }
        Err(StoreError::NotFound) => Err(refuse(
            state,
            ip,
            lockout,
            TenantId::system(),
            surface,
            "unknown admin token",
        )
        .await),
        Err(_) => Err(AuthRefusal::Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let xff = ForwardedHeader::XForwardedFor;
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        // An untrusted peer's claims are ignored.
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(stranger, &spoofed, &trusted, xff), stranger);
        assert_eq!(client_ip(proxy, &spoofed, &[], xff), proxy);
        // Behind a trusted proxy: the right-most hop that is not a trusted proxy.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(
            client_ip(proxy, &chain, &trusted, xff),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
        )]);
        assert_eq!(
            client_ip(proxy, &forwarded, &trusted, ForwardedHeader::Forwarded),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        // Only the configured header: a client's own `Forwarded` passed through by a proxy
        // that writes `X-Forwarded-For` names nobody.
        let both = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(proxy, &both, &trusted, xff),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &forwarded, &trusted, xff), proxy);
        // Garbage or nothing: the proxy itself.
        let garbage = headers(&[("x-forwarded-for", "unknown, _hidden")]);
        assert_eq!(client_ip(proxy, &garbage, &trusted, xff), proxy);
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_v4_as_v4() {
        let a = ClientKey::of("2001:db8:1:2::1".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            ClientKey::of("::ffff:192.0.2.1".parse().unwrap()),
            ClientKey::of("192.0.2.1".parse().unwrap())
        );
    }
}
