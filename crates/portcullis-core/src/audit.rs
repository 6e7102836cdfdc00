//! The audit chain: every crossing is one event in its tenant's hash chain, and signed
//! checkpoints pin the chain's size and head so that truncation is detectable too.
//!
//! An event's hash is SHA-256 over the canonical JSON of every field except the hash itself,
//! including the previous event's hash. Editing, deleting or reordering any stored event breaks
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
    pub fn seal(self, seq: i64, time: UnixMillis, prev_hash: &str) -> AuditEvent {
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
    let hashed = Hashed {
        seq,
        time,
        prev_hash,
        draft,
    };
    crate::action::canonical_hash(&hashed).expect("audit events contain no unrepresentable numbers")
}

impl AuditEvent {
    /// Recompute the hash from the stored fields.
    pub fn recompute_hash(&self) -> String {
        event_hash(self.seq, self.time, &self.prev_hash, &self.draft)
    }
}

/// What a checkpoint signs: the chain of `tenant` had `size` events ending in `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub tenant: TenantId,
    pub size: i64,
    pub head_hash: String,
    pub time: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub body: CheckpointBody,
    pub signature: String,
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, body: CheckpointBody) -> Self {
        let bytes = crate::action::canonical_json(&body).expect("checkpoint serialises");
        Self {
            body,
            signature: hex::encode(key.sign(&bytes).to_bytes()),
        }
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = crate::action::canonical_json(&self.body) else {
            return false;
        };
        let mut sig = [0u8; 64];
        if hex::decode_to_slice(&self.signature, &mut sig).is_err() {
            return false;
        }
        key.verify(&bytes, &Signature::from_bytes(&sig)).is_ok()
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
}

/// Summary of a chain that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub tenant: TenantId,
    pub entries: i64,
    pub head_hash: String,
    pub checkpoints: usize,
}

/// Incremental verifier, so a store can stream millions of events through it.
pub struct ChainVerifier {
    tenant: TenantId,
    expected_seq: i64,
    prev_hash: String,
    /// Hashes at checkpointed sizes, to compare when the stream passes them.
    checkpoint_heads: std::collections::BTreeMap<i64, String>,
}

impl ChainVerifier {
    /// Start verifying `tenant`'s chain. Checkpoints are checked for signatures first.
    pub fn new(
        tenant: TenantId,
        checkpoints: &[Checkpoint],
        key: &VerifyingKey,
    ) -> Result<Self, ChainBreak> {
        let mut checkpoint_heads = std::collections::BTreeMap::new();
        for checkpoint in checkpoints {
            if checkpoint.body.tenant != tenant || !checkpoint.verify(key) {
                return Err(ChainBreak::ForgedCheckpoint {
                    size: checkpoint.body.size,
                });
            }
            checkpoint_heads.insert(checkpoint.body.size, checkpoint.body.head_hash.clone());
        }
        Ok(Self {
            tenant,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checkpoint_heads,
        })
    }

    /// Feed the next event in sequence order.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let seq = event.seq;
        if event.draft.tenant != self.tenant {
            return Err(ChainBreak::WrongTenant { seq });
        }
        if event.recompute_hash() != event.hash {
            return Err(ChainBreak::Edited { seq });
        }
        if seq != self.expected_seq {
            return Err(ChainBreak::Gap {
                seq,
                expected: self.expected_seq,
            });
        }
        if event.prev_hash != self.prev_hash {
            return Err(ChainBreak::Broken { seq, prev: seq - 1 });
        }
        if let Some(head) = self.checkpoint_heads.get(&seq)
            && *head != event.hash
        {
            return Err(ChainBreak::CheckpointMismatch { seq });
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&event.hash);
        Ok(())
    }

    /// Finish: the stream ended; any checkpoint beyond its end means truncation.
    pub fn finish(self) -> Result<ChainReport, ChainBreak> {
        let actual = self.expected_seq - 1;
        if let Some((&size, _)) = self.checkpoint_heads.range(actual + 1..).next_back() {
            return Err(ChainBreak::Truncated { size, actual });
        }
        Ok(ChainReport {
            tenant: self.tenant,
            entries: actual,
            head_hash: self.prev_hash,
            checkpoints: self.checkpoint_heads.len(),
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
