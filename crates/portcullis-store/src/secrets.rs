//! The vault's rows: each tenant's wrapped key-encryption keys and its envelope-encrypted
//! secrets, and tenant deletion (which destroys the keys). The store only moves opaque
//! blobs; sealing and unsealing happen in the server with the key provider. Each query is
//! written once for both backends.
//!
//! INVARIANT: a secret row always names a tenant key that exists (a foreign key): a rotation
//! that missed a secret cannot delete the key it still needs, and a secret written under a
//! key that a rotation destroyed meanwhile is refused (`Conflict::VaultChanged`) instead of
//! being stored unreadable.

use crate::rows::parse_id;
use crate::sql::{Freshness, Lock, Row, Scope, sql};
use crate::tx::all;
use crate::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::audit::AuditKind;

/// A tenant's key-encryption key as stored: wrapped by the provider's master key `master_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantKey {
    pub tenant: TenantId,
    pub version: u32,
    pub master_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: UnixMillis,
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .field("master_id", &self.master_id)
            .finish_non_exhaustive()
    }
}

/// What may be said about a secret: never its value, nor its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretMeta {
    pub name: String,
    pub id: SecretId,
    pub version: u32,
    pub kek_version: u32,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
    pub rotate_every_days: Option<u32>,
    pub created_by: String,
}

/// A secret's sealed blobs (format byte, nonce, AES-GCM ciphertext and tag each).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlobs {
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedBlobs(..)")
    }
}

/// A new version of a secret, sealed by the caller under the tenant key `kek_version`.
pub struct NewSecretVersion<'a> {
    pub tenant: &'a TenantId,
    pub name: &'a str,
    pub id: &'a SecretId,
    /// 1 for a new secret; otherwise exactly one more than the version the caller read.
    pub version: u32,
    pub kek_version: u32,
    pub sealed: &'a SealedBlobs,
    pub rotate_every_days: Option<u32>,
}

/// A secret as a reveal reads it: what may be said of it, its sealed blobs, and the (still
/// wrapped) tenant key they were sealed under.
pub type SealedSecret = (SecretMeta, SealedBlobs, TenantKey);

/// One secret's data key, rewrapped under a new tenant key (ciphertext untouched).
pub struct Rewrapped {
    pub name: String,
    pub version: u32,
    pub wrapped_dek: Vec<u8>,
}

fn blob(row: &Row, column: &str) -> StoreResult<Vec<u8>> {
    B64.decode(row.text(column)?)
        .map_err(|_| StoreError::Corrupt(format!("column `{column}` is not base64")))
}

fn small(row: &Row, column: &str) -> StoreResult<u32> {
    u32::try_from(row.int(column)?)
        .map_err(|_| StoreError::Corrupt(format!("column `{column}` is out of range")))
}

fn tenant_key(row: &Row) -> StoreResult<TenantKey> {
    Ok(TenantKey {
        tenant: parse_id(row.text("tenant_id")?)?,
        version: small(row, "version")?,
        master_id: row.text("master_id")?,
        wrapped: blob(row, "wrapped")?,
        created_at: row.int("created_at")?,
    })
}

fn secret_meta(row: &Row) -> StoreResult<SecretMeta> {
    Ok(SecretMeta {
        name: row.text("name")?,
        id: parse_id(row.text("id")?)?,
        version: small(row, "version")?,
        kek_version: small(row, "kek_version")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        rotate_every_days: row
            .opt_int("rotate_every_days")?
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt("rotate_every_days".into())))
            .transpose()?,
        created_by: row.text("created_by")?,
    })
}

impl Store {
    /// The tenant's newest key, if it has one yet.
    pub async fn current_tenant_key(&self, tenant: &TenantId) -> StoreResult<Option<TenantKey>> {
        let q = sql("SELECT * FROM tenant_keys WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1")
            .text(tenant.as_str());
        self.read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
            .as_ref()
            .map(tenant_key)
            .transpose()
    }

    /// Store the tenant's first key unless another writer stored one first; either way,
    /// the tenant's current key.
    pub async fn add_first_tenant_key(
        &self,
        tenant: &TenantId,
        master_id: &str,
        wrapped: &[u8],
        now: UnixMillis,
    ) -> StoreResult<TenantKey> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        tx.execute(
            &sql(
                "INSERT INTO tenant_keys (tenant_id, version, master_id, wrapped, created_at) \
                  VALUES ($1, 1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .text(tenant.as_str())
            .text(master_id)
            .text(B64.encode(wrapped))
            .int(now),
        )
        .await?;
        let q = sql("SELECT * FROM tenant_keys WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1")
            .text(tenant.as_str());
        let key = tenant_key(&tx.one(&q).await?)?;
        tx.commit().await?;
        Ok(key)
    }

    /// Every tenant key of every tenant (a master-key rotation rewraps them all).
    pub async fn all_tenant_keys(&self) -> StoreResult<Vec<TenantKey>> {
        let q = sql("SELECT * FROM tenant_keys ORDER BY tenant_id, version");
        all(
            self.read_all(Scope::AllTenants, &q, Freshness::Latest)
                .await?,
            tenant_key,
        )
    }

    /// Replace the wrapping of one tenant key (a new master key); the key itself is the same.
    /// Refused as changed when the key is no longer wrapped by `old_master`.
    pub async fn rewrap_tenant_key(
        &self,
        key: &TenantKey,
        master_id: &str,
        wrapped: &[u8],
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(&key.tenant)).await?;
        let changed = tx
            .execute(
                &sql("UPDATE tenant_keys SET master_id = $1, wrapped = $2 \
                      WHERE tenant_id = $3 AND version = $4 AND master_id = $5 AND wrapped = $6")
                .text(master_id)
                .text(B64.encode(wrapped))
                .text(key.tenant.as_str())
                .int(i64::from(key.version))
                .text(&key.master_id)
                .text(B64.encode(&key.wrapped)),
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        tx.commit().await
    }

    pub async fn secret_meta(&self, tenant: &TenantId, name: &str) -> StoreResult<SecretMeta> {
        let q = sql("SELECT * FROM secrets WHERE tenant_id = $1 AND name = $2")
            .text(tenant.as_str())
            .text(name);
        secret_meta(&self.read_one(Scope::Tenant(tenant), &q).await?)
    }

    pub async fn list_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<SecretMeta>> {
        let q =
            sql("SELECT * FROM secrets WHERE tenant_id = $1 ORDER BY name").text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            secret_meta,
        )
    }

    /// A secret's sealed blobs with the tenant key they were sealed under, read in one
    /// statement: a rotation commits either before it (the new key) or after (the old key,
    /// which it keeps until the same commit).
    pub async fn sealed_secret(&self, tenant: &TenantId, name: &str) -> StoreResult<SealedSecret> {
        let q = sql(
            "SELECT s.*, k.master_id, k.wrapped, k.created_at AS key_created_at \
             FROM secrets s JOIN tenant_keys k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version \
             WHERE s.tenant_id = $1 AND s.name = $2",
        )
        .text(tenant.as_str())
        .text(name);
        let row = self
            .read_opt(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
            .ok_or(StoreError::NotFound)?;
        let meta = secret_meta(&row)?;
        let sealed = SealedBlobs {
            wrapped_dek: blob(&row, "wrapped_dek")?,
            ciphertext: blob(&row, "ciphertext")?,
        };
        let key = TenantKey {
            tenant: tenant.clone(),
            version: meta.kek_version,
            master_id: row.text("master_id")?,
            wrapped: blob(&row, "wrapped")?,
            created_at: row.int("key_created_at")?,
        };
        Ok((meta, sealed, key))
    }

    /// Store a secret's first version or its next one, audited (name and version only).
    /// `VaultChanged` when the tenant key is gone (rotated meanwhile) or another version
    /// landed since the caller read it: seal again and retry.
    pub async fn put_secret(
        &self,
        new: NewSecretVersion<'_>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<SecretMeta> {
        let tenant = new.tenant;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        let key = format!(
            "SELECT 1 FROM tenant_keys WHERE tenant_id = $1 AND version = $2{}",
            tx.lock(Lock::Share)
        );
        if !tx
            .exists(
                &sql(key)
                    .text(tenant.as_str())
                    .int(i64::from(new.kek_version)),
            )
            .await?
        {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        let days = new.rotate_every_days.map(i64::from);
        let changed = if new.version == 1 {
            tx.execute(
                &sql("INSERT INTO secrets (tenant_id, name, id, version, kek_version, wrapped_dek, ciphertext, \
                      created_at, updated_at, rotate_every_days, created_by) \
                      VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $7, $8, $9) ON CONFLICT DO NOTHING")
                .text(tenant.as_str())
                .text(new.name)
                .text(new.id.as_str())
                .int(i64::from(new.kek_version))
                .text(B64.encode(&new.sealed.wrapped_dek))
                .text(B64.encode(&new.sealed.ciphertext))
                .int(now)
                .opt_int(days)
                .text(actor),
            )
            .await?
        } else {
            tx.execute(
                &sql("UPDATE secrets SET version = $1, kek_version = $2, wrapped_dek = $3, ciphertext = $4, \
                      updated_at = $5, rotate_every_days = COALESCE($6, rotate_every_days) \
                      WHERE tenant_id = $7 AND name = $8 AND id = $9 AND version = $10")
                .int(i64::from(new.version))
                .int(i64::from(new.kek_version))
                .text(B64.encode(&new.sealed.wrapped_dek))
                .text(B64.encode(&new.sealed.ciphertext))
                .int(now)
                .opt_int(days)
                .text(tenant.as_str())
                .text(new.name)
                .text(new.id.as_str())
                .int(i64::from(new.version) - 1),
            )
            .await?
        };
        if changed != 1 {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        let read = sql("SELECT * FROM secrets WHERE tenant_id = $1 AND name = $2")
            .text(tenant.as_str())
            .text(new.name);
        let meta = secret_meta(&tx.one(&read).await?)?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::SecretPut)
            .resource(format!("secret:{}", new.name))
            .detail(serde_json::json!({ "version": new.version, "kek_version": new.kek_version }));
        Ok(tx.audited(meta, draft, now).await?.0)
    }

    pub async fn delete_secret(
        &self,
        tenant: &TenantId,
        name: &str,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
            .text(tenant.as_str())
            .text(name);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::SecretDeleted)
            .resource(format!("secret:{name}"));
        self.change_one(tenant, change, draft, now).await
    }

    /// Record a use (not audited: the call that used it is).
    pub async fn touch_secret(
        &self,
        tenant: &TenantId,
        name: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        tx.execute(
            &sql("UPDATE secrets SET last_used_at = $1 WHERE tenant_id = $2 AND name = $3")
                .int(now)
                .text(tenant.as_str())
                .text(name),
        )
        .await?;
        tx.commit().await
    }

    /// Every secret's sealed data key and the version it belongs to (a tenant-key rotation
    /// rewraps them).
    pub async fn sealed_data_keys(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<(SecretMeta, Vec<u8>)>> {
        let q =
            sql("SELECT * FROM secrets WHERE tenant_id = $1 ORDER BY name").text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            |row| Ok((secret_meta(row)?, blob(row, "wrapped_dek")?)),
        )
    }

    /// Replace the tenant's key: store `new` (the next version), move every secret's data
    /// key to it and destroy every older key, in one transaction, audited. `VaultChanged`
    /// when anything moved since the caller read it (another rotation, a new secret or
    /// version): nothing is written; read again and retry.
    pub async fn rotate_tenant_key(
        &self,
        tenant: &TenantId,
        new: &TenantKey,
        rewrapped: &[Rewrapped],
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let current = format!(
            "SELECT * FROM tenant_keys WHERE tenant_id = $1 ORDER BY version{}",
            tx.lock(Lock::Update)
        );
        let keys = all(
            tx.all(&sql(current).text(tenant.as_str())).await?,
            tenant_key,
        )?;
        if keys.last().map(|k| k.version + 1) != Some(new.version) {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        tx.execute(
            &sql("INSERT INTO tenant_keys (tenant_id, version, master_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)")
                .text(tenant.as_str())
                .int(i64::from(new.version))
                .text(&new.master_id)
                .text(B64.encode(&new.wrapped))
                .int(now),
        )
        .await?;
        for item in rewrapped {
            let changed = tx
                .execute(
                    &sql("UPDATE secrets SET kek_version = $1, wrapped_dek = $2 \
                          WHERE tenant_id = $3 AND name = $4 AND version = $5 AND kek_version < $1")
                    .int(i64::from(new.version))
                    .text(B64.encode(&item.wrapped_dek))
                    .text(tenant.as_str())
                    .text(&item.name)
                    .int(i64::from(item.version)),
                )
                .await?;
            if changed != 1 {
                return Err(StoreError::Conflict(Conflict::VaultChanged));
            }
        }
        let left = sql("SELECT 1 FROM secrets WHERE tenant_id = $1 AND kek_version <> $2")
            .text(tenant.as_str())
            .int(i64::from(new.version));
        if tx.exists(&left).await? {
            return Err(StoreError::Conflict(Conflict::VaultChanged));
        }
        tx.execute(
            &sql("DELETE FROM tenant_keys WHERE tenant_id = $1 AND version < $2")
                .text(tenant.as_str())
                .int(i64::from(new.version)),
        )
        .await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::TenantKeyRotated)
            .resource(format!("tenant:{tenant}"))
            .detail(serde_json::json!({
                "version": new.version,
                "master_id": new.master_id,
                "secrets": rewrapped.len(),
            }));
        tx.audited((), draft, now).await.map(drop)
    }

    /// Delete a tenant: destroy its keys and secrets (nothing of its vault can be read again,
    /// also not from a copy of the database taken afterwards), revoke its connections, agent
    /// tokens and humans, and mark it deleted (every lookup then treats it as gone; its audit
    /// trail stays). On SQLite the freed pages are zeroed (`secure_delete`) and the
    /// write-ahead log truncated, so no earlier page image survives in either file.
    pub async fn delete_tenant(
        &self,
        tenant: &TenantId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let marked = tx
            .execute(
                &sql("UPDATE tenants SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                    .int(now)
                    .text(tenant.as_str()),
            )
            .await?;
        if marked != 1 {
            return Err(StoreError::NotFound);
        }
        for statement in [
            "DELETE FROM secrets WHERE tenant_id = $1",
            "DELETE FROM tenant_keys WHERE tenant_id = $1",
        ] {
            tx.execute(&sql(statement).text(tenant.as_str())).await?;
        }
        for statement in [
            "UPDATE connections SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
            "UPDATE agent_tokens SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
            "UPDATE admins SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
            "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = 'tenant deleted' \
             WHERE tenant_id = $1 AND disabled_at IS NULL",
            "UPDATE inbound_sources SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
        ] {
            tx.execute(&sql(statement).text(tenant.as_str()).int(now))
                .await?;
        }
        crate::webhooks::fail_pending(&mut tx, tenant, None, now).await?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::TenantDeleted)
            .resource(format!("tenant:{tenant}"));
        tx.audited((), draft, now).await?;
        self.purge_freed(false).await
    }

    /// SQLite: empty the write-ahead log (and with `compact`, rewrite the file first) so no
    /// image of a deleted or overwritten row survives; PostgreSQL keeps dead row versions
    /// until its autovacuum reclaims them (see ARCHITECTURE.md), so nothing happens there.
    pub async fn purge_freed(&self, compact: bool) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.truncate_log(compact).await,
            Store::Postgres(_) => Ok(()),
        }
    }
}
