//! Reading the audit trail and its checkpoints — each query written once for both backends.
//! (Appending is per backend: each keeps its chain head its own way.)

use crate::approvals::limit;
use crate::rows::{self as parse, parse_id};
use crate::sql::{Freshness, Scope, sql};
use crate::tx::all;
use crate::*;
use portcullis_core::audit::{AuditKind, GENESIS_HASH};

impl Store {
    /// Append one event to its tenant's chain, durably; concurrent appends share a commit
    /// (see `group_commit`).
    pub async fn append_audit(
        &self,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        match self {
            Store::Sqlite(s) => s.appends.append(draft, now).await,
            Store::Postgres(s) => s.appends.append(draft, now).await,
        }
    }

    /// The tools a call's history touched, one row each: every allowed call (`tool_call`,
    /// decision `allow`) recorded under `session` (an MCP session, whatever its age) or made
    /// by `actor` at or after `since` in any session. Aggregated in the database and never
    /// truncated, so no number of later calls can push an earlier read out of the history.
    /// Most recent first.
    pub async fn session_reads(
        &self,
        tenant: &TenantId,
        session: Option<&str>,
        actor: &str,
        since: UnixMillis,
    ) -> StoreResult<Vec<SessionRead>> {
        let q = sql(
            "SELECT resource, COUNT(*) AS calls, MAX(seq) AS last_seq, MAX(time) AS last_time \
                     FROM audit_events WHERE tenant_id = $1 AND kind = $2 AND decision = 'allow' \
                     AND (session = $3 OR (actor = $4 AND time >= $5)) AND resource IS NOT NULL \
                     GROUP BY resource ORDER BY last_seq DESC",
        )
        .text(tenant.as_str())
        .text(AuditKind::ToolCall.as_str())
        .opt_text(session)
        .text(actor)
        .int(since);
        self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| {
                Ok(SessionRead {
                    resource: row.text("resource")?,
                    calls: row.int("calls")?,
                    last_seq: row.int("last_seq")?,
                    last_time: row.int("last_time")?,
                })
            })
            .collect()
    }

    /// Events of one tenant with `seq > after`, in order, at most `limit`.
    pub async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let q = sql(
            "SELECT * FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .text(tenant.as_str())
        .int(after)
        .int(self::limit(limit));
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::audit_event,
        )
    }

    /// Events matching a filter, after a (tenant, seq) cursor, at most `limit`. Spans
    /// tenants when the filter names none.
    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        after: Option<(TenantId, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (after_tenant, after_seq) =
            after.map_or((String::new(), 0), |(t, s)| (t.to_string(), s));
        let q = sql("SELECT * FROM audit_events WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR time >= $2) \
                     AND ($3 IS NULL OR time < $3) AND ($4 IS NULL OR actor = $4) AND ($5 IS NULL OR kind = $5) \
                     AND (tenant_id, seq) > ($6, $7) ORDER BY tenant_id, seq LIMIT $8")
        .opt_text(filter.tenant.as_ref().map(TenantId::as_str))
        .opt_int(filter.from)
        .opt_int(filter.to)
        .opt_text(filter.actor.as_deref())
        .opt_text(filter.kind.as_deref())
        .text(after_tenant)
        .int(after_seq)
        .int(self::limit(limit));
        all(
            self.read_all(Scope::of(filter.tenant.as_ref()), &q, Freshness::Any)
                .await?,
            parse::audit_event,
        )
    }

    /// Every tenant id that has audit events (including the system chain).
    pub async fn audit_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let q = match self {
            Store::Sqlite(_) => {
                sql("SELECT DISTINCT tenant_id FROM audit_events ORDER BY tenant_id")
            }
            // A chain has a head row exactly when it has events (both are written in one
            // transaction): one row per chain instead of a scan of every event.
            Store::Postgres(_) => {
                sql("SELECT tenant_id FROM audit_heads WHERE seq > 0 ORDER BY tenant_id")
            }
        };
        self.read_all(Scope::AllTenants, &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| parse_id(row.text("tenant_id")?))
            .collect()
    }

    /// Current (size, head hash) of a tenant's chain.
    pub async fn audit_head(&self, tenant: &TenantId) -> StoreResult<(i64, String)> {
        let q = sql(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .text(tenant.as_str());
        match self
            .read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
        {
            Some(row) => Ok((row.int("seq")?, row.text("hash")?)),
            None => Ok((0, GENESIS_HASH.to_owned())),
        }
    }

    pub async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        let b = &checkpoint.body;
        let mut tx = self.begin(Scope::Tenant(&b.tenant)).await?;
        tx.execute(
            &sql("INSERT INTO audit_checkpoints (tenant_id, size, head_hash, time, signature) VALUES ($1, $2, $3, $4, $5) \
                  ON CONFLICT DO NOTHING")
            .text(b.tenant.as_str())
            .int(b.size)
            .text(b.head_hash.as_str())
            .int(b.time)
            .text(checkpoint.signature.as_str()),
        )
        .await?;
        tx.commit().await
    }

    pub async fn checkpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Checkpoint>> {
        let q = sql("SELECT * FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY size")
            .text(tenant.as_str());
        all(
            self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
                .await?,
            parse::checkpoint,
        )
    }
}
