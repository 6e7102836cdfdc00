//! Audit operations over the store: streaming chain verification, signed checkpoints (on a
//! timer and on demand) and export.

use portcullis_core::UnixMillis;
use portcullis_core::audit::{ChainBreak, ChainReport, ChainVerifier, Checkpoint, CheckpointBody};
use portcullis_core::id::TenantId;
use portcullis_core::keys::KeyRing;
use portcullis_store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Break(#[from] ChainBreak),
    #[error("cannot read the audit trail: {0}")]
    Store(#[from] StoreError),
}

const PAGE: i64 = 5_000;

/// Verify one tenant's chain against its signed checkpoints, streaming pages from the store.
pub async fn verify_tenant(
    store: &Store,
    tenant: &TenantId,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<ChainReport, VerifyError> {
    let checkpoints = store.checkpoints(tenant).await?;
    let mut verifier = ChainVerifier::new(tenant.clone(), &checkpoints, key)?;
    let mut after = 0;
    loop {
        let page = store.audit_page(tenant, after, PAGE).await?;
        for event in &page {
            verifier.push(event)?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(verifier.finish()?)
}

/// Sign and store a checkpoint of a tenant's chain, unless it is empty or already checkpointed
/// at its current size.
pub async fn checkpoint_tenant(
    store: &Store,
    keys: &KeyRing,
    tenant: &TenantId,
    now: UnixMillis,
) -> Result<Option<Checkpoint>, StoreError> {
    let (size, head_hash) = store.audit_head(tenant).await?;
    if size == 0 {
        return Ok(None);
    }
    if store
        .checkpoints(tenant)
        .await?
        .last()
        .is_some_and(|c| c.body.size == size)
    {
        return Ok(None);
    }
    let checkpoint = Checkpoint::sign(
        keys.signing_key(),
        CheckpointBody {
            tenant: tenant.clone(),
            size,
            head_hash,
            time: now,
        },
    );
    store.insert_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}

/// Checkpoint every chain.
pub async fn checkpoint_all(
    store: &Store,
    keys: &KeyRing,
    now: UnixMillis,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for tenant in store.audit_tenants().await? {
        if checkpoint_tenant(store, keys, &tenant, now)
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
