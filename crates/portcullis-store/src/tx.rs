//! Transactions and reads over either backend: [`Tx`] runs a [`Sql`] on SQLite or
//! PostgreSQL alike, and appends to the audit chain the way each backend keeps its head.

use crate::sql::{Freshness, Lock, Row, Scope, Sql};
use crate::{StoreError, StoreResult};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent};
use sqlx::{Postgres, Sqlite};

/// A write transaction of either backend (on PostgreSQL already scoped for row-level
/// security). Dropped without `commit`, it rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// The transaction, and the process's chain-head hints its appends use.
    Postgres(
        sqlx::Transaction<'static, Postgres>,
        std::sync::Arc<crate::postgres::Heads>,
    ),
}

impl Tx {
    pub async fn execute(&mut self, q: &Sql<'_>) -> StoreResult<u64> {
        Ok(match self {
            Tx::Sqlite(tx) => q.sqlite().execute(&mut **tx).await?.rows_affected(),
            Tx::Postgres(tx, _) => q.postgres().execute(&mut **tx).await?.rows_affected(),
        })
    }

    pub async fn all(&mut self, q: &Sql<'_>) -> StoreResult<Vec<Row>> {
        Ok(match self {
            Tx::Sqlite(tx) => q
                .sqlite()
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Tx::Postgres(tx, _) => q
                .postgres()
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn opt(&mut self, q: &Sql<'_>) -> StoreResult<Option<Row>> {
        Ok(match self {
            Tx::Sqlite(tx) => q.sqlite().fetch_optional(&mut **tx).await?.map(Row::Sqlite),
            Tx::Postgres(tx, _) => q
                .postgres()
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Exactly one row; none is "not found".
    pub async fn one(&mut self, q: &Sql<'_>) -> StoreResult<Row> {
        self.opt(q).await?.ok_or(StoreError::NotFound)
    }

    /// Whether the query returns a row.
    pub async fn exists(&mut self, q: &Sql<'_>) -> StoreResult<bool> {
        Ok(self.opt(q).await?.is_some())
    }

    /// The SQL suffix for a row lock (empty on SQLite).
    pub fn lock(&self, lock: Lock) -> &'static str {
        match (self, lock) {
            (Tx::Sqlite(_), _) => "",
            (Tx::Postgres(..), Lock::Update) => " FOR UPDATE",
            (Tx::Postgres(..), Lock::NoKeyUpdate) => " FOR NO KEY UPDATE",
            (Tx::Postgres(..), Lock::UpdateApproval) => " FOR UPDATE OF a",
            (Tx::Postgres(..), Lock::Share) => " FOR SHARE",
            (Tx::Postgres(..), Lock::SkipLocked) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Append to the tenant's chain inside this transaction (each backend keeps its chain
    /// head its own way).
    pub async fn append(&mut self, draft: AuditDraft, now: UnixMillis) -> StoreResult<AuditEvent> {
        match self {
            Tx::Sqlite(tx) => crate::sqlite::append_in(tx, draft, now).await,
            Tx::Postgres(tx, heads) => crate::postgres::append_in(tx, heads, draft, now).await,
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx, _) => tx.commit().await?,
        }
        Ok(())
    }

    /// Append the audit event of what this transaction did and commit both: the tail of
    /// every audited change.
    pub async fn audited<T>(
        mut self,
        value: T,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<(T, AuditEvent)> {
        let event = self.append(draft, now).await?;
        self.commit().await?;
        Ok((value, event))
    }
}

/// Rows into records, failing on the first corrupt one.
pub(crate) fn all<T>(
    rows: Vec<Row>,
    parse: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(parse).collect()
}

impl crate::Store {
    /// A write transaction (SQLite: `BEGIN IMMEDIATE` on the one writer; PostgreSQL: scoped).
    pub(crate) async fn begin(&self, scope: Scope<'_>) -> StoreResult<Tx> {
        Ok(match self {
            crate::Store::Sqlite(s) => Tx::Sqlite(s.begin().await?),
            crate::Store::Postgres(s) => Tx::Postgres(s.begin(scope).await?, s.heads.clone()),
        })
    }

    pub(crate) async fn read_all(
        &self,
        scope: Scope<'_>,
        q: &Sql<'_>,
        freshness: Freshness,
    ) -> StoreResult<Vec<Row>> {
        match self {
            crate::Store::Sqlite(s) => Ok(q
                .sqlite()
                .fetch_all(s.reader(freshness))
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect()),
            crate::Store::Postgres(s) => {
                let mut tx = Tx::Postgres(s.begin(scope).await?, s.heads.clone());
                let rows = tx.all(q).await?;
                tx.commit().await?;
                Ok(rows)
            }
        }
    }

    pub(crate) async fn read_opt(
        &self,
        scope: Scope<'_>,
        q: &Sql<'_>,
        freshness: Freshness,
    ) -> StoreResult<Option<Row>> {
        match self {
            crate::Store::Sqlite(s) => Ok(q
                .sqlite()
                .fetch_optional(s.reader(freshness))
                .await?
                .map(Row::Sqlite)),
            crate::Store::Postgres(s) => {
                let mut tx = Tx::Postgres(s.begin(scope).await?, s.heads.clone());
                let row = tx.opt(q).await?;
                tx.commit().await?;
                Ok(row)
            }
        }
    }

    /// Exactly one row; none is "not found".
    pub(crate) async fn read_one(&self, scope: Scope<'_>, q: &Sql<'_>) -> StoreResult<Row> {
        self.read_opt(scope, q, Freshness::Any)
            .await?
            .ok_or(StoreError::NotFound)
    }
}
