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
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_read_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            appends,
        })
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
