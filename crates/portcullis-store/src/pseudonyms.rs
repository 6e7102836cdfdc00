//! Sealed pseudonym maps of agent sessions — each query written once for both backends. The
//! store holds only ciphertext (sealed by the vault under the tenant key); a map is read
//! with the tenant key it was sealed under, and one whose key was rotated away is not found.

use crate::sql::{Freshness, Row, Scope, sql};
use crate::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Which session a map belongs to.
#[derive(Debug, Clone, Copy)]
pub struct MapKey<'a> {
    pub tenant: &'a TenantId,
    pub agent: &'a AgentId,
    pub session: &'a str,
}

/// A stored map: its sealed blobs, the tenant key that opens them, and its version.
pub struct SealedMap {
    pub blobs: SealedBlobs,
    pub key: TenantKey,
    pub version: i64,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

fn blob(row: &Row, column: &str) -> StoreResult<Vec<u8>> {
    B64.decode(row.text(column)?)
        .map_err(|_| StoreError::Corrupt(format!("column `{column}` is not base64")))
}

impl Store {
    /// The live map of a session, if there is one whose tenant key still exists.
    pub async fn pseudonym_map(
        &self,
        at: MapKey<'_>,
        now: UnixMillis,
    ) -> StoreResult<Option<SealedMap>> {
        let q = sql(
            "SELECT p.*, k.master_id, k.wrapped, k.created_at AS key_created_at \
             FROM pseudonym_maps p JOIN tenant_keys k \
               ON k.tenant_id = p.tenant_id AND k.version = p.kek_version \
             WHERE p.tenant_id = $1 AND p.agent_id = $2 AND p.session = $3 AND p.expires_at > $4",
        )
        .text(at.tenant.as_str())
        .text(at.agent.as_str())
        .text(at.session)
        .int(now);
        let Some(row) = self
            .read_opt(Scope::Tenant(at.tenant), &q, Freshness::Latest)
            .await?
        else {
            return Ok(None);
        };
        let version = u32::try_from(row.int("kek_version")?)
            .map_err(|_| StoreError::Corrupt("kek_version".into()))?;
        Ok(Some(SealedMap {
            blobs: SealedBlobs {
                wrapped_dek: blob(&row, "wrapped_dek")?,
                ciphertext: blob(&row, "ciphertext")?,
            },
            key: TenantKey {
                tenant: at.tenant.clone(),
                version,
                master_id: row.text("master_id")?,
                wrapped: blob(&row, "wrapped")?,
                created_at: row.int("key_created_at")?,
            },
            version: row.int("version")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
        }))
    }

    /// Store a session's map. `read` is the version the writer started from (`None`: it
    /// found no live map); if another writer stored one since, nothing is written and the
    /// answer is `Conflict::VaultChanged` (read again and retry). Expired maps of the tenant
    /// are deleted on the way.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_pseudonym_map(
        &self,
        at: MapKey<'_>,
        kek_version: u32,
        blobs: &SealedBlobs,
        read: Option<i64>,
        created_at: UnixMillis,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(at.tenant)).await?;
        tx.execute(
            &sql("DELETE FROM pseudonym_maps WHERE tenant_id = $1 AND expires_at <= $2")
                .text(at.tenant.as_str())
                .int(now),
        )
        .await?;
        let (dek, text) = (
            B64.encode(&blobs.wrapped_dek),
            B64.encode(&blobs.ciphertext),
        );
        let written = match read {
            Some(version) => {
                tx.execute(
                    &sql("UPDATE pseudonym_maps SET kek_version = $4, wrapped_dek = $5, ciphertext = $6, \
                          version = version + 1 \
                          WHERE tenant_id = $1 AND agent_id = $2 AND session = $3 AND version = $7")
                    .text(at.tenant.as_str())
                    .text(at.agent.as_str())
                    .text(at.session)
                    .int(i64::from(kek_version))
                    .text(dek)
                    .text(text)
                    .int(version),
                )
                .await?
            }
            None => {
                // A map whose key was rotated away is still a row: it goes, as it cannot be
                // read again.
                tx.execute(
                    &sql("DELETE FROM pseudonym_maps WHERE tenant_id = $1 AND agent_id = $2 AND session = $3 \
                          AND kek_version <> $4")
                    .text(at.tenant.as_str())
                    .text(at.agent.as_str())
                    .text(at.session)
                    .int(i64::from(kek_version)),
                )
                .await?;
                tx.execute(
                    &sql("INSERT INTO pseudonym_maps (tenant_id, agent_id, session, kek_version, wrapped_dek, \
                          ciphertext, version, created_at, expires_at) \
                          VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) ON CONFLICT DO NOTHING")
                    .text(at.tenant.as_str())
                    .text(at.agent.as_str())
                    .text(at.session)
                    .int(i64::from(kek_version))
                    .text(dek)
                    .text(text)
                    .int(created_at)
                    .int(expires_at),
                )
                .await?
            }
        };
        if written != 1 {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        tx.commit().await
    }
}
