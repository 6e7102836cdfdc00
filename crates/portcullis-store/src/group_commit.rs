//! Group commit for audit appends, shared by both backends: concurrent appends wait on one
//! writer task that commits whatever is queued in one transaction (one fsync), and each caller
//! is answered only after the commit that holds its event. A failing group is retried member
//! by member, so one refused event fails alone and the others are unaffected.

use crate::{StoreError, StoreResult};
use portcullis_core::UnixMillis;
use portcullis_core::audit::{AuditDraft, AuditEvent};
use std::future::Future;
use tokio::sync::{mpsc, oneshot};

/// Appends committed together at most.
const MAX_GROUP: usize = 256;

struct Request {
    draft: AuditDraft,
    now: UnixMillis,
    done: oneshot::Sender<StoreResult<AuditEvent>>,
}

/// The handle appenders use; the writer task lives as long as any handle.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    requests: mpsc::Sender<Request>,
}

impl GroupCommit {
    /// Start the writer. `commit` appends the drafts, in order, in one transaction.
    pub(crate) fn spawn<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<(AuditDraft, UnixMillis)>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<Vec<AuditEvent>>> + Send + 'static,
    {
        let (requests, receiver) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(writer(receiver, commit));
        Self { requests }
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
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn writer<F, Fut>(mut receiver: mpsc::Receiver<Request>, commit: F)
where
    F: Fn(Vec<(AuditDraft, UnixMillis)>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<AuditEvent>>>,
{
    while let Some(first) = receiver.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        if group.len() > 1 {
            let drafts = group.iter().map(|r| (r.draft.clone(), r.now)).collect();
            if let Ok(events) = commit(drafts).await {
                for (request, event) in group.into_iter().zip(events) {
                    let _ = request.done.send(Ok(event));
                }
                continue;
            }
        }
        for request in group {
            let result = commit(vec![(request.draft, request.now)]).await;
            let _ = request.done.send(result.map(|mut events| events.remove(0)));
        }
    }
}
