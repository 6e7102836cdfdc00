//! The typed client of the admin API: one method per endpoint, taking the request types and
//! returning the response types that sit beside the handlers. The CLI and the integration
//! tests use it, so the API, its client and its callers cannot drift apart silently.
//!
//! Names and ids from a user become path segments: each is percent-encoded, and one that
//! could still change the path (empty, `.` or `..`) is refused before anything is sent.

use super::agents::{AgentView, OwnerIn};
use super::amendments::{AmendmentDecided, AmendmentView, DecisionIn, ProposalIn, Proposed};
use super::approvals::{ApprovalQuery, ApprovalView, BatchIn, BatchPreview, VerdictIn, VotesView};
use super::audit::{Checkpoints, EventsQuery, Verification};
use super::common::{Revoked, TenantQuery};
use super::connections::{
    ClassifyIn, ConnectionIn, ConnectionView, CreatedConnection, RedactionIn, Restarting, ToolView,
};
use super::grants::{GrantIn, Granted, Removed};
use super::guardrails::{GuardrailIn, GuardrailView, ModeIn, SuggestionQuery, SuggestionView};
use super::humans::{AdminIn, AdminView, AdminWithToken, ExpiryIn, RotateIn};
use super::policy::{PolicyIn, PolicyView};
use super::programs::ProgramView;
use super::review::{AccessReview, ReviewQuery};
use super::secrets::{KeyRotated, SecretIn, SecretView};
use super::spend::{SpendQuery, SpendReport};
use super::tenants::{ConsoleIn, EgressHosts, NameIn, TenantView};
use super::tokens::{CreatedToken, TokenIn, TokenView};
use super::webhooks::{
    DeliveriesQuery, DeliveryView, EndpointIn, EndpointView, EndpointWithSecret, SourceIn,
};
use portcullis_core::audit::AuditEvent;
use portcullis_core::guardrail::GuardrailSpec;
use portcullis_core::id::{AgentId, ConnectionId, TokenId};
use portcullis_core::profile::ToolProfile;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A client of one gateway's admin API, acting as the human whose token it holds.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// The gateway's URL with `/admin/v1`.
    base: String,
    token: String,
}

// The token is a credential: never in a debug print.
impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Why a call did not produce its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request with `{"code", "detail"}` (an answer that is not such a
    /// body reads as code `error`, detail `no detail`).
    #[error("{code} ({status}): {detail}")]
    Api {
        status: StatusCode,
        code: String,
        detail: String,
    },
    #[error("cannot reach the gateway at {base}")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// A success whose body is not the response type: a gateway of another version.
    #[error("unexpected answer from {path}")]
    Unexpected {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A name or id that cannot be a path segment (empty, `.` or `..`).
    #[error("`{0}` cannot be a name or an id in a path")]
    Segment(String),
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's `code` of a refusal (`not_found`, `forbidden`, `conflict`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The API's `detail` of a refusal.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Api { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

/// One path segment from a name or an id: percent-encoded, so no character of it can end the
/// segment, start a query or a fragment; `.` and `..` (which a URL parser would resolve
/// against the path) and the empty segment are refused.
fn segment(value: &str) -> ClientResult<String> {
    if matches!(value, "" | "." | "..") {
        return Err(ClientError::Segment(value.to_owned()));
    }
    Ok(percent_encode(value))
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `?key=value&…` from a query type's fields; absent (null) fields are left out.
fn query_string<Q: Serialize>(query: &Q) -> String {
    let Ok(Value::Object(fields)) = serde_json::to_value(query) else {
        return String::new();
    };
    let pairs: Vec<String> = fields
        .iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!(
                "{}={}",
                percent_encode(key),
                percent_encode(&value)
            ))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

impl AdminClient {
    /// A client of the gateway at `base_url` (`http://127.0.0.1:8745`) with an admin's or an
    /// approver's token.
    pub fn new(base_url: &str, token: impl Into<String>) -> Self {
        Self::with_http(reqwest::Client::new(), base_url, token)
    }

    /// [`AdminClient::new`] sharing an HTTP client (and its connection pool).
    pub fn with_http(http: reqwest::Client, base_url: &str, token: impl Into<String>) -> Self {
        Self {
            http,
            base: format!("{}/admin/v1", base_url.trim_end_matches('/')),
            token: token.into(),
        }
    }

    /// The same gateway, as the human holding `token`.
    pub fn as_token(&self, token: impl Into<String>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.into(),
        }
    }

    async fn send<B, T>(&self, method: Method, path: &str, body: Option<&B>) -> ClientResult<T>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| ClientError::Unreachable {
            base: self.base.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let refusal: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let text = |key: &str, default: &str| {
                refusal
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_owned()
            };
            return Err(ClientError::Api {
                status,
                code: text("code", "error"),
                detail: text("detail", "no detail"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Unexpected {
            path: path.to_owned(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> ClientResult<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A POST whose endpoint reads no body.
    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.send::<(), T>(Method::POST, path, None).await
    }

    async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> ClientResult<T> {
        self.send(Method::PUT, path, Some(body)).await
    }

    // ---- tenants

    pub async fn create_tenant(&self, body: &NameIn) -> ClientResult<TenantView> {
        self.post("/tenants", body).await
    }

    pub async fn list_tenants(&self) -> ClientResult<Vec<TenantView>> {
        self.get("/tenants").await
    }

    /// Unscoped admins only: the tenant is gone for good, its keys and secrets destroyed.
    pub async fn delete_tenant(&self, tenant: &str) -> ClientResult<()> {
        self.send::<(), ()>(
            Method::DELETE,
            &format!("/tenants/{}", segment(tenant)?),
            None,
        )
        .await
    }

    /// The hosts the tenant's outbound requests may reach (empty: any public host).
    pub async fn tenant_egress(&self, tenant: &str) -> ClientResult<EgressHosts> {
        self.get(&format!("/tenants/{}/egress", segment(tenant)?))
            .await
    }

    pub async fn set_tenant_egress(
        &self,
        tenant: &str,
        body: &EgressHosts,
    ) -> ClientResult<EgressHosts> {
        self.put(&format!("/tenants/{}/egress", segment(tenant)?), body)
            .await
    }

    /// Whether the tenant's humans need a TOTP code to sign in to the console.
    pub async fn set_tenant_console(
        &self,
        tenant: &str,
        body: &ConsoleIn,
    ) -> ClientResult<TenantView> {
        self.put(&format!("/tenants/{}/console", segment(tenant)?), body)
            .await
    }

    // ---- secrets (write-only: no method reads a value back)

    pub async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        body: &SecretIn,
    ) -> ClientResult<SecretView> {
        let path = format!("/tenants/{}/secrets/{}", segment(tenant)?, segment(name)?);
        self.put(&path, body).await
    }

    pub async fn list_secrets(&self, tenant: &str) -> ClientResult<Vec<SecretView>> {
        self.get(&format!("/tenants/{}/secrets", segment(tenant)?))
            .await
    }

    pub async fn delete_secret(&self, tenant: &str, name: &str) -> ClientResult<()> {
        let path = format!("/tenants/{}/secrets/{}", segment(tenant)?, segment(name)?);
        self.send::<(), ()>(Method::DELETE, &path, None).await
    }

    /// Replace the tenant's key-encryption key (every secret rewrapped, the old key
    /// destroyed).
    pub async fn rotate_tenant_key(&self, tenant: &str) -> ClientResult<KeyRotated> {
        self.post_empty(&format!("/tenants/{}/keys/rotate", segment(tenant)?))
            .await
    }

    // ---- share links

    /// A new share link; its path (`/share/<token>`) is in the answer, once.
    pub async fn create_share(
        &self,
        tenant: &str,
        body: &super::shares::ShareIn,
    ) -> ClientResult<super::shares::CreatedShare> {
        self.post(&format!("/tenants/{}/shares", segment(tenant)?), body)
            .await
    }

    pub async fn list_shares(
        &self,
        tenant: &str,
    ) -> ClientResult<Vec<portcullis_store::ShareLink>> {
        self.get(&format!("/tenants/{}/shares", segment(tenant)?))
            .await
    }

    pub async fn revoke_share(&self, tenant: &str, id: &str) -> ClientResult<Value> {
        let path = format!("/tenants/{}/shares/{}", segment(tenant)?, segment(id)?);
        self.send::<(), Value>(Method::DELETE, &path, None).await
    }

    // ---- webhooks

    /// A new endpoint; its signing secret is in the answer, once.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        body: &EndpointIn,
    ) -> ClientResult<EndpointWithSecret> {
        self.post(&format!("/tenants/{}/webhooks", segment(tenant)?), body)
            .await
    }

    pub async fn list_webhooks(&self, tenant: &str) -> ClientResult<Vec<EndpointView>> {
        self.get(&format!("/tenants/{}/webhooks", segment(tenant)?))
            .await
    }

    pub async fn webhook(&self, tenant: &str, endpoint: &str) -> ClientResult<EndpointView> {
        let path = format!(
            "/tenants/{}/webhooks/{}",
            segment(tenant)?,
            segment(endpoint)?
        );
        self.get(&path).await
    }

    /// `enable`, `disable` or `rotate-secret`.
    async fn webhook_action<T: DeserializeOwned>(
        &self,
        tenant: &str,
        endpoint: &str,
        action: &str,
    ) -> ClientResult<T> {
        let path = format!(
            "/tenants/{}/webhooks/{}/{action}",
            segment(tenant)?,
            segment(endpoint)?
        );
        self.post_empty(&path).await
    }

    pub async fn enable_webhook(&self, tenant: &str, endpoint: &str) -> ClientResult<EndpointView> {
        self.webhook_action(tenant, endpoint, "enable").await
    }

    pub async fn disable_webhook(
        &self,
        tenant: &str,
        endpoint: &str,
    ) -> ClientResult<EndpointView> {
        self.webhook_action(tenant, endpoint, "disable").await
    }

    /// A new signing secret (in the answer, once); the previous one signs too until
    /// `previous_valid_until`.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        endpoint: &str,
    ) -> ClientResult<EndpointWithSecret> {
        self.webhook_action(tenant, endpoint, "rotate-secret").await
    }

    pub async fn delete_webhook(&self, tenant: &str, endpoint: &str) -> ClientResult<Value> {
        let path = format!(
            "/tenants/{}/webhooks/{}",
            segment(tenant)?,
            segment(endpoint)?
        );
        self.send::<(), Value>(Method::DELETE, &path, None).await
    }

    pub async fn webhook_deliveries(
        &self,
        tenant: &str,
        endpoint: &str,
        query: &DeliveriesQuery,
    ) -> ClientResult<Vec<portcullis_store::Delivery>> {
        let path = format!(
            "/tenants/{}/webhooks/{}/deliveries{}",
            segment(tenant)?,
            segment(endpoint)?,
            query_string(query)
        );
        self.get(&path).await
    }

    pub async fn webhook_delivery(
        &self,
        tenant: &str,
        delivery: &str,
    ) -> ClientResult<DeliveryView> {
        let path = format!(
            "/tenants/{}/deliveries/{}",
            segment(tenant)?,
            segment(delivery)?
        );
        self.get(&path).await
    }

    /// The same message (the same `webhook-id`) again, as a new delivery due now.
    pub async fn redeliver_webhook(
        &self,
        tenant: &str,
        delivery: &str,
    ) -> ClientResult<portcullis_store::Delivery> {
        let path = format!(
            "/tenants/{}/deliveries/{}/redeliver",
            segment(tenant)?,
            segment(delivery)?
        );
        self.post_empty(&path).await
    }

    pub async fn create_inbound_source(
        &self,
        tenant: &str,
        body: &SourceIn,
    ) -> ClientResult<portcullis_store::InboundSource> {
        self.post(&format!("/tenants/{}/inbound", segment(tenant)?), body)
            .await
    }

    pub async fn list_inbound_sources(
        &self,
        tenant: &str,
    ) -> ClientResult<Vec<portcullis_store::InboundSource>> {
        self.get(&format!("/tenants/{}/inbound", segment(tenant)?))
            .await
    }

    pub async fn revoke_inbound_source(&self, tenant: &str, name: &str) -> ClientResult<Value> {
        let path = format!("/tenants/{}/inbound/{}", segment(tenant)?, segment(name)?);
        self.send::<(), Value>(Method::DELETE, &path, None).await
    }

    // ---- humans

    /// Set the calling human's console password.
    pub async fn set_own_password(&self, body: &super::humans::PasswordIn) -> ClientResult<Value> {
        self.put("/admins/me/password", body).await
    }

    /// Enroll (or replace) the calling human's second factor; the secret is in the answer, once.
    pub async fn enroll_own_totp(&self) -> ClientResult<super::humans::TotpEnrolled> {
        self.post_empty("/admins/me/totp").await
    }

    pub async fn create_admin(&self, body: &AdminIn) -> ClientResult<AdminWithToken> {
        self.post("/admins", body).await
    }

    pub async fn list_admins(&self, query: &TenantQuery) -> ClientResult<Vec<AdminView>> {
        self.get(&format!("/admins{}", query_string(query))).await
    }

    pub async fn whoami(&self) -> ClientResult<AdminView> {
        self.get("/admins/me").await
    }

    /// `admin`: a human's name or id.
    pub async fn revoke_admin(&self, admin: &str) -> ClientResult<AdminView> {
        self.post_empty(&format!("/admins/{}/revoke", segment(admin)?))
            .await
    }

    pub async fn rotate_admin(&self, admin: &str, body: &RotateIn) -> ClientResult<AdminWithToken> {
        self.post(&format!("/admins/{}/rotate", segment(admin)?), body)
            .await
    }

    pub async fn set_admin_expiry(&self, admin: &str, body: &ExpiryIn) -> ClientResult<AdminView> {
        self.put(&format!("/admins/{}/expiry", segment(admin)?), body)
            .await
    }

    // ---- programs

    pub async fn list_programs(&self, query: &TenantQuery) -> ClientResult<Vec<ProgramView>> {
        self.get(&format!("/programs{}", query_string(query))).await
    }

    // ---- agents

    pub async fn create_agent(&self, tenant: &str, body: &NameIn) -> ClientResult<AgentView> {
        self.post(&format!("/tenants/{}/agents", segment(tenant)?), body)
            .await
    }

    pub async fn list_agents(&self, tenant: &str) -> ClientResult<Vec<AgentView>> {
        self.get(&format!("/tenants/{}/agents", segment(tenant)?))
            .await
    }

    pub async fn revoke_agent(&self, tenant: &str, agent: &str) -> ClientResult<Revoked<AgentId>> {
        self.post_empty(&format!(
            "/tenants/{}/agents/{}/revoke",
            segment(tenant)?,
            segment(agent)?
        ))
        .await
    }

    /// `agent`: the agent's id or name.
    pub async fn set_agent_owner(
        &self,
        tenant: &str,
        agent: &str,
        body: &OwnerIn,
    ) -> ClientResult<AgentView> {
        let path = format!(
            "/tenants/{}/agents/{}/owner",
            segment(tenant)?,
            segment(agent)?
        );
        self.put(&path, body).await
    }

    // ---- tokens

    pub async fn create_token(
        &self,
        tenant: &str,
        agent: &str,
        body: &TokenIn,
    ) -> ClientResult<CreatedToken> {
        let path = format!(
            "/tenants/{}/agents/{}/tokens",
            segment(tenant)?,
            segment(agent)?
        );
        self.post(&path, body).await
    }

    pub async fn tokens(&self, tenant: &str) -> ClientResult<Vec<TokenView>> {
        self.get(&format!("/tenants/{}/tokens", segment(tenant)?))
            .await
    }

    pub async fn revoke_token(&self, tenant: &str, token: &str) -> ClientResult<Revoked<TokenId>> {
        self.post_empty(&format!(
            "/tenants/{}/tokens/{}/revoke",
            segment(tenant)?,
            segment(token)?
        ))
        .await
    }

    // ---- connections and their tools

    pub async fn create_connection(
        &self,
        tenant: &str,
        body: &ConnectionIn,
    ) -> ClientResult<CreatedConnection> {
        self.post(&format!("/tenants/{}/connections", segment(tenant)?), body)
            .await
    }

    pub async fn list_connections(&self, tenant: &str) -> ClientResult<Vec<ConnectionView>> {
        self.get(&format!("/tenants/{}/connections", segment(tenant)?))
            .await
    }

    pub async fn revoke_connection(
        &self,
        tenant: &str,
        connection: &str,
    ) -> ClientResult<Revoked<ConnectionId>> {
        self.post_empty(&format!(
            "/tenants/{}/connections/{}/revoke",
            segment(tenant)?,
            segment(connection)?
        ))
        .await
    }

    pub async fn restart_connection(
        &self,
        tenant: &str,
        connection: &str,
    ) -> ClientResult<Restarting> {
        self.post_empty(&format!(
            "/tenants/{}/connections/{}/restart",
            segment(tenant)?,
            segment(connection)?
        ))
        .await
    }

    pub async fn set_connection_redaction(
        &self,
        tenant: &str,
        connection: &str,
        body: &RedactionIn,
    ) -> ClientResult<ConnectionView> {
        let path = format!(
            "/tenants/{}/connections/{}/redaction",
            segment(tenant)?,
            segment(connection)?
        );
        self.put(&path, body).await
    }

    pub async fn list_tools(&self, tenant: &str, connection: &str) -> ClientResult<Vec<ToolView>> {
        self.get(&format!(
            "/tenants/{}/connections/{}/tools",
            segment(tenant)?,
            segment(connection)?
        ))
        .await
    }

    pub async fn classify_tool(
        &self,
        tenant: &str,
        connection: &str,
        tool: &str,
        body: &ClassifyIn,
    ) -> ClientResult<ToolView> {
        let path = format!(
            "/tenants/{}/connections/{}/tools/{}",
            segment(tenant)?,
            segment(connection)?,
            segment(tool)?
        );
        self.put(&path, body).await
    }

    pub async fn accept_tool(
        &self,
        tenant: &str,
        connection: &str,
        tool: &str,
    ) -> ClientResult<ToolView> {
        self.post_empty(&format!(
            "/tenants/{}/connections/{}/tools/{}/accept",
            segment(tenant)?,
            segment(connection)?,
            segment(tool)?
        ))
        .await
    }

    pub async fn set_tool_profile(
        &self,
        tenant: &str,
        connection: &str,
        tool: &str,
        profile: &ToolProfile,
    ) -> ClientResult<ToolView> {
        let path = format!(
            "/tenants/{}/connections/{}/tools/{}/profile",
            segment(tenant)?,
            segment(connection)?,
            segment(tool)?
        );
        self.put(&path, profile).await
    }

    // ---- grants

    pub async fn add_grant(&self, tenant: &str, body: &GrantIn) -> ClientResult<Granted> {
        self.post(&format!("/tenants/{}/grants", segment(tenant)?), body)
            .await
    }

    pub async fn remove_grant(&self, tenant: &str, body: &GrantIn) -> ClientResult<Removed> {
        self.post(
            &format!("/tenants/{}/grants/revoke", segment(tenant)?),
            body,
        )
        .await
    }

    // ---- approvals

    pub async fn list_approvals(&self, query: &ApprovalQuery) -> ClientResult<Vec<ApprovalView>> {
        self.get(&format!("/approvals{}", query_string(query)))
            .await
    }

    pub async fn approval(&self, id: &str) -> ClientResult<ApprovalView> {
        self.get(&format!("/approvals/{}", segment(id)?)).await
    }

    pub async fn approve(&self, id: &str, body: &VerdictIn) -> ClientResult<ApprovalView> {
        self.post(&format!("/approvals/{}/approve", segment(id)?), body)
            .await
    }

    pub async fn deny(&self, id: &str, body: &VerdictIn) -> ClientResult<ApprovalView> {
        self.post(&format!("/approvals/{}/deny", segment(id)?), body)
            .await
    }

    pub async fn votes(&self, id: &str) -> ClientResult<VotesView> {
        self.get(&format!("/approvals/{}/votes", segment(id)?))
            .await
    }

    /// Propose the inverse of an executed write: a new held request.
    pub async fn propose_revert(&self, id: &str) -> ClientResult<ApprovalView> {
        self.post_empty(&format!("/approvals/{}/revert", segment(id)?))
            .await
    }

    pub async fn preview_batch(&self, tenant: &str, body: &BatchIn) -> ClientResult<BatchPreview> {
        let path = format!("/tenants/{}/approvals/batch/preview", segment(tenant)?);
        self.post(&path, body).await
    }

    pub async fn approve_batch(
        &self,
        tenant: &str,
        body: &BatchIn,
    ) -> ClientResult<Vec<ApprovalView>> {
        let path = format!("/tenants/{}/approvals/batch", segment(tenant)?);
        self.post(&path, body).await
    }

    // ---- audit

    pub async fn verify_audit(&self, query: &TenantQuery) -> ClientResult<Verification> {
        self.get(&format!("/audit/verify{}", query_string(query)))
            .await
    }

    pub async fn checkpoint_audit(&self, query: &TenantQuery) -> ClientResult<Checkpoints> {
        self.post_empty(&format!("/audit/checkpoint{}", query_string(query)))
            .await
    }

    pub async fn audit_events(&self, query: &EventsQuery) -> ClientResult<Vec<AuditEvent>> {
        self.get(&format!("/audit/events{}", query_string(query)))
            .await
    }

    // ---- audit amendments

    pub async fn propose_amendment(
        &self,
        tenant: &str,
        seq: i64,
        body: &ProposalIn,
    ) -> ClientResult<Proposed> {
        let path = format!("/tenants/{}/audit/{seq}/amendments", segment(tenant)?);
        self.post(&path, body).await
    }

    pub async fn list_amendments(&self, tenant: &str) -> ClientResult<Vec<AmendmentView>> {
        self.get(&format!("/tenants/{}/audit/amendments", segment(tenant)?))
            .await
    }

    pub async fn approve_amendment(
        &self,
        tenant: &str,
        proposal: i64,
        body: &DecisionIn,
    ) -> ClientResult<AmendmentDecided> {
        let path = format!(
            "/tenants/{}/audit/amendments/{proposal}/approve",
            segment(tenant)?
        );
        self.post(&path, body).await
    }

    pub async fn reject_amendment(
        &self,
        tenant: &str,
        proposal: i64,
        body: &DecisionIn,
    ) -> ClientResult<AmendmentDecided> {
        let path = format!(
            "/tenants/{}/audit/amendments/{proposal}/reject",
            segment(tenant)?
        );
        self.post(&path, body).await
    }

    // ---- policy

    pub async fn put_policy(&self, tenant: &str, body: &PolicyIn) -> ClientResult<PolicyView> {
        self.put(&format!("/tenants/{}/policy", segment(tenant)?), body)
            .await
    }

    pub async fn policy(&self, tenant: &str) -> ClientResult<PolicyView> {
        self.get(&format!("/tenants/{}/policy", segment(tenant)?))
            .await
    }

    // ---- guardrails

    pub async fn create_guardrail(
        &self,
        tenant: &str,
        body: &GuardrailIn,
    ) -> ClientResult<GuardrailView> {
        self.post(&format!("/tenants/{}/guardrails", segment(tenant)?), body)
            .await
    }

    pub async fn list_guardrails(&self, tenant: &str) -> ClientResult<Vec<GuardrailView>> {
        self.get(&format!("/tenants/{}/guardrails", segment(tenant)?))
            .await
    }

    pub async fn guardrail_suggestions(
        &self,
        tenant: &str,
        query: &SuggestionQuery,
    ) -> ClientResult<Vec<SuggestionView>> {
        self.get(&format!(
            "/tenants/{}/guardrails/suggestions{}",
            segment(tenant)?,
            query_string(query)
        ))
        .await
    }

    /// `guardrail`: its name or id.
    pub async fn set_guardrail_spec(
        &self,
        tenant: &str,
        guardrail: &str,
        spec: &GuardrailSpec,
    ) -> ClientResult<GuardrailView> {
        let path = format!(
            "/tenants/{}/guardrails/{}",
            segment(tenant)?,
            segment(guardrail)?
        );
        self.put(&path, spec).await
    }

    pub async fn set_guardrail_mode(
        &self,
        tenant: &str,
        guardrail: &str,
        body: &ModeIn,
    ) -> ClientResult<GuardrailView> {
        let path = format!(
            "/tenants/{}/guardrails/{}/mode",
            segment(tenant)?,
            segment(guardrail)?
        );
        self.post(&path, body).await
    }

    pub async fn revoke_guardrail(
        &self,
        tenant: &str,
        guardrail: &str,
    ) -> ClientResult<GuardrailView> {
        self.post_empty(&format!(
            "/tenants/{}/guardrails/{}/revoke",
            segment(tenant)?,
            segment(guardrail)?
        ))
        .await
    }

    // ---- model routes

    /// The tenant's model routes and provider policy.
    pub async fn models(&self, tenant: &str) -> ClientResult<super::models::ModelsView> {
        self.get(&format!("/tenants/{}/models", segment(tenant)?))
            .await
    }

    /// Create or replace a model route.
    pub async fn put_model_route(
        &self,
        tenant: &str,
        name: &str,
        route: &crate::models::route::ModelRoute,
    ) -> ClientResult<super::models::RouteView> {
        self.put(
            &format!("/tenants/{}/models/{}", segment(tenant)?, segment(name)?),
            route,
        )
        .await
    }

    pub async fn delete_model_route(
        &self,
        tenant: &str,
        name: &str,
    ) -> ClientResult<super::models::Deleted> {
        self.send::<(), _>(
            Method::DELETE,
            &format!("/tenants/{}/models/{}", segment(tenant)?, segment(name)?),
            None,
        )
        .await
    }

    pub async fn set_model_providers(
        &self,
        tenant: &str,
        policy: &crate::models::route::ProviderPolicy,
    ) -> ClientResult<crate::models::route::ProviderPolicy> {
        self.put(
            &format!("/tenants/{}/model-providers", segment(tenant)?),
            policy,
        )
        .await
    }

    /// The credits ledger of model requests, summed per route, provider and model.
    pub async fn model_usage(
        &self,
        tenant: &str,
        query: &super::models::UsageQuery,
    ) -> ClientResult<super::models::UsageReport> {
        self.get(&format!(
            "/tenants/{}/model-usage{}",
            segment(tenant)?,
            query_string(query)
        ))
        .await
    }

    // ---- data posture

    /// Which connections, tools and model providers received or returned which data classes.
    pub async fn dataflow(
        &self,
        tenant: &str,
        query: &super::posture::PeriodQuery,
    ) -> ClientResult<super::posture::DataflowReport> {
        self.get(&format!(
            "/tenants/{}/dataflow{}",
            segment(tenant)?,
            query_string(query)
        ))
        .await
    }

    /// The tenant's posture over the period, signed by the gateway.
    pub async fn attestation(
        &self,
        tenant: &str,
        query: &super::posture::PeriodQuery,
    ) -> ClientResult<portcullis_core::attestation::SignedAttestation> {
        self.get(&format!(
            "/tenants/{}/attestation{}",
            segment(tenant)?,
            query_string(query)
        ))
        .await
    }

    // ---- spend

    pub async fn spend(&self, tenant: &str, query: &SpendQuery) -> ClientResult<SpendReport> {
        self.get(&format!(
            "/tenants/{}/spend{}",
            segment(tenant)?,
            query_string(query)
        ))
        .await
    }

    // ---- the access review

    pub async fn access_review(&self, query: &ReviewQuery) -> ClientResult<AccessReview> {
        self.get(&format!("/access-review{}", query_string(query)))
            .await
    }

    // ---- the kill switch

    pub async fn suspend_tenant(&self, tenant: &str) -> ClientResult<TenantView> {
        self.post_empty(&format!("/tenants/{}/suspend", segment(tenant)?))
            .await
    }

    pub async fn resume_tenant(&self, tenant: &str) -> ClientResult<TenantView> {
        self.post_empty(&format!("/tenants/{}/resume", segment(tenant)?))
            .await
    }

    /// `agent`: the agent's id or name.
    pub async fn suspend_agent(&self, tenant: &str, agent: &str) -> ClientResult<AgentView> {
        self.post_empty(&format!(
            "/tenants/{}/agents/{}/suspend",
            segment(tenant)?,
            segment(agent)?
        ))
        .await
    }

    pub async fn resume_agent(&self, tenant: &str, agent: &str) -> ClientResult<AgentView> {
        self.post_empty(&format!(
            "/tenants/{}/agents/{}/resume",
            segment(tenant)?,
            segment(agent)?
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_change_the_path() {
        assert_eq!(segment("acme").unwrap(), "acme");
        assert_eq!(segment("apr_01abc").unwrap(), "apr_01abc");
        assert_eq!(segment("a/../b").unwrap(), "a%2F..%2Fb");
        assert_eq!(segment("x?y#z").unwrap(), "x%3Fy%23z");
        assert_eq!(segment("a b%").unwrap(), "a%20b%25");
        assert_eq!(segment("é").unwrap(), "%C3%A9");
        for refused in ["", ".", ".."] {
            assert!(matches!(segment(refused), Err(ClientError::Segment(_))));
        }
    }

    #[test]
    fn queries_leave_out_absent_fields_and_encode_values() {
        let query = ApprovalQuery {
            tenant: Some("acme&x=1".into()),
            status: None,
            state: Some("pending".into()),
            limit: Some(5),
        };
        assert_eq!(
            query_string(&query),
            "?tenant=acme%26x%3D1&state=pending&limit=5"
        );
        assert_eq!(query_string(&TenantQuery::default()), "");
    }

    #[test]
    fn a_refusal_reads_like_the_cli_always_printed_it() {
        let error = ClientError::Api {
            status: StatusCode::NOT_FOUND,
            code: "not_found".into(),
            detail: "not found".into(),
        };
        assert_eq!(error.to_string(), "not_found (404 Not Found): not found");
        assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    }
}
