//! Records the store reads and writes. Plain data; the store owns their SQL shape.

use portcullis_core::UnixMillis;
use portcullis_core::audit::AuditEvent;
use portcullis_core::effect::EffectClass;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec};
use portcullis_core::id::*;
use portcullis_core::profile::ToolProfile;
use portcullis_core::receipt::SignedReceipt;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: UnixMillis,
    /// Set while the tenant's kill switch is on: none of its agents may act.
    pub suspended_at: Option<UnixMillis>,
    /// The hosts its outbound requests may reach; empty: any public host.
    pub egress_hosts: Vec<String>,
    /// Whether its humans need a TOTP code to sign in to the console.
    pub console_totp: ConsoleTotp,
}

/// A tenant's rule for the console's second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleTotp {
    /// Every human of the tenant signs in with a password and a TOTP code (the default).
    #[default]
    Required,
    /// A human of the tenant who has not enrolled a second factor may sign in with the
    /// password alone; one who has enrolled is always asked for a code.
    Optional,
}

impl ConsoleTotp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "required" => Some(Self::Required),
            "optional" => Some(Self::Optional),
            _ => None,
        }
    }
}

/// What a human principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Everything: tenants, connections, tokens, approvals, audit.
    Admin,
    /// Approve or deny held actions and read the audit trail.
    Approver,
    /// Read everything in scope, the audit trail included; change nothing.
    Auditor,
    /// Read everything in scope but the audit trail; change nothing.
    Viewer,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::Viewer => "viewer",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Self::Admin),
            "approver" => Some(Self::Approver),
            "auditor" => Some(Self::Auditor),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    /// Whether this role may change anything (admins and approvers); the others only read.
    pub fn may_change(self) -> bool {
        matches!(self, Self::Admin | Self::Approver)
    }

    /// Whether this role may read the audit trail.
    pub fn may_read_audit(self) -> bool {
        !matches!(self, Self::Viewer)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub id: AdminId,
    pub name: String,
    pub role: AdminRole,
    /// `None`: every tenant. `Some`: only this one.
    pub tenant: Option<TenantId>,
    pub created_at: UnixMillis,
    /// Who created this identity: an admin's name, or `system` (first start, the demo).
    /// `None` for identities created before this was recorded.
    pub created_by: Option<String>,
    /// When the credential stops working; `None`: until revoked.
    pub expires_at: Option<UnixMillis>,
    /// When the token was last replaced by a new one, and by whom (who has held the new
    /// token: the identity itself, or an admin).
    pub rotated_at: Option<UnixMillis>,
    pub rotated_by: Option<String>,
    pub revoked_at: Option<UnixMillis>,
}

impl Admin {
    /// Whether the credential may be used at `now`: not revoked, not expired.
    pub fn is_usable(&self, now: UnixMillis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

pub struct NewAdmin<'a> {
    pub name: &'a str,
    pub role: AdminRole,
    pub tenant: Option<&'a TenantId>,
    pub token_hash: &'a str,
    /// The creating admin's name, or `system`.
    pub created_by: &'a str,
    pub expires_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: AgentId,
    pub tenant: TenantId,
    pub name: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// The human the agent acts for (who therefore may not approve its requests).
    pub owner: Option<String>,
    /// Set while the agent's kill switch is on. Unlike revocation, it can be lifted.
    pub suspended_at: Option<UnixMillis>,
}

pub struct NewToken<'a> {
    pub tenant: &'a TenantId,
    pub agent: &'a AgentId,
    pub token_hash: &'a str,
    /// Connection names or `connection/tool` pairs; empty means "everything granted".
    pub scope: &'a [String],
    pub expires_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentToken {
    pub id: TokenId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub scope: Vec<String>,
    pub expires_at: UnixMillis,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// For a short-lived session token: the agent token it was exchanged for.
    pub parent: Option<TokenId>,
}

/// Everything the gateway needs to authenticate one agent request.
#[derive(Debug, Clone)]
pub struct AgentAuth {
    pub token: AgentToken,
    pub agent_name: String,
    pub agent_revoked: bool,
    pub tenant_name: String,
    pub agent_suspended: bool,
    pub tenant_suspended: bool,
    /// The human the agent acts for, if recorded.
    pub agent_owner: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub tenant: TenantId,
    pub name: String,
    /// `{"kind":"stdio","command":…,"args":[…],"env":{…}}` or `{"kind":"http","url":…}`.
    pub transport: serde_json::Value,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// What the gateway hides in what the connection's tools return to agents.
    pub redaction: ResultRedaction,
}

/// How a connection's tool results are redacted before an agent reads them.
///
/// Personal data passes by default: agents are often granted a CRM or a mailbox precisely to
/// work with names, addresses and numbers, and hiding them by default would break the tools
/// people connect. Credentials are masked by default: an agent never needs a key an upstream
/// happens to return, and the design promises keys never reach the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultRedaction {
    pub pii: PiiMode,
    pub secrets: SecretsMode,
}

/// What becomes of personal data (e-mail, phone, SSN, card, IBAN, IP address) in results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    /// Passed as the upstream returned it (the default).
    #[default]
    Off,
    /// Replaced by its kind: `[EMAIL]`.
    Mask,
    /// Replaced by a label stable within the agent's session: `[EMAIL_1]`.
    Pseudonymise,
}

/// What becomes of credentials (provider keys, tokens, private keys, JWTs) in results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsMode {
    /// Replaced by their kind: `[SECRET:github_pat]` (the default).
    #[default]
    Mask,
    /// Passed as the upstream returned them (an admin's explicit choice).
    Off,
}

impl PiiMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Mask => "mask",
            Self::Pseudonymise => "pseudonymise",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "off" => Some(Self::Off),
            "mask" => Some(Self::Mask),
            "pseudonymise" => Some(Self::Pseudonymise),
            _ => None,
        }
    }
}

impl SecretsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mask => "mask",
            Self::Off => "off",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "mask" => Some(Self::Mask),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub agent: AgentId,
    pub connection: ConnectionId,
    /// A tool name, or `*` for every tool of the connection.
    pub tool: String,
}

/// A tool as an upstream serves it right now.
#[derive(Debug, Clone)]
pub struct DiscoveredTool {
    pub definition: portcullis_core::action::ToolDefinition,
    pub hash: String,
    pub seed_effect: EffectClass,
    /// `operator` when the connection's configuration classifies the tool, else `annotations`.
    pub seed_source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolRecord {
    pub connection: ConnectionId,
    pub name: String,
    pub definition: portcullis_core::action::ToolDefinition,
    /// The definition an operator accepted (or the first one seen).
    pub pinned_hash: String,
    /// What the upstream serves now.
    pub current_hash: String,
    pub effect: EffectClass,
    /// `annotations` (seeded) or `operator` (configured).
    pub effect_source: String,
    /// What an operator declared about the tool; kept across syncs.
    pub profile: ToolProfile,
}

impl ToolRecord {
    pub fn definition_changed(&self) -> bool {
        self.pinned_hash != self.current_hash
    }

    /// The gateway's classification as it stands: the class and whether the definition
    /// served now is the pinned one.
    pub fn classification(&self) -> portcullis_core::effect::Classification {
        portcullis_core::effect::Classification::of(
            self.effect,
            &self.pinned_hash,
            &self.current_hash,
        )
    }
}

/// What a tenant's ledger holds since the start of a day (see [`Store::spend_today`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    pub tenant_cents: i64,
    /// The share of one agent.
    pub agent_cents: i64,
    /// Runs and cents each guardrail admitted.
    pub guardrails: std::collections::HashMap<GuardrailId, portcullis_core::guardrail::Today>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Executed,
    /// Derived, never stored: pending or approved, but its expiry passed (or a newer request
    /// for the same action superseded it).
    Expired,
    /// Derived, never stored: pending or approved, but its connection was revoked.
    NeedsReconnection,
    /// Derived, never stored: its receipt was redeemed (the upstream may have been called) but
    /// no result was ever recorded — the process died in between. Never re-run.
    Unknown,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Executed => "executed",
            Self::Expired => "expired",
            Self::NeedsReconnection => "needs_reconnection",
            Self::Unknown => "unknown",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::Executed,
            Self::Expired,
            Self::NeedsReconnection,
            Self::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// What an executed approval's upstream call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionOutcome {
    /// The upstream answered with a result.
    Ok,
    /// The upstream answered with a tool error (`isError`).
    ToolError,
    /// No answer: the upstream failed, timed out, or the call was cancelled.
    UpstreamError,
    /// Redeemed, but no result was ever recorded (the process died in between).
    Unknown,
}

impl ExecutionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::UpstreamError => "upstream_error",
            Self::Unknown => "unknown",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Ok,
            Self::ToolError,
            Self::UpstreamError,
            Self::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

pub struct NewApproval {
    pub id: ApprovalId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub session: Option<String>,
    pub action: portcullis_core::action::Action,
    pub action_hash: String,
    pub effect: EffectClass,
    pub summary: String,
    pub reasons: Vec<String>,
    pub expires_at: UnixMillis,
    /// For a revert: the executed approval it undoes (at most one live revert each).
    pub revert_of: Option<ApprovalId>,
}

/// What storing a held action did.
#[derive(Debug, Clone)]
// Built once per hold and taken apart at once; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum HoldOutcome {
    /// A new pending request, with its `hold` audit event.
    Created(Approval, AuditEvent),
    /// An identical action (same tenant, agent and action hash) already has a live request —
    /// pending or approved — or, for a revert, its original already has a live or executed
    /// revert: that request, unchanged. Nothing was written.
    Joined(Approval),
}

impl HoldOutcome {
    pub fn approval(&self) -> &Approval {
        match self {
            Self::Created(approval, _) | Self::Joined(approval) => approval,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub session: Option<String>,
    pub connection: ConnectionId,
    pub tool: String,
    pub effect: EffectClass,
    pub action: portcullis_core::action::Action,
    pub action_hash: String,
    pub summary: String,
    pub reasons: Vec<String>,
    /// Effective status: stored status, or `expired` / `needs_reconnection` where they apply.
    pub status: ApprovalStatus,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub decided_by: Option<String>,
    pub decided_at: Option<UnixMillis>,
    pub decision_reason: Option<String>,
    pub receipt: Option<SignedReceipt>,
    /// The rules in force when the call was held (opaque to the store).
    pub rules: serde_json::Value,
    /// What the approver is shown as evidence (opaque to the store).
    pub evidence: serde_json::Value,
    /// The declared dollar impact, in cents.
    pub cost_cents: i64,
    /// The target's state captured by a preview read when the call was held.
    pub before_state: Option<serde_json::Value>,
    /// Set when the approval was approved as part of a batch (opaque to the store).
    pub batch: Option<serde_json::Value>,
    /// For a revert: the executed approval it undoes.
    pub revert_of: Option<ApprovalId>,
    /// When its receipt was redeemed.
    pub executed_at: Option<UnixMillis>,
    /// What the upstream call produced, once recorded.
    pub outcome: Option<ExecutionOutcome>,
}

/// What a held call carries beyond [`NewApproval`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalExtras {
    pub rules: serde_json::Value,
    pub evidence: serde_json::Value,
    pub cost_cents: i64,
    pub before_state: Option<serde_json::Value>,
}

impl Default for ApprovalExtras {
    fn default() -> Self {
        Self {
            rules: serde_json::json!({}),
            evidence: serde_json::json!({}),
            cost_cents: 0,
            before_state: None,
        }
    }
}

/// One approver's vote on an approval that needs several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    Approve,
    Deny,
}

impl Vote {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Approve, Self::Deny]
            .into_iter()
            .find(|v| v.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoteRecord {
    pub voter: String,
    pub vote: Vote,
    pub reason: Option<String>,
    pub at: UnixMillis,
}

/// One version of a tenant's policy. Versions are append-only and numbered from 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyVersion {
    pub tenant: TenantId,
    pub version: i64,
    pub cedar: String,
    pub settings: serde_json::Value,
    pub hash: String,
    pub created_by: String,
    pub created_at: UnixMillis,
}

/// One run to record in the spend ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub tenant: TenantId,
    pub agent: AgentId,
    /// The guardrail that let the call run unasked, if any.
    pub guardrail: Option<GuardrailId>,
    /// The approval that let the call run, if any.
    pub approval: Option<ApprovalId>,
    pub connection: ConnectionId,
    pub tool: String,
    pub cost_cents: i64,
    pub action_hash: String,
}

/// The budget a charge must fit in: over the guardrail's entries since `since`, at most
/// `max_count` runs and `max_cents` cents (each `None` is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeLimit {
    pub since: UnixMillis,
    pub max_count: Option<i64>,
    pub max_cents: Option<i64>,
}

impl ChargeLimit {
    /// Whether one more run costing `cost_cents` fits, after `count` runs costing `cents`.
    pub fn admits(&self, count: i64, cents: i64, cost_cents: i64) -> bool {
        self.max_count.is_none_or(|max| count < max)
            && self.max_cents.is_none_or(|max| cents + cost_cents <= max)
    }
}

/// A recorded [`Charge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub time: UnixMillis,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub guardrail: Option<GuardrailId>,
    pub approval: Option<ApprovalId>,
    pub connection: ConnectionId,
    pub tool: String,
    pub cost_cents: i64,
    pub action_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guardrail {
    pub id: GuardrailId,
    pub tenant: TenantId,
    pub name: String,
    pub spec: GuardrailSpec,
    pub mode: GuardrailMode,
    pub created_by: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// An approver's decision on one approval.
// Built once per decision and consumed at once; boxing the receipt would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    Approve {
        receipt: SignedReceipt,
        reason: Option<String>,
    },
    Deny {
        reason: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// `None` only for admins that span every tenant.
    pub tenant: Option<TenantId>,
    pub status: Option<ApprovalStatus>,
    pub now: UnixMillis,
    pub limit: i64,
}

/// One tool a session's history touched ([`crate::Store::session_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRead {
    /// `tool:{connection id}/{tool}`.
    pub resource: String,
    /// How many allowed calls of it the history holds.
    pub calls: i64,
    /// The newest of them: its sequence number and time.
    pub last_seq: i64,
    pub last_time: UnixMillis,
    /// The injection spotter flagged what the tool returned in this history
    /// (`untrusted_content`): the session has read untrusted data.
    pub untrusted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<TenantId>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub actor: Option<String>,
    pub kind: Option<String>,
}
