//! The audit chain: every crossing is one event in its tenant's hash chain, and signed
//! checkpoints pin the chain's size and head so that truncation is detectable too.
//!
//! An event's hash is SHA-256 over the canonical JSON (RFC 8785) of every field except the
//! hash itself, including the previous event's hash. Entries written before RFC 8785 proper
//! were hashed with the format-1 canonicaliser; the two agree on everything the gateway writes
//! except rare details (keys with a space, `!` or a supplementary character, integers past
//! 2^53), so verification accepts an entry whose hash matches either form of its own fields:
//! both are injective encodings of the same fields, so neither admits a second content. Editing, deleting or reordering any stored event breaks
//! the chain at that event; deleting the newest events is caught by the last checkpoint.

use crate::UnixMillis;
use crate::id::TenantId;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The `prev_hash` of a chain's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What kind of crossing an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    AuthFailed,
    LockedOut,
    RateLimited,
    ToolsListed,
    ToolCall,
    Hold,
    Approve,
    Deny,
    Execute,
    ExecutionResult,
    TenantCreated,
    AgentCreated,
    AgentRevoked,
    TokenCreated,
    TokenRevoked,
    AdminCreated,
    ConnectionCreated,
    ConnectionRevoked,
    GrantAdded,
    GrantRemoved,
    ToolClassified,
    ToolDefinitionChanged,
    ToolDefinitionAccepted,
    ConfigChanged,
    Checkpoint,
    PolicyUpdated,
    ToolProfiled,
    Vote,
    GuardrailCreated,
    GuardrailChanged,
    GuardrailRevoked,
    Notice,
    AgentSuspended,
    AgentResumed,
    TenantSuspended,
    TenantResumed,
    AmendmentProposed,
    AuditAmended,
    AmendmentRejected,
    /// A tenant's request refused before anything changed (a program outside the catalog).
    ConfigRefused,
    AdminRevoked,
    AdminRotated,
    AdminChanged,
    /// An approval's receipt was redeemed but no result was ever recorded (found at start-up
    /// or by the periodic sweep); it is never re-run.
    ExecutionUnknown,
    /// An agent listed resources or resource templates.
    ResourcesListed,
    /// An agent read (or was refused) a resource.
    ResourceRead,
    /// An agent listed prompts.
    PromptsListed,
    /// An agent fetched (or was refused) a prompt.
    PromptGet,
    /// A secret was stored (a first version) or replaced by a new version.
    SecretPut,
    /// A secret was deleted.
    SecretDeleted,
    /// A tenant's key-encryption key was replaced and every secret rewrapped under it.
    TenantKeyRotated,
    /// A tenant was deleted: its keys destroyed, its connections and credentials gone.
    TenantDeleted,
    /// An outbound request was refused by the egress policy (naming the rule).
    EgressRefused,
    /// A webhook endpoint was created (its URL and event filter; never its secret).
    WebhookEndpointCreated,
    /// A webhook endpoint was changed by a person: enabled, disabled, its secret rotated.
    WebhookEndpointChanged,
    /// A webhook endpoint was deleted.
    WebhookEndpointDeleted,
    /// The gateway disabled a webhook endpoint (it answered 410, or kept failing).
    WebhookEndpointDisabled,
    /// A person asked for a message to be delivered again.
    WebhookRedelivered,
    /// A source of inbound webhooks was added or revoked.
    InboundSourceChanged,
    /// An inbound webhook was verified and accepted (its delivery id; never its body).
    InboundAccepted,
    /// An inbound webhook was refused (bad signature, outside the replay window, a replay).
    InboundRefused,
    /// A human signed in to the console (password and second factor).
    SignedIn,
    /// A human signed out of the console.
    SignedOut,
    /// A share link was created or revoked.
    ShareChanged,
    /// A share link was used to download its artifact.
    ShareDownloaded,
    /// The redactor found data classes crossing the boundary: where (a tool result, an
    /// effect's arguments, a model prompt or completion), what it did (masked, pseudonymised,
    /// observed, blocked) and the kinds with their counts. Never a value or a span.
    Redaction,
    /// The injection spotter flagged what a tool returned: the session counts as having read
    /// untrusted data from then on (flow escalation). Signal kinds and counts only.
    UntrustedContent,
    /// One request through a model route: provider, model, status, token counts, latency,
    /// the provider's request id and the retention posture. Never a prompt or a completion.
    ModelRequest,
    /// A launched tool server ended without being asked to: its exit (code or signal), and
    /// the limit it ran into when one is known (CPU time, file size, its folder's size).
    /// Audited, then restarted with backoff.
    UpstreamExited,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        ALL_KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, s)| *s)
            .unwrap_or("unknown")
    }

    pub fn parse(value: &str) -> Option<Self> {
        ALL_KINDS.iter().find(|(_, s)| *s == value).map(|(k, _)| *k)
    }
}

const ALL_KINDS: &[(AuditKind, &str)] = &[
    (AuditKind::SecretPut, "secret_put"),
    (AuditKind::SecretDeleted, "secret_deleted"),
    (AuditKind::TenantKeyRotated, "tenant_key_rotated"),
    (AuditKind::TenantDeleted, "tenant_deleted"),
    (AuditKind::EgressRefused, "egress_refused"),
    (
        AuditKind::WebhookEndpointCreated,
        "webhook_endpoint_created",
    ),
    (
        AuditKind::WebhookEndpointChanged,
        "webhook_endpoint_changed",
    ),
    (
        AuditKind::WebhookEndpointDeleted,
        "webhook_endpoint_deleted",
    ),
    (
        AuditKind::WebhookEndpointDisabled,
        "webhook_endpoint_disabled",
    ),
    (AuditKind::WebhookRedelivered, "webhook_redelivered"),
    (AuditKind::InboundSourceChanged, "inbound_source_changed"),
    (AuditKind::InboundAccepted, "inbound_accepted"),
    (AuditKind::InboundRefused, "inbound_refused"),
    (AuditKind::SignedIn, "signed_in"),
    (AuditKind::SignedOut, "signed_out"),
    (AuditKind::ShareChanged, "share_changed"),
    (AuditKind::ShareDownloaded, "share_downloaded"),
    (AuditKind::Redaction, "redaction"),
    (AuditKind::UntrustedContent, "untrusted_content"),
    (AuditKind::ModelRequest, "model_request"),
    (AuditKind::UpstreamExited, "upstream_exited"),
    (AuditKind::AuthFailed, "auth_failed"),
    (AuditKind::LockedOut, "locked_out"),
    (AuditKind::RateLimited, "rate_limited"),
    (AuditKind::ToolsListed, "tools_listed"),
    (AuditKind::ToolCall, "tool_call"),
    (AuditKind::Hold, "hold"),
    (AuditKind::Approve, "approve"),
    (AuditKind::Deny, "deny"),
    (AuditKind::Execute, "execute"),
    (AuditKind::ExecutionResult, "execution_result"),
    (AuditKind::TenantCreated, "tenant_created"),
    (AuditKind::AgentCreated, "agent_created"),
    (AuditKind::AgentRevoked, "agent_revoked"),
    (AuditKind::TokenCreated, "token_created"),
    (AuditKind::TokenRevoked, "token_revoked"),
    (AuditKind::AdminCreated, "admin_created"),
    (AuditKind::ConnectionCreated, "connection_created"),
    (AuditKind::ConnectionRevoked, "connection_revoked"),
    (AuditKind::GrantAdded, "grant_added"),
    (AuditKind::GrantRemoved, "grant_removed"),
    (AuditKind::ToolClassified, "tool_classified"),
    (AuditKind::ToolDefinitionChanged, "tool_definition_changed"),
    (
        AuditKind::ToolDefinitionAccepted,
        "tool_definition_accepted",
    ),
    (AuditKind::ConfigChanged, "config_changed"),
    (AuditKind::Checkpoint, "checkpoint"),
    (AuditKind::PolicyUpdated, "policy_updated"),
    (AuditKind::ToolProfiled, "tool_profiled"),
    (AuditKind::Vote, "vote"),
    (AuditKind::GuardrailCreated, "guardrail_created"),
    (AuditKind::GuardrailChanged, "guardrail_changed"),
    (AuditKind::GuardrailRevoked, "guardrail_revoked"),
    (AuditKind::Notice, "notice"),
    (AuditKind::AgentSuspended, "agent_suspended"),
    (AuditKind::AgentResumed, "agent_resumed"),
    (AuditKind::TenantSuspended, "tenant_suspended"),
    (AuditKind::TenantResumed, "tenant_resumed"),
    (AuditKind::AmendmentProposed, "amendment_proposed"),
    (AuditKind::AuditAmended, "audit_amended"),
    (AuditKind::AmendmentRejected, "amendment_rejected"),
    (AuditKind::ConfigRefused, "config_refused"),
    (AuditKind::AdminRevoked, "admin_revoked"),
    (AuditKind::AdminRotated, "admin_rotated"),
    (AuditKind::AdminChanged, "admin_changed"),
    (AuditKind::ExecutionUnknown, "execution_unknown"),
    (AuditKind::ResourcesListed, "resources_listed"),
    (AuditKind::ResourceRead, "resource_read"),
    (AuditKind::PromptsListed, "prompts_listed"),
    (AuditKind::PromptGet, "prompt_get"),
];

/// An event before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDraft {
    pub tenant: TenantId,
    /// Who acted: `agent:agt_…`, `admin:alice`, `ip:203.0.113.7`, `system`.
    pub actor: String,
    pub session: Option<String>,
    pub kind: AuditKind,
    /// What it acted on: `tool:con_…/send_email`, `approval:apr_…`, `token:tok_…`.
    pub resource: Option<String>,
    pub decision: Option<String>,
    pub receipt_id: Option<String>,
    /// Keyed hash of the arguments (never the values).
    pub args_hash: Option<String>,
    /// Small structured facts (reasons, effect class, outcome). Never secrets or document text.
    pub detail: serde_json::Value,
}

/// A stored event: the draft plus its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: UnixMillis,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub draft: AuditDraft,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    time: UnixMillis,
    prev_hash: &'a str,
    #[serde(flatten)]
    draft: &'a AuditDraft,
}

impl AuditDraft {
    pub fn new(tenant: TenantId, actor: impl Into<String>, kind: AuditKind) -> Self {
        Self {
            tenant,
            actor: actor.into(),
            session: None,
            kind,
            resource: None,
            decision: None,
            receipt_id: None,
            args_hash: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Give the draft its place after `prev_hash` at position `seq`.
    ///
    /// A detail with no RFC 8785 form (a number no double holds, absurd nesting) is replaced by
    /// a note saying so: the event is still recorded, and every entry stays verifiable by an
    /// independent canonicaliser.
    pub fn seal(mut self, seq: i64, time: UnixMillis, prev_hash: &str) -> AuditEvent {
        if let Err(e) = crate::jcs::to_vec(&self.detail) {
            self.detail = serde_json::json!({ "detail_withheld": e.to_string() });
        }
        let hash = event_hash(seq, time, prev_hash, &self);
        AuditEvent {
            seq,
            time,
            prev_hash: prev_hash.to_owned(),
            hash,
            draft: self,
        }
    }
}

fn event_hash(seq: i64, time: UnixMillis, prev_hash: &str, draft: &AuditDraft) -> String {
    let mut bytes = Vec::with_capacity(512);
    write_hashed(&mut bytes, seq, time, prev_hash, draft)
        .expect("a sealed draft's detail has a canonical form");
    crate::sha256_hex(&bytes)
}

/// The RFC 8785 bytes of an event's hashed fields, written directly rather than through a
/// generic serialiser (verification streams millions of entries): the members in RFC 8785
/// order — their names are plain ASCII, so UTF-16 and byte order agree — each value in its
/// canonical form. A property test checks it against [`crate::jcs::to_vec`] of the fields.
fn write_hashed(
    out: &mut Vec<u8>,
    seq: i64,
    time: UnixMillis,
    prev_hash: &str,
    d: &AuditDraft,
) -> Result<(), crate::jcs::JcsError> {
    use crate::jcs::{write_number, write_str, write_value};
    let opt = |out: &mut Vec<u8>, value: &Option<String>| match value {
        Some(v) => write_str(out, v),
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(b"{\"actor\":");
    write_str(out, &d.actor);
    out.extend_from_slice(b",\"args_hash\":");
    opt(out, &d.args_hash);
    out.extend_from_slice(b",\"decision\":");
    opt(out, &d.decision);
    out.extend_from_slice(b",\"detail\":");
    write_value(out, &d.detail, 1)?;
    out.extend_from_slice(b",\"kind\":");
    write_str(out, d.kind.as_str());
    out.extend_from_slice(b",\"prev_hash\":");
    write_str(out, prev_hash);
    out.extend_from_slice(b",\"receipt_id\":");
    opt(out, &d.receipt_id);
    out.extend_from_slice(b",\"resource\":");
    opt(out, &d.resource);
    out.extend_from_slice(b",\"seq\":");
    write_number(out, &serde_json::Number::from(seq))?;
    out.extend_from_slice(b",\"session\":");
    opt(out, &d.session);
    out.extend_from_slice(b",\"tenant\":");
    write_str(out, d.tenant.as_str());
    out.extend_from_slice(b",\"time\":");
    write_number(out, &serde_json::Number::from(time))?;
    out.push(b'}');
    Ok(())
}

impl AuditEvent {
    /// Whether the stored hash is the hash of the stored fields (in the current format, or in
    /// format 1 for entries written before it).
    pub fn hash_matches(&self) -> bool {
        self.checked_hash(&mut Vec::new()).is_some()
    }

    /// The stored hash as bytes when it is the hash of the stored fields (current format, or
    /// format 1 for entries written before it); `scratch` is reused between calls.
    pub fn checked_hash(&self, scratch: &mut Vec<u8>) -> Option<crate::merkle::Hash> {
        use sha2::Digest;
        let stored = crate::merkle::parse_hash(&self.hash)?;
        scratch.clear();
        if write_hashed(scratch, self.seq, self.time, &self.prev_hash, &self.draft).is_ok()
            && <[u8; 32]>::from(sha2::Sha256::digest(scratch.as_slice())) == stored
        {
            return Some(stored);
        }
        // Format 1 wrote integers past 2^53 verbatim, where format 2 writes the double's
        // digits: `1152921504606847000` in format 1 is the bytes of 2^60 in format 2. Entries
        // with such a number are held to format 2 alone, so neither form can stand in for a
        // different value; without one, the two forms differ only in member order, and equal
        // bytes mean equal fields.
        if has_large_integer(&self.draft.detail) {
            return None;
        }
        let hashed = Hashed {
            seq: self.seq,
            time: self.time,
            prev_hash: &self.prev_hash,
            draft: &self.draft,
        };
        let legacy = crate::jcs::legacy::to_vec(&hashed).ok()?;
        (<[u8; 32]>::from(sha2::Sha256::digest(&legacy)) == stored).then_some(stored)
    }
}

/// What a checkpoint pins: the chain of `tenant` had `size` events ending in `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub tenant: TenantId,
    pub size: i64,
    pub head_hash: String,
    pub time: UnixMillis,
}

/// A signed checkpoint of one tenant's trail.
///
/// Format 2 (written now): `note` is a C2SP signed note stating the origin
/// `<prefix>/<tenant id>`, the size and the root of the RFC 6962 Merkle tree whose leaves are
/// the entries' hashes ([`leaf_of`]); the root binds the head hash (the last leaf).
/// Format 1 (rows written before): no note, `signature` is Ed25519 over the canonical body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub body: CheckpointBody,
    /// Format 1 only: hex Ed25519 over the canonical body (empty for format 2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// Format 2: the signed note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether a value holds an integer beyond 2^53 (where the two canonical forms print numbers
/// differently).
fn has_large_integer(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => {
            n.as_u64().is_some_and(|u| u > 1 << 53) || n.as_i64().is_some_and(|i| i < -(1 << 53))
        }
        serde_json::Value::Array(items) => items.iter().any(has_large_integer),
        serde_json::Value::Object(map) => map.values().any(has_large_integer),
        _ => false,
    }
}

/// The Merkle leaf of an audit entry: RFC 6962 leaf hash of the entry's 32-byte hash.
pub fn leaf_of(event_hash: &str) -> Option<crate::merkle::Hash> {
    crate::merkle::parse_hash(event_hash).map(|h| crate::merkle::leaf_hash(&h))
}

/// The checkpoint origin (log name) of a tenant's trail under `prefix`.
pub fn origin_of(prefix: &str, tenant: &TenantId) -> String {
    format!("{prefix}/{tenant}")
}

impl Checkpoint {
    /// Sign a format-1 checkpoint (kept for tests of old rows; new checkpoints are notes).
    pub fn sign(key: &SigningKey, body: CheckpointBody) -> Self {
        let bytes = crate::action::canonical_json(&body).expect("checkpoint serialises");
        Self {
            body,
            signature: hex::encode(key.sign(&bytes).to_bytes()),
            note: None,
        }
    }

    /// Sign a format-2 checkpoint: a note over the tree of `body.size` entries with `root`.
    pub fn sign_note(
        key: &SigningKey,
        origin_prefix: &str,
        body: CheckpointBody,
        root: crate::merkle::Hash,
    ) -> Self {
        let head = crate::note::TreeHead {
            origin: origin_of(origin_prefix, &body.tenant),
            size: u64::try_from(body.size).expect("a chain size is positive"),
            root,
        };
        let note = crate::note::sign_checkpoint(key, crate::note::KEY_NAME, &head);
        Self {
            body,
            signature: String::new(),
            note: Some(note),
        }
    }

    /// Check the signature (either format) with any of `keys`. For a note, also that it
    /// states this checkpoint's tenant and size; returns the Merkle root it states.
    pub fn verify_with(
        &self,
        keys: &[crate::note::NoteVerifier],
    ) -> Result<Option<crate::merkle::Hash>, ChainBreak> {
        let forged = ChainBreak::ForgedCheckpoint {
            size: self.body.size,
        };
        match &self.note {
            Some(note) => {
                let head =
                    crate::note::verify_checkpoint(note, keys).map_err(|_| forged.clone())?;
                let tenant_ok = head
                    .origin
                    .rsplit_once('/')
                    .is_some_and(|(_, t)| t == self.body.tenant.as_str());
                if !tenant_ok || i64::try_from(head.size).ok() != Some(self.body.size) {
                    return Err(forged);
                }
                Ok(Some(head.root))
            }
            None => {
                let bytes =
                    crate::action::canonical_json(&self.body).map_err(|_| forged.clone())?;
                let mut sig = [0u8; 64];
                hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| forged.clone())?;
                let signature = Signature::from_bytes(&sig);
                if keys
                    .iter()
                    .any(|k| k.key.verify(&bytes, &signature).is_ok())
                {
                    Ok(None)
                } else {
                    Err(forged)
                }
            }
        }
    }
}

/// The first problem `verify_chain` found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq}: stored hash does not match its contents (edited)")]
    Edited { seq: i64 },
    #[error("entry {seq}: does not follow entry {prev} (deleted or reordered entries before it)")]
    Broken { seq: i64, prev: i64 },
    #[error("entry {seq}: expected sequence number {expected} (missing or reordered entries)")]
    Gap { seq: i64, expected: i64 },
    #[error("entry {seq}: belongs to another tenant")]
    WrongTenant { seq: i64 },
    #[error("checkpoint at size {size}: signature is invalid")]
    ForgedCheckpoint { size: i64 },
    #[error("truncated: checkpoint at size {size} but only {actual} entries remain")]
    Truncated { size: i64, actual: i64 },
    #[error("entry {seq}: differs from the signed checkpoint at size {seq}")]
    CheckpointMismatch { seq: i64 },
    #[error(
        "the tree of the first {size} entries is not the one the checkpoint at size {size} signed (history rewritten)"
    )]
    RootMismatch { size: i64 },
    #[error(
        "two signed checkpoints at size {size} state different trees: two histories were signed"
    )]
    Fork { size: i64 },
    #[error("the witnessed checkpoint at size {size} is missing from the database")]
    WitnessedMissing { size: i64 },
    #[error(
        "the trail is not an extension of the checkpoint witnessed at size {size} (history rewritten or rolled back)"
    )]
    NotAnExtension { size: i64 },
    #[error(
        "truncated: a checkpoint at size {size} was witnessed but only {actual} entries remain"
    )]
    WitnessedTruncated { size: i64, actual: i64 },
}

/// Summary of a chain that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub tenant: TenantId,
    pub entries: i64,
    pub head_hash: String,
    /// The Merkle root over every entry (hex).
    pub root: String,
    pub checkpoints: usize,
    /// The largest checkpoint's size, witnessed or not (0: none).
    pub checkpointed: i64,
    /// The largest witnessed checkpoint's size (0: none).
    pub witnessed: i64,
    /// Entries past the last witnessed checkpoint: what a rewrite could still hide.
    pub unwitnessed: i64,
}

/// Incremental verifier, so a store can stream millions of events through it: the chain, the
/// Merkle tree, the database's checkpoints and the checkpoints witnessed outside it.
pub struct ChainVerifier {
    tenant: TenantId,
    expected_seq: i64,
    prev_hash: String,
    /// Signed (head hash, Merkle root if format 2) at checkpointed sizes.
    checkpoint_heads: std::collections::BTreeMap<i64, (String, Option<crate::merkle::Hash>)>,
    /// Merkle roots at witnessed sizes.
    witnessed: std::collections::BTreeMap<i64, crate::merkle::Hash>,
    tree: crate::merkle::Frontier,
    /// Reused for each entry's canonical bytes.
    scratch: Vec<u8>,
}

impl ChainVerifier {
    /// Start verifying `tenant`'s chain. Checkpoints are checked for signatures first.
    pub fn new(
        tenant: TenantId,
        checkpoints: &[Checkpoint],
        key: &VerifyingKey,
    ) -> Result<Self, ChainBreak> {
        let keys = [crate::note::NoteVerifier {
            name: crate::note::KEY_NAME.into(),
            key: *key,
        }];
        Self::with_witness(tenant, checkpoints, &[], &keys)
    }

    /// Start verifying `tenant`'s chain against its checkpoints in the database and the
    /// checkpoints witnessed outside it (`witnessed`: notes already parsed, each for this
    /// tenant). Every signature is checked first; a witnessed checkpoint the database lacks
    /// fails at once.
    pub fn with_witness(
        tenant: TenantId,
        checkpoints: &[Checkpoint],
        witnessed: &[Checkpoint],
        keys: &[crate::note::NoteVerifier],
    ) -> Result<Self, ChainBreak> {
        Self::build(tenant, checkpoints, witnessed, keys, true)
    }

    /// Like [`Self::with_witness`], for checkpoints held elsewhere (a verifier's own copies):
    /// the entries must match each one, but the checkpoints need not be among `checkpoints`.
    pub fn with_external(
        tenant: TenantId,
        checkpoints: &[Checkpoint],
        external: &[Checkpoint],
        keys: &[crate::note::NoteVerifier],
    ) -> Result<Self, ChainBreak> {
        Self::build(tenant, checkpoints, external, keys, false)
    }

    fn build(
        tenant: TenantId,
        checkpoints: &[Checkpoint],
        witnessed: &[Checkpoint],
        keys: &[crate::note::NoteVerifier],
        witnessed_in_checkpoints: bool,
    ) -> Result<Self, ChainBreak> {
        let mut checkpoint_heads = std::collections::BTreeMap::new();
        for checkpoint in checkpoints {
            if checkpoint.body.tenant != tenant {
                return Err(ChainBreak::ForgedCheckpoint {
                    size: checkpoint.body.size,
                });
            }
            let root = checkpoint.verify_with(keys)?;
            let size = checkpoint.body.size;
            let head = (checkpoint.body.head_hash.clone(), root);
            // Two signed checkpoints of one size that disagree: two histories were signed.
            if checkpoint_heads
                .insert(size, head.clone())
                .is_some_and(|earlier| earlier != head)
            {
                return Err(ChainBreak::Fork { size });
            }
        }
        let mut witnessed_roots = std::collections::BTreeMap::new();
        for w in witnessed {
            let size = w.body.size;
            let root = w
                .verify_with(keys)?
                .ok_or(ChainBreak::ForgedCheckpoint { size })?;
            if w.body.tenant != tenant {
                return Err(ChainBreak::ForgedCheckpoint { size });
            }
            match checkpoint_heads.get(&size) {
                Some((_, Some(db_root))) if *db_root == root => {}
                Some((_, Some(_))) => return Err(ChainBreak::NotAnExtension { size }),
                _ if !witnessed_in_checkpoints => {}
                Some(_) => return Err(ChainBreak::NotAnExtension { size }),
                None => return Err(ChainBreak::WitnessedMissing { size }),
            }
            if witnessed_roots
                .insert(size, root)
                .is_some_and(|earlier| earlier != root)
            {
                return Err(ChainBreak::Fork { size });
            }
        }
        Ok(Self {
            tenant,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checkpoint_heads,
            witnessed: witnessed_roots,
            tree: crate::merkle::Frontier::new(),
            scratch: Vec::with_capacity(1024),
        })
    }

    /// Feed the next event in sequence order.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let seq = event.seq;
        if event.draft.tenant != self.tenant {
            return Err(ChainBreak::WrongTenant { seq });
        }
        let Some(hash) = event.checked_hash(&mut self.scratch) else {
            return Err(ChainBreak::Edited { seq });
        };
        if seq != self.expected_seq {
            return Err(ChainBreak::Gap {
                seq,
                expected: self.expected_seq,
            });
        }
        if event.prev_hash != self.prev_hash {
            return Err(ChainBreak::Broken { seq, prev: seq - 1 });
        }
        self.tree.push(crate::merkle::leaf_hash(&hash));
        if let Some((head, root)) = self.checkpoint_heads.get(&seq) {
            if *head != event.hash {
                return Err(ChainBreak::CheckpointMismatch { seq });
            }
            if root.is_some_and(|r| r != self.tree.root()) {
                return Err(ChainBreak::RootMismatch { size: seq });
            }
        }
        if let Some(root) = self.witnessed.get(&seq)
            && *root != self.tree.root()
        {
            return Err(ChainBreak::NotAnExtension { size: seq });
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&event.hash);
        Ok(())
    }

    /// Finish: the stream ended; any checkpoint beyond its end means truncation.
    pub fn finish(self) -> Result<ChainReport, ChainBreak> {
        let actual = self.expected_seq - 1;
        if let Some((&size, _)) = self.witnessed.range(actual + 1..).next_back() {
            return Err(ChainBreak::WitnessedTruncated { size, actual });
        }
        if let Some((&size, _)) = self.checkpoint_heads.range(actual + 1..).next_back() {
            return Err(ChainBreak::Truncated { size, actual });
        }
        let witnessed = self.witnessed.keys().next_back().copied().unwrap_or(0);
        let checkpointed = self
            .checkpoint_heads
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(witnessed);
        Ok(ChainReport {
            checkpointed,
            tenant: self.tenant,
            entries: actual,
            head_hash: self.prev_hash,
            root: hex::encode(self.tree.root()),
            checkpoints: self.checkpoint_heads.len(),
            witnessed,
            unwitnessed: actual - witnessed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;

    fn chain(tenant: &TenantId, n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event = AuditDraft::new(tenant.clone(), "agent:x", AuditKind::ToolCall)
                    .detail(serde_json::json!({ "n": seq }))
                    .seal(seq, 1000 + seq, &prev);
                prev.clone_from(&event.hash);
                event
            })
            .collect()
    }

    fn verify(
        tenant: &TenantId,
        events: &[AuditEvent],
        checkpoints: &[Checkpoint],
        keys: &KeyRing,
    ) -> Result<ChainReport, ChainBreak> {
        let mut verifier = ChainVerifier::new(tenant.clone(), checkpoints, &keys.verifying_key())?;
        for event in events {
            verifier.push(event)?;
        }
        verifier.finish()
    }

    fn checkpoint(keys: &KeyRing, tenant: &TenantId, events: &[AuditEvent]) -> Checkpoint {
        let last = events.last().unwrap();
        Checkpoint::sign(
            keys.signing_key(),
            CheckpointBody {
                tenant: tenant.clone(),
                size: last.seq,
                head_hash: last.hash.clone(),
                time: 0,
            },
        )
    }

    proptest::proptest! {
        /// The direct writer gives exactly the generic canonicaliser's bytes.
        #[test]
        fn entries_are_written_as_rfc_8785_would_write_them(
            actor in "[ -~\u{80}-\u{10ffff}]{0,12}",
            opt in proptest::option::of("[ -~\u{0}-\u{1f}\u{e000}-\u{10ffff}]{0,8}"),
            key in "[ -~\u{80}-\u{10ffff}]{0,6}",
            n in -(1i64 << 53)..=(1i64 << 53),
            f in proptest::num::f64::NORMAL,
            seq in 1i64..=(1i64 << 53),
        ) {
            let mut draft = AuditDraft::new(TenantId::generate(), actor, AuditKind::Execute)
                .detail(serde_json::json!({ key: [n, f, opt.clone(), { "z": null, "a": true }] }));
            draft.session = opt.clone();
            draft.resource = opt.clone();
            draft.args_hash = opt;
            let mut direct = Vec::new();
            write_hashed(&mut direct, seq, 1_700_000_000_000, "ab", &draft).unwrap();
            let hashed = Hashed { seq, time: 1_700_000_000_000, prev_hash: "ab", draft: &draft };
            proptest::prop_assert_eq!(direct, crate::jcs::to_vec(&hashed).unwrap());
        }
    }

    #[test]
    fn entries_hashed_in_format_1_keep_verifying() {
        let tenant = TenantId::generate();
        // A key with a space sorts differently in format 1.
        let draft = AuditDraft::new(tenant.clone(), "agent:x", AuditKind::Notice)
            .detail(serde_json::json!({ "a b": 1, "a": 2 }));
        let hashed = Hashed {
            seq: 1,
            time: 5,
            prev_hash: GENESIS_HASH,
            draft: &draft,
        };
        let legacy = crate::sha256_hex(&crate::jcs::legacy::to_vec(&hashed).unwrap());
        let mut event = draft.seal(1, 5, GENESIS_HASH);
        assert_ne!(event.hash, legacy);
        assert!(event.hash_matches());
        event.hash = legacy;
        assert!(
            event.hash_matches(),
            "an entry written in format 1 still verifies"
        );
        event.draft.detail = serde_json::json!({ "a b": 1, "a": 3 });
        assert!(!event.hash_matches());
    }

    /// Format 1 printed 2^60 + 24 (not a double) as its digits, which are format 2's bytes of
    /// 2^60: an insider swapping one for the other must not pass as a format-1 entry.
    #[test]
    fn a_large_integer_cannot_be_swapped_through_the_format_1_fallback() {
        let tenant = TenantId::generate();
        let draft = AuditDraft::new(tenant, "agent:x", AuditKind::Notice)
            .detail(serde_json::json!({ "n": 1_152_921_504_606_846_976_u64 }));
        let mut event = draft.seal(1, 5, GENESIS_HASH);
        assert!(event.hash_matches());
        event.draft.detail = serde_json::json!({ "n": 1_152_921_504_606_847_000_u64 });
        assert!(
            !event.hash_matches(),
            "the swapped value passed through format 1"
        );
    }

    #[test]
    fn two_signed_checkpoints_of_one_size_that_disagree_are_a_fork() {
        let keys = KeyRing::generate();
        let tenant = TenantId::generate();
        let events = chain(&tenant, 4);
        let body = |head: &str| CheckpointBody {
            tenant: tenant.clone(),
            size: 4,
            head_hash: head.to_owned(),
            time: 0,
        };
        let real = Checkpoint::sign_note(keys.signing_key(), "p", body(&events[3].hash), [1; 32]);
        let other = Checkpoint::sign_note(keys.signing_key(), "p", body(&events[3].hash), [2; 32]);
        let trusted = [crate::note::NoteVerifier {
            name: crate::note::KEY_NAME.into(),
            key: keys.verifying_key(),
        }];
        assert!(matches!(
            ChainVerifier::with_external(
                tenant.clone(),
                &[],
                &[real.clone(), other.clone()],
                &trusted
            ),
            Err(ChainBreak::Fork { size: 4 })
        ));
        assert!(matches!(
            ChainVerifier::with_external(tenant, &[real, other], &[], &trusted),
            Err(ChainBreak::Fork { size: 4 })
        ));
    }

    #[test]
    fn kinds_have_one_spelling() {
        for (kind, name) in ALL_KINDS {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(name));
            assert_eq!(AuditKind::parse(name), Some(*kind));
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let keys = KeyRing::generate();
        let tenant = TenantId::generate();
        let events = chain(&tenant, 10);
        let cp = checkpoint(&keys, &tenant, &events);
        let report = verify(&tenant, &events, &[cp], &keys).unwrap();
        assert_eq!(report.entries, 10);
    }

    #[test]
    fn edits_deletions_reorders_and_truncation_are_named() {
        let keys = KeyRing::generate();
        let tenant = TenantId::generate();
        let events = chain(&tenant, 10);
        let cp = checkpoint(&keys, &tenant, &events);

        let mut edited = events.clone();
        edited[4].draft.decision = Some("allow".into());
        assert_eq!(
            verify(&tenant, &edited, &[], &keys),
            Err(ChainBreak::Edited { seq: 5 })
        );

        let mut deleted = events.clone();
        deleted.remove(3);
        assert_eq!(
            verify(&tenant, &deleted, &[], &keys),
            Err(ChainBreak::Gap {
                seq: 5,
                expected: 4
            })
        );

        let mut reordered = events.clone();
        reordered.swap(2, 3);
        assert!(verify(&tenant, &reordered, &[], &keys).is_err());

        let truncated = &events[..7];
        assert_eq!(
            verify(&tenant, truncated, std::slice::from_ref(&cp), &keys),
            Err(ChainBreak::Truncated {
                size: 10,
                actual: 7
            })
        );

        let mut forged = cp;
        forged.body.size = 3;
        assert_eq!(
            verify(&tenant, &events, &[forged], &keys),
            Err(ChainBreak::ForgedCheckpoint { size: 3 })
        );
    }
}
