//! One statement for either backend: SQL text with `$N` placeholders (sqlx's SQLite driver
//! accepts them too) and its arguments, run inside a transaction of either database, with
//! rows read through one typed interface.
//!
//! Written by hand because sqlx's generic `Database` traits would spread half a page of
//! bounds over every query, and its `Any` driver loses the types and the transaction-local
//! settings row-level security depends on.

use crate::{StoreError, StoreResult};
use portcullis_core::audit::AuditEvent;
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
    /// `FOR SHARE`: the row may not change or go away until this transaction ends.
    Share,
    /// `FOR UPDATE SKIP LOCKED`: a row another worker is claiming is passed over (a queue).
    SkipLocked,
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

/// The `INSERT` of one sealed event, the same statement on both backends.
pub(crate) fn insert_event(event: &AuditEvent) -> Sql<'_> {
    event_arguments(sql(INSERT_EVENT), event)
}

/// The statement of [`insert_event`], for the SQLite audit writer (which binds the same
/// arguments in the same order).
pub(crate) const INSERT_EVENT: &str = "INSERT INTO audit_events (tenant_id, seq, time, actor, session, kind, resource, decision, receipt_id, args_hash, detail, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// PostgreSQL: the `INSERT` of one sealed event together with its chain head's move to it,
/// as one statement that writes only when the head (`audit_heads`) is the event's predecessor.
pub(crate) fn insert_event_after_head(event: &AuditEvent) -> Sql<'_> {
    event_arguments(
        sql("WITH head AS (UPDATE audit_heads SET seq = $2, hash = $13 \
                           WHERE tenant_id = $1 AND seq = $2 - 1 AND hash = $12 RETURNING tenant_id) \
             INSERT INTO audit_events (tenant_id, seq, time, actor, session, kind, resource, decision, receipt_id, args_hash, detail, prev_hash, hash) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM head"),
        event,
    )
}

fn event_arguments<'a>(q: Sql<'a>, event: &'a AuditEvent) -> Sql<'a> {
    let d = &event.draft;
    q.text(d.tenant.as_str())
        .int(event.seq)
        .int(event.time)
        .text(d.actor.as_str())
        .opt_text(d.session.as_deref())
        .text(d.kind.as_str())
        .opt_text(d.resource.as_deref())
        .opt_text(d.decision.as_deref())
        .opt_text(d.receipt_id.as_deref())
        .opt_text(d.args_hash.as_deref())
        .text(d.detail.to_string())
        .text(event.prev_hash.as_str())
        .text(event.hash.as_str())
}
