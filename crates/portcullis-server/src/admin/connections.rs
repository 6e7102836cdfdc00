//! Upstream connections of a tenant and their tools: register (a program from the operator's
//! catalog, or a streamable-HTTP URL), list with their live status, revoke, restart, set what
//! their tool results hide from agents (redaction); list the tools with their classification
//! and pins, classify one, accept a changed definition, and set a tool's profile.

use super::common::{
    ApiResult, AppRef, Revoked, connection_in, draft, parse_id, require_admin, tenant_for,
    valid_name,
};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::upstream::{ConnectionSpec, Status, Transport};
use crate::vault::EnvValue;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::effect::EffectClass;
use portcullis_core::id::ConnectionId;
use portcullis_core::profile::ToolProfile;
use portcullis_store::{PiiMode, ResultRedaction, SecretsMode, StoreError, ToolRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
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
            "/tenants/{tenant}/connections/{connection}/redaction",
            put(set_redaction),
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
        .route(
            "/tenants/{tenant}/connections/{connection}/tools/{tool}/profile",
            put(put_profile),
        )
}

/// A connection to register: its name, transport and the operator's classification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionIn {
    pub name: String,
    #[serde(flatten)]
    pub spec: ConnectionSpec,
    /// What the connection's tool results hide from agents; by default personal data passes
    /// and credentials are masked (see [`ResultRedaction`]).
    #[serde(default)]
    pub redaction: ResultRedaction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedConnection {
    pub id: ConnectionId,
    pub name: String,
    pub created_at: UnixMillis,
}

/// A connection as the API lists it. Transport details (commands, environment, URLs) may
/// carry secrets: only the kind and the catalog program are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub id: ConnectionId,
    pub name: String,
    /// `stdio` or `http`.
    pub kind: Option<String>,
    /// The catalog program of a stdio connection.
    pub program: Option<String>,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    pub status: ConnectionState,
    /// What the connection's tool results hide from agents.
    pub redaction: ResultRedaction,
    /// A stdio connection's program: the protections it runs with and those this host
    /// could not give (absent until it is launched on the answering gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<portcullis_sandbox::Report>,
}

/// A change to what a connection's tool results hide; an absent field keeps its setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionIn {
    /// Personal data: `off` (passed), `mask` (`[EMAIL]`) or `pseudonymise` (`[EMAIL_1]`,
    /// stable within the agent's session); checked by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<String>,
    /// Credentials: `mask` (`[SECRET:github_pat]`) or `off` (passed); checked by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
}

/// The upstream supervisor's view of a connection right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConnectionState {
    Starting,
    Ready { tools: usize },
    Down { reason: String, retry_in_ms: u64 },
    Stopped,
}

impl From<Status> for ConnectionState {
    fn from(status: Status) -> Self {
        match status {
            Status::Starting => Self::Starting,
            Status::Ready { tools } => Self::Ready { tools },
            Status::Down {
                reason,
                retry_in_ms,
            } => Self::Down {
                reason,
                retry_in_ms,
            },
            Status::Stopped => Self::Stopped,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarting {
    pub restarting: ConnectionId,
}

/// A tool as the API shows it: its classification, its pins and the operator's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolView {
    pub name: String,
    pub effect: EffectClass,
    /// `annotations` (seeded) or `operator` (configured).
    pub effect_source: String,
    /// The definition an operator accepted (or the first one seen).
    pub pinned_hash: String,
    /// What the upstream serves now.
    pub current_hash: String,
    pub definition_changed: bool,
    pub description: Option<String>,
    pub profile: ToolProfile,
}

impl From<&ToolRecord> for ToolView {
    fn from(tool: &ToolRecord) -> Self {
        Self {
            name: tool.name.clone(),
            effect: tool.effect,
            effect_source: tool.effect_source.clone(),
            pinned_hash: tool.pinned_hash.clone(),
            current_hash: tool.current_hash.clone(),
            definition_changed: tool.definition_changed(),
            description: tool.definition.description.clone(),
            profile: tool.profile.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyIn {
    /// An effect class by name (`read`, `draft`, `write`, `send`, …); checked by the server.
    pub effect: String,
}

/// Register a connection. A stdio connection names a program from the operator's catalog and
/// only the extra arguments and environment that entry allows; anything else (a `command`, an
/// unknown program, a value outside an entry's patterns) is refused, audited, and changes
/// nothing.
async fn create_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    // Read as plain JSON first: a `command` is refused (and audited) before any parsing.
    Json(raw): Json<Value>,
) -> ApiResult<CreatedConnection> {
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
            Err::<Json<CreatedConnection>, ApiError>(ApiError::BadRequest(reason))
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
    let mut spec = body.spec;
    if let Err(reason) = spec.validate(&state.catalog, &tenant.name) {
        return refused(reason).await;
    }
    let hosts = crate::egress::HostAllowList::parse(&tenant.egress_hosts)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(url) = spec.outbound_url()
        && let Err(refusal) = state.egress.check_url(url, &hosts)
    {
        let draft = AuditDraft::new(tenant.id.clone(), ctx.actor(), AuditKind::EgressRefused)
            .resource("connections".to_owned())
            .detail(json!({ "rule": refusal.rule.name() }));
        state.store.append_audit(draft, state.clock.now()).await?;
        return Err(ApiError::BadRequest(format!(
            "the upstream URL is refused by the egress policy ({}): {}",
            refusal.rule.name(),
            refusal.detail
        )));
    }
    for secret in spec.secrets() {
        if let Err(StoreError::NotFound) = state.store.secret_meta(&tenant.id, secret).await {
            return refused(format!(
                "no secret `{secret}` in the tenant's vault (`portcullis secrets put`)"
            ))
            .await;
        }
    }
    // A plain environment value is sealed into the vault now, as `NAME.VARIABLE`; the
    // connection keeps only that name. A live connection of the same name would have its
    // secrets replaced by a request that then fails on the name: refused before sealing.
    if let Transport::Stdio { env, .. } = &mut spec.transport
        && env.values().any(|v| matches!(v, EnvValue::Plain(_)))
        && state
            .store
            .list_connections(&tenant.id)
            .await?
            .iter()
            .any(|c| c.name == body.name && c.revoked_at.is_none())
    {
        return Err(ApiError::Conflict(format!(
            "a connection named `{}` exists",
            body.name
        )));
    }
    if let Transport::Stdio { env, .. } = &mut spec.transport {
        for (variable, value) in env.iter_mut() {
            if let EnvValue::Plain(plain) = value {
                let secret = format!("{}.{variable}", body.name);
                state
                    .vault
                    .put(
                        &tenant.id,
                        &secret,
                        plain.as_bytes(),
                        None,
                        &ctx.actor(),
                        state.clock.now(),
                    )
                    .await?;
                *value = EnvValue::Secret { secret };
            }
        }
    }
    let connection = state
        .store
        .create_connection(
            &tenant.id,
            &body.name,
            &spec.to_json(),
            body.redaction,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    state.upstreams.start(connection.clone());
    Ok(Json(CreatedConnection {
        id: connection.id,
        name: connection.name,
        created_at: connection.created_at,
    }))
}

pub(crate) async fn list_connections(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<ConnectionView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let connections = state.store.list_connections(&tenant.id).await?;
    Ok(Json(connections.iter().map(|c| view(&state, c)).collect()))
}

fn view(state: &crate::state::AppState, c: &portcullis_store::Connection) -> ConnectionView {
    let text = |key: &str| {
        c.transport
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    ConnectionView {
        id: c.id.clone(),
        name: c.name.clone(),
        kind: text("kind"),
        program: text("program"),
        created_at: c.created_at,
        revoked_at: c.revoked_at,
        status: state.upstreams.status(&c.id).into(),
        redaction: c.redaction,
        sandbox: state.upstreams.confinement(&c.id),
    }
}

/// Admins only. Set what the connection's tool results hide from agents, from the next call
/// on; audited as `config_changed` with the old and new settings.
async fn set_redaction(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
    Json(body): Json<RedactionIn>,
) -> ApiResult<ConnectionView> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    if connection.revoked_at.is_some() {
        return Err(ApiError::Conflict("connection is revoked".into()));
    }
    let mut redaction = connection.redaction;
    if let Some(pii) = &body.pii {
        redaction.pii = PiiMode::parse(pii).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "pii must be `off`, `mask` or `pseudonymise`, not `{pii}`"
            ))
        })?;
    }
    if let Some(secrets) = &body.secrets {
        redaction.secrets = SecretsMode::parse(secrets).ok_or_else(|| {
            ApiError::BadRequest(format!("secrets must be `mask` or `off`, not `{secrets}`"))
        })?;
    }
    let audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ConfigChanged,
        format!("connection:{}", connection.id),
    )
    .detail(json!({
        "name": connection.name,
        "redaction": redaction,
        "previous_redaction": connection.redaction,
    }));
    let changed = state
        .store
        .set_connection_redaction(
            &tenant.id,
            &connection.id,
            redaction,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(view(&state, &changed)))
}

pub(crate) async fn revoke_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Revoked<ConnectionId>> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let id: ConnectionId = parse_id(&connection)?;
    state
        .store
        .revoke_connection(&tenant.id, &id, &ctx.actor(), state.clock.now())
        .await?;
    state.upstreams.revoke(&id);
    Ok(Json(Revoked { revoked: id }))
}

/// Reconnect a connection's upstream now (a stdio upstream is relaunched) and re-list its
/// tools; changed definitions are pinned as changed, as on any reconnection.
async fn restart_connection(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Restarting> {
    require_admin(&ctx)?;
    let (_, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    if connection.revoked_at.is_some() || !state.upstreams.restart(&connection.id) {
        return Err(ApiError::Conflict("connection is not running".into()));
    }
    Ok(Json(Restarting {
        restarting: connection.id,
    }))
}

async fn list_tools(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection)): Path<(String, String)>,
) -> ApiResult<Vec<ToolView>> {
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let tools = state.store.tools(&tenant.id, &connection.id).await?;
    Ok(Json(tools.iter().map(ToolView::from).collect()))
}

async fn classify_tool(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
    Json(body): Json<ClassifyIn>,
) -> ApiResult<ToolView> {
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
    Ok(Json(ToolView::from(&record)))
}

async fn accept_tool(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
) -> ApiResult<ToolView> {
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
    Ok(Json(ToolView::from(&record)))
}

/// Set what the operator declares about a tool (tags, data classes, cost, preview, revert).
async fn put_profile(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, connection, tool)): Path<(String, String, String)>,
    Json(profile): Json<ToolProfile>,
) -> ApiResult<ToolView> {
    require_admin(&ctx)?;
    let (tenant, connection) = connection_in(&state, &ctx, &tenant, &connection).await?;
    let mut audit = draft(
        &tenant.id,
        &ctx,
        AuditKind::ToolProfiled,
        format!("tool:{}/{tool}", connection.id),
    );
    audit.detail = json!({ "profile": profile });
    let (record, _) = state
        .store
        .set_tool_profile(
            &tenant.id,
            &connection.id,
            &tool,
            &profile,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(ToolView::from(&record)))
}
