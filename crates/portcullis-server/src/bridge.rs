//! Multi round-trip bridge: an agent on 2026-07-28 cannot be sent requests, so when an upstream
//! (which the gateway speaks to in the earlier revision) asks for sampling or elicitation in
//! the middle of that agent's call, the call is suspended and the agent gets an
//! input-required result naming the question. Its retry — the same call with the answers and
//! the echoed `requestState` — hands the answers to the waiting upstream and goes on waiting.
//!
//! `requestState` is an opaque random handle to state kept here (never data the agent could
//! forge): it is good for one retry, by the same agent of the same tenant, for the same tool
//! and arguments, within the call timeout; a new one is issued for every round.

use crate::upstream::Question;
use portcullis_core::id::{AgentId, TenantId};
use rmcp::model::{InputRequests, InputResponses};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Who may resume a suspended call, and which call it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub tenant: TenantId,
    pub agent: AgentId,
    /// Hash of the tool name the agent used and its canonical arguments.
    pub call: String,
}

/// How a bridged call stands after a wait.
pub enum Waited<T> {
    /// The upstream answered.
    Done(T),
    /// The upstream asked the agent something: answer, then retry with this state.
    NeedsInput {
        request_state: String,
        requests: InputRequests,
    },
    /// The detached call ended without a result (it panicked).
    Lost,
}

/// Why a retry cannot resume anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Unknown, used, expired, another agent's, or another call's state: one answer for all.
    #[error("requestState is unknown, used, expired or not this call's")]
    Unknown,
    /// The answers do not answer what was asked.
    #[error("inputResponses must answer every input request, by its key")]
    Unanswered,
}

struct Suspended<T> {
    owner: Owner,
    expires: Instant,
    done: oneshot::Receiver<T>,
    questions: mpsc::UnboundedReceiver<Question>,
    /// Where each asked question's answer goes, by the key the agent saw.
    answers: HashMap<String, oneshot::Sender<Result<serde_json::Value, String>>>,
}

/// The suspended calls of this process.
pub struct Bridges<T> {
    suspended: Arc<Mutex<HashMap<String, Suspended<T>>>>,
    ttl: Duration,
}

impl<T: Send + 'static> Bridges<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            suspended: Arc::default(),
            ttl,
        }
    }

    /// Run `call` detached from the agent's HTTP request (it may outlive it by rounds) and
    /// wait for its end or its first question. `questions` is the channel the upstream's
    /// requests arrive on for this call.
    pub async fn start(
        &self,
        owner: Owner,
        call: impl std::future::Future<Output = T> + Send + 'static,
        questions: mpsc::UnboundedReceiver<Question>,
    ) -> Waited<T> {
        let (finished, done) = oneshot::channel();
        tokio::spawn(async move {
            let _ = finished.send(call.await);
        });
        self.wait(Suspended {
            owner,
            expires: Instant::now() + self.ttl,
            done,
            questions,
            answers: HashMap::new(),
        })
        .await
    }

    /// Resume the call `request_state` suspended, with the agent's answers.
    pub async fn resume(
        &self,
        owner: &Owner,
        request_state: &str,
        responses: InputResponses,
    ) -> Result<Waited<T>, ResumeError> {
        let mut suspended = {
            let mut map = self.suspended.lock().expect("lock poisoned");
            match map.get(request_state) {
                Some(s) if s.expires <= Instant::now() => return Err(ResumeError::Unknown),
                Some(s) if s.owner == *owner => {}
                _ => return Err(ResumeError::Unknown),
            }
            if map
                .get(request_state)
                .is_some_and(|s| s.answers.keys().any(|k| !responses.contains_key(k)))
            {
                return Err(ResumeError::Unanswered);
            }
            map.remove(request_state).ok_or(ResumeError::Unknown)?
        };
        let mut responses = responses;
        for (key, answer) in suspended.answers.drain() {
            let value = responses
                .remove(&key)
                .ok_or_else(|| "the agent gave no answer".to_owned());
            let _ = answer.send(value);
        }
        suspended.expires = Instant::now() + self.ttl;
        Ok(self.wait(suspended).await)
    }

    async fn wait(&self, mut suspended: Suspended<T>) -> Waited<T> {
        tokio::select! {
            // The call ends (also when an unanswered question made the upstream give up).
            result = &mut suspended.done => match result {
                Ok(value) => Waited::Done(value),
                Err(_) => Waited::Lost,
            },
            Some(question) = suspended.questions.recv() => {
                let key = format!("q{}", suspended.answers.len() + 1);
                let mut requests = InputRequests::new();
                requests.insert(key.clone(), question.request);
                suspended.answers.insert(key, question.answer);
                let request_state = hex::encode(portcullis_core::random_bytes::<32>());
                let expires = suspended.expires;
                self.suspended
                    .lock()
                    .expect("lock poisoned")
                    .insert(request_state.clone(), suspended);
                // An agent that never retries: the suspended call is dropped when it lapses,
                // which tells the waiting upstream that no answer is coming.
                let map = Arc::downgrade(&self.suspended);
                let key = request_state.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(expires).await;
                    if let Some(map) = map.upgrade() {
                        let mut map = map.lock().expect("lock poisoned");
                        if map.get(&key).is_some_and(|s| s.expires <= Instant::now()) {
                            map.remove(&key);
                        }
                    }
                });
                Waited::NeedsInput { request_state, requests }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::InputRequest;

    fn owner(call: &str) -> Owner {
        Owner {
            tenant: TenantId::system(),
            agent: AgentId::generate(),
            call: call.to_owned(),
        }
    }

    /// A call that asks one question and ends with the answer (or with why there is none).
    fn asking() -> (
        impl std::future::Future<Output = Result<serde_json::Value, String>> + Send + 'static,
        mpsc::UnboundedReceiver<Question>,
    ) {
        let (questions, asked) = mpsc::unbounded_channel();
        let call = async move {
            let (answer, answered) = oneshot::channel();
            #[expect(deprecated, reason = "roots are still part of both revisions")]
            let request = InputRequest::ListRoots(rmcp::model::ListRootsRequest::default());
            questions
                .send(Question { request, answer })
                .map_err(|_| "gone".to_owned())?;
            answered.await.map_err(|_| "no answer came".to_owned())?
        };
        (call, asked)
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_question_lapses_and_its_call_ends() {
        let bridges = Bridges::new(Duration::from_secs(60));
        let (call, asked) = asking();
        let who = owner("c");
        let Waited::NeedsInput { request_state, .. } =
            bridges.start(who.clone(), call, asked).await
        else {
            panic!("the call asks first");
        };
        // Nobody retries: after the call timeout the state is gone, and the upstream hears
        // that no answer is coming.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(
            bridges.suspended.lock().unwrap().is_empty(),
            "the lapsed call is dropped"
        );
        assert_eq!(
            bridges
                .resume(&who, &request_state, InputResponses::new())
                .await
                .err(),
            Some(ResumeError::Unknown)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_owner_resumes_once_with_every_answer() {
        let bridges = Bridges::new(Duration::from_secs(60));
        let (call, asked) = asking();
        let who = owner("c");
        let Waited::NeedsInput {
            request_state,
            requests,
        } = bridges.start(who.clone(), call, asked).await
        else {
            panic!("the call asks first");
        };
        let key = requests.keys().next().expect("a question").clone();
        let answers: InputResponses = [(key, serde_json::json!({ "roots": [] }))].into();
        let other_call = Owner {
            call: "d".into(),
            ..who.clone()
        };
        let other_agent = owner("c");
        for intruder in [&other_call, &other_agent] {
            let refused = bridges
                .resume(intruder, &request_state, answers.clone())
                .await;
            assert_eq!(refused.err(), Some(ResumeError::Unknown));
        }
        let unanswered = bridges
            .resume(&who, &request_state, InputResponses::new())
            .await;
        assert_eq!(unanswered.err(), Some(ResumeError::Unanswered));
        let Ok(Waited::Done(result)) = bridges.resume(&who, &request_state, answers.clone()).await
        else {
            panic!("the owner's answer finishes the call");
        };
        assert_eq!(result, Ok(serde_json::json!({ "roots": [] })));
        let again = bridges.resume(&who, &request_state, answers).await;
        assert_eq!(
            again.err(),
            Some(ResumeError::Unknown),
            "one retry per state"
        );
    }
}
