//! A tenant's policy document: replace it (validated against the schema first; a refused
//! document changes nothing and lists every problem) and show the one in force, each policy
//! — built-in or the tenant's — with its plain-English sentence.

use super::common::{ApiResult, AppRef, draft, require_admin, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use portcullis_core::audit::AuditKind;
use portcullis_core::policy::{Engine, Kind, Point, PolicySettings};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(super) fn routes() -> Router<AppRef> {
    Router::new().route("/tenants/{tenant}/policy", put(put_policy).get(get_policy))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    /// The tenant's Cedar policies (at most 1 MB).
    pub cedar: String,
    /// Settings of the built-in approval points, as JSON: the server reads and checks them,
    /// and names what is wrong with them.
    #[serde(default = "empty_object")]
    pub settings: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// The policy in force: its version (none: only the built-ins), hash, text, settings and
/// every policy with what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub version: Option<i64>,
    pub hash: String,
    pub cedar: String,
    pub settings: PolicySettings,
    pub policies: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    pub id: String,
    pub kind: RuleKind,
    /// The approval point a built-in policy implements.
    pub point: Option<Point>,
    pub builtin: bool,
    pub reason: String,
    /// What the policy does, in plain English.
    pub english: String,
}

/// What a policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Permit,
    Hold,
    Deny,
}

impl From<Kind> for RuleKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Permit => Self::Permit,
            Kind::Hold => Self::Hold,
            Kind::Deny => Self::Deny,
        }
    }
}

impl PolicyView {
    fn of(engine: &Engine, version: Option<i64>) -> Self {
        Self {
            version,
            hash: engine.hash().to_owned(),
            cedar: engine.document().cedar.clone(),
            settings: engine.settings().clone(),
            policies: engine
                .rules()
                .iter()
                .map(|r| PolicyRule {
                    id: r.id.clone(),
                    kind: r.kind.into(),
                    point: r.point,
                    builtin: r.builtin,
                    reason: r.reason.clone(),
                    english: r.english(),
                })
                .collect(),
        }
    }
}

/// Replace a tenant's policy document. Validated against the schema first; a refused
/// document changes nothing and lists every problem.
async fn put_policy(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Json(body): Json<PolicyIn>,
) -> ApiResult<PolicyView> {
    require_admin(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    if body.cedar.len() > 1_000_000 {
        return Err(ApiError::BadRequest(
            "a policy document is at most 1 MB".into(),
        ));
    }
    let document =
        crate::engines::document(&body.cedar, &body.settings).map_err(ApiError::BadRequest)?;
    let engine = crate::engines::compile_untrusted(document.clone())
        .await
        .map_err(ApiError::BadRequest)?;
    let mut audit = draft(&tenant.id, &ctx, AuditKind::PolicyUpdated, "policy".into());
    audit.detail = json!({
        "hash": engine.hash(),
        "policies": engine.rules().iter().filter(|r| !r.builtin).map(|r| r.id.clone()).collect::<Vec<_>>(),
    });
    let settings = serde_json::to_value(&document.settings).unwrap_or_default();
    let (version, _) = state
        .store
        .put_policy(
            &tenant.id,
            &document.cedar,
            &settings,
            engine.hash(),
            &ctx.admin.name,
            audit,
            state.clock.now(),
        )
        .await?;
    Ok(Json(PolicyView::of(&engine, Some(version.version))))
}

pub(crate) async fn get_policy(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
) -> ApiResult<PolicyView> {
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let version = state.store.current_policy(&tenant.id).await?;
    // The engine the gate uses (compiled once per document), not a second compilation.
    let engine = crate::policy::engine(&state, &tenant.id)
        .await?
        .map_err(ApiError::Conflict)?;
    Ok(Json(PolicyView::of(&engine, version.map(|v| v.version))))
}
