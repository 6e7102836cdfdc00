//! What every resource of the admin API shares: the state handle and result type, the
//! authenticated human as an extractor, the scope checks (role, tenant, approval, connection,
//! agent), name and id validation, and the small response shapes several resources answer
//! with.

use crate::auth::authenticate_admin;
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{ApprovalId, ConnectionId, TenantId};
use portcullis_store::{Agent, Approval, Connection, Tenant};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) type AppRef = Arc<AppState>;
pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

impl FromRequestParts<AppRef> for AdminContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppRef,
    ) -> Result<Self, Self::Rejection> {
        state.metrics.request("admin");
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let ip = crate::auth::client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
            state.config.server.forwarded_header,
        );
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ctx = authenticate_admin(state, ip, header).await?;
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str().to_owned());
        read_only_roles(&ctx, &parts.method, route.as_deref(), parts.uri.path())?;
        Ok(ctx)
    }
}

/// Auditors and viewers change nothing: every request of theirs but a read (and the
/// self-service of their own credential, and an auditor's share link) is refused here,
/// before any handler runs. Viewers do not read the audit trail. Decided on the route's
/// template (`/tenants/{tenant}/audit/…`), never on names in the path, which people choose.
fn read_only_roles(
    ctx: &AdminContext,
    method: &http::Method,
    route: Option<&str>,
    path: &str,
) -> Result<(), ApiError> {
    let role = ctx.admin.role;
    if role.may_change() {
        return Ok(());
    }
    let strip =
        |p: &'static str, s: &'_ str| -> String { s.strip_prefix(p).unwrap_or(s).to_owned() };
    // No template (never expected): nothing is open but reads outside the audit trail.
    let route = route.map(|r| strip("/admin/v1", r));
    let path = strip("/admin/v1", path);
    let route = route.as_deref().unwrap_or("");
    let own = route.starts_with("/admins/me")
        || (route.starts_with("/admins/{admin}")
            && path
                .split('/')
                .nth(2)
                .is_some_and(|key| key == ctx.admin.id.as_str() || key == ctx.admin.name));
    let sharing = role == portcullis_store::AdminRole::Auditor
        && *method == http::Method::POST
        && route == "/tenants/{tenant}/shares";
    if !own && !sharing && !matches!(*method, http::Method::GET | http::Method::HEAD) {
        return Err(ApiError::Forbidden(format!(
            "the {} role only reads",
            role.as_str()
        )));
    }
    let audit = route.is_empty()
        || route.starts_with("/audit")
        || route.starts_with("/tenants/{tenant}/audit");
    if !role.may_read_audit() && audit {
        return Err(ApiError::Forbidden(
            "the viewer role does not read the audit trail".into(),
        ));
    }
    Ok(())
}

pub(crate) fn require_admin(ctx: &AdminContext) -> Result<(), ApiError> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this needs the admin role".into()))
    }
}

/// Resolve a tenant name for this human; another tenant's name is "not found".
pub(crate) async fn tenant_for(
    state: &AppState,
    ctx: &AdminContext,
    name: &str,
) -> Result<Tenant, ApiError> {
    let tenant = state.store.tenant_by_name(name).await?;
    if !ctx.may_access(&tenant.id) {
        return Err(ApiError::NotFound);
    }
    Ok(tenant)
}

/// The tenant a query names, or else the one this human is limited to (`None`: every tenant,
/// for an unscoped human).
pub(crate) async fn tenant_scope(
    state: &AppState,
    ctx: &AdminContext,
    name: Option<&str>,
) -> Result<Option<TenantId>, ApiError> {
    match (name, &ctx.admin.tenant) {
        (Some(name), _) => Ok(Some(tenant_for(state, ctx, name).await?.id)),
        (None, scoped) => Ok(scoped.clone()),
    }
}

pub(crate) fn parse_id<T: std::str::FromStr>(value: &str) -> Result<T, ApiError> {
    // An id of the wrong shape cannot name anything: "not found", like another tenant's id.
    value.parse().map_err(|_| ApiError::NotFound)
}

pub(crate) fn valid_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{kind} name `{name}` must be 1-32 of a-z, 0-9 and -"
        )))
    }
}

/// Find an approval this human may see; anything else is "not found".
pub(crate) async fn approval_for(
    state: &AppState,
    ctx: &AdminContext,
    id: &str,
) -> Result<Approval, ApiError> {
    let id: ApprovalId = parse_id(id)?;
    let approval = state
        .store
        .find_approval(ctx.admin.tenant.as_ref(), &id, state.clock.now())
        .await?;
    Ok(approval)
}

/// A connection (by id) of a tenant this human may act on.
pub(crate) async fn connection_in(
    state: &AppState,
    ctx: &AdminContext,
    tenant: &str,
    connection: &str,
) -> Result<(Tenant, Connection), ApiError> {
    let tenant = tenant_for(state, ctx, tenant).await?;
    let id: ConnectionId = parse_id(connection)?;
    let connection = state.store.connection(&tenant.id, &id).await?;
    Ok((tenant, connection))
}

/// An agent of the tenant, by id or by name.
pub(crate) async fn agent_in(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
) -> Result<Agent, ApiError> {
    let agents = state.store.list_agents(tenant).await?;
    agents
        .into_iter()
        .find(|a| a.id.as_str() == key || a.name == key)
        .ok_or(ApiError::NotFound)
}

/// The audit entry an admin change of `resource` in `tenant` appends.
pub(crate) fn draft(
    tenant: &TenantId,
    ctx: &AdminContext,
    kind: AuditKind,
    resource: String,
) -> AuditDraft {
    AuditDraft::new(tenant.clone(), ctx.actor(), kind).resource(resource)
}

/// `?tenant=`: one tenant by name, where the human may name one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantQuery {
    pub tenant: Option<String>,
}

/// The answer to revoking an agent, a token or a connection: its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked<Id> {
    pub revoked: Id,
}

/// Reads a store enum back from its wire name with its own `parse`: the store's types only
/// serialise, and the API's views must read what they wrote.
pub(crate) fn from_wire<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let value = String::deserialize(deserializer)?;
    parse(&value).ok_or_else(|| serde::de::Error::custom(format!("unknown {what} `{value}`")))
}
