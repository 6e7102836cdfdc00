//! The admin API (`/admin/v1`): tenants, agents and tokens, connections and their tools,
//! grants, approvals and the audit trail. Humans only: agent tokens are refused here.
//!
//! Request and response types live beside their handlers. Tenants are addressed by name.

use crate::auth::authenticate_admin;
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::effect::EffectClass;
use portcullis_core::id::*;
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) type AppRef = Arc<AppState>;
pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router() -> Router<AppRef> {
    Router::new()
        .route("/tenants", post(create_tenant).get(list_tenants))
        .route("/admins", post(create_admin).get(list_admins))
        .route("/admins/me", get(whoami))
        .route("/admins/{admin}/revoke", post(revoke_admin))
        .route("/admins/{admin}/rotate", post(rotate_admin))
        .route("/admins/{admin}/expiry", put(set_admin_expiry))
        .route("/programs", get(list_programs))
        .route(
            "/tenants/{tenant}/agents",
            post(create_agent).get(list_agents),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}/revoke",
            post(revoke_agent),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}/tokens",
            post(create_token),
        )
        .route(
            "/tenants/{tenant}/tokens/{token}/revoke",
            post(revoke_token),
        )
        .route(
            "/tenants/{tenant}/connections",
            post(create_connection).get(list_connections),
        )
        .route(
            "/tenants/{tenant}/connections/{connection}/revoke",
            post(revoke_connection),
        )
        .route(
            "/tenants/{tenant}/connections/{connection}/restart",
            post(restart_connection),
        )
        .route(
            "/tenants/{tenant}/connections/{connection}/tools",
            get(list_tools),
        )
        .route(
            "/tenants/{tenant}/connections/{connection}/tools/{tool}",
            put(classify_tool),
        )
        .route(
            "/tenants/{tenant}/connections/{connection}/tools/{tool}/accept",
            post(accept_tool),
        )
        .route("/tenants/{tenant}/grants", post(add_grant))
        .route("/tenants/{tenant}/grants/revoke", post(remove_grant))
        .route("/approvals", get(list_approvals))
        .route("/approvals/{approval}", get(show_approval))
        .route("/approvals/{approval}/approve", post(approve))
        .route("/approvals/{approval}/deny", post(deny))
        .route("/audit/verify", get(verify_audit))
        .route("/audit/checkpoint", post(checkpoint_audit))
        .route("/audit/events", get(audit_events))
        .merge(crate::trust::router())
        .merge(crate::amend::router())
}

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
        Ok(authenticate_admin(state, ip, header).await?)
    }
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

// ---- tenants and humans

// Request bodies refuse unknown fields: a misspelt field (`scopes` for `scope`) must not be
// silently dropped and create something wider than asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameIn {
    name: String,
}

async fn create_tenant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Json(body): Json<NameIn>,
) -> ApiResult<Tenant> {
    require_admin(&ctx)?;
    if ctx.admin.tenant.is_some() {
        return Err(ApiError::Forbidden(
            "a tenant-scoped admin cannot create tenants".into(),
        ));
    }
    valid_name("tenant", &body.name)?;
    Ok(Json(
        state
            .store
            .create_tenant(&body.name, &ctx.actor(), state.clock.now())
            .await?,
    ))
}

async fn list_tenants(State(state): State<AppRef>, ctx: AdminContext) -> ApiResult<Vec<Tenant>> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(
        tenants
            .into_iter()
            .filter(|t| ctx.may_access(&t.id))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminIn {
    name: String,
    role: String,
    tenant: Option<String>,
    /// Life of the credential in seconds; none: until revoked.
    ttl_secs: Option<u64>,
}

/// The longest a human's credential may be given at once (a year); rotate to extend.
const MAX_ADMIN_TTL_SECS: u64 = 366 * 24 * 3600;

fn admin_expiry(now: i64, ttl_secs: Option<u64>) -> Result<Option<i64>, ApiError> {
    match ttl_secs {
        None => Ok(None),
        Some(ttl) if ttl == 0 || ttl > MAX_ADMIN_TTL_SECS => Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {MAX_ADMIN_TTL_SECS}"
        ))),
        Some(ttl) => Ok(Some(now + ttl as i64 * 1000)),
    }
}

/// A human as the API shows them: never a token or its hash.
fn admin_json(admin: &Admin, tenant_name: Option<&str>) -> Value {
    json!({
        "id": admin.id, "name": admin.name, "role": admin.role,
        "tenant": tenant_name, "tenant_id": admin.tenant,
        "created_at": admin.created_at, "created_by": admin.created_by,
        "expires_at": admin.expires_at, "rotated_at": admin.rotated_at,
        "rotated_by": admin.rotated_by,
        "revoked_at": admin.revoked_at,
    })
}

async fn create_admin(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Json(body): Json<AdminIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    valid_name("admin", &body.name)?;
    let role = AdminRole::parse(&body.role)
        .ok_or_else(|| ApiError::BadRequest("role must be `admin` or `approver`".into()))?;
    let tenant = match &body.tenant {
        Some(name) => Some(tenant_for(&state, &ctx, name).await?),
        None if ctx.admin.tenant.is_some() => {
            return Err(ApiError::Forbidden(
                "a tenant-scoped admin can only create humans in its tenant".into(),
            ));
        }
        None => None,
    };
    let now = state.clock.now();
    let expires_at = admin_expiry(now, body.ttl_secs)?;
    let secret = BearerSecret::generate(TokenKind::Admin);
    let admin = state
        .store
        .create_admin(
            NewAdmin {
                name: &body.name,
                role,
                tenant: tenant.as_ref().map(|t| &t.id),
                token_hash: &secret.hash(),
                created_by: &ctx.admin.name,
                expires_at,
            },
            &ctx.actor(),
            now,
        )
        .await?;
    Ok(Json(json!({
        "admin": admin_json(&admin, tenant.as_ref().map(|t| t.name.as_str())),
        "token": secret.expose(),
        "note": "shown once; only its hash is stored",
    })))
}

#[derive(Deserialize)]
struct AdminsQuery {
    tenant: Option<String>,
}

/// Humans this admin may manage: a tenant-scoped admin sees its tenant's; an unscoped admin
/// sees everyone (or one tenant's with `?tenant=`).
async fn list_admins(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<AdminsQuery>,
) -> ApiResult<Vec<Value>> {
    require_admin(&ctx)?;
    let scope = match (&q.tenant, &ctx.admin.tenant) {
        (Some(name), _) => Some(tenant_for(&state, &ctx, name).await?.id),
        (None, scoped) => scoped.clone(),
    };
    let admins = state.store.list_admins(scope.as_ref()).await?;
    let tenants = state.store.list_tenants().await?;
    let name_of = |id: &Option<TenantId>| {
        id.as_ref()
            .and_then(|id| tenants.iter().find(|t| &t.id == id))
            .map(|t| t.name.clone())
    };
    Ok(Json(
        admins
            .iter()
            .map(|a| admin_json(a, name_of(&a.tenant).as_deref()))
            .collect(),
    ))
}

async fn whoami(ctx: AdminContext) -> ApiResult<Value> {
    Ok(Json(admin_json(&ctx.admin, None)))
}

/// The human named (or with id) `key` that this human may manage: themselves, or — for an
/// admin — anyone in their scope. Anyone else is "not found".
async fn managed_admin(
    state: &AppState,
    ctx: &AdminContext,
    key: &str,
    self_allowed: bool,
) -> Result<Admin, ApiError> {
    let target = if key.starts_with("adm_") {
        let id: AdminId = parse_id(key)?;
        state
            .store
            .list_admins(None)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or(ApiError::NotFound)?
    } else {
        state.store.admin_by_name(key).await?
    };
    let is_self = target.id == ctx.admin.id;
    let in_scope = match &ctx.admin.tenant {
        None => true,
        Some(mine) => target.tenant.as_ref() == Some(mine),
    };
    if !in_scope && !is_self {
        return Err(ApiError::NotFound);
    }
    if is_self && self_allowed {
        return Ok(target);
    }
    require_admin(ctx)?;
    Ok(target)
}

fn admin_draft(ctx: &AdminContext, target: &Admin, kind: AuditKind) -> AuditDraft {
    let chain = target.tenant.clone().unwrap_or_else(TenantId::system);
    AuditDraft::new(chain, ctx.actor(), kind).resource(format!("admin:{}", target.id))
}

/// Revoke a human's credential: refused on their next request. Admins revoke anyone in
/// scope; anyone may revoke themselves.
async fn revoke_admin(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(key): Path<String>,
) -> ApiResult<Value> {
    let target = managed_admin(&state, &ctx, &key, true).await?;
    let draft =
        admin_draft(&ctx, &target, AuditKind::AdminRevoked).detail(json!({ "name": target.name }));
    let (admin, _) = state
        .store
        .revoke_admin(&target.id, draft, state.clock.now())
        .await?;
    Ok(Json(admin_json(&admin, None)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateIn {
    ttl_secs: Option<u64>,
}

/// Refuse a change that would let a human lengthen their own credential's life: on their own
/// credential anyone may keep or shorten the expiry, never clear or extend it.
fn only_shorter(ctx: &AdminContext, target: &Admin, new: Option<i64>) -> Result<(), ApiError> {
    if target.id != ctx.admin.id {
        return Ok(());
    }
    let longer = match (target.expires_at, new) {
        (Some(_), None) => true,
        (Some(current), Some(new)) => new > current,
        (None, _) => false,
    };
    if longer {
        return Err(ApiError::Forbidden(
            "you may shorten your own credential's life, not extend or clear it; ask another admin"
                .into(),
        ));
    }
    Ok(())
}

/// Replace a human's token: the old one stops working at once, the new one is shown once. The
/// expiry is kept unless `ttl_secs` sets a new one. Admins rotate anyone in scope; anyone may
/// rotate their own (keeping or shortening its life). Who rotated is recorded: they have held
/// the new token.
async fn rotate_admin(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(key): Path<String>,
    body: Option<Json<RotateIn>>,
) -> ApiResult<Value> {
    let target = managed_admin(&state, &ctx, &key, true).await?;
    let now = state.clock.now();
    let expires_at = match body.and_then(|b| b.0.ttl_secs) {
        Some(ttl) => admin_expiry(now, Some(ttl))?,
        None => target.expires_at,
    };
    only_shorter(&ctx, &target, expires_at)?;
    let secret = BearerSecret::generate(TokenKind::Admin);
    let draft = admin_draft(&ctx, &target, AuditKind::AdminRotated).detail(
        json!({ "name": target.name, "expires_at": expires_at, "rotated_by": ctx.admin.name }),
    );
    let (admin, _) = state
        .store
        .rotate_admin(
            &target.id,
            &secret.hash(),
            expires_at,
            &ctx.admin.name,
            draft,
            now,
        )
        .await?;
    Ok(Json(json!({
        "admin": admin_json(&admin, None),
        "token": secret.expose(),
        "note": "shown once; only its hash is stored; the previous token no longer works",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiryIn {
    /// Unix milliseconds, or null for no expiry.
    expires_at: Option<i64>,
}

/// Set or clear when a human's credential expires (admins; on their own credential only
/// shorter).
async fn set_admin_expiry(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(key): Path<String>,
    Json(body): Json<ExpiryIn>,
) -> ApiResult<Value> {
    let target = managed_admin(&state, &ctx, &key, false).await?;
    only_shorter(&ctx, &target, body.expires_at)?;
    let now = state.clock.now();
    if let Some(at) = body.expires_at
        && at > now + MAX_ADMIN_TTL_SECS as i64 * 1000
    {
        return Err(ApiError::BadRequest(
            "an expiry is at most a year away; rotate to extend".into(),
        ));
    }
    let draft = admin_draft(&ctx, &target, AuditKind::AdminChanged)
        .detail(json!({ "name": target.name, "expires_at": body.expires_at }));
    let (admin, _) = state
        .store
        .set_admin_expiry(&target.id, body.expires_at, draft, now)
        .await?;
    Ok(Json(admin_json(&admin, None)))
}

/// The operator's program catalog as an admin may see it: the entries offered to its tenant
/// (an unscoped admin sees every entry and whom it is offered to), their descriptions and
/// what a tenant may set — never the command line or the operator's environment.
async fn list_programs(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<AdminsQuery>,
) -> ApiResult<Vec<Value>> {
    require_admin(&ctx)?;
    let tenant = match (&q.tenant, &ctx.admin.tenant) {
        (Some(name), _) => Some(tenant_for(&state, &ctx, name).await?.name),
        (None, Some(id)) => Some(state.store.tenant(id).await?.name),
        (None, None) => None,
    };
    Ok(Json(
        state
            .catalog
            .programs(tenant.as_deref())
            .map(|p| {
                let mut entry = json!({
                    "name": p.name,
                    "description": p.description,
                    "tenant_args": p.tenant_arg_patterns().collect::<Vec<_>>(),
                    "tenant_env": p.tenant_env_names().collect::<Vec<_>>(),
                });
                if ctx.admin.tenant.is_none() {
                    entry["tenants"] = json!(p.tenants());
                }
                entry
            })
            .collect(),
    ))
}

// ---- agents and tokens

async fn create_agent(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<NameIn>,
) -> ApiResult<Agent> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    valid_name("agent", &body.name)?;
    Ok(Json(
        state
            .store
            .create_agent(&tenant.id, &body.name, &ctx.actor(), state.clock.now())
            .await?,
    ))
}

async fn list_agents(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<Agent>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    Ok(Json(state.store.list_agents(&tenant.id).await?))
}

async fn revoke_agent(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    state
        .store
        .revoke_agent(
            &tenant.id,
            &parse_id(&agent)?,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(json!({ "revoked": agent })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    #[serde(default)]
    scope: Vec<String>,
    ttl_secs: Option<u64>,
}

async fn create_token(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, agent)): Path<(String, String)>,
    Json(body): Json<TokenIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let agent: AgentId = parse_id(&agent)?;
    let max = state.config.auth.token_ttl_secs.max(366 * 24 * 3600);
    let ttl = body.ttl_secs.unwrap_or(state.config.auth.token_ttl_secs);
    if ttl == 0 || ttl > max {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {max}"
        )));
    }
    for entry in &body.scope {
        let (connection, tool) = entry.split_once('/').unwrap_or((entry, ""));
        valid_name("connection", connection)?;
        if entry.contains('/') && tool.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "scope entry `{entry}` names no tool"
            )));
        }
    }
    let now = state.clock.now();
    let secret = BearerSecret::generate(TokenKind::Agent);
    let token = state
        .store
        .create_token(
            NewToken {
                tenant: &tenant.id,
                agent: &agent,
                token_hash: &secret.hash(),
                scope: &body.scope,
                expires_at: now + (ttl as i64) * 1000,
            },
            &ctx.actor(),
            now,
        )
        .await?;
    Ok(Json(
        json!({ "token": secret.expose(), "id": token.id, "expires_at": token.expires_at, "scope": token.scope, "note": "shown once; only its hash is stored" }),
    ))
}

async fn revoke_token(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, token)): Path<(String, String)>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    state
        .store
        .revoke_token(
            &tenant.id,
            &parse_id(&token)?,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(json!({ "revoked": token })))
}

// ---- connections and tools

#[derive(Deserialize)]
struct ConnectionIn {
    name: String,
    #[serde(flatten)]
    spec: crate::upstream::ConnectionSpec,
}

/// Register a connection. A stdio connection names a program from the operator's catalog and
/// only the extra arguments and environment that entry allows; anything else (a `command`, an
/// unknown program, a value outside an entry's patterns) is refused, audited, and changes
/// nothing.
async fn create_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let refused = |reason: String| {
        let state = state.clone();
        let (tenant, actor) = (tenant.id.clone(), ctx.actor());
        async move {
            let draft = AuditDraft::new(tenant, actor, AuditKind::ConfigRefused)
                .resource("connections".to_owned())
                .detail(json!({ "reason": reason }));
            state.store.append_audit(draft, state.clock.now()).await?;
            Err::<Json<Value>, ApiError>(ApiError::BadRequest(reason))
        }
    };
    if raw.get("command").is_some() || raw.get("cmd").is_some() {
        return refused(
            "a stdio connection names a program from the operator's catalog (`program`); tenants cannot choose a command (see `portcullis programs`)".into(),
        )
        .await;
    }
    let body: ConnectionIn = match serde_json::from_value(raw) {
        Ok(body) => body,
        // serde's message may quote a value; the audit keeps only that the shape was wrong.
        Err(e) => {
            let draft = AuditDraft::new(tenant.id.clone(), ctx.actor(), AuditKind::ConfigRefused)
                .resource("connections".to_owned())
                .detail(json!({ "reason": "the connection request is not a valid connection" }));
            state.store.append_audit(draft, state.clock.now()).await?;
            return Err(ApiError::BadRequest(format!("invalid connection: {e}")));
        }
    };
    valid_name("connection", &body.name)?;
    if let Err(reason) = body.spec.validate(&state.catalog, &tenant.name) {
        return refused(reason).await;
    }
    let connection = state
        .store
        .create_connection(
            &tenant.id,
            &body.name,
            &body.spec.to_json(),
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    state.upstreams.start(connection.clone());
    Ok(Json(
        json!({ "id": connection.id, "name": connection.name, "created_at": connection.created_at }),
    ))
}

async fn list_connections(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<Value>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let connections = state.store.list_connections(&tenant.id).await?;
    // Transport details (commands, environment, URLs) may carry secrets: never echoed back.
    Ok(Json(
        connections
            .into_iter()
            .map(|c| {
                json!({
                    "id": c.id, "name": c.name, "kind": c.transport.get("kind"),
                    "program": c.transport.get("program"),
                    "created_at": c.created_at, "revoked_at": c.revoked_at,
                    "status": state.upstreams.status(&c.id),
                })
            })
            .collect(),
    ))
}

async fn revoke_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: ConnectionId = parse_id(&connection)?;
    state
        .store
        .revoke_connection(&tenant.id, &id, &ctx.actor(), state.clock.now())
        .await?;
    state.upstreams.stop(&id);
    Ok(Json(json!({ "revoked": id })))
}

/// Reconnect a connection's upstream now (a stdio upstream is relaunched) and re-list its
/// tools; changed definitions are pinned as changed, as on any reconnection.
async fn restart_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (_, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    if connection.revoked_at.is_some() || !state.upstreams.restart(&connection.id) {
        return Err(ApiError::Conflict("connection is not running".into()));
    }
    Ok(Json(json!({ "restarting": connection.id })))
}

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

pub(crate) fn tool_json(tool: &ToolRecord) -> Value {
    json!({
        "name": tool.name, "effect": tool.effect, "effect_source": tool.effect_source,
        "pinned_hash": tool.pinned_hash, "current_hash": tool.current_hash,
        "definition_changed": tool.definition_changed(),
        "description": tool.definition.description,
        "profile": tool.profile,
    })
}

async fn list_tools(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Vec<Value>> {
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let tools = state.store.tools(&tenant.id, &connection.id).await?;
    Ok(Json(tools.iter().map(tool_json).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyIn {
    effect: String,
}

async fn classify_tool(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
    Json(body): Json<ClassifyIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let effect =
        EffectClass::parse(&body.effect).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let record = state
        .store
        .classify_tool(
            &tenant.id,
            &connection.id,
            &tool,
            effect,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(tool_json(&record)))
}

async fn accept_tool(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let record = state
        .store
        .accept_tool_definition(
            &tenant.id,
            &connection.id,
            &tool,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(tool_json(&record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantIn {
    agent: String,
    connection: String,
    #[serde(default = "all_tools")]
    tool: String,
}

fn all_tools() -> String {
    "*".into()
}

async fn add_grant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GrantIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &body.connection).await?;
    if connection.revoked_at.is_some() {
        return Err(ApiError::Conflict("connection is revoked".into()));
    }
    let agent: AgentId = parse_id(&body.agent)?;
    state
        .store
        .grant(
            &tenant.id,
            &agent,
            &connection.id,
            &body.tool,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(
        json!({ "granted": { "agent": agent, "connection": connection.id, "tool": body.tool } }),
    ))
}

async fn remove_grant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<GrantIn>,
) -> ApiResult<Value> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &body.connection).await?;
    let agent: AgentId = parse_id(&body.agent)?;
    state
        .store
        .revoke_grant(
            &tenant.id,
            &agent,
            &connection.id,
            &body.tool,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(
        json!({ "removed": { "agent": agent, "connection": connection.id, "tool": body.tool } }),
    ))
}

// ---- approvals

#[derive(Deserialize)]
struct ApprovalQuery {
    tenant: Option<String>,
    status: Option<String>,
    /// The same as `status`.
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_approvals(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<ApprovalQuery>,
) -> ApiResult<Vec<Approval>> {
    let tenant = match (&q.tenant, &ctx.admin.tenant) {
        (Some(name), _) => Some(tenant_for(&state, &ctx, name).await?.id),
        (None, scoped) => scoped.clone(),
    };
    let status = q
        .status
        .as_deref()
        .or(q.state.as_deref())
        .map(|s| {
            ApprovalStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown status `{s}`")))
        })
        .transpose()?;
    let filter = ApprovalFilter {
        tenant,
        status,
        now: state.clock.now(),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(state.store.list_approvals(&filter).await?))
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

async fn show_approval(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
) -> ApiResult<Approval> {
    Ok(Json(approval_for(&state, &ctx, &id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerdictIn {
    reason: Option<String>,
}

async fn approve(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
    body: Option<Json<VerdictIn>>,
) -> ApiResult<Approval> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let reason = body.and_then(|b| b.0.reason);
    Ok(Json(
        crate::gate::approve(&state, &ctx, approval, reason).await?,
    ))
}

async fn deny(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(id): Path<String>,
    body: Option<Json<VerdictIn>>,
) -> ApiResult<Approval> {
    let approval = approval_for(&state, &ctx, &id).await?;
    let reason = body
        .and_then(|b| b.0.reason)
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("a denial needs a reason".into()))?;
    Ok(Json(
        crate::gate::approve::deny(&state, &ctx, approval, reason).await?,
    ))
}

// ---- audit

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

async fn verify_audit(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Value> {
    let tenants = audit_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let mut reports = Vec::new();
    for tenant in tenants {
        match crate::audit::verify_tenant(&state.store, &tenant, &state.keys.verifying_key()).await {
            Ok(report) => reports.push(json!({ "tenant": tenant, "ok": true, "entries": report.entries, "head": report.head_hash, "checkpoints": report.checkpoints })),
            Err(crate::audit::VerifyError::Break(b)) => reports.push(json!({ "tenant": tenant, "ok": false, "problem": b.to_string() })),
            Err(crate::audit::VerifyError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(Json(
        json!({ "ok": reports.iter().all(|r| r["ok"] == true), "tenants": reports }),
    ))
}

/// The chains this human may read: one tenant, or (for an unscoped human) all of them.
async fn audit_scope(
    state: &AppState,
    ctx: &AdminContext,
    tenant: Option<&str>,
) -> Result<Vec<TenantId>, ApiError> {
    match (tenant, &ctx.admin.tenant) {
        (Some(name), _) => Ok(vec![tenant_for(state, ctx, name).await?.id]),
        (None, Some(scoped)) => Ok(vec![scoped.clone()]),
        (None, None) => Ok(state.store.audit_tenants().await?),
    }
}

async fn checkpoint_audit(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Value> {
    let tenants = audit_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let mut written = Vec::new();
    for tenant in tenants {
        if let Some(cp) =
            crate::audit::checkpoint_tenant(&state.store, &state.keys, &tenant, state.clock.now())
                .await?
        {
            written
                .push(json!({ "tenant": tenant, "size": cp.body.size, "head": cp.body.head_hash }));
        }
    }
    Ok(Json(json!({ "checkpoints": written })))
}

#[derive(Deserialize)]
struct EventsQuery {
    tenant: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit_events(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<portcullis_core::audit::AuditEvent>> {
    let tenants = audit_scope(&state, &ctx, q.tenant.as_deref()).await?;
    let [tenant] = tenants.as_slice() else {
        return Err(ApiError::BadRequest("name one tenant with ?tenant=".into()));
    };
    Ok(Json(
        state
            .store
            .audit_page(
                tenant,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}
