//! Audit operations over the store: streaming verification (chain, Merkle tree, checkpoints in
//! the database and in the witness log), signed checkpoints (every N entries, every T
//! seconds, on every approval and execution, on demand and at shutdown), each also appended
//! to the witness log outside the database, and the unknown-execution report.

use portcullis_core::UnixMillis;
use portcullis_core::audit::{ChainBreak, ChainReport, ChainVerifier, Checkpoint, CheckpointBody};
use portcullis_core::id::TenantId;
use portcullis_core::keys::KeyRing;
use portcullis_core::merkle::Frontier;
use portcullis_core::note::NoteVerifier;
use portcullis_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Break(#[from] ChainBreak),
    #[error("cannot read the audit trail: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Witness(String),
}

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read or store the checkpoint: {0}")]
    Store(#[from] StoreError),
    #[error("cannot append to the witness log {path}: {error}")]
    Witness {
        path: PathBuf,
        error: std::io::Error,
    },
}

const PAGE: i64 = 5_000;

/// The checkpoint log outside the database: one JSON line per checkpoint,
/// `{"tenant", "size", "time", "note"}`, appended (never rewritten) and synced before the
/// checkpoint counts as witnessed. Someone who can rewrite the database but not this file (or
/// the copies webhooks will push) cannot rewrite history unnoticed.
pub struct Witness {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

/// One line of the witness log that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("cannot read the witness log {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("witness log {path}, line {line}: {why}")]
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WitnessLine {
    tenant: TenantId,
    size: i64,
    time: UnixMillis,
    note: String,
}

impl Witness {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: std::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a format-2 checkpoint and sync it to disk.
    pub fn append(&self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let Some(note) = &checkpoint.note else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&WitnessLine {
            tenant: checkpoint.body.tenant.clone(),
            size: checkpoint.body.size,
            time: checkpoint.body.time,
            note: note.clone(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _one_writer = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Every witnessed checkpoint by tenant, in file order; `None` when there is no file.
    /// Signatures are not checked here (verification does, with the keys it trusts).
    pub fn read(path: &Path) -> Result<Option<BTreeMap<TenantId, Vec<Checkpoint>>>, WitnessError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(WitnessError::Read {
                    path: path.to_owned(),
                    error,
                });
            }
        };
        let mut by_tenant: BTreeMap<TenantId, Vec<Checkpoint>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| WitnessError::Line {
                path: path.to_owned(),
                line: i + 1,
                why,
            };
            let w: WitnessLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            by_tenant
                .entry(w.tenant.clone())
                .or_default()
                .push(Checkpoint {
                    body: CheckpointBody {
                        tenant: w.tenant,
                        size: w.size,
                        head_hash: String::new(),
                        time: w.time,
                    },
                    signature: String::new(),
                    note: Some(w.note),
                });
        }
        Ok(Some(by_tenant))
    }
}

/// What writes checkpoints: the origin prefix of every tenant's log, the witness log, and the
/// channels that wake the checkpoint worker.
pub struct Anchors {
    pub origin: String,
    pub witness: Witness,
    pub every_entries: u64,
    nudge: tokio::sync::mpsc::UnboundedSender<TenantId>,
    receivers: std::sync::Mutex<Option<Receivers>>,
}

/// The worker's ends: tenants to checkpoint now, and tenants that appended an entry.
pub struct Receivers {
    pub nudged: tokio::sync::mpsc::UnboundedReceiver<TenantId>,
    pub appended: tokio::sync::mpsc::UnboundedReceiver<TenantId>,
}

impl Anchors {
    /// Anchors for `store`: every entry appended through it is counted towards the next
    /// checkpoint.
    pub fn new(store: &Store, origin: String, witness: PathBuf, every_entries: u64) -> Self {
        let (nudge, nudged) = tokio::sync::mpsc::unbounded_channel();
        let (append_hook, appended) = tokio::sync::mpsc::unbounded_channel();
        store.on_append(append_hook);
        Self {
            origin,
            witness: Witness::new(witness),
            every_entries,
            nudge,
            receivers: std::sync::Mutex::new(Some(Receivers { nudged, appended })),
        }
    }

    /// Checkpoint this tenant's trail soon (after an approval or an execution).
    pub fn nudge(&self, tenant: &TenantId) {
        let _ = self.nudge.send(tenant.clone());
    }

    /// The worker's ends, once.
    pub fn take_receivers(&self) -> Option<Receivers> {
        self.receivers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Verify one tenant's trail — chain, Merkle tree, its checkpoints in the database and the
/// checkpoints `witnessed` outside it — streaming pages from the store.
pub async fn verify_tenant_witnessed(
    store: &Store,
    tenant: &TenantId,
    keys: &[NoteVerifier],
    witnessed: &[Checkpoint],
    progress: &Progress<'_>,
) -> Result<ChainReport, VerifyError> {
    let checkpoints = store.checkpoints(tenant).await?;
    let mut verifier = ChainVerifier::with_witness(tenant.clone(), &checkpoints, witnessed, keys)?;
    let mut after = 0;
    loop {
        let page = store.audit_page(tenant, after, PAGE).await?;
        for event in &page {
            verifier.push(event)?;
        }
        progress(page.len());
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(verifier.finish()?)
}

/// Told how many more entries were verified (a terminal's progress bar).
pub type Progress<'a> = dyn Fn(usize) + Send + Sync + 'a;

/// One trail's verdict.
pub struct Verdict {
    pub tenant: TenantId,
    /// The report, or what is wrong with the trail (named).
    pub outcome: Result<ChainReport, String>,
}

/// Verify every trail (or `only` one) against the database's checkpoints and the witness log
/// at `witness`. Every tenant counts — from the tenants table (deleted ones too), the events
/// and the witness log — so a tenant whose events were all deleted fails by name. A missing
/// witness log fails every trail whose database checkpoints say it was witnessed; a trail
/// never checkpointed yet verifies with every entry reported unwitnessed.
pub async fn verify_trails(
    store: &Store,
    keys: &[NoteVerifier],
    witness: &[PathBuf],
    only: Option<&TenantId>,
    progress: &Progress<'_>,
) -> Result<Vec<Verdict>, VerifyError> {
    // Replicas with a witness log each: the auditor passes every one, and they are read as one.
    let mut witnessed: Option<BTreeMap<TenantId, Vec<Checkpoint>>> = None;
    for path in witness {
        if let Some(log) = Witness::read(path).map_err(|e| VerifyError::Witness(e.to_string()))? {
            let all = witnessed.get_or_insert_with(BTreeMap::new);
            for (tenant, checkpoints) in log {
                all.entry(tenant).or_default().extend(checkpoints);
            }
        }
    }
    let shown = witness
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let with_events: std::collections::BTreeSet<TenantId> =
        store.audit_tenants().await?.into_iter().collect();
    let tenants: std::collections::BTreeSet<TenantId> = match only {
        Some(t) => std::iter::once(t.clone()).collect(),
        None => {
            let mut all: std::collections::BTreeSet<TenantId> =
                store.all_tenant_ids().await?.into_iter().collect();
            all.extend(with_events.iter().cloned());
            all.extend(witnessed.iter().flat_map(|w| w.keys().cloned()));
            all
        }
    };
    let mut verdicts = Vec::new();
    for tenant in tenants {
        let mine = witnessed
            .as_ref()
            .and_then(|w| w.get(&tenant))
            .map_or(&[][..], Vec::as_slice);
        let outcome = if !with_events.contains(&tenant) {
            if tenant == TenantId::system() && mine.is_empty() {
                continue;
            }
            Err(if mine.is_empty() {
                "the tenant exists but its trail has no entries (deleted)".to_owned()
            } else {
                format!(
                    "the witness log holds checkpoints of this trail up to size {} but the database has no entries (deleted)",
                    mine.iter().map(|c| c.body.size).max().unwrap_or(0)
                )
            })
        } else if witnessed.is_none()
            && store
                .checkpoints(&tenant)
                .await?
                .iter()
                .any(|c| c.note.is_some())
        {
            Err(format!(
                "no witness log at {shown}, yet the database holds checkpoints that were witnessed there (the log was removed or moved)"
            ))
        } else {
            match verify_tenant_witnessed(store, &tenant, keys, mine, progress).await {
                // Listed as having a trail (PostgreSQL's chain-head row) but none is left.
                Ok(report) if report.entries == 0 => {
                    Err("the tenant exists but its trail has no entries (deleted)".to_owned())
                }
                Ok(report) => Ok(report),
                Err(VerifyError::Break(b)) => Err(b.to_string()),
                Err(e) => return Err(e),
            }
        };
        verdicts.push(Verdict { tenant, outcome });
    }
    Ok(verdicts)
}

/// Feed `visit` the Merkle leaves of a tenant's entries with `after < seq <= up_to`, in order,
/// page by page; returns how many there were.
pub async fn for_each_leaf(
    store: &Store,
    tenant: &TenantId,
    mut after: i64,
    up_to: i64,
    mut visit: impl FnMut(portcullis_core::merkle::Hash),
) -> Result<u64, StoreError> {
    let mut count = 0;
    while after < up_to {
        let page = store.audit_hashes(tenant, after, up_to, PAGE).await?;
        let Some(&(last, _)) = page.last() else { break };
        for (seq, hash) in &page {
            let leaf = portcullis_core::audit::leaf_of(hash).ok_or_else(|| {
                StoreError::Corrupt(format!("entry {seq} of {tenant} has no valid hash"))
            })?;
            visit(leaf);
            count += 1;
        }
        after = last;
    }
    Ok(count)
}

/// The Merkle tree of a tenant's first `size` entries, continued from the newest stored right
/// edge when it reproduces the root that checkpoint's note — signed with `key` — states,
/// otherwise rebuilt from the first entry. So the gateway only ever signs a tree that extends
/// the last one it signed, whatever the database's unsigned columns say.
async fn tree_at(
    store: &Store,
    key: &ed25519_dalek::VerifyingKey,
    tenant: &TenantId,
    size: i64,
) -> Result<Frontier, StoreError> {
    let mut tree = Frontier::new();
    let trusted = [NoteVerifier {
        name: portcullis_core::note::KEY_NAME.into(),
        key: *key,
    }];
    if let Some((at, note, text)) = store.latest_tree(tenant).await?
        && at <= size
        && let Some(stored) = u64::try_from(at)
            .ok()
            .and_then(|n| Frontier::from_hex(n, &text))
        && let Ok(head) = portcullis_core::note::verify_checkpoint(&note, &trusted)
        && head.size == stored.size()
        && head.root == stored.root()
    {
        tree = stored;
    }
    let after = i64::try_from(tree.size()).unwrap_or(0);
    for_each_leaf(store, tenant, after, size, |leaf| tree.push(leaf)).await?;
    Ok(tree)
}

/// Sign and store a checkpoint of a tenant's trail — a C2SP note over its Merkle tree — and
/// append it to the witness log, unless the trail is empty or already checkpointed at its
/// current size.
pub async fn checkpoint_tenant(
    store: &Store,
    keys: &KeyRing,
    anchors: &Anchors,
    tenant: &TenantId,
    now: UnixMillis,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let (size, head_hash) = store.audit_head(tenant).await?;
    if size == 0 {
        return Ok(None);
    }
    if store
        .latest_tree(tenant)
        .await?
        .is_some_and(|(at, _, _)| at == size)
    {
        return Ok(None);
    }
    let tree = tree_at(store, &keys.verifying_key(), tenant, size).await?;
    if i64::try_from(tree.size()).ok() != Some(size) {
        return Err(StoreError::Corrupt(format!(
            "{tenant}: the trail has {size} entries but only {} could be read",
            tree.size()
        ))
        .into());
    }
    let root = tree.root();
    let checkpoint = Checkpoint::sign_note(
        keys.signing_key(),
        &anchors.origin,
        CheckpointBody {
            tenant: tenant.clone(),
            size,
            head_hash,
            time: now,
        },
        root,
    );
    store
        .insert_checkpoint(&checkpoint, Some(&hex::encode(root)), Some(&tree.to_hex()))
        .await?;
    anchors
        .witness
        .append(&checkpoint)
        .map_err(|error| CheckpointError::Witness {
            path: anchors.witness.path().to_owned(),
            error,
        })?;
    Ok(Some(checkpoint))
}

/// Checkpoint one tenant's trail now, as the running gateway (its store, key and anchors).
pub async fn checkpoint_in(
    state: &crate::state::AppState,
    tenant: &TenantId,
) -> Result<Option<Checkpoint>, CheckpointError> {
    checkpoint_tenant(
        &state.store,
        &state.keys,
        &state.anchors,
        tenant,
        state.clock.now(),
    )
    .await
}

/// Checkpoint every chain.
pub async fn checkpoint_all(
    store: &Store,
    keys: &KeyRing,
    anchors: &Anchors,
    now: UnixMillis,
) -> Result<usize, CheckpointError> {
    let mut written = 0;
    for tenant in store.audit_tenants().await? {
        if checkpoint_tenant(store, keys, anchors, &tenant, now)
            .await?
            .is_some()
        {
            written += 1;
        }
    }
    Ok(written)
}

/// Report executions whose receipt was redeemed before `redeemed_before` but whose outcome was
/// never recorded: each is marked `unknown` (its effective status), audited as
/// `execution_unknown` on its tenant's chain, counted in a metric and logged. None is re-run:
/// the upstream may or may not have acted, and only a person can find out. Returns how many
/// were reported.
pub async fn report_unknown_executions(
    state: &crate::state::AppState,
    redeemed_before: UnixMillis,
) -> Result<usize, StoreError> {
    use portcullis_core::audit::{AuditDraft, AuditKind};
    let now = state.clock.now();
    let unfinished = state
        .store
        .unfinished_executions(redeemed_before, 1_000, now)
        .await?;
    let mut reported = 0;
    for approval in unfinished {
        let draft = AuditDraft::new(approval.tenant.clone(), "system", AuditKind::ExecutionUnknown)
            .resource(format!("approval:{}", approval.id))
            .detail(serde_json::json!({
                "approval": approval.id,
                "tool": format!("tool:{}/{}", approval.connection, approval.tool),
                "executed_at": approval.executed_at,
                "message": "the receipt was redeemed but no result was recorded (the gateway stopped in between); the action was not re-run and may or may not have taken effect",
            }));
        if state
            .store
            .record_outcome(
                &approval.tenant,
                &approval.id,
                portcullis_store::ExecutionOutcome::Unknown,
                draft,
                now,
            )
            .await?
            .is_some()
        {
            reported += 1;
            state.metrics.executions_unknown.inc();
            tracing::warn!(approval = %approval.id, tenant = %approval.tenant, "an approved action's outcome is unknown: redeemed, never finished; not re-run");
        }
    }
    Ok(reported)
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Write the complete, verifiable JSON-lines export of `tenants` (`portcullis verify-export`
/// checks it offline): a header naming `public_keys`, then per tenant its checkpoints,
/// guardrails, receipts with the actions they cover, and every entry from the first.
/// `progress` hears the running count of entries. Returns how many entries were written.
pub async fn write_export(
    store: &Store,
    tenants: &[TenantId],
    public_keys: Vec<String>,
    exported_at: UnixMillis,
    out: &mut (dyn std::io::Write + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ExportError> {
    use portcullis_verify::{Header, Line};
    serde_json::to_writer(
        &mut *out,
        &Line::Header(Header {
            format: portcullis_verify::FORMAT.into(),
            version: portcullis_verify::VERSION,
            exported_at,
            complete: true,
            public_keys,
        }),
    )
    .map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    write_export_body(store, tenants, out, progress).await
}

/// [`write_export`] after its header: what the CLI writes under a header of its own.
pub async fn write_export_body(
    store: &Store,
    tenants: &[TenantId],
    out: &mut (dyn std::io::Write + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ExportError> {
    use portcullis_verify::Line;
    let mut line = |value: &Line| -> Result<(), ExportError> {
        serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let mut count = 0u64;
    for tenant in tenants {
        for checkpoint in store.checkpoints(tenant).await? {
            line(&Line::Checkpoint(checkpoint))?;
        }
        for (id, name) in store.guardrail_names(tenant).await? {
            line(&Line::Guardrail {
                tenant: tenant.clone(),
                id,
                name,
            })?;
        }
        for (approval_id, receipt, action) in store.receipts_of(tenant).await? {
            line(&Line::Receipt {
                tenant: tenant.clone(),
                approval_id,
                receipt,
                action,
            })?;
        }
        let mut after = 0;
        loop {
            let page = store.audit_page(tenant, after, 5_000).await?;
            for event in &page {
                line(&Line::Entry(event.clone()))?;
            }
            count += page.len() as u64;
            progress(count);
            match page.last() {
                Some(last) if page.len() == 5_000 => after = last.seq,
                _ => break,
            }
        }
    }
    Ok(count)
}
