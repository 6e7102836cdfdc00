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
