//! The embedded backend: one SQLite file in WAL mode with `synchronous = FULL`, so an audit
//! event that was acknowledged survives a crash or power loss. What only SQLite does lives
//! here: opening and migrating the file, the one writer, and appending to a chain.
//!
//! Transactions go through a pool of exactly one connection, and plain audit appends through
//! the dedicated audit writer (`sqlite_writer`); reads use their own pool. SQLite allows one
//! writer at a time: every write transaction starts with `BEGIN IMMEDIATE`, so the "read the
//! chain head, append after it" step of either writer stays true until its commit.

use crate::sql::Freshness;
use crate::*;
use portcullis_core::audit::GENESIS_HASH;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    pub(crate) appends: crate::sqlite_writer::AuditWriter,
    pub(crate) append_hook: crate::AppendHook,
    /// The database file, for readers that bypass sqlx (see [`Self::audit_page`]).
    path: std::path::PathBuf,
}

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Deleted rows (a destroyed tenant key, a deleted secret) are overwritten with
            // zeros, not left in free pages.
            .pragma("secure_delete", "ON");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(crate::migrate_error)?;
        let appends = crate::sqlite_writer::AuditWriter::start(connect.get_filename())?;
        let path = connect.get_filename().to_owned();
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_read_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            appends,
            append_hook: crate::AppendHook::default(),
            path,
        })
    }

    /// Events of one tenant with `seq > after`, in order, at most `limit` — read on a blocking
    /// thread with its own read-only connection. sqlx's SQLite driver hands every row from its
    /// worker thread to the runtime (profiled: ~10 µs a row, nearly all of it thread
    /// switches), which made `audit verify` read-bound at under 100,000 entries a second.
    /// Entry hashes for a Merkle tree, read like [`Self::audit_page`].
    pub(crate) async fn audit_hashes(
        &self,
        tenant: &TenantId,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        let (path, tenant) = (self.path.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || read_audit_hashes(&path, &tenant, after, up_to, limit))
            .await
            .map_err(|e| StoreError::Unavailable(format!("audit reader: {e}")))?
    }

    pub(crate) async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (path, tenant) = (self.path.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || read_audit_page(&path, &tenant, after, limit))
            .await
            .map_err(|e| StoreError::Unavailable(format!("audit reader: {e}")))?
    }

    pub async fn health(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// A write transaction on the one writer connection, holding SQLite's write lock from its
    /// start (`BEGIN IMMEDIATE`), so what it reads stays true until it commits.
    pub(crate) async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Write every page of the write-ahead log back into the database and empty the log, so
    /// page images from before a deletion survive in neither file; with `compact`, first
    /// rewrite the whole database (`VACUUM`), leaving no free page behind.
    pub(crate) async fn truncate_log(&self, compact: bool) -> StoreResult<()> {
        if compact {
            sqlx::query("VACUUM").execute(&self.write).await?;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The pool a read runs on: the readers, or the writer for the latest write.
    pub(crate) fn reader(&self, freshness: Freshness) -> &SqlitePool {
        match freshness {
            Freshness::Any => &self.read,
            Freshness::Latest => &self.write,
        }
    }
}

/// Append to the chain inside the caller's transaction (the one writer: nobody else can
/// append in between).
pub(crate) async fn append_in(
    tx: &mut Transaction<'static, Sqlite>,
    draft: AuditDraft,
    now: UnixMillis,
) -> StoreResult<AuditEvent> {
    let head: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(draft.tenant.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let (seq, prev) = head.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
    let event = draft.seal(seq, now, &prev);
    crate::sql::insert_event(&event)
        .sqlite()
        .execute(&mut **tx)
        .await?;
    Ok(event)
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("audit reader: {e}"))
}

/// A read-only connection of the audit readers (no sqlx: see [`SqliteStore::audit_page`]).
fn open_reader(path: &std::path::Path) -> StoreResult<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
    Ok(conn)
}

/// The (seq, hash) of one tenant's entries with `after < seq <= up_to`, in order, at most
/// `limit`, read like [`read_audit_page`].
fn read_audit_hashes(
    path: &std::path::Path,
    tenant: &TenantId,
    after: i64,
    up_to: i64,
    limit: i64,
) -> StoreResult<Vec<(i64, String)>> {
    let conn = open_reader(path)?;
    let mut statement = conn
        .prepare(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = ?1 AND seq > ?2 AND seq <= ?3 \
             ORDER BY seq LIMIT ?4",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map(
            rusqlite::params![tenant.as_str(), after, up_to, limit],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

fn read_audit_page(
    path: &std::path::Path,
    tenant: &TenantId,
    after: i64,
    limit: i64,
) -> StoreResult<Vec<AuditEvent>> {
    let conn = open_reader(path)?;
    let mut statement = conn
        .prepare(
            "SELECT seq, time, prev_hash, hash, actor, session, kind, resource, decision, \
             receipt_id, args_hash, detail FROM audit_events WHERE tenant_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .map_err(failed)?;
    let mut rows = statement
        .query(rusqlite::params![tenant.as_str(), after, limit])
        .map_err(failed)?;
    let mut events = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(10_000));
    while let Some(row) = rows.next().map_err(failed)? {
        let kind: String = row.get(6).map_err(failed)?;
        let detail: String = row.get(11).map_err(failed)?;
        events.push(AuditEvent {
            seq: row.get(0).map_err(failed)?,
            time: row.get(1).map_err(failed)?,
            prev_hash: row.get(2).map_err(failed)?,
            hash: row.get(3).map_err(failed)?,
            draft: AuditDraft {
                tenant: tenant.clone(),
                actor: row.get(4).map_err(failed)?,
                session: row.get(5).map_err(failed)?,
                kind: portcullis_core::audit::AuditKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("audit kind `{kind}`")))?,
                resource: row.get(7).map_err(failed)?,
                decision: row.get(8).map_err(failed)?,
                receipt_id: row.get(9).map_err(failed)?,
                args_hash: row.get(10).map_err(failed)?,
                detail: crate::rows::parse_json("detail", &detail)?,
            },
        });
    }
    Ok(events)
}
