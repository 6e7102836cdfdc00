//! Signed share links: one artifact of one tenant behind a bearer URL. Only the token's
//! SHA-256 is stored; a download is counted and audited in the tenant's trail.

use crate::rows::parse_id;
use crate::sql::{Freshness, Row, Scope, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::audit::AuditKind;

/// A share link as the API shows it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareLink {
    pub id: ShareLinkId,
    pub tenant: TenantId,
    /// `audit-export`, or `approval:<id>` (that approval's evidence).
    pub artifact: String,
    pub created_by: String,
    pub created_at: UnixMillis,
    /// `None`: it never expires (until revoked).
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    pub downloads: i64,
}

impl ShareLink {
    pub fn is_live(&self, now: UnixMillis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

fn link(row: &Row) -> StoreResult<ShareLink> {
    Ok(ShareLink {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        artifact: row.text("artifact")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        downloads: row.int("downloads")?,
    })
}

impl Store {
    /// Store a new link (by its token's hash), audited.
    pub async fn create_share_link(
        &self,
        tenant: &TenantId,
        token_hash: &str,
        artifact: &str,
        expires_at: Option<UnixMillis>,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<ShareLink> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Self::require_tenant(&mut tx, tenant).await?;
        let id = ShareLinkId::generate();
        tx.execute(
            &sql("INSERT INTO share_links (id, token_hash, tenant_id, artifact, created_by, created_at, expires_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .text(id.as_str())
            .text(token_hash)
            .text(tenant.as_str())
            .text(artifact)
            .text(actor)
            .int(now)
            .opt_int(expires_at),
        )
        .await?;
        let created = link(
            &tx.one(&sql("SELECT * FROM share_links WHERE id = $1").text(id.as_str()))
                .await?,
        )?;
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ShareChanged)
            .resource(format!("share:{id}"))
            .detail(serde_json::json!({ "created": artifact, "expires_at": expires_at }));
        Ok(tx.audited(created, draft, now).await?.0)
    }

    pub async fn share_links(&self, tenant: &TenantId) -> StoreResult<Vec<ShareLink>> {
        let q = sql("SELECT * FROM share_links WHERE tenant_id = $1 ORDER BY created_at DESC, id")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
                .await?,
            link,
        )
    }

    pub async fn revoke_share_link(
        &self,
        tenant: &TenantId,
        id: &ShareLinkId,
        actor: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let change = sql("UPDATE share_links SET revoked_at = $3 \
                          WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
        .text(tenant.as_str())
        .text(id.as_str())
        .int(now);
        let draft = AuditDraft::new(tenant.clone(), actor, AuditKind::ShareChanged)
            .resource(format!("share:{id}"))
            .detail(serde_json::json!({ "revoked": true }));
        self.change_one(tenant, change, draft, now).await
    }

    /// The link a token opens, if it is live and its tenant still exists: counted and
    /// audited as a download (from `ip`). Anything else is "not found".
    pub async fn open_share_link(
        &self,
        token_hash: &str,
        ip: &str,
        now: UnixMillis,
    ) -> StoreResult<ShareLink> {
        let q = sql(
            "SELECT s.* FROM share_links s JOIN tenants t ON t.id = s.tenant_id \
                     WHERE s.token_hash = $1 AND t.deleted_at IS NULL",
        )
        .text(token_hash);
        let found = self
            .read_opt(Scope::AllTenants, &q, Freshness::Latest)
            .await?
            .map(|row| link(&row))
            .transpose()?
            .filter(|l| l.is_live(now))
            .ok_or(StoreError::NotFound)?;
        let mut tx = self.begin(Scope::Tenant(&found.tenant)).await?;
        let counted = tx
            .execute(
                &sql("UPDATE share_links SET downloads = downloads + 1 \
                      WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL")
                .text(found.id.as_str())
                .text(found.tenant.as_str()),
            )
            .await?;
        if counted != 1 {
            return Err(StoreError::NotFound);
        }
        let draft = AuditDraft::new(
            found.tenant.clone(),
            format!("ip:{ip}"),
            AuditKind::ShareDownloaded,
        )
        .resource(format!("share:{}", found.id))
        .detail(serde_json::json!({ "artifact": found.artifact }));
        Ok(tx.audited(found, draft, now).await?.0)
    }
}
