//! Humans — admins and approvers — and their credentials: create (the token is shown once),
//! list, who am I, revoke, rotate and expire. A human's token or its hash is never shown
//! again after it is issued.
//!
//! Who may do what: admins manage the humans in their scope (a tenant-scoped admin, its
//! tenant's); anyone may revoke or rotate their own credential, and on their own credential
//! only keep or shorten its life.

use super::common::{
    ApiResult, AppRef, TenantQuery, from_wire, parse_id, require_admin, tenant_for, tenant_scope,
    valid_name,
};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{AdminId, TenantId};
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::{Admin, AdminRole, NewAdmin};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/admins", post(create_admin).get(list_admins))
        .route("/admins/me", get(whoami))
        .route("/admins/me/password", put(set_own_password))
        .route("/admins/me/totp", post(enroll_own_totp))
        .route("/admins/{admin}/revoke", post(revoke_admin))
        .route("/admins/{admin}/rotate", post(rotate_admin))
        .route("/admins/{admin}/expiry", put(set_admin_expiry))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminIn {
    pub name: String,
    /// `admin`, `approver`, `auditor` or `viewer`.
    pub role: String,
    /// Limit them to one tenant (by name).
    pub tenant: Option<String>,
    /// Life of the credential in seconds; none: until revoked.
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Life of the new credential in seconds; none: keep the current expiry.
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryIn {
    /// Unix milliseconds, or null for no expiry.
    pub expires_at: Option<UnixMillis>,
}

/// A human as the API shows them: never a token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminView {
    pub id: AdminId,
    pub name: String,
    #[serde(deserialize_with = "role_from_wire")]
    pub role: AdminRole,
    /// The tenant's name: given in lists and on creation, null in the answers about one
    /// human (who am I, revoke, rotate, expiry), which name only `tenant_id`.
    pub tenant: Option<String>,
    pub tenant_id: Option<TenantId>,
    pub created_at: UnixMillis,
    pub created_by: Option<String>,
    pub expires_at: Option<UnixMillis>,
    pub rotated_at: Option<UnixMillis>,
    pub rotated_by: Option<String>,
    pub revoked_at: Option<UnixMillis>,
}

/// A human with the token just issued to them (created or rotated): shown once.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminWithToken {
    pub admin: AdminView,
    pub token: String,
    pub note: String,
}

// The token is a credential: never in a debug print.
impl std::fmt::Debug for AdminWithToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminWithToken")
            .field("admin", &self.admin)
            .field("token", &"[redacted]")
            .field("note", &self.note)
            .finish()
    }
}

impl AdminView {
    fn of(admin: &Admin, tenant_name: Option<&str>) -> Self {
        Self {
            id: admin.id.clone(),
            name: admin.name.clone(),
            role: admin.role,
            tenant: tenant_name.map(str::to_owned),
            tenant_id: admin.tenant.clone(),
            created_at: admin.created_at,
            created_by: admin.created_by.clone(),
            expires_at: admin.expires_at,
            rotated_at: admin.rotated_at,
            rotated_by: admin.rotated_by.clone(),
            revoked_at: admin.revoked_at,
        }
    }
}

fn role_from_wire<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AdminRole, D::Error> {
    from_wire(deserializer, AdminRole::parse, "role")
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

async fn create_admin(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Json(body): Json<AdminIn>,
) -> ApiResult<AdminWithToken> {
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
    Ok(Json(AdminWithToken {
        admin: AdminView::of(&admin, tenant.as_ref().map(|t| t.name.as_str())),
        token: secret.expose().to_owned(),
        note: "shown once; only its hash is stored".into(),
    }))
}

/// Humans this admin may manage: a tenant-scoped admin sees its tenant's; an unscoped admin
/// sees everyone (or one tenant's with `?tenant=`).
async fn list_admins(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Vec<AdminView>> {
    require_admin(&ctx)?;
    let scope = tenant_scope(&state, &ctx, q.tenant.as_deref()).await?;
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
            .map(|a| AdminView::of(a, name_of(&a.tenant).as_deref()))
            .collect(),
    ))
}

async fn whoami(ctx: AdminContext) -> ApiResult<AdminView> {
    Ok(Json(AdminView::of(&ctx.admin, None)))
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
) -> ApiResult<AdminView> {
    let target = managed_admin(&state, &ctx, &key, true).await?;
    let draft =
        admin_draft(&ctx, &target, AuditKind::AdminRevoked).detail(json!({ "name": target.name }));
    let (admin, _) = state
        .store
        .revoke_admin(&target.id, draft, state.clock.now())
        .await?;
    Ok(Json(AdminView::of(&admin, None)))
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
) -> ApiResult<AdminWithToken> {
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
    Ok(Json(AdminWithToken {
        admin: AdminView::of(&admin, None),
        token: secret.expose().to_owned(),
        note: "shown once; only its hash is stored; the previous token no longer works".into(),
    }))
}

/// Set or clear when a human's credential expires (admins; on their own credential only
/// shorter).
async fn set_admin_expiry(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(key): Path<String>,
    Json(body): Json<ExpiryIn>,
) -> ApiResult<AdminView> {
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
    Ok(Json(AdminView::of(&admin, None)))
}

/// A new console password for the human calling (never anyone else's: each human sets their
/// own with their token).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordIn {
    pub password: secrecy::SecretString,
}

impl Serialize for PasswordIn {
    /// The typed client sends the value; nothing else serialises this type.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use secrecy::ExposeSecret as _;
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("PasswordIn", 1)?;
        out.serialize_field("password", self.password.expose_secret())?;
        out.end()
    }
}

impl std::fmt::Debug for PasswordIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordIn([REDACTED])")
    }
}

async fn set_own_password(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Json(body): Json<PasswordIn>,
) -> ApiResult<serde_json::Value> {
    use secrecy::ExposeSecret as _;
    let password = body.password.expose_secret().to_owned();
    let hashed =
        tokio::task::spawn_blocking(move || portcullis_core::account::hash_password(&password))
            .await
            .map_err(|_| ApiError::Internal("password hashing failed".into()))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .set_password_hash(&ctx.admin, &hashed, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(json!({ "password_set": true })))
}

/// A second factor, shown once: the authenticator app enrolls from `otpauth_uri` (or the
/// base32 `secret`). Enrolling again replaces it and ends every console session.
#[derive(Serialize, Deserialize)]
pub struct TotpEnrolled {
    #[serde(serialize_with = "reveal")]
    pub otpauth_uri: secrecy::SecretString,
    #[serde(serialize_with = "reveal")]
    pub secret: secrecy::SecretString,
}

impl std::fmt::Debug for TotpEnrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolled([REDACTED])")
    }
}

fn reveal<S: serde::Serializer>(secret: &secrecy::SecretString, s: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret as _;
    s.serialize_str(secret.expose_secret())
}

async fn enroll_own_totp(
    State(state): State<AppRef>,
    ctx: AdminContext,
) -> ApiResult<TotpEnrolled> {
    use base64::Engine as _;
    let key = portcullis_core::vault::Key256::generate();
    let secret = portcullis_core::account::TotpSecret::from_bytes(key.expose());
    let aad = crate::console::totp_aad(&ctx.admin.id);
    let provider = state.vault.provider_handle();
    let wrapped = tokio::task::spawn_blocking(move || provider.wrap(&aad, &key))
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot wrap a TOTP secret");
            ApiError::Unavailable
        })?;
    state
        .store
        .set_totp(
            &ctx.admin,
            &wrapped.master_id,
            &base64::engine::general_purpose::STANDARD.encode(&wrapped.bytes),
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(TotpEnrolled {
        otpauth_uri: secret
            .otpauth_uri("Portcullis", &ctx.admin.name)
            .as_str()
            .to_owned()
            .into(),
        secret: secret.base32().as_str().to_owned().into(),
    }))
}
