//! A tenant's secrets, write-only: put (a first version or the next), list (names, versions,
//! dates — never a value), delete; rotating the tenant's key; and deleting a tenant, which
//! destroys its keys. Values arrive in a request body and leave the gateway only inside an
//! upstream request (`vault::Vault::reveal`).

use super::common::{ApiResult, AppRef, require_admin, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::vault::VaultError;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::id::SecretId;
use portcullis_store::SecretMeta;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/secrets", get(list_secrets))
        .route(
            "/tenants/{tenant}/secrets/{name}",
            put(put_secret).delete(delete_secret),
        )
        .route("/tenants/{tenant}/keys/rotate", post(rotate_key))
        .route("/tenants/{tenant}", delete(delete_tenant))
}

/// A secret's value. `Debug` never shows it; it is never serialised back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretIn {
    pub value: SecretString,
    /// Rotation is due this many days after the last version (kept when omitted).
    #[serde(default)]
    pub rotate_every_days: Option<u32>,
}

impl Serialize for SecretIn {
    /// The typed client sends the value; nothing else serialises this type.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("SecretIn", 2)?;
        out.serialize_field("value", self.value.expose_secret())?;
        out.serialize_field("rotate_every_days", &self.rotate_every_days)?;
        out.end()
    }
}

impl std::fmt::Debug for SecretIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretIn")
            .field("value", &"[REDACTED]")
            .field("rotate_every_days", &self.rotate_every_days)
            .finish()
    }
}

/// What the API says about a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    pub name: String,
    pub id: SecretId,
    pub version: u32,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
    pub rotate_every_days: Option<u32>,
    /// When the next version is due (`updated_at` plus the rotation period), if it has one.
    pub rotation_due_at: Option<UnixMillis>,
    pub created_by: String,
}

impl From<SecretMeta> for SecretView {
    fn from(meta: SecretMeta) -> Self {
        Self {
            rotation_due_at: meta
                .rotate_every_days
                .map(|d| meta.updated_at + i64::from(d) * 86_400_000),
            name: meta.name,
            id: meta.id,
            version: meta.version,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
            last_used_at: meta.last_used_at,
            rotate_every_days: meta.rotate_every_days,
            created_by: meta.created_by,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub version: u32,
}

impl From<VaultError> for ApiError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::NotFound => Self::NotFound,
            VaultError::InvalidName | VaultError::InvalidValue => {
                Self::BadRequest(error.to_string())
            }
            VaultError::Store(e) => e.into(),
            VaultError::Busy => Self::Conflict(error.to_string()),
            VaultError::Provider(_) | VaultError::Sealed(_) => {
                tracing::error!(error = %error, "vault failure");
                Self::Unavailable
            }
        }
    }
}

async fn put_secret(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, name)): Path<(String, String)>,
    Json(body): Json<SecretIn>,
) -> ApiResult<SecretView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let meta = state
        .vault
        .put(
            &tenant.id,
            &name,
            body.value.expose_secret().as_bytes(),
            body.rotate_every_days,
            &ctx.actor(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(meta.into()))
}

/// Names and dates only; approvers may look too (it tells them what a connection uses).
async fn list_secrets(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<SecretView>> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let secrets = state.vault.list(&tenant.id).await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}

async fn delete_secret(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<()> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    state
        .vault
        .delete(&tenant.id, &name, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(()))
}

async fn rotate_key(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<KeyRotated> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let version = state
        .vault
        .rotate_tenant_key(&tenant.id, &ctx.actor(), state.clock.now())
        .await?;
    Ok(Json(KeyRotated { version }))
}

/// Unscoped admins only: the tenant, its keys and secrets are gone for good.
async fn delete_tenant(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<()> {
    require_admin(&ctx)?;
    if ctx.admin.tenant.is_some() {
        return Err(ApiError::Forbidden(
            "a tenant-scoped admin cannot delete tenants".into(),
        ));
    }
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    state
        .vault
        .delete_tenant(&tenant.id, &ctx.actor(), state.clock.now())
        .await?;
    state.cache.invalidate();
    for connection in state.store.list_connections(&tenant.id).await? {
        state.upstreams.revoke(&connection.id);
    }
    Ok(Json(()))
}
