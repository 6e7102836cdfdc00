//! A tenant's data posture, read from its audit trail: the data-flow map (which connections,
//! tools and model providers received or returned which data classes, from the redactor's
//! `redaction` events and the `model_request` events) and the signed attestation (see
//! `portcullis_core::attestation`). Both are for every human of the tenant who reads the
//! audit trail (viewers do not).

use super::common::{ApiResult, AppRef, tenant_for};
use crate::error::ApiError;
use crate::identity::AdminContext;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::UnixMillis;
use portcullis_core::attestation::{self, Attestation, SignedAttestation};
use portcullis_core::audit::{AuditEvent, AuditKind};
use portcullis_core::id::TenantId;
use portcullis_store::AuditFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppRef> {
    Router::new()
        .route("/tenants/{tenant}/dataflow", get(dataflow))
        .route("/tenants/{tenant}/attestation", get(attest))
}

/// The period, back from now: `30d`, `12h`, `90m`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    pub since: Option<String>,
}

/// One party data crossed to or from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// `tool` (a connection's tool) or `model_provider`.
    pub party_kind: String,
    /// `crm/get_contact`, or `openai (route gpt)`.
    pub party: String,
    /// `returned` (to the agent) or `received` (from the agent).
    pub direction: String,
    /// Data classes found, with counts.
    pub classes: BTreeMap<String, u64>,
    /// What was done: masked, pseudonymised, observed, blocked — with counts.
    pub actions: BTreeMap<String, u64>,
    /// Crossings recorded (model requests, or redaction events).
    pub crossings: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataflowReport {
    pub tenant: String,
    pub since: UnixMillis,
    pub flows: Vec<Flow>,
}

/// Both reports are read from the audit trail, which viewers do not read.
fn require_audit_reader(ctx: &AdminContext) -> Result<(), ApiError> {
    if ctx.admin.role.may_read_audit() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the viewer role does not read the audit trail".into(),
        ))
    }
}

fn period(state: &AppState, query: &PeriodQuery, default: &str) -> Result<UnixMillis, ApiError> {
    let ms = crate::clock::period_ms(query.since.as_deref().unwrap_or(default))
        .map_err(ApiError::BadRequest)?;
    Ok(state.clock.now().saturating_sub(ms))
}

/// Every event of `kind` (any kind: `None`) since `from`, in order, handed to `each` a
/// page at a time (a long period is never held in memory whole).
async fn each_event(
    state: &AppState,
    tenant: &TenantId,
    kind: Option<AuditKind>,
    from: UnixMillis,
    mut each: impl FnMut(&AuditEvent),
) -> Result<(), ApiError> {
    const PAGE: usize = 1000;
    let filter = AuditFilter {
        tenant: Some(tenant.clone()),
        from: Some(from),
        to: None,
        actor: None,
        kind: kind.map(|k| k.as_str().to_owned()),
    };
    let mut after = None;
    loop {
        let page = state.store.audit_query(&filter, after, PAGE as i64).await?;
        page.iter().for_each(&mut each);
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some((tenant.clone(), last.seq)),
            _ => return Ok(()),
        }
    }
}

/// Every event of `kind` since `from`, in order.
async fn events(
    state: &AppState,
    tenant: &TenantId,
    kind: AuditKind,
    from: UnixMillis,
) -> Result<Vec<AuditEvent>, ApiError> {
    let mut out = Vec::new();
    each_event(state, tenant, Some(kind), from, |e| out.push(e.clone())).await?;
    Ok(out)
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

/// The data-flow map from the events of a period.
pub fn flows(redactions: &[AuditEvent], requests: &[AuditEvent]) -> Vec<Flow> {
    type Key = (String, String, String);
    fn flow<'m>(
        map: &'m mut BTreeMap<Key, Flow>,
        kind: &str,
        party: String,
        direction: &str,
    ) -> &'m mut Flow {
        map.entry((kind.to_owned(), party.clone(), direction.to_owned()))
            .or_insert_with(|| Flow {
                party_kind: kind.to_owned(),
                party,
                direction: direction.to_owned(),
                ..Default::default()
            })
    }
    let mut map: BTreeMap<Key, Flow> = BTreeMap::new();
    for event in redactions {
        let d = &event.draft.detail;
        let provider = || format!("{} (route {})", text(d, "provider"), text(d, "route"));
        let tool = || format!("{}/{}", text(d, "connection"), text(d, "tool"));
        let f = match d.get("surface").and_then(Value::as_str) {
            Some("model_prompt") => flow(&mut map, "model_provider", provider(), "received"),
            Some("model_completion") => flow(&mut map, "model_provider", provider(), "returned"),
            Some("effect_arguments") => flow(&mut map, "tool", tool(), "received"),
            _ => flow(&mut map, "tool", tool(), "returned"),
        };
        f.crossings += 1;
        if let Some(kinds) = d.get("kinds").and_then(Value::as_object) {
            for (k, n) in kinds {
                *f.classes.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        *f.actions.entry(text(d, "action")).or_default() += 1;
    }
    // Every provider that received requests appears, with or without findings.
    for event in requests
        .iter()
        .filter(|e| e.draft.decision.as_deref() == Some("allow"))
    {
        let route = event
            .draft
            .resource
            .as_deref()
            .and_then(|r| r.strip_prefix("model:"))
            .unwrap_or("?");
        let party = format!("{} (route {route})", text(&event.draft.detail, "provider"));
        let f = flow(&mut map, "model_provider", party, "received");
        *f.actions.entry("requests".into()).or_default() += 1;
    }
    map.into_values().collect()
}

async fn dataflow(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(query): Query<PeriodQuery>,
) -> ApiResult<DataflowReport> {
    require_audit_reader(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let since = period(&state, &query, "30d")?;
    let redactions = events(&state, &tenant.id, AuditKind::Redaction, since).await?;
    let requests = events(&state, &tenant.id, AuditKind::ModelRequest, since).await?;
    Ok(Json(DataflowReport {
        tenant: tenant.name,
        since,
        flows: flows(&redactions, &requests),
    }))
}

/// The kinds that change a tenant's configuration (what the attestation lists).
const CONFIG_KINDS: &[AuditKind] = &[
    AuditKind::ConfigChanged,
    AuditKind::PolicyUpdated,
    AuditKind::GuardrailCreated,
    AuditKind::GuardrailChanged,
    AuditKind::GuardrailRevoked,
    AuditKind::ConnectionCreated,
    AuditKind::ConnectionRevoked,
    AuditKind::GrantAdded,
    AuditKind::GrantRemoved,
    AuditKind::ToolClassified,
    AuditKind::ToolDefinitionAccepted,
    AuditKind::SecretPut,
    AuditKind::SecretDeleted,
    AuditKind::TenantKeyRotated,
    AuditKind::AdminCreated,
    AuditKind::AdminRevoked,
    AuditKind::AdminChanged,
    AuditKind::AgentCreated,
    AuditKind::AgentRevoked,
    AuditKind::WebhookEndpointCreated,
    AuditKind::WebhookEndpointChanged,
    AuditKind::WebhookEndpointDeleted,
    AuditKind::InboundSourceChanged,
];

async fn attest(
    State(state): State<AppRef>,
    ctx: AdminContext,
    Path(tenant): Path<String>,
    Query(query): Query<PeriodQuery>,
) -> ApiResult<SignedAttestation> {
    require_audit_reader(&ctx)?;
    let tenant = tenant_for(&state, &ctx, &tenant).await?;
    let now = state.clock.now();
    let from = period(&state, &query, "90d")?;
    let mut model = attestation::ModelRequests::default();
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut changes_total = 0u64;
    each_event(&state, &tenant.id, None, from, |event| {
        let d = &event.draft.detail;
        match event.draft.kind {
            AuditKind::ModelRequest => match event.draft.decision.as_deref() {
                Some("allow") => {
                    let zero = d["zero_retention"] == Value::Bool(true);
                    let byo = d["byo"] == Value::Bool(true);
                    model.total += 1;
                    model.zero_retention += u64::from(zero);
                    model.byo_key += u64::from(byo);
                    let p = model.by_provider.entry(text(d, "provider")).or_default();
                    p.requests += 1;
                    p.zero_retention += u64::from(zero);
                    p.byo_key += u64::from(byo);
                }
                Some("deny") => model.refused += 1,
                _ => {}
            },
            AuditKind::Redaction => {
                if let Some(kinds) = d.get("kinds").and_then(Value::as_object) {
                    for (k, n) in kinds {
                        *found.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
                    }
                }
            }
            kind if CONFIG_KINDS.contains(&kind) => {
                changes_total += 1;
                if changes.len() < attestation::MAX_CHANGES {
                    changes.push(attestation::ConfigChange {
                        seq: event.seq,
                        time: event.time,
                        actor: event.draft.actor.clone(),
                        kind: kind.as_str().to_owned(),
                        resource: event.draft.resource.clone(),
                    });
                }
            }
            _ => {}
        }
    })
    .await?;
    // With no request at all, nothing left with retention: 1000.
    model.zero_retention_permille = (model.zero_retention * 1000)
        .checked_div(model.total)
        .unwrap_or(1000);
    let routes = state
        .store
        .model_routes(&tenant.id)
        .await?
        .into_iter()
        .map(
            |r| match serde_json::from_value::<crate::models::route::ModelRoute>(r.spec) {
                Ok(route) => route.audit_summary(&r.name),
                Err(_) => serde_json::json!({ "name": r.name, "unreadable": true }),
            },
        )
        .collect();
    let provider_policy = state
        .store
        .model_providers(&tenant.id)
        .await?
        .unwrap_or(Value::Null);
    let tool_results = state
        .store
        .list_connections(&tenant.id)
        .await?
        .into_iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| {
            let setting = serde_json::to_value(c.redaction).unwrap_or(Value::Null);
            (c.name, setting)
        })
        .collect();
    let (seq, hash) = state.store.audit_head(&tenant.id).await?;
    let report = Attestation {
        format: attestation::FORMAT.into(),
        tenant: tenant.name.clone(),
        tenant_id: tenant.id.to_string(),
        from,
        to: now,
        model_requests: model,
        routes,
        provider_policy,
        redaction: attestation::RedactionPosture {
            pii_kinds: portcullis_redact::Kind::PII
                .iter()
                .map(ToString::to_string)
                .collect(),
            // Provider rules, plus JWTs, PEM private keys and high-entropy bearer values.
            secret_rules: portcullis_redact::SecretRule::ALL.len() as u64 + 3,
            logs_masked: true,
            tool_results,
            found,
        },
        config_changes: changes,
        changes_total,
        audit_head: attestation::AuditHead { seq, hash },
    };
    let signed = attestation::sign(report, state.keys.signing_key())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(signed))
}
