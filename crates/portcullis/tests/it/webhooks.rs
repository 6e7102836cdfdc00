//! Outbound webhooks against a real receiver on loopback: Standard Webhooks signatures checked
//! by our verifier and by the PyPI `standardwebhooks` package, the retry schedule and
//! `Retry-After` under the manual clock, 3xx and 410, continuous failure, egress refusal,
//! redelivery with the same `webhook-id`, secret rotation, tenant isolation, bad input, and a
//! SIGKILL in the middle of a delivery.

use crate::support::*;
use axum::body::Bytes;
use axum::http::HeaderMap;
use portcullis_core::webhook::{self, SigningSecret};
use portcullis_server::admin::webhooks::{DeliveriesQuery, EndpointIn, EndpointWithSecret};
use portcullis_store::DeliveryState;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Never answer (until the receiver is dropped).
    pub hang: bool,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            hang: false,
        }
    }

    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A webhook receiver on loopback: records every request, answers from a script per path
/// (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<std::collections::HashMap<String, VecDeque<Reply>>>>,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<std::collections::HashMap<String, VecDeque<Reply>>>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (got, script) = (g.clone(), s.clone());
                async move {
                    let path = uri.path().to_owned();
                    got.lock().unwrap().push(Received {
                        path: path.clone(),
                        headers,
                        body,
                    });
                    let reply = script
                        .lock()
                        .unwrap()
                        .get_mut(&path)
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_else(|| Reply::status(200));
                    if reply.hang {
                        std::future::pending::<()>().await;
                    }
                    let mut response = axum::response::Response::new(axum::body::Body::from("ok"));
                    *response.status_mut() =
                        axum::http::StatusCode::from_u16(reply.status).unwrap();
                    for (name, value) in reply.headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base,
            got,
            script,
            _server: Arc::new(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answer the next requests to `path` like this, in order.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Wait until `path` got at least `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        eventually(&format!("{n} requests at {path}"), || async {
            self.received(path).len() >= n
        })
        .await;
        self.received(path)
    }
}

fn endpoint(url: String, events: &[&str]) -> EndpointIn {
    EndpointIn {
        url,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        description: "test".into(),
    }
}

fn secret_of(created: &EndpointWithSecret) -> SigningSecret {
    SigningSecret::parse(created.secret.expose_secret()).expect("a whsec_ secret")
}

/// Our own verifier accepts the request under `secrets` (now = its own timestamp).
fn verify(received: &Received, secrets: &[&SigningSecret]) -> Result<(), webhook::VerifyError> {
    let ts: i64 = received.header("webhook-timestamp").parse().unwrap_or(0);
    webhook::verify(
        secrets,
        received.id(),
        received.header("webhook-timestamp"),
        received.header("webhook-signature"),
        &received.body,
        ts,
        300,
    )
}

/// The PyPI `standardwebhooks` package accepts each request with `secret` (skipped, with a
/// note, where the independent checkers are not installed; required in CI).
fn verify_independently(received: &[Received], secret: &SigningSecret) {
    let py = match std::env::var("PORTCULLIS_TEST_INDEPENDENT_PYTHON") {
        Ok(py) if !py.is_empty() => py,
        _ => {
            assert!(
                std::env::var_os("PORTCULLIS_TEST_REQUIRE_INDEPENDENT").is_none(),
                "PORTCULLIS_TEST_REQUIRE_INDEPENDENT is set but PORTCULLIS_TEST_INDEPENDENT_PYTHON is not"
            );
            eprintln!("standardwebhooks check not run: set PORTCULLIS_TEST_INDEPENDENT_PYTHON");
            return;
        }
    };
    let accept: Vec<Value> = received
        .iter()
        .map(|r| {
            json!({
                "secrets": [secret.to_text().as_str()],
                "id": r.id(),
                "timestamp": r.header("webhook-timestamp"),
                "signature": r.header("webhook-signature"),
                "body": String::from_utf8(r.body.to_vec()).unwrap(),
            })
        })
        .collect();
    let input = json!({ "accept": accept, "reject": [], "sign": [] });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../independent/check.py");
    let mut child = std::process::Command::new(py)
        .args([script, "webhooks"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the independent checker");
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        input.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refuses our signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["accepted"], received.len(), "{result}");
}

fn refund(amount_cents: i64) -> Value {
    json!({ "customer_id": "c_1", "amount_cents": amount_cents, "reason": "webhook-secret-reason-8812" })
}

async fn fast_app() -> TestApp {
    TestApp::spawn_with(|c| c.webhooks.poll_interval_ms = 20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_decided_executed_and_checkpointed_arrive_signed_and_verifiable() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    let created = app
        .admin_api()
        .create_webhook("acme", &endpoint(receiver.url("/all"), &["*"]))
        .await
        .expect("create an endpoint");
    let secret = secret_of(&created);
    assert_eq!(created.endpoint.status, "enabled");
    assert!(created.secret.expose_secret().starts_with("whsec_"));

    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(2500)).await);
    app.approve(&acme, &id).await;
    let executed = client.call("crm__issue_refund", refund(2500)).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");

    let types =
        |got: &[Received]| -> Vec<String> { got.iter().map(Received::event_type).collect() };
    eventually("held, decided, executed and a checkpoint", || async {
        let got = types(&receiver.received("/all"));
        [
            "action.held",
            "approval.decided",
            "action.executed",
            "audit.checkpoint",
        ]
        .iter()
        .all(|t| got.iter().any(|g| g == t))
    })
    .await;
    let got = receiver.received("/all");
    for r in &got {
        verify(r, &[&secret]).unwrap_or_else(|e| panic!("our verifier refuses {r:?}: {e}"));
        assert!(r.id().starts_with("msg_"), "{r:?}");
        assert_eq!(r.header("content-type"), "application/json");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("webhook-secret-reason-8812"),
            "arguments never leave in a webhook: {body}"
        );
        assert!(!body.contains(created.secret.expose_secret()));
    }
    let held = got
        .iter()
        .find(|r| r.event_type() == "action.held")
        .unwrap();
    assert_eq!(held.json()["data"]["detail"]["approval"], id.as_str());
    assert_eq!(held.json()["data"]["kind"], "hold");
    let decided = got
        .iter()
        .find(|r| r.event_type() == "approval.decided")
        .unwrap();
    assert_eq!(decided.json()["data"]["decision"], "approve");
    let checkpoint = got
        .iter()
        .find(|r| r.event_type() == "audit.checkpoint")
        .unwrap();
    let note = checkpoint.json()["data"]["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        note.starts_with("portcullis/audit/"),
        "the signed note itself: {note}"
    );
    // A tampered body or another secret fails.
    let mut forged = held.clone();
    forged.body = Bytes::from(String::from_utf8_lossy(&held.body).replace("hold", "deny"));
    assert!(verify(&forged, &[&secret]).is_err());
    assert!(verify(held, &[&SigningSecret::generate()]).is_err());
    verify_independently(&got, &secret);

    // The delivery log: one successful attempt each, with status and latency.
    let deliveries = app
        .admin_api()
        .webhook_deliveries(
            "acme",
            created.endpoint.endpoint.id.as_str(),
            &DeliveriesQuery::default(),
        )
        .await
        .unwrap();
    assert!(deliveries.len() >= 4, "{deliveries:?}");
    for d in &deliveries {
        eventually("each delivery succeeds", || async {
            let shown = app
                .admin_api()
                .webhook_delivery("acme", d.id.as_str())
                .await
                .unwrap();
            shown.delivery.state == DeliveryState::Success
        })
        .await;
        let shown = app
            .admin_api()
            .webhook_delivery("acme", d.id.as_str())
            .await
            .unwrap();
        assert_eq!(shown.attempt_log.len(), 1, "{shown:?}");
        assert_eq!(shown.attempt_log[0].status, Some(200));
        assert_eq!(shown.attempt_log[0].outcome, "success");
    }
    // Nothing said about the secret anywhere but at creation.
    let listed =
        serde_json::to_string(&app.admin_api().list_webhooks("acme").await.unwrap()).unwrap();
    assert!(!listed.contains("whsec_"), "{listed}");
    let secrets = app.admin_api().list_secrets("acme").await.unwrap();
    assert!(
        secrets
            .iter()
            .any(|s| s.name == format!("webhook.{}", created.endpoint.endpoint.id)),
        "the signing secret lives in the vault: {secrets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_on_the_schedule_with_jitter_and_retry_after_and_keep_their_webhook_id() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    receiver.script(
        "/flaky",
        vec![
            Reply::status(503).with("retry-after", "120"),
            Reply::status(500),
            Reply::status(302).with("location", receiver.url("/elsewhere")),
            Reply::status(200),
        ],
    );
    let created = app
        .admin_api()
        .create_webhook(
            "acme",
            &endpoint(receiver.url("/flaky"), &["connection.revoked"]),
        )
        .await
        .unwrap();
    let endpoint_id = created.endpoint.endpoint.id.to_string();
    let t0 = app.clock.now();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();

    let first = receiver.wait_for("/flaky", 1).await;
    let delivery = |app: &TestApp| {
        let api = app.admin_api().clone();
        let endpoint_id = endpoint_id.clone();
        async move {
            let list = api
                .webhook_deliveries("acme", &endpoint_id, &DeliveriesQuery::default())
                .await
                .unwrap();
            assert_eq!(list.len(), 1, "one message, one delivery: {list:?}");
            api.webhook_delivery("acme", list[0].id.as_str())
                .await
                .unwrap()
        }
    };
    eventually("the first attempt is recorded", || async {
        delivery(&app).await.attempt_log.len() == 1
    })
    .await;
    // 503 with Retry-After: 120 s, later than the schedule's 5 s (plus jitter).
    let shown = delivery(&app).await;
    assert_eq!(shown.delivery.state, DeliveryState::Pending);
    assert_eq!(shown.delivery.next_attempt_at, t0 + 120_000, "{shown:?}");
    assert_eq!(shown.attempt_log[0].status, Some(503));
    assert_eq!(shown.attempt_log[0].outcome, "retry");

    app.clock.advance(120_000);
    receiver.wait_for("/flaky", 2).await;
    eventually("the second attempt is recorded", || async {
        delivery(&app).await.attempt_log.len() == 2
    })
    .await;
    // 500: the schedule's second delay, 15 s plus up to a quarter of jitter.
    let shown = delivery(&app).await;
    let wait = shown.delivery.next_attempt_at - (t0 + 120_000);
    assert!(
        (15_000..18_750).contains(&wait),
        "second retry after {wait} ms"
    );

    app.clock.advance(wait);
    receiver.wait_for("/flaky", 3).await;
    eventually("the 3xx attempt is recorded", || async {
        delivery(&app).await.attempt_log.len() == 3
    })
    .await;
    let shown = delivery(&app).await;
    assert_eq!(shown.attempt_log[2].status, Some(302));
    assert_eq!(
        shown.attempt_log[2].outcome, "retry",
        "3xx counts as a failure"
    );
    assert!(
        receiver.received("/elsewhere").is_empty(),
        "redirects are not followed"
    );

    app.clock
        .advance(shown.delivery.next_attempt_at - app.clock.now());
    let all = receiver.wait_for("/flaky", 4).await;
    eventually("the delivery succeeds", || async {
        delivery(&app).await.delivery.state == DeliveryState::Success
    })
    .await;
    let ids: std::collections::BTreeSet<&str> = all.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 1, "one webhook-id on every attempt: {ids:?}");
    assert_eq!(first[0].id(), all[3].id());
    // Each attempt is signed anew with its own timestamp.
    let secret = secret_of(&created);
    for r in &all {
        verify(r, &[&secret]).unwrap();
    }
    assert_ne!(
        all[0].header("webhook-timestamp"),
        all[3].header("webhook-timestamp")
    );
    let outcomes: Vec<(Option<u16>, String)> = delivery(&app)
        .await
        .attempt_log
        .iter()
        .map(|a| (a.status, a.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (Some(503), "retry".into()),
            (Some(500), "retry".into()),
            (Some(302), "retry".into()),
            (Some(200), "success".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_jittered_between_endpoints() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let path = format!("/j{i}");
        receiver.script(&path, vec![Reply::status(500)]);
        let created = app
            .admin_api()
            .create_webhook(
                "acme",
                &endpoint(receiver.url(&path), &["connection.revoked"]),
            )
            .await
            .unwrap();
        ids.push(created.endpoint.endpoint.id.to_string());
    }
    let t0 = app.clock.now();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    let mut delays = Vec::new();
    for id in &ids {
        let next = std::sync::atomic::AtomicI64::new(0);
        eventually("a failed first attempt", || async {
            let list = app
                .admin_api()
                .webhook_deliveries("acme", id, &DeliveriesQuery::default())
                .await
                .unwrap();
            let Some(first) = list.first() else {
                return false;
            };
            let shown = app
                .admin_api()
                .webhook_delivery("acme", first.id.as_str())
                .await
                .unwrap();
            // Claimed attempts count at once; only a recorded one has its retry set.
            let at =
                if shown.attempt_log.len() == 1 && shown.delivery.state == DeliveryState::Pending {
                    shown.delivery.next_attempt_at
                } else {
                    0
                };
            next.store(at, std::sync::atomic::Ordering::SeqCst);
            at > 0
        })
        .await;
        let next = next.load(std::sync::atomic::Ordering::SeqCst);
        delays.push(next - t0);
    }
    for d in &delays {
        assert!(
            (5_000..6_250).contains(d),
            "first retry after {d} ms: {delays:?}"
        );
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 1, "jitter spreads the retries: {delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_and_tells_the_others() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    receiver.script("/gone/xoxb-s3cr3t", vec![Reply::status(410)]);
    let gone = app
        .admin_api()
        .create_webhook("acme", &endpoint(receiver.url("/gone/xoxb-s3cr3t"), &["*"]))
        .await
        .unwrap();
    let watcher = app
        .admin_api()
        .create_webhook(
            "acme",
            &endpoint(receiver.url("/watch"), &["webhook.endpoint_disabled"]),
        )
        .await
        .unwrap();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    let told = receiver.wait_for("/watch", 1).await;
    assert_eq!(told[0].event_type(), "webhook.endpoint_disabled");
    let gone_id = gone.endpoint.endpoint.id.to_string();
    assert_eq!(
        told[0].json()["data"]["resource"],
        format!("webhook:{gone_id}")
    );
    verify(&told[0], &[&secret_of(&watcher)]).unwrap();
    let shown = app.admin_api().webhook("acme", &gone_id).await.unwrap();
    assert_eq!(shown.status, "disabled");
    assert!(shown.endpoint.disabled_reason.unwrap().contains("410"));
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(
        events_of_kind(&events, "webhook_endpoint_disabled").len(),
        1
    );
    // The endpoint's URL may hold its secret (chat webhooks do): neither the audit trail nor
    // the notification to the other endpoints carries more than its scheme, host and port.
    assert_eq!(
        events_of_kind(&events, "webhook_endpoint_disabled")[0]["detail"]["destination"],
        receiver.base
    );
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("xoxb-s3cr3t")
    );
    assert!(!String::from_utf8_lossy(&told[0].body).contains("xoxb-s3cr3t"));
    // Nothing more goes to a disabled endpoint, and redelivery is refused until it is
    // enabled again.
    let list = app
        .admin_api()
        .webhook_deliveries("acme", &gone_id, &DeliveriesQuery::default())
        .await
        .unwrap();
    assert_eq!(list[0].state, DeliveryState::Failed);
    let refused = app
        .admin_api()
        .redeliver_webhook("acme", list[0].id.as_str())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("disabled"), "{refused}");
    app.admin_api()
        .enable_webhook("acme", &gone_id)
        .await
        .unwrap();
    app.admin_api()
        .redeliver_webhook("acme", list[0].id.as_str())
        .await
        .unwrap();
    let again = receiver.wait_for("/gone/xoxb-s3cr3t", 2).await;
    assert_eq!(
        again[0].id(),
        again[1].id(),
        "a redelivery is the same message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_the_disable_period_is_disabled() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_with(|c| {
        c.webhooks.poll_interval_ms = 20;
        c.webhooks.disable_after_secs = 60;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    receiver.script("/down", vec![Reply::status(500); 5]);
    let created = app
        .admin_api()
        .create_webhook(
            "acme",
            &endpoint(receiver.url("/down"), &["connection.revoked"]),
        )
        .await
        .unwrap();
    let id = created.endpoint.endpoint.id.to_string();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    receiver.wait_for("/down", 1).await;
    eventually("failing since the first attempt", || async {
        app.admin_api()
            .webhook("acme", &id)
            .await
            .unwrap()
            .endpoint
            .failing_since
            .is_some()
    })
    .await;
    assert_eq!(
        app.admin_api().webhook("acme", &id).await.unwrap().status,
        "enabled"
    );
    app.clock.advance(61_000);
    receiver.wait_for("/down", 2).await;
    eventually("disabled after failing for the period", || async {
        app.admin_api().webhook("acme", &id).await.unwrap().status == "disabled"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_the_egress_policy_refuses_is_blocked_and_audited() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    let created = app
        .admin_api()
        .create_webhook(
            "acme",
            &endpoint(receiver.url("/blocked"), &["connection.revoked"]),
        )
        .await
        .unwrap();
    // The tenant narrows its egress afterwards: loopback is no longer among its hosts.
    app.admin_api()
        .set_tenant_egress(
            "acme",
            &portcullis_server::admin::tenants::EgressHosts {
                hosts: vec!["hooks.example.com".into()],
            },
        )
        .await
        .unwrap();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    let id = created.endpoint.endpoint.id.to_string();
    eventually("the delivery is blocked", || async {
        let list = app
            .admin_api()
            .webhook_deliveries("acme", &id, &DeliveriesQuery::default())
            .await
            .unwrap();
        list.first()
            .is_some_and(|d| d.state == DeliveryState::Blocked)
    })
    .await;
    assert!(receiver.received("/blocked").is_empty(), "nothing was sent");
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    let refusals = events_of_kind(&events, "egress_refused");
    assert!(
        refusals
            .iter()
            .any(|e| e["resource"] == format!("webhook:{id}")),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_during_the_grace_period_only() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    let created = app
        .admin_api()
        .create_webhook("acme", &endpoint(receiver.url("/rot"), &["action.held"]))
        .await
        .unwrap();
    let old = secret_of(&created);
    let id = created.endpoint.endpoint.id.to_string();
    let rotated = app
        .admin_api()
        .rotate_webhook_secret("acme", &id)
        .await
        .unwrap();
    let new = secret_of(&rotated);
    assert_ne!(
        created.secret.expose_secret(),
        rotated.secret.expose_secret()
    );
    let until = rotated.previous_valid_until.expect("a grace period");
    assert_eq!(until, app.clock.now() + 86_400_000);

    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client.call("crm__issue_refund", refund(100)).await;
    let got = receiver.wait_for("/rot", 1).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    verify(&got[0], &[&old]).expect("the previous secret still verifies");
    verify(&got[0], &[&new]).expect("the new secret verifies");
    verify_independently(&got[..1], &old);
    verify_independently(&got[..1], &new);

    // After the grace period only the new secret signs.
    app.clock.advance(86_400_001);
    let second = approval_id(&client.call("crm__issue_refund", refund(200)).await);
    let got = receiver.wait_for("/rot", 2).await;
    let last = &got[1];
    assert_eq!(last.json()["data"]["detail"]["approval"], second.as_str());
    assert_eq!(last.header("webhook-signature").split(' ').count(), 1);
    verify(last, &[&new]).unwrap();
    assert!(verify(last, &[&old]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_by_cli_sends_the_same_message_again() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    let out = app
        .cli_as(
            &app.admin_token,
            &[
                "webhooks",
                "add",
                "--tenant",
                "acme",
                &receiver.url("/cli"),
                "--event",
                "connection.revoked",
            ],
        )
        .await;
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stdout.contains("signing secret (shown once): whsec_"),
        "{}",
        out.stdout
    );
    let id = app.admin_api().list_webhooks("acme").await.unwrap()[0]
        .endpoint
        .id
        .to_string();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    let first = receiver.wait_for("/cli", 1).await;
    let delivery = app
        .admin_api()
        .webhook_deliveries("acme", &id, &DeliveriesQuery::default())
        .await
        .unwrap()[0]
        .id
        .to_string();
    eventually("the first delivery succeeds", || async {
        app.admin_api()
            .webhook_delivery("acme", &delivery)
            .await
            .unwrap()
            .delivery
            .state
            == DeliveryState::Success
    })
    .await;
    let out = app
        .cli_as(
            &app.admin_token,
            &["webhooks", "redeliver", "--tenant", "acme", &delivery],
        )
        .await;
    assert!(out.ok(), "{out:?}");
    let again = receiver.wait_for("/cli", 2).await;
    assert_eq!(first[0].id(), again[1].id());
    assert_eq!(first[0].body, again[1].body);
    let out = app
        .cli_as(
            &app.admin_token,
            &["webhooks", "deliveries", "--tenant", "acme", &id],
        )
        .await;
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    let out = app
        .cli_as(
            &app.admin_token,
            &["webhooks", "delivery", "--tenant", "acme", &delivery],
        )
        .await;
    assert!(
        out.stdout.contains("#1") && out.stdout.contains("200"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_and_changes_nothing_and_bad_input_changes_nothing() {
    let receiver = Receiver::start().await;
    let app = fast_app().await;
    let acme = app.seed_tenant("acme").await;
    app.seed_tenant("globex").await;
    let created = app
        .admin_api()
        .create_webhook(
            "acme",
            &endpoint(receiver.url("/iso"), &["connection.revoked"]),
        )
        .await
        .unwrap();
    let id = created.endpoint.endpoint.id.to_string();
    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    receiver.wait_for("/iso", 1).await;
    let delivery = app
        .admin_api()
        .webhook_deliveries("acme", &id, &DeliveriesQuery::default())
        .await
        .unwrap()[0]
        .id
        .to_string();

    // A globex admin, naming acme's ids under its own tenant or acme's.
    let globex_admin = app
        .admin_api()
        .create_admin(&portcullis_server::admin::humans::AdminIn {
            name: "globex-admin".into(),
            role: "admin".into(),
            tenant: Some("globex".into()),
            ttl_secs: None,
        })
        .await
        .unwrap();
    let g = app.api_as(&globex_admin.token);
    for result in [
        g.webhook("globex", &id).await.map(drop),
        g.webhook("acme", &id).await.map(drop),
        g.webhook_delivery("globex", &delivery).await.map(drop),
        g.redeliver_webhook("globex", &delivery).await.map(drop),
        g.disable_webhook("globex", &id).await.map(drop),
        g.delete_webhook("globex", &id).await.map(drop),
        g.rotate_webhook_secret("globex", &id).await.map(drop),
    ] {
        let err = result.expect_err("another tenant's webhook is not found");
        assert!(err.to_string().contains("not_found"), "{err}");
    }
    assert!(g.list_webhooks("globex").await.unwrap().is_empty());
    // An approver may not manage webhooks.
    let err = app
        .api_as(&acme.approver_token)
        .list_webhooks("acme")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");

    // Bad input: refused with a reason, nothing created.
    for (url, events, why) in [
        (receiver.url("/x"), vec!["nope"], "unknown"),
        (receiver.url("/x"), vec![], "event"),
        (
            "http://169.254.169.254/latest".to_owned(),
            vec!["*"],
            "egress",
        ),
        ("ftp://example.com/".to_owned(), vec!["*"], "egress"),
        ("not a url".to_owned(), vec!["*"], "egress"),
    ] {
        let err = app
            .admin_api()
            .create_webhook("acme", &endpoint(url.clone(), &events))
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("bad_request") && err.to_string().contains(why),
            "{url}: {err}"
        );
    }
    let (status, _) = app
        .api(
            reqwest::Method::POST,
            "/tenants/acme/webhooks",
            &app.admin_token,
            Some(json!({ "url": receiver.url("/x"), "events": ["*"], "secret": "whsec_mine" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
    assert_eq!(
        app.admin_api().list_webhooks("acme").await.unwrap().len(),
        1
    );
    let err = app
        .admin_api()
        .webhook("acme", "whe_nonsense")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_interrupted_by_sigkill_arrives_after_restart_with_the_same_id() {
    let receiver = Receiver::start().await;
    // The first attempt never gets an answer: the gateway is killed while it waits.
    receiver.script("/kill", vec![Reply::hang()]);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let db = TestDatabase::create(Backend::from_env()).await;
    let mut env = db.env();
    env.extend([
        (
            "PORTCULLIS_EGRESS__ALLOW_PRIVATE",
            "[\"127.0.0.1/32\"]".to_owned(),
        ),
        ("PORTCULLIS_WEBHOOKS__TIMEOUT_SECS", "2".to_owned()),
        ("PORTCULLIS_WEBHOOKS__POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let http = reqwest::Client::new();
    let mut first = ServeProcess::start_with(root.path(), &data, None, &env).await;
    let admin = first.admin_token.clone().unwrap();
    let api = AdminClient::with_http(http.clone(), &first.base, &admin);
    let acme = seed_tenant_at(&api, root.path(), "acme").await;
    let created = api
        .create_webhook(
            "acme",
            &endpoint(
                receiver.url("/kill"),
                &["connection.revoked", "guardrail.changed"],
            ),
        )
        .await
        .unwrap();
    let secret = secret_of(&created);
    api.revoke_connection("acme", &acme.connection_id)
        .await
        .unwrap();
    let hung = receiver.wait_for("/kill", 1).await;
    first.kill().await;

    let second = ServeProcess::start_with(root.path(), &data, None, &env).await;
    let got = receiver.wait_for("/kill", 2).await;
    assert_eq!(
        hung[0].id(),
        got[1].id(),
        "the same webhook-id after the crash"
    );
    assert_eq!(hung[0].body, got[1].body);
    verify(&got[1], &[&secret]).unwrap();
    let api = AdminClient::with_http(http, &second.base, &admin);
    let id = created.endpoint.endpoint.id.to_string();
    eventually("the delivery succeeds after the restart", || async {
        let list = api
            .webhook_deliveries("acme", &id, &DeliveriesQuery::default())
            .await
            .unwrap();
        list.len() == 1 && list[0].state == DeliveryState::Success && list[0].attempts == 2
    })
    .await;
}
