//! Offline verification of a Portcullis audit export (`portcullis audit export --format jsonl`)
//! by anyone holding the export and the public key: no database, no server, no async runtime —
//! this crate depends on `portcullis-core` alone, so others can embed it.
//!
//! It proves, per tenant: (a) the entries form the hash chain and the Merkle tree that every
//! signed checkpoint states — those in the export and those given separately (a witness log, a
//! tenant's own copy) — so the export is neither edited nor truncated nor rolled back against
//! them; (b) every `execute` entry is covered by a receipt whose signature verifies over
//! exactly that action's canonical hash, approvers and expiry, and every effect a guardrail
//! let through is covered by a guardrail in force at that moment, shown by its own entries.
//!
//! The export format (one JSON object per line, each with a `type`): `header`; then per
//! tenant `checkpoint`, `guardrail` (id and name, to link entries written before creation
//! entries named the id), `receipt` (the signed receipt and the action it covers), and the
//! tenant's `entry` lines from sequence number 1, in order.

use portcullis_core::UnixMillis;
use portcullis_core::action::{Action, HashedAction};
use portcullis_core::audit::{AuditEvent, AuditKind, ChainBreak, ChainVerifier, Checkpoint};
use portcullis_core::id::TenantId;
use portcullis_core::note::NoteVerifier;
use portcullis_core::receipt::SignedReceipt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

/// The export format's name and version (in the header line).
pub const FORMAT: &str = "portcullis-audit-export";
pub const VERSION: u32 = 2;

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Checkpoint(Checkpoint),
    Guardrail {
        tenant: TenantId,
        id: String,
        name: String,
    },
    /// The receipt an approval was granted with, and that approval's action (a batch receipt
    /// appears once per approval it covers).
    Receipt {
        tenant: TenantId,
        approval_id: String,
        receipt: SignedReceipt,
        action: Action,
    },
    Entry(AuditEvent),
}

/// An entry line read directly (the tagged, flattened form buffers every field first, and an
/// export is mostly entries).
#[derive(Deserialize)]
struct EntryLine {
    seq: i64,
    time: UnixMillis,
    prev_hash: String,
    hash: String,
    tenant: TenantId,
    actor: String,
    session: Option<String>,
    kind: AuditKind,
    resource: Option<String>,
    decision: Option<String>,
    receipt_id: Option<String>,
    args_hash: Option<String>,
    detail: serde_json::Value,
}

impl From<EntryLine> for AuditEvent {
    fn from(e: EntryLine) -> Self {
        AuditEvent {
            seq: e.seq,
            time: e.time,
            prev_hash: e.prev_hash,
            hash: e.hash,
            draft: portcullis_core::audit::AuditDraft {
                tenant: e.tenant,
                actor: e.actor,
                session: e.session,
                kind: e.kind,
                resource: e.resource,
                decision: e.decision,
                receipt_id: e.receipt_id,
                args_hash: e.args_hash,
                detail: e.detail,
            },
        }
    }
}

/// Parse one line; entries (tag first, as this crate writes them) take the direct path.
fn parse_line(line: &str) -> Result<Line, serde_json::Error> {
    if line.starts_with("{\"type\":\"entry\",") {
        return serde_json::from_str::<EntryLine>(line).map(|e| Line::Entry(e.into()));
    }
    serde_json::from_str(line)
}

/// The first line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: UnixMillis,
    /// False when the export was filtered (by time, actor or kind): such an export cannot be
    /// verified, and this verifier says so.
    pub complete: bool,
    /// The keys the exporting gateway signs with, for information only: a verifier must get
    /// the key it trusts from elsewhere.
    #[serde(default)]
    pub public_keys: Vec<String>,
}

/// Why an export did not verify: always names the tenant and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: {why}")]
    Malformed { line: usize, why: String },
    #[error("cannot read the export: {0}")]
    Read(#[from] std::io::Error),
    #[error(
        "the export is filtered (by time, actor or kind) and cannot be verified; export whole tenants"
    )]
    Partial,
    #[error("tenant {tenant}: {problem}")]
    Tenant { tenant: TenantId, problem: Problem },
    #[error("checkpoint given for tenant {tenant}, which the export does not contain")]
    MissingTenant { tenant: TenantId },
    #[error("a checkpoint given separately: {0}")]
    External(String),
}

/// What is wrong with one tenant's part of an export.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Chain(#[from] ChainBreak),
    #[error("entry {seq}: an execution with no receipt in the export")]
    NoReceipt { seq: i64 },
    #[error("entry {seq}: receipt {receipt}: {why}")]
    BadReceipt {
        seq: i64,
        receipt: String,
        why: String,
    },
    #[error("entry {seq}: ran under guardrail {guardrail}, which was not in force then ({why})")]
    NoGuardrail {
        seq: i64,
        guardrail: String,
        why: &'static str,
    },
    #[error("the export has lines for this tenant but none of its entries")]
    NoEntries,
    #[error("entries are out of order or interleaved with another tenant's at line {line}")]
    Order { line: usize },
}

/// What one tenant's part proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantReport {
    pub tenant: TenantId,
    pub entries: i64,
    /// Merkle root over every entry (hex).
    pub root: String,
    /// Checkpoints in the export, each verified.
    pub checkpoints: usize,
    /// Checkpoints given separately that this tenant's entries are consistent with.
    pub external_checkpoints: usize,
    /// The largest checkpoint size proven (in the export or given).
    pub checkpointed: i64,
    /// Entries past it: no signed checkpoint vouches that the export holds all of them.
    pub unanchored: i64,
    /// `execute` entries, each covered by a verified receipt.
    pub executions: usize,
    /// Effects let through by a guardrail, each in force at the time.
    pub guardrail_runs: usize,
}

/// Parse separately given checkpoints: a witness log (JSON lines with a `note`) or one note.
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, VerifyError> {
    let notes: Vec<String> = if text.trim_start().starts_with('{') {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let value: serde_json::Value = serde_json::from_str(l)
                    .map_err(|e| VerifyError::External(format!("not a witness log line: {e}")))?;
                value["note"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| VerifyError::External("a witness log line has no note".into()))
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![text.to_owned()]
    };
    notes
        .into_iter()
        .map(|note| {
            let head = portcullis_core::note::parse_checkpoint(&note)
                .map_err(|e| VerifyError::External(e.to_string()))?;
            let tenant = head
                .origin
                .rsplit_once('/')
                .and_then(|(_, t)| TenantId::parse(t).ok())
                .ok_or_else(|| {
                    VerifyError::External(format!("origin `{}` names no tenant", head.origin))
                })?;
            Ok(Checkpoint {
                body: portcullis_core::audit::CheckpointBody {
                    tenant,
                    size: i64::try_from(head.size)
                        .map_err(|_| VerifyError::External("size out of range".into()))?,
                    head_hash: String::new(),
                    time: 0,
                },
                signature: String::new(),
                note: Some(note),
            })
        })
        .collect()
}

/// A guardrail as its entries show it, for the moment an entry is checked.
#[derive(Default)]
struct GuardrailState {
    revoked: bool,
    approve_each: bool,
}

/// One tenant being verified, as its lines stream past.
struct Tenant {
    id: TenantId,
    checkpoints: Vec<Checkpoint>,
    guardrail_names: HashMap<String, String>,
    /// By receipt id: the receipt and the actions of the approvals it was granted for.
    receipts: HashMap<String, (SignedReceipt, Vec<(String, Action)>)>,
    verifier: Option<ChainVerifier>,
    guardrails: HashMap<String, GuardrailState>,
    /// (receipt id, action hash) of every execution so far.
    spent: std::collections::HashSet<(String, String)>,
    executions: usize,
    guardrail_runs: usize,
    external: usize,
}

impl Tenant {
    fn new(id: TenantId) -> Self {
        Self {
            id,
            checkpoints: Vec::new(),
            guardrail_names: HashMap::new(),
            receipts: HashMap::new(),
            verifier: None,
            guardrails: HashMap::new(),
            spent: std::collections::HashSet::new(),
            executions: 0,
            guardrail_runs: 0,
            external: 0,
        }
    }

    fn fail(&self, problem: impl Into<Problem>) -> VerifyError {
        VerifyError::Tenant {
            tenant: self.id.clone(),
            problem: problem.into(),
        }
    }

    fn entry(
        &mut self,
        event: &AuditEvent,
        keys: &[NoteVerifier],
        external: &[Checkpoint],
    ) -> Result<(), VerifyError> {
        if self.verifier.is_none() {
            self.external = external.len();
            let verifier =
                ChainVerifier::with_external(self.id.clone(), &self.checkpoints, external, keys)
                    .map_err(|b| self.fail(b))?;
            self.verifier = Some(verifier);
        }
        if let Some(verifier) = self.verifier.as_mut() {
            verifier.push(event).map_err(|b| VerifyError::Tenant {
                tenant: self.id.clone(),
                problem: b.into(),
            })?;
        }
        self.effects(event, keys).map_err(|p| self.fail(p))
    }

    /// Track guardrails, and check the grounds of every effect.
    fn effects(&mut self, event: &AuditEvent, keys: &[NoteVerifier]) -> Result<(), Problem> {
        let d = &event.draft;
        let target = d
            .resource
            .as_deref()
            .and_then(|r| r.strip_prefix("guardrail:"));
        match d.kind {
            AuditKind::GuardrailCreated => {
                let id = d.detail["guardrail"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| {
                        let name = target?;
                        self.guardrail_names
                            .iter()
                            .find(|(_, n)| n.as_str() == name)
                            .map(|(id, _)| id.clone())
                    });
                // A creation names its guardrail once; an id seen before (or a name the
                // export's list maps to several ids) brings nothing back to life.
                let unambiguous = d.detail["guardrail"].is_string()
                    || target.is_some_and(|name| {
                        self.guardrail_names.values().filter(|n| *n == name).count() == 1
                    });
                if let Some(id) = id.filter(|_| unambiguous) {
                    let approve_each = d.detail["mode"] == "approve_each";
                    self.guardrails.entry(id).or_insert(GuardrailState {
                        revoked: false,
                        approve_each,
                    });
                }
            }
            AuditKind::GuardrailChanged => {
                if let Some(g) = target.and_then(|id| self.guardrails.get_mut(id))
                    && let Some(mode) = d.detail["to"].as_str()
                {
                    g.approve_each = mode == "approve_each";
                }
            }
            AuditKind::GuardrailRevoked => {
                if let Some(g) = target.and_then(|id| self.guardrails.get_mut(id)) {
                    g.revoked = true;
                }
            }
            AuditKind::Execute => {
                self.execution(event, keys)?;
                self.executions += 1;
            }
            AuditKind::ToolCall if d.decision.as_deref() == Some("allow") => {
                if let Some(id) = d.detail["guardrail"].as_str() {
                    let why = match self.guardrails.get(id) {
                        None => Some("no entry created it before"),
                        Some(g) if g.revoked => Some("it had been revoked"),
                        Some(g) if g.approve_each => Some("it was set to approve each call"),
                        Some(_) => None,
                    };
                    if let Some(why) = why {
                        return Err(Problem::NoGuardrail {
                            seq: event.seq,
                            guardrail: id.to_owned(),
                            why,
                        });
                    }
                    self.guardrail_runs += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An `execute` entry: its receipt is in the export, signed by a trusted key, over exactly
    /// this action, unexpired when it ran, and names the approvers the entry names.
    fn execution(&mut self, event: &AuditEvent, keys: &[NoteVerifier]) -> Result<(), Problem> {
        let seq = event.seq;
        let Some(receipt_id) = event.draft.receipt_id.as_deref() else {
            return Err(Problem::NoReceipt { seq });
        };
        let Some((receipt, actions)) = self.receipts.get(receipt_id) else {
            return Err(Problem::NoReceipt { seq });
        };
        // The approval the entry ran (a batch receipt covers several). The export's approval
        // ids are not signed: a single receipt must itself name the approval the entry ran.
        let approval = event.draft.detail["approval"].as_str();
        let Some((_, action)) = actions
            .iter()
            .find(|(id, _)| approval.is_none_or(|a| a == id))
        else {
            return Err(Problem::NoReceipt { seq });
        };
        if receipt.body.batch.is_none()
            && approval.is_some_and(|a| a != receipt.body.approval_id.as_str())
        {
            return Err(Problem::BadReceipt {
                seq,
                receipt: receipt_id.to_owned(),
                why: "it was granted for another approval".into(),
            });
        }
        let bad = |why: String| Problem::BadReceipt {
            seq,
            receipt: receipt_id.to_owned(),
            why,
        };
        let body = &receipt.body;
        let bytes = body.signed_bytes().map_err(|e| bad(e.to_string()))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&receipt.signature, &mut sig)
            .map_err(|_| bad("the signature is not hex".into()))?;
        let signature = portcullis_core::ed25519::Signature::from_bytes(&sig);
        if !keys
            .iter()
            .any(|k| portcullis_core::ed25519::Verifier::verify(&k.key, &bytes, &signature).is_ok())
        {
            return Err(bad(
                "the signature does not verify with the given key".into()
            ));
        }
        if body.tenant != self.id || action.tenant != self.id {
            return Err(bad("it belongs to another tenant".into()));
        }
        let hashed = HashedAction::new(action.clone()).map_err(|e| bad(e.to_string()))?;
        let hash = body
            .action_hash_of(&hashed)
            .map_err(|e| bad(e.to_string()))?;
        let covered = match &body.batch {
            None => hash == body.action_hash,
            Some(items) => {
                portcullis_core::receipt::batch_hash(items) == body.action_hash
                    && items.contains(&hash)
            }
        };
        if !covered {
            return Err(bad("it does not cover the exported action".into()));
        }
        let resource = format!("tool:{}/{}", action.connection, action.tool);
        if event.draft.resource.as_deref() != Some(resource.as_str()) {
            return Err(bad(format!(
                "the entry ran {:?}, the receipt covers {resource}",
                event.draft.resource
            )));
        }
        if event.time < body.approved_at || event.time >= body.expires_at {
            return Err(bad(
                "the entry lies outside the receipt's approval and expiry".into(),
            ));
        }
        if let Some(approver) = event.draft.detail["approver"].as_str()
            && approver != body.approver
        {
            return Err(bad(format!(
                "the entry names approver {approver}, the receipt {}",
                body.approver
            )));
        }
        // Each receipt (each item of a batch) runs once.
        if !self.spent.insert((receipt_id.to_owned(), hash)) {
            return Err(bad("it was already spent by an earlier execution".into()));
        }
        Ok(())
    }

    fn finish(self) -> Result<TenantReport, VerifyError> {
        let (id, verifier) = (self.id, self.verifier);
        let Some(verifier) = verifier else {
            return Err(VerifyError::Tenant {
                tenant: id,
                problem: Problem::NoEntries,
            });
        };
        let report = verifier.finish().map_err(|b| VerifyError::Tenant {
            tenant: id.clone(),
            problem: b.into(),
        })?;
        Ok(TenantReport {
            tenant: id,
            entries: report.entries,
            root: report.root,
            checkpoints: report.checkpoints,
            external_checkpoints: self.external,
            checkpointed: report.checkpointed,
            unanchored: report.entries - report.checkpointed,
            executions: self.executions,
            guardrail_runs: self.guardrail_runs,
        })
    }
}

/// Verify an export read line by line with the trusted `keys`, against `external` checkpoints
/// (each must be signed by a trusted key and match the tenant's entries at its size).
pub fn verify(
    export: impl BufRead,
    keys: &[NoteVerifier],
    external: &[Checkpoint],
) -> Result<Vec<TenantReport>, VerifyError> {
    let mut by_tenant: BTreeMap<TenantId, Vec<Checkpoint>> = BTreeMap::new();
    for c in external {
        by_tenant
            .entry(c.body.tenant.clone())
            .or_default()
            .push(c.clone());
    }
    let mut reports = Vec::new();
    let mut current: Option<Tenant> = None;
    let mut seen_header = false;
    for (n, line) in export.lines().enumerate() {
        let line_no = n + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = parse_line(&line).map_err(|e| VerifyError::Malformed {
            line: line_no,
            why: e.to_string(),
        })?;
        let tenant = match &parsed {
            Line::Header(h) => {
                if h.format != FORMAT || h.version != VERSION {
                    return Err(VerifyError::Malformed {
                        line: line_no,
                        why: format!("not a {FORMAT} version {VERSION} export"),
                    });
                }
                if !h.complete {
                    return Err(VerifyError::Partial);
                }
                seen_header = true;
                continue;
            }
            Line::Checkpoint(c) => c.body.tenant.clone(),
            Line::Guardrail { tenant, .. } | Line::Receipt { tenant, .. } => tenant.clone(),
            Line::Entry(e) => e.draft.tenant.clone(),
        };
        if !seen_header {
            return Err(VerifyError::Malformed {
                line: line_no,
                why: "the export does not start with its header".into(),
            });
        }
        if current.as_ref().is_none_or(|t| t.id != tenant) {
            if let Some(done) = current.take() {
                if done.id > tenant {
                    return Err(done.fail(Problem::Order { line: line_no }));
                }
                reports.push(done.finish()?);
            }
            current = Some(Tenant::new(tenant));
        }
        let Some(t) = current.as_mut() else { continue };
        match parsed {
            Line::Header(_) => {}
            Line::Entry(event) => {
                let external = by_tenant.get(&t.id).map_or(&[][..], Vec::as_slice);
                t.entry(&event, keys, external)?;
            }
            _ if t.verifier.is_some() => {
                return Err(t.fail(Problem::Order { line: line_no }));
            }
            Line::Checkpoint(c) => t.checkpoints.push(c),
            Line::Guardrail { id, name, .. } => {
                t.guardrail_names.insert(id, name);
            }
            Line::Receipt {
                approval_id,
                receipt,
                action,
                ..
            } => {
                let known = t
                    .receipts
                    .entry(receipt.body.receipt_id.to_string())
                    .or_insert_with(|| (receipt.clone(), Vec::new()));
                if known.0 != receipt {
                    return Err(VerifyError::Malformed {
                        line: line_no,
                        why: format!(
                            "receipt {} appears twice with different contents",
                            receipt.body.receipt_id
                        ),
                    });
                }
                known.1.push((approval_id, action));
            }
        }
    }
    if let Some(done) = current.take() {
        reports.push(done.finish()?);
    }
    for tenant in by_tenant.keys() {
        if !reports.iter().any(|r| &r.tenant == tenant) {
            return Err(VerifyError::MissingTenant {
                tenant: tenant.clone(),
            });
        }
    }
    if !seen_header {
        return Err(VerifyError::Malformed {
            line: 0,
            why: "the export is empty".into(),
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::audit::{AuditDraft, GENESIS_HASH};
    use portcullis_core::keys::KeyRing;
    use serde_json::json;

    fn export(tenant: &TenantId, drafts: Vec<AuditDraft>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |line: &Line| {
            serde_json::to_writer(&mut out, line).unwrap();
            out.push(b'\n');
        };
        push(&Line::Header(Header {
            format: FORMAT.into(),
            version: VERSION,
            exported_at: 0,
            complete: true,
            public_keys: vec![],
        }));
        let mut prev = GENESIS_HASH.to_owned();
        for (i, draft) in drafts.into_iter().enumerate() {
            assert_eq!(&draft.tenant, tenant);
            let seq = i as i64 + 1;
            let event = draft.seal(seq, 1_000 + seq, &prev);
            prev.clone_from(&event.hash);
            push(&Line::Entry(event));
        }
        out
    }

    fn run(tenant: &TenantId, drafts: Vec<AuditDraft>) -> Result<Vec<TenantReport>, VerifyError> {
        let keys = KeyRing::generate();
        let trusted = [NoteVerifier {
            name: portcullis_core::note::KEY_NAME.into(),
            key: keys.verifying_key(),
        }];
        verify(export(tenant, drafts).as_slice(), &trusted, &[])
    }

    fn created(tenant: &TenantId, id: &str, mode: &str) -> AuditDraft {
        AuditDraft::new(tenant.clone(), "admin:alice", AuditKind::GuardrailCreated)
            .resource("guardrail:mail")
            .detail(json!({ "guardrail": id, "mode": mode }))
    }

    fn run_under(tenant: &TenantId, id: &str) -> AuditDraft {
        let mut d = AuditDraft::new(tenant.clone(), "agent:a", AuditKind::ToolCall)
            .resource("tool:con_x/send_email")
            .detail(json!({ "effect": "write", "guardrail": id }));
        d.decision = Some("allow".into());
        d
    }

    #[test]
    fn a_guardrail_run_needs_a_guardrail_in_force_then() {
        let t = TenantId::generate();
        let ok = run(
            &t,
            vec![created(&t, "grd_1", "auto"), run_under(&t, "grd_1")],
        )
        .unwrap();
        assert_eq!(ok[0].guardrail_runs, 1);

        let before = run(
            &t,
            vec![run_under(&t, "grd_1"), created(&t, "grd_1", "auto")],
        );
        assert!(
            matches!(
                before,
                Err(VerifyError::Tenant {
                    problem: Problem::NoGuardrail { seq: 1, .. },
                    ..
                })
            ),
            "{before:?}"
        );

        let revoked = AuditDraft::new(t.clone(), "admin:alice", AuditKind::GuardrailRevoked)
            .resource("guardrail:grd_1");
        let after = run(
            &t,
            vec![
                created(&t, "grd_1", "auto"),
                revoked,
                run_under(&t, "grd_1"),
            ],
        );
        assert!(
            matches!(
                after,
                Err(VerifyError::Tenant {
                    problem: Problem::NoGuardrail {
                        seq: 3,
                        why: "it had been revoked",
                        ..
                    },
                    ..
                })
            ),
            "{after:?}"
        );

        let each = run(
            &t,
            vec![created(&t, "grd_1", "approve_each"), run_under(&t, "grd_1")],
        );
        assert!(
            matches!(
                each,
                Err(VerifyError::Tenant {
                    problem: Problem::NoGuardrail { .. },
                    ..
                })
            ),
            "{each:?}"
        );
    }

    /// An export whose receipt lines were rearranged: a receipt granted for one approval put
    /// behind another's execution, or one receipt behind two executions.
    #[test]
    fn a_receipt_runs_once_and_only_for_its_own_approval() {
        use portcullis_core::action::Action;
        use portcullis_core::id::{ApprovalId, ConnectionId, ReceiptId};
        use portcullis_core::receipt::{RECEIPT_FORMAT, ReceiptBody};
        let keys = KeyRing::generate();
        let trusted = [NoteVerifier {
            name: portcullis_core::note::KEY_NAME.into(),
            key: keys.verifying_key(),
        }];
        let t = TenantId::generate();
        let action = Action {
            tenant: t.clone(),
            connection: ConnectionId::generate(),
            tool: "send_email".into(),
            tool_definition_hash: "h".into(),
            arguments: json!({ "to": "a@example.com" }),
        };
        let approval = ApprovalId::generate();
        let receipt = SignedReceipt::sign(
            keys.signing_key(),
            ReceiptBody {
                format: RECEIPT_FORMAT,
                receipt_id: ReceiptId::generate(),
                approval_id: approval.clone(),
                tenant: t.clone(),
                action_hash: action.hash().unwrap(),
                approver: "alice".into(),
                approved_at: 1_000,
                expires_at: 10_000,
                nonce: SignedReceipt::new_nonce(),
                batch: None,
            },
        );
        let execute = |approval: &ApprovalId| {
            let mut d = AuditDraft::new(t.clone(), "agent:a", AuditKind::Execute)
                .resource(format!("tool:{}/send_email", action.connection))
                .detail(json!({ "approval": approval, "approver": "alice" }));
            d.receipt_id = Some(receipt.body.receipt_id.to_string());
            d
        };
        let with_receipt = |drafts: Vec<AuditDraft>, lines: Vec<(ApprovalId, Action)>| {
            let mut text = export(&t, drafts);
            let header_end = text.iter().position(|b| *b == b'\n').unwrap() + 1;
            let mut receipts = Vec::new();
            for (id, action) in lines {
                serde_json::to_writer(
                    &mut receipts,
                    &Line::Receipt {
                        tenant: t.clone(),
                        approval_id: id.to_string(),
                        receipt: receipt.clone(),
                        action,
                    },
                )
                .unwrap();
                receipts.push(b'\n');
            }
            text.splice(header_end..header_end, receipts);
            verify(text.as_slice(), &trusted, &[])
        };
        let ok = with_receipt(
            vec![execute(&approval)],
            vec![(approval.clone(), action.clone())],
        );
        assert_eq!(ok.unwrap()[0].executions, 1);

        let twice = with_receipt(
            vec![execute(&approval), execute(&approval)],
            vec![(approval.clone(), action.clone())],
        );
        assert!(
            matches!(&twice, Err(VerifyError::Tenant { problem: Problem::BadReceipt { seq: 2, why, .. }, .. }) if why.contains("already spent")),
            "{twice:?}"
        );

        let other = ApprovalId::generate();
        let borrowed = with_receipt(vec![execute(&other)], vec![(other.clone(), action.clone())]);
        assert!(
            matches!(&borrowed, Err(VerifyError::Tenant { problem: Problem::BadReceipt { why, .. }, .. }) if why.contains("another approval")),
            "{borrowed:?}"
        );
    }

    #[test]
    fn an_execution_without_its_receipt_is_named() {
        let t = TenantId::generate();
        let mut execute = AuditDraft::new(t.clone(), "agent:a", AuditKind::Execute)
            .resource("tool:con_x/send_email");
        execute.receipt_id = Some("rcp_missing".into());
        let result = run(&t, vec![execute]);
        assert!(
            matches!(
                result,
                Err(VerifyError::Tenant {
                    problem: Problem::NoReceipt { seq: 1 },
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn entries_must_start_at_one_and_tenants_must_not_interleave() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        let mut text = export(
            &second,
            vec![AuditDraft::new(second.clone(), "x", AuditKind::Notice)],
        );
        let other = export(
            &first,
            vec![AuditDraft::new(first.clone(), "x", AuditKind::Notice)],
        );
        // Skip the second header line.
        let body = other.split(|b| *b == b'\n').nth(1).unwrap();
        text.extend_from_slice(body);
        text.push(b'\n');
        let keys = KeyRing::generate();
        let trusted = [NoteVerifier {
            name: "k".into(),
            key: keys.verifying_key(),
        }];
        assert!(matches!(
            verify(text.as_slice(), &trusted, &[]),
            Err(VerifyError::Tenant {
                problem: Problem::Order { .. },
                ..
            })
        ));
        assert!(matches!(
            verify(&b""[..], &trusted, &[]),
            Err(VerifyError::Malformed { .. })
        ));
    }
}
