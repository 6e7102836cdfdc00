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
        let event = match self {
            Store::Sqlite(s) => s.appends.append(draft, now).await,
            Store::Postgres(s) => s.appends.append(draft, now).await,
        }?;
        if let Some(hook) = self.append_hook().get() {
            // The checkpointer counts entries per tenant; a closed receiver only means it
            // stopped (shutdown).
            let _ = hook.send(event.draft.tenant.clone());
        }
        Ok(event)
    }

    fn append_hook(&self) -> &AppendHook {
        match self {
            Store::Sqlite(s) => &s.append_hook,
            Store::Postgres(s) => &s.append_hook,
        }
    }

    /// Tell `hook` the tenant of every event appended through [`Store::append_audit`] (the
    /// per-call path; transactional appends are few and caught by the checkpoint timer).
    /// Set once; later calls are ignored.
    pub fn on_append(&self, hook: tokio::sync::mpsc::UnboundedSender<TenantId>) {
        let _ = self.append_hook().set(hook);
    }

    /// The tools a call's history touched, one row each: every allowed call (`tool_call`,
    /// decision `allow`) and every result the injection spotter flagged
    /// (`untrusted_content`), recorded under `session` (an MCP session, whatever its age) or
    /// made by `actor` at or after `since` in any session. Aggregated in the database and
    /// never truncated, so no number of later calls can push an earlier read out of the
    /// history. Most recent first.
    pub async fn session_reads(
        &self,
        tenant: &TenantId,
        session: Option<&str>,
        actor: &str,
        since: UnixMillis,
    ) -> StoreResult<Vec<SessionRead>> {
        let q = sql(
            "SELECT resource, COUNT(CASE WHEN kind = $2 THEN 1 END) AS calls, \
                     COUNT(CASE WHEN kind = $6 THEN 1 END) AS untrusted, \
                     MAX(seq) AS last_seq, MAX(time) AS last_time \
                     FROM audit_events WHERE tenant_id = $1 \
                     AND ((kind = $2 AND decision = 'allow') OR kind = $6) \
                     AND (session = $3 OR (actor = $4 AND time >= $5)) AND resource IS NOT NULL \
                     GROUP BY resource ORDER BY last_seq DESC",
        )
        .text(tenant.as_str())
        .text(AuditKind::ToolCall.as_str())
        .opt_text(session)
        .text(actor)
        .int(since)
        .text(AuditKind::UntrustedContent.as_str());
        self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| {
                Ok(SessionRead {
                    resource: row.text("resource")?,
                    calls: row.int("calls")?,
                    last_seq: row.int("last_seq")?,
                    last_time: row.int("last_time")?,
                    untrusted: row.int("untrusted")? != 0,
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
        if let Store::Sqlite(s) = self {
            // The same query, read without sqlx's per-row thread hand-off (see there).
            return s.audit_page(tenant, after, self::limit(limit)).await;
        }
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

    /// Store a checkpoint (a second one at the same size, from another replica, is dropped),
    /// with the Merkle root it states and the tree's right edge at that size (`frontier`).
    pub async fn insert_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        root_hash: Option<&str>,
        frontier: Option<&str>,
    ) -> StoreResult<()> {
        let b = &checkpoint.body;
        let mut tx = self.begin(Scope::Tenant(&b.tenant)).await?;
        tx.execute(
            &sql("INSERT INTO audit_checkpoints (tenant_id, size, head_hash, time, signature, root_hash, note, frontier) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
            .text(b.tenant.as_str())
            .int(b.size)
            .text(b.head_hash.as_str())
            .int(b.time)
            .text(checkpoint.signature.as_str())
            .opt_text(root_hash)
            .opt_text(checkpoint.note.as_deref())
            .opt_text(frontier),
        )
        .await?;
        tx.commit().await
    }

    /// The newest checkpoint of a tenant that carries a Merkle root, with its stored right
    /// edge: (size, signed note, frontier text). The frontier is unsigned: the caller checks it
    /// against the note before continuing from it.
    pub async fn latest_tree(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Option<(i64, String, String)>> {
        let q = sql(
            "SELECT size, note, frontier FROM audit_checkpoints WHERE tenant_id = $1 \
                     AND note IS NOT NULL AND frontier IS NOT NULL ORDER BY size DESC LIMIT 1",
        )
        .text(tenant.as_str());
        match self
            .read_opt(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
        {
            Some(row) => Ok(Some((
                row.int("size")?,
                row.text("note")?,
                row.text("frontier")?,
            ))),
            None => Ok(None),
        }
    }

    /// For an export: every receipt granted in a tenant, with the id and action of the
    /// approval it was granted for (a batch receipt once per approval).
    pub async fn receipts_of(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<
        Vec<(
            String,
            portcullis_core::receipt::SignedReceipt,
            portcullis_core::action::Action,
        )>,
    > {
        let q = sql("SELECT id, action, receipt FROM approvals WHERE tenant_id = $1 AND receipt IS NOT NULL \
                     ORDER BY created_at, id")
            .text(tenant.as_str());
        self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.text("id")?,
                    parse::parse_json("receipt", &row.text("receipt")?)?,
                    parse::parse_json("action", &row.text("action")?)?,
                ))
            })
            .collect()
    }

    /// For an export: every guardrail a tenant ever had (revoked ones too), as (id, name).
    pub async fn guardrail_names(&self, tenant: &TenantId) -> StoreResult<Vec<(String, String)>> {
        let q = sql("SELECT id, name FROM guardrails WHERE tenant_id = $1 ORDER BY created_at, id")
            .text(tenant.as_str());
        self.read_all(Scope::Tenant(tenant), &q, Freshness::Any)
            .await?
            .iter()
            .map(|row| Ok((row.text("id")?, row.text("name")?)))
            .collect()
    }

    /// The hashes of a tenant's entries with `after < seq <= up_to`, in order, at most `limit`
    /// (the Merkle leaves, without the rest of each entry).
    pub async fn audit_hashes(
        &self,
        tenant: &TenantId,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        if let Store::Sqlite(s) = self {
            // The same query, read without sqlx's per-row thread hand-off.
            return s
                .audit_hashes(tenant, after, up_to, self::limit(limit))
                .await;
        }
        let q = sql(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 \
                     ORDER BY seq LIMIT $4",
        )
        .text(tenant.as_str())
        .int(after)
        .int(up_to)
        .int(self::limit(limit));
        self.read_all(Scope::Tenant(tenant), &q, Freshness::Latest)
            .await?
            .iter()
            .map(|row| Ok((row.int("seq")?, row.text("hash")?)))
            .collect()
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
