//! The dedicated SQLite audit writer: one OS thread that owns its own connection and commits
//! queued audit appends together (group commit), answering each caller after the commit that
//! holds its event.
//!
//! Why not sqlx here: its SQLite driver runs every statement as a message to a per-connection
//! worker thread and back, so an append (begin, read the head, insert, commit) costs four
//! cross-thread round trips and their wake-ups — more than the SQLite work itself, apart from
//! the `fsync`. This thread runs the whole group through the SQLite C API (rusqlite) and is
//! reached once per append: a queue in, a oneshot out.
//!
//! The file has other writers in this process (the sqlx writer's transactions: holds,
//! redemptions, votes, admin changes, which append their own events inside their own
//! transaction). SQLite's write lock serialises them; this connection waits for that lock in
//! short steps (see [`busy`]) rather than SQLite's default of whole milliseconds.

use crate::{StoreError, StoreResult};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent, GENESIS_HASH};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Appends committed together at most.
const MAX_GROUP: usize = 256;

struct Request {
    draft: AuditDraft,
    now: UnixMillis,
    done: oneshot::Sender<StoreResult<AuditEvent>>,
}

/// The handle appenders use; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    requests: mpsc::Sender<Request>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("audit writer: {e}"))
}

/// Wait for SQLite's write lock in steps of tens of microseconds (a competing transaction
/// holds it for about that long), up to ten seconds, then give up (the append fails).
fn busy(attempt: i32) -> bool {
    let step = if attempt < 200 { 20 } else { 500 };
    std::thread::sleep(Duration::from_micros(step));
    attempt < 200 + 20_000
}

impl AuditWriter {
    /// Open a second connection on the (already migrated) database file and start the
    /// thread. Durability as for every connection of the store: WAL, `synchronous = FULL`.
    pub(crate) fn start(path: &Path) -> StoreResult<Self> {
        let connection = rusqlite::Connection::open(path).map_err(backend)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
            )
            .map_err(backend)?;
        connection.busy_handler(Some(busy)).map_err(backend)?;
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(connection, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the audit writer: {e}")))?;
        Ok(Self { requests })
    }

    /// Append one event; returns once it is durable.
    pub(crate) async fn append(
        &self,
        draft: AuditDraft,
        now: UnixMillis,
    ) -> StoreResult<AuditEvent> {
        let stopped = || StoreError::Unavailable("the audit writer stopped".into());
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request { draft, now, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn run(mut connection: rusqlite::Connection, queue: mpsc::Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        if group.len() > 1 {
            let drafts: Vec<_> = group.iter().map(|r| (&r.draft, r.now)).collect();
            if let Ok(events) = commit(&mut connection, &drafts) {
                for (request, event) in group.into_iter().zip(events) {
                    let _ = request.done.send(Ok(event));
                }
                continue;
            }
        }
        // Alone (or retried one by one after a failed group), so one refused event fails
        // alone and the others are unaffected.
        for request in group {
            let result = commit(&mut connection, &[(&request.draft, request.now)])
                .map(|mut events| events.remove(0));
            let _ = request.done.send(result);
        }
    }
}

/// Append the drafts, in order, in one `BEGIN IMMEDIATE` transaction (the write lock from the
/// start, so each head read stays the head until the commit).
fn commit(
    connection: &mut rusqlite::Connection,
    drafts: &[(&AuditDraft, UnixMillis)],
) -> StoreResult<Vec<AuditEvent>> {
    let tx = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let mut events = Vec::with_capacity(drafts.len());
    for (draft, now) in drafts {
        let head: Option<(i64, String)> = {
            let mut statement = tx
                .prepare_cached(
                    "SELECT seq, hash FROM audit_events WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT 1",
                )
                .map_err(backend)?;
            let mut rows = statement.query([draft.tenant.as_str()]).map_err(backend)?;
            match rows.next().map_err(backend)? {
                Some(row) => Some((row.get(0).map_err(backend)?, row.get(1).map_err(backend)?)),
                None => None,
            }
        };
        let (seq, prev) = head.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
        let event = (*draft).clone().seal(seq, *now, &prev);
        let d = &event.draft;
        tx.prepare_cached(crate::sql::INSERT_EVENT)
            .map_err(backend)?
            .execute(rusqlite::params![
                d.tenant.as_str(),
                event.seq,
                event.time,
                d.actor.as_str(),
                d.session.as_deref(),
                d.kind.as_str(),
                d.resource.as_deref(),
                d.decision.as_deref(),
                d.receipt_id.as_deref(),
                d.args_hash.as_deref(),
                d.detail.to_string(),
                event.prev_hash.as_str(),
                event.hash.as_str(),
            ])
            .map_err(backend)?;
        events.push(event);
    }
    tx.commit().map_err(backend)?;
    Ok(events)
}
