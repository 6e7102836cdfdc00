//! One statement for either backend: SQL text with `$N` placeholders (sqlx's SQLite driver
//! accepts them too) and its arguments, run inside a transaction of either database, with
//! rows read through one typed interface.
//!
//! Written by hand because sqlx's generic `Database` traits would spread half a page of
//! bounds over every query, and its `Any` driver loses the types and the transaction-local
//! settings row-level security depends on.

use crate::{StoreError, StoreResult};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent};
use sqlx::Row as _;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Postgres, Sqlite};
use std::borrow::Cow;

/// One bound value.
#[derive(Debug, Clone)]
enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
}

/// A statement and its arguments, in placeholder order.
#[derive(Debug, Clone)]
pub(crate) struct Sql<'a> {
    text: Cow<'a, str>,
    args: Vec<Arg<'a>>,
}

/// A statement.
pub(crate) fn sql<'a>(text: impl Into<Cow<'a, str>>) -> Sql<'a> {
    Sql {
        text: text.into(),
        args: Vec::new(),
    }
}

impl<'a> Sql<'a> {
    pub fn text(mut self, value: impl Into<Cow<'a, str>>) -> Self {
        self.args.push(Arg::Text(Some(value.into())));
        self
    }

    pub fn opt_text(mut self, value: Option<impl Into<Cow<'a, str>>>) -> Self {
        self.args.push(Arg::Text(value.map(Into::into)));
        self
    }

    pub fn int(mut self, value: i64) -> Self {
        self.args.push(Arg::Int(Some(value)));
        self
    }

    pub fn opt_int(mut self, value: Option<i64>) -> Self {
        self.args.push(Arg::Int(value));
        self
    }

    pub(crate) fn sqlite(&self) -> sqlx::query::Query<'_, Sqlite, SqliteArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.as_deref()),
                Arg::Int(v) => query.bind(*v),
            };
        }
        query
    }

    pub(crate) fn postgres(&self) -> sqlx::query::Query<'_, Postgres, PgArguments> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.as_deref()),
                Arg::Int(v) => query.bind(*v),
            };
        }
        query
    }
}

/// A row of either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A column that is missing or of another type: the stored data (or the store's own SQL) is
/// wrong. An error, never a panic.
fn column_error(column: &str, error: sqlx::Error) -> StoreError {
    StoreError::Corrupt(format!("column `{column}`: {error}"))
}

macro_rules! get {
    ($row:expr, $column:expr) => {
        match $row {
            Row::Sqlite(r) => r.try_get($column),
            Row::Postgres(r) => r.try_get($column),
        }
        .map_err(|e| column_error($column, e))
    };
}

impl Row {
    pub fn text(&self, column: &str) -> StoreResult<String> {
        get!(self, column)
    }
    pub fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        get!(self, column)
    }
    pub fn int(&self, column: &str) -> StoreResult<i64> {
        get!(self, column)
    }
    pub fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
        get!(self, column)
    }
    /// The first column as an integer (`COUNT(*)`, `SELECT 1`).
    pub fn first_int(&self) -> StoreResult<i64> {
        match self {
            Row::Sqlite(r) => r.try_get(0),
            Row::Postgres(r) => r.try_get(0),
        }
        .map_err(|e| column_error("0", e))
    }
}

/// A row lock, where the backend has them. SQLite serialises every write transaction on its
/// one writer connection, so it needs none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// `FOR UPDATE`.
    Update,
    /// `FOR NO KEY UPDATE`: blocks other writers of the row, not inserts that reference it.
    NoKeyUpdate,
    /// `FOR UPDATE OF a`: only the approval of a join.
    UpdateApproval,
}

/// A write transaction of either backend (on PostgreSQL already scoped for row-level
/// security). Dropped without `commit`, it rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn execute(&mut self, q: &Sql<'_>) -> StoreResult<u64> {
        Ok(match self {
            Tx::Sqlite(tx) => q.sqlite().execute(&mut **tx).await?.rows_affected(),
            Tx::Postgres(tx) => q.postgres().execute(&mut **tx).await?.rows_affected(),
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
            Tx::Postgres(tx) => q
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
            Tx::Postgres(tx) => q
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
            (Tx::Postgres(_), Lock::Update) => " FOR UPDATE",
            (Tx::Postgres(_), Lock::NoKeyUpdate) => " FOR NO KEY UPDATE",
            (Tx::Postgres(_), Lock::UpdateApproval) => " FOR UPDATE OF a",
        }
    }

    /// Append to the tenant's chain inside this transaction (each backend keeps its chain
    /// head its own way).
    pub async fn append(&mut self, draft: AuditDraft, now: UnixMillis) -> StoreResult<AuditEvent> {
        match self {
            Tx::Sqlite(tx) => crate::sqlite::append_in(tx, draft, now).await,
            Tx::Postgres(tx) => crate::postgres::append_in(tx, draft, now).await,
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
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

/// Which rows a transaction may see and write (PostgreSQL's row-level security); SQLite, one
/// process's own file, ignores it.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Only this tenant's rows (`portcullis.tenant`).
    Tenant(&'a portcullis_core::id::TenantId),
    /// Every tenant's rows (`portcullis.all_tenants = 'on'`): only for lookups that happen
    /// before a tenant is known, or for operators that span tenants.
    AllTenants,
}

impl<'a> Scope<'a> {
    pub fn of(tenant: Option<&'a portcullis_core::id::TenantId>) -> Self {
        tenant.map_or(Self::AllTenants, Self::Tenant)
    }
}

/// Where a read runs on SQLite: the read pool, or the writer connection when the caller must
/// see the latest committed write of this process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Any,
    Latest,
}

impl crate::Store {
    /// A write transaction (SQLite: `BEGIN IMMEDIATE` on the one writer; PostgreSQL: scoped).
    pub(crate) async fn begin(&self, scope: Scope<'_>) -> StoreResult<Tx> {
        Ok(match self {
            crate::Store::Sqlite(s) => Tx::Sqlite(s.begin().await?),
            crate::Store::Postgres(s) => Tx::Postgres(s.begin(scope).await?),
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
                let mut tx = Tx::Postgres(s.begin(scope).await?);
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
                let mut tx = Tx::Postgres(s.begin(scope).await?);
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
