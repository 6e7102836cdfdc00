//! Inbound webhooks: GitHub-style and Standard Webhooks signatures verified before anything
//! is kept (JSON or form-encoded), stale timestamps refused, replays refused by delivery id
//! and by what the signature covers, a failed verification audited and counted as a failed
//! authentication (towards the address's lockout, like a wrong token) and a replay as a
//! refusal, never with the body or the secret; a tenant's sources and events closed to every
//! other tenant and to tokens scoped elsewhere, a suspended tenant taking nothing, revocation
//! destroying the secret and freeing the name, bad input refused without side effects, and
//! `portcullis inbound add/list/revoke`.

use crate::support::*;
use portcullis_core::webhook::{SigningSecret, hub_sha256, sign};
use portcullis_server::admin::humans::AdminIn;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::tokens::TokenIn;
use portcullis_server::admin::webhooks::SourceIn;
use portcullis_store::{InboundScheme, InboundSource};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

/// A GitHub-style shared secret, as someone would paste it into GitHub's settings.
const GITHUB_SECRET: &str = "It's a Secret to Everybody, 2024!";
/// Another secret of a valid length: what a forger might guess.
const WRONG_SECRET: &str = "not the secret anyone configured";

// ---- helpers

/// A value that must never show up in the audit trail (it is only ever in bodies).
fn marker() -> String {
    format!(
        "body-marker-{}",
        &portcullis_core::id::TenantId::generate().as_str()[4..]
    )
}

fn source_in(name: &str, scheme: InboundScheme, secret: &str, tolerance: Option<u32>) -> SourceIn {
    SourceIn {
        name: name.into(),
        scheme,
        secret: secret.to_owned().into(),
        tolerance_secs: tolerance,
    }
}

async fn add_source(
    app: &TestApp,
    tenant: &str,
    name: &str,
    scheme: InboundScheme,
    secret: &str,
    tolerance: Option<u32>,
) -> InboundSource {
    app.admin_api()
        .create_inbound_source(tenant, &source_in(name, scheme, secret, tolerance))
        .await
        .unwrap_or_else(|e| panic!("inbound source {name} of {tenant}: {e}"))
}

async fn create_tenant(app: &TestApp, name: &str) {
    app.admin_api()
        .create_tenant(&NameIn { name: name.into() })
        .await
        .unwrap_or_else(|e| panic!("tenant {name}: {e}"));
}

/// A tenant-scoped human with `role`; returns the token.
async fn human(app: &TestApp, name: &str, role: &str, tenant: &str) -> String {
    app.admin_api()
        .create_admin(&AdminIn {
            name: name.into(),
            role: role.into(),
            tenant: Some(tenant.into()),
            ttl_secs: None,
        })
        .await
        .unwrap_or_else(|e| panic!("admin {name}: {e}"))
        .token
}

/// POST a webhook as a sender would: `Content-Type: application/json`, no `Origin`, no
/// credentials, exactly `headers` besides. Returns the status and the JSON answer.
async fn post_hook(
    app: &TestApp,
    tenant: &str,
    source: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    post_hook_as(app, tenant, source, "application/json", headers, body).await
}

/// [`post_hook`] with another `Content-Type`.
async fn post_hook_as(
    app: &TestApp,
    tenant: &str,
    source: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    let path = format!("/t/{tenant}/hooks/{source}");
    let response = send_raw(app, &path, content_type, headers, body).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POST `body` to any path of the gateway with `content_type` and exactly `headers` besides;
/// the whole response.
async fn send_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    tokio::time::timeout(WAIT, request.send())
        .await
        .expect("POST answered in time")
        .expect("gateway reachable")
}

/// POST a webhook and return the status and the `Retry-After` header (in seconds), if any.
async fn post_hook_retry_after(
    app: &TestApp,
    source: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, Option<u64>) {
    let path = format!("/t/acme/hooks/{source}");
    let response = send_raw(app, &path, "application/json", headers, body).await;
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After is not seconds: {v:?}"))
    });
    (response.status(), retry_after)
}

/// `payload=` and the JSON percent-encoded: how GitHub sends a delivery whose content type
/// is set to `application/x-www-form-urlencoded`.
fn form_payload(json: &str) -> String {
    let mut form = String::from("payload=");
    for byte in json.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            form.push(char::from(byte));
        } else {
            form.push_str(&format!("%{byte:02X}"));
        }
    }
    form
}

/// A request's headers besides `Content-Type`.
type Headers = Vec<(&'static str, String)>;

/// GitHub's headers for `body` signed with `secret`.
fn github(secret: &str, body: &[u8], delivery: &str, event: &str) -> Headers {
    vec![
        ("x-hub-signature-256", hub_sha256(secret.as_bytes(), body)),
        ("x-github-delivery", delivery.to_owned()),
        ("x-github-event", event.to_owned()),
    ]
}

/// Standard Webhooks headers for `body` signed with `secret` at `timestamp` (seconds).
fn standard(secret: &SigningSecret, id: &str, timestamp: i64, body: &[u8]) -> Headers {
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, id, timestamp, body)),
    ]
}

/// The gateway's clock, in seconds (Standard Webhooks timestamps).
fn now_secs(app: &TestApp) -> i64 {
    app.clock.now().div_euclid(1000)
}

/// `GET /t/{tenant}/hooks/{source}/events{query}` with `token` (none: no `Authorization`).
async fn read_events(
    app: &TestApp,
    tenant: &str,
    source: &str,
    token: Option<&str>,
    query: &str,
) -> (StatusCode, Value) {
    let mut request = app.http.get(format!(
        "{}/t/{tenant}/hooks/{source}/events{query}",
        app.base
    ));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("gateway reachable");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The events an agent reads from a source (the read must succeed).
async fn events_of(app: &TestApp, tenant: &Tenant, source: &str) -> Vec<Value> {
    let (status, body) =
        read_events(app, &tenant.name, source, Some(&tenant.agent_token), "").await;
    assert_eq!(status, StatusCode::OK, "events of {source}: {body}");
    assert_eq!(body["source"], source, "{body}");
    assert_eq!(body["verified"], true, "{body}");
    body["events"].as_array().expect("events array").clone()
}

/// A refusal of verification: 401 `unverified`, one answer for every reason.
#[track_caller]
fn assert_unverified((status, body): &(StatusCode, Value), what: &str) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(body["error"], "unverified", "{what}: {body}");
}

/// The inbound entries of a tenant's trail, oldest first: what was kept
/// (`inbound_accepted`), what verified but was refused all the same (`inbound_refused`: a
/// replay, a body that is not UTF-8), and the failed authentications of the inbound surface
/// (`auth_failed` on `inbound`: a signature, timestamp or header that did not verify).
struct InboundTrail {
    accepted: Vec<Value>,
    refused: Vec<Value>,
    failed: Vec<Value>,
}

impl InboundTrail {
    /// How many entries were kept, refused and failed.
    fn counts(&self) -> (usize, usize, usize) {
        (self.accepted.len(), self.refused.len(), self.failed.len())
    }
}

async fn inbound_audit(app: &TestApp, tenant: &str) -> InboundTrail {
    let events = app.audit_events(tenant).await;
    let of =
        |kind: &str| -> Vec<Value> { events_of_kind(&events, kind).into_iter().cloned().collect() };
    InboundTrail {
        accepted: of("inbound_accepted"),
        refused: of("inbound_refused"),
        failed: of("auth_failed")
            .into_iter()
            .filter(|e| e["resource"] == "inbound")
            .collect(),
    }
}

/// The `detail.reason` of each entry.
fn reasons(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e["detail"]["reason"]
                .as_str()
                .unwrap_or_else(|| panic!("an entry without a reason: {e}"))
                .to_owned()
        })
        .collect()
}

/// The reasons of a tenant's `inbound_refused` entries, oldest first.
async fn refusal_reasons(app: &TestApp, tenant: &str) -> Vec<String> {
    reasons(&inbound_audit(app, tenant).await.refused)
}

/// The reasons of a tenant's failed inbound authentications, oldest first.
async fn failure_reasons(app: &TestApp, tenant: &str) -> Vec<String> {
    reasons(&inbound_audit(app, tenant).await.failed)
}

/// A failed inbound authentication as the trail keeps it: by the sender's address (the
/// tests send from loopback), on the `inbound` surface, counted towards that address's
/// lockout, the reason naming the source. Returns the reason after the source's name.
#[track_caller]
fn assert_inbound_failure(entry: &Value, source: &str, what: &str) -> String {
    assert_eq!(entry["kind"], "auth_failed", "{what}: {entry}");
    assert_eq!(entry["actor"], "ip:127.0.0.1", "{what}: {entry}");
    assert_eq!(entry["resource"], "inbound", "{what}: {entry}");
    assert_eq!(
        entry["detail"]["counted_as"], "127.0.0.1",
        "{what}: {entry}"
    );
    let reason = entry["detail"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no reason: {entry}"));
    let rest = reason
        .strip_prefix(&format!("inbound `{source}`: "))
        .unwrap_or_else(|| panic!("{what}: the reason does not name `{source}`: {reason}"));
    assert!(!rest.trim().is_empty(), "{what}: an empty reason");
    rest.to_owned()
}

/// How many inbound failures and refusals a test has seen so far in one tenant's trail.
#[derive(Debug, Default)]
struct Tally {
    failed: usize,
    refused: usize,
}

impl Tally {
    /// Assert exactly one more failed authentication (and no more refusals) was audited
    /// since the last step; returns its reason (after the source's name).
    async fn failure(&mut self, app: &TestApp, tenant: &str, source: &str, what: &str) -> String {
        let trail = inbound_audit(app, tenant).await;
        assert_eq!(
            trail.failed.len(),
            self.failed + 1,
            "{what}: one more `auth_failed` entry: {:?}",
            trail.failed
        );
        assert_eq!(
            trail.refused.len(),
            self.refused,
            "{what}: a failed verification is not an `inbound_refused` entry: {:?}",
            trail.refused
        );
        self.failed += 1;
        assert_inbound_failure(trail.failed.last().expect("a failure"), source, what)
    }

    /// Assert exactly one more `inbound_refused` entry (and no more failed authentications)
    /// was audited since the last step; returns its reason.
    async fn refusal(&mut self, app: &TestApp, tenant: &str, source: &str, what: &str) -> String {
        let trail = inbound_audit(app, tenant).await;
        assert_eq!(
            trail.refused.len(),
            self.refused + 1,
            "{what}: one more `inbound_refused` entry: {:?}",
            trail.refused
        );
        assert_eq!(
            trail.failed.len(),
            self.failed,
            "{what}: not a failed authentication: {:?}",
            trail.failed
        );
        self.refused += 1;
        let entry = trail.refused.last().expect("a refusal");
        assert_eq!(entry["resource"], format!("inbound:{source}"), "{entry}");
        let reason = entry["detail"]["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no reason: {entry}"));
        assert!(!reason.trim().is_empty(), "{what}: an empty reason");
        reason.to_owned()
    }
}

/// Assert the whole audit trail of a tenant carries none of `needles`.
async fn assert_not_in_audit(app: &TestApp, tenant: &str, needles: &[&str]) {
    let trail = serde_json::to_string(&app.audit_events(tenant).await).expect("serialise");
    for needle in needles {
        assert!(
            !trail.contains(needle),
            "`{needle}` is in {tenant}'s audit trail"
        );
    }
}

/// The vault names of a tenant's secrets.
async fn secret_names(app: &TestApp, tenant: &str) -> Vec<String> {
    app.admin_api()
        .list_secrets(tenant)
        .await
        .unwrap_or_else(|e| panic!("secrets of {tenant}: {e}"))
        .into_iter()
        .map(|s| s.name)
        .collect()
}

// ---- GitHub-style X-Hub-Signature-256

#[tokio::test]
async fn a_github_signed_delivery_is_kept_once_and_every_forgery_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let source = add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    assert_eq!(
        (source.name.as_str(), source.scheme, source.tolerance_secs),
        ("gh", InboundScheme::Github, 300)
    );
    assert!(source.revoked_at.is_none());

    // Accepted: the body as the agent reads it, the event name, the delivery id.
    let marker = marker();
    let body = json!({ "action": "opened", "pull_request": { "title": marker } }).to_string();
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let sent = github(GITHUB_SECRET, body.as_bytes(), delivery, "pull_request");
    let (status, answer) = post_hook(&app, "acme", "gh", &sent, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "accepted": 1 }));
    let events = events_of(&app, &acme, "gh").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(events[0]["delivery"], delivery);
    assert_eq!(events[0]["event"], "pull_request");
    assert_eq!(
        events[0]["body"],
        serde_json::from_str::<Value>(&body).unwrap()
    );

    // Every forgery is a failed authentication, audited by the sender's address (never the
    // body), and counted towards its lockout.
    let mut tally = Tally::default();
    // A tampered body under the original signature.
    let tampered = body.replace("opened", "closed");
    assert_ne!(tampered, body);
    let forged = github(GITHUB_SECRET, body.as_bytes(), "d-tampered", "pull_request");
    assert_unverified(
        &post_hook(&app, "acme", "gh", &forged, tampered.as_bytes()).await,
        "tampered body",
    );
    let reason = tally.failure(&app, "acme", "gh", "tampered body").await;
    assert!(reason.contains("signature"), "{reason}");
    // Signed with another secret.
    let forged = github(WRONG_SECRET, body.as_bytes(), "d-wrong-secret", "push");
    assert_unverified(
        &post_hook(&app, "acme", "gh", &forged, body.as_bytes()).await,
        "wrong secret",
    );
    tally.failure(&app, "acme", "gh", "wrong secret").await;
    // No signature at all.
    let unsigned = vec![
        ("x-github-delivery", "d-unsigned".to_owned()),
        ("x-github-event", "push".to_owned()),
    ];
    assert_unverified(
        &post_hook(&app, "acme", "gh", &unsigned, body.as_bytes()).await,
        "missing signature",
    );
    let reason = tally.failure(&app, "acme", "gh", "missing signature").await;
    assert!(reason.contains("X-Hub-Signature-256"), "{reason}");
    // A genuine signature, of another body.
    let other = github(
        GITHUB_SECRET,
        b"{\"zen\":\"Keep it simple.\"}",
        "d-other",
        "ping",
    );
    assert_unverified(
        &post_hook(&app, "acme", "gh", &other, body.as_bytes()).await,
        "another body's signature",
    );
    tally
        .failure(&app, "acme", "gh", "another body's signature")
        .await;
    // The right digest in the wrong shape: no `sha256=`, or SHA-1's prefix.
    let digest = hub_sha256(GITHUB_SECRET.as_bytes(), body.as_bytes())[7..].to_owned();
    for (n, shape) in [
        digest.clone(),
        format!("sha1={digest}"),
        format!("sha256= {digest}"),
    ]
    .into_iter()
    .enumerate()
    {
        let headers = vec![
            ("x-hub-signature-256", shape.clone()),
            ("x-github-delivery", format!("d-shape-{n}")),
        ];
        assert_unverified(
            &post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await,
            &shape,
        );
        tally.failure(&app, "acme", "gh", &shape).await;
    }
    // A valid signature without a delivery id cannot be deduplicated: refused.
    let mut no_delivery = github(GITHUB_SECRET, body.as_bytes(), "", "push");
    no_delivery.retain(|(name, _)| *name != "x-github-delivery");
    assert_unverified(
        &post_hook(&app, "acme", "gh", &no_delivery, body.as_bytes()).await,
        "no delivery id",
    );
    let reason = tally.failure(&app, "acme", "gh", "no delivery id").await;
    assert!(reason.contains("delivery"), "{reason}");
    assert_eq!(
        events_of(&app, &acme, "gh").await.len(),
        1,
        "no refused delivery was kept"
    );

    // The core accepts the hex digest in either case (as GitHub's own examples allow).
    let upper_body = json!({ "zen": "Design for failure.", "hook_id": 1 }).to_string();
    let upper = format!(
        "sha256={}",
        hub_sha256(GITHUB_SECRET.as_bytes(), upper_body.as_bytes())[7..].to_uppercase()
    );
    let headers = vec![
        ("x-hub-signature-256", upper),
        ("x-github-delivery", "d-upper".to_owned()),
        ("x-github-event", "ping".to_owned()),
    ];
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, upper_body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "upper-case hex: {answer}");
    assert_eq!(answer, json!({ "accepted": 2 }));

    // The accepted delivery again, byte for byte: a replay, refused after verification (an
    // `inbound_refused` entry, not a failed authentication).
    let (status, answer) = post_hook(&app, "acme", "gh", &sent, body.as_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "replayed", "{answer}");
    let reason = tally.refusal(&app, "acme", "gh", "replay").await;
    assert!(reason.contains("replay"), "{reason}");
    // The same delivery id with another (validly signed) body is a replay too.
    let again = json!({ "action": "edited" }).to_string();
    let headers = github(GITHUB_SECRET, again.as_bytes(), delivery, "pull_request");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, again.as_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    tally
        .refusal(&app, "acme", "gh", "replay with another body")
        .await;

    let events = events_of(&app, &acme, "gh").await;
    let deliveries: Vec<&Value> = events.iter().map(|e| &e["delivery"]).collect();
    assert_eq!(
        deliveries,
        [&json!(delivery), &json!("d-upper")],
        "{events:?}"
    );
    assert_eq!(
        events[0]["body"]["action"], "opened",
        "the first body is kept"
    );

    // The trail: one `inbound_accepted` per kept delivery (its id and event name), one
    // `inbound_refused` per replay, one `auth_failed` per forgery (a reason), and never a
    // body or a secret.
    let InboundTrail {
        accepted,
        refused,
        failed,
    } = inbound_audit(&app, "acme").await;
    let accepted_deliveries: Vec<&Value> =
        accepted.iter().map(|e| &e["detail"]["delivery"]).collect();
    assert_eq!(
        accepted_deliveries,
        [&json!(delivery), &json!("d-upper")],
        "{accepted:?}"
    );
    assert_eq!(accepted[0]["detail"]["event"], "pull_request");
    assert_eq!((failed.len(), refused.len()), (tally.failed, tally.refused));
    assert_eq!((failed.len(), refused.len()), (8, 2));
    for entry in accepted.iter().chain(&refused) {
        assert_eq!(entry["resource"], "inbound:gh", "{entry}");
    }
    for entry in &failed {
        assert_inbound_failure(entry, "gh", "the trail");
    }
    // Eight failures are below the default lockout threshold (10): the address still
    // delivers.
    let body = json!({ "zen": "Approachable is better than simple." }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-last", "ping");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 3 })));
    assert_not_in_audit(
        &app,
        "acme",
        &[
            &marker,
            GITHUB_SECRET,
            WRONG_SECRET,
            "Design for failure",
            "edited",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_agent_pages_through_a_sources_events_in_order() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    for n in 1..=5 {
        let body = json!({ "n": n }).to_string();
        let headers = github(GITHUB_SECRET, body.as_bytes(), &format!("d-{n}"), "push");
        let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": n })));
    }
    let page = |query: &'static str| {
        let app = &app;
        let acme = &acme;
        async move {
            let (status, body) =
                read_events(app, "acme", "gh", Some(&acme.agent_token), query).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["body"]["n"].as_i64().expect("n"))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("").await, [1, 2, 3, 4, 5]);
    assert_eq!(page("?after=2").await, [3, 4, 5]);
    assert_eq!(page("?after=1&limit=2").await, [2, 3]);
    assert_eq!(page("?after=5").await, Vec::<i64>::new());
    // Unknown parameters are refused rather than ignored.
    let (status, _) = read_events(&app, "acme", "gh", Some(&acme.agent_token), "?since=1").await;
    assert!(status.is_client_error(), "{status}");
}

#[tokio::test]
async fn concurrent_deliveries_keep_one_of_each_id_and_a_gapless_sequence() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    // Ten senders racing with one delivery id (each with its own, validly signed body), ten
    // more with ids of their own.
    let sends = (0..20).map(|n| {
        let app = &app;
        async move {
            let delivery = if n < 10 {
                "d-same".to_owned()
            } else {
                format!("d-{n}")
            };
            let body = json!({ "n": n }).to_string();
            let headers = github(GITHUB_SECRET, body.as_bytes(), &delivery, "push");
            post_hook(app, "acme", "gh", &headers, body.as_bytes()).await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let (same, own) = answers.split_at(10);
    let kept = same.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let replays = same
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((kept, replays), (1, 9), "{same:?}");
    assert!(own.iter().all(|(s, _)| *s == StatusCode::OK), "{own:?}");
    let mut seqs: Vec<i64> = answers
        .iter()
        .filter_map(|(_, a)| a["accepted"].as_i64())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    let events = events_of(&app, &acme, "gh").await;
    assert_eq!(events.len(), 11);
    let same: Vec<&Value> = events
        .iter()
        .filter(|e| e["delivery"] == "d-same")
        .collect();
    assert_eq!(same.len(), 1, "{events:?}");
    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (11, 9, 0));
}

// ---- Standard Webhooks

#[tokio::test]
async fn standard_webhooks_are_verified_within_the_replay_window_and_deduplicated() {
    // More forgeries than the default lockout allows one address (the lockout has a test of
    // its own).
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 1000).await;
    let acme = app.seed_tenant("acme").await;
    let secret = SigningSecret::generate();
    let text = secret.to_text().to_string();
    let source = add_source(
        &app,
        "acme",
        "billing",
        InboundScheme::Standard,
        &text,
        None,
    )
    .await;
    assert_eq!(source.tolerance_secs, 300, "the configured default");

    // Accepted; the event name is the body's `type`.
    let marker = marker();
    let body = json!({ "type": "invoice.paid", "data": { "customer": marker } }).to_string();
    let now = now_secs(&app);
    let sent = standard(&secret, "msg_1", now, body.as_bytes());
    let (status, answer) = post_hook(&app, "acme", "billing", &sent, body.as_bytes()).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({ "accepted": 1 }))
    );
    let events = events_of(&app, &acme, "billing").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["delivery"], "msg_1");
    assert_eq!(events[0]["event"], "invoice.paid");
    assert_eq!(events[0]["body"]["data"]["customer"], marker.as_str());

    let mut tally = Tally::default();
    let ping = json!({ "type": "ping" }).to_string();
    let b = ping.as_bytes();
    let refuse = async |headers: Headers, what: &str, tally: &mut Tally| {
        assert_unverified(&post_hook(&app, "acme", "billing", &headers, b).await, what);
        tally.failure(&app, "acme", "billing", what).await
    };
    // Older than the window (300 s), and further in the future than it.
    let old = standard(&secret, "msg_old", now - 301, b);
    let reason = refuse(old, "301 s old", &mut tally).await;
    assert!(reason.contains("window"), "{reason}");
    let ahead = standard(&secret, "msg_new", now + 301, b);
    let reason = refuse(ahead, "301 s ahead", &mut tally).await;
    assert!(reason.contains("window"), "{reason}");
    // Signed with another secret.
    let stranger = SigningSecret::generate();
    let reason = refuse(
        standard(&stranger, "msg_x", now, b),
        "another secret",
        &mut tally,
    )
    .await;
    assert!(reason.contains("signature"), "{reason}");
    // Signed for another id, another timestamp, another body.
    let mut moved = standard(&secret, "msg_a", now, b);
    moved[0].1 = "msg_b".into();
    refuse(moved, "signature of another id", &mut tally).await;
    let mut moved = standard(&secret, "msg_c", now, b);
    moved[1].1 = (now - 1).to_string();
    refuse(moved, "signature of another timestamp", &mut tally).await;
    let other_body = standard(&secret, "msg_d", now, b"{\"type\":\"ping\"} ");
    refuse(other_body, "signature of another body", &mut tally).await;
    // `v1,` and bytes that are not base64; a non-`v1` scheme; a timestamp that is not seconds.
    let mut garbled = standard(&secret, "msg_e", now, b);
    garbled[2].1 = "v1,!!not*base64!!".into();
    refuse(garbled, "bad base64", &mut tally).await;
    let mut other_version = standard(&secret, "msg_f", now, b);
    other_version[2].1 = other_version[2].1.replacen("v1,", "v2,", 1);
    refuse(other_version, "v2 signature", &mut tally).await;
    let mut millis = standard(&secret, "msg_g", now, b);
    millis[1].1 = app.clock.now().to_string();
    refuse(millis, "milliseconds", &mut tally).await;
    // Missing headers.
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = standard(&secret, "msg_h", now, b);
        headers.retain(|(name, _)| *name != missing);
        refuse(headers, missing, &mut tally).await;
    }
    assert_eq!(
        events_of(&app, &acme, "billing").await.len(),
        1,
        "nothing refused was kept"
    );

    // The window is inclusive: exactly 300 s either way is accepted.
    for (id, ts) in [("msg_edge_old", now - 300), ("msg_edge_new", now + 300)] {
        let (status, answer) =
            post_hook(&app, "acme", "billing", &standard(&secret, id, ts, b), b).await;
        assert_eq!(status, StatusCode::OK, "{id}: {answer}");
    }

    // The same webhook-id, freshly signed with a new timestamp, or the same request again.
    for (what, headers) in [
        (
            "replay, re-signed",
            standard(&secret, "msg_1", now + 1, body.as_bytes()),
        ),
        ("replay, byte for byte", sent.clone()),
    ] {
        let (status, answer) = post_hook(&app, "acme", "billing", &headers, body.as_bytes()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {answer}");
        assert_eq!(answer["error"], "replayed", "{answer}");
        let reason = tally.refusal(&app, "acme", "billing", what).await;
        assert!(reason.contains("replay"), "{reason}");
    }

    // The gateway's own clock decides: a request signed now is stale 301 s later.
    let late = standard(&secret, "msg_late", now_secs(&app), b);
    app.clock.advance(301_000);
    assert_unverified(
        &post_hook(&app, "acme", "billing", &late, b).await,
        "signed before the clock moved",
    );
    let reason = tally
        .failure(&app, "acme", "billing", "stale after the clock moved")
        .await;
    assert!(reason.contains("window"), "{reason}");

    // A body without a string `type` has no event name; it is still kept.
    let untyped = json!({ "type": 7, "data": {} }).to_string();
    let headers = standard(&secret, "msg_untyped", now_secs(&app), untyped.as_bytes());
    let (status, answer) = post_hook(&app, "acme", "billing", &headers, untyped.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let events = events_of(&app, &acme, "billing").await;
    let names: Vec<(&Value, &Value)> = events
        .iter()
        .map(|e| (&e["delivery"], &e["event"]))
        .collect();
    assert_eq!(
        names,
        [
            (&json!("msg_1"), &json!("invoice.paid")),
            (&json!("msg_edge_old"), &json!("ping")),
            (&json!("msg_edge_new"), &json!("ping")),
            (&json!("msg_untyped"), &json!("")),
        ]
    );

    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (4, tally.refused, tally.failed));
    assert_eq!((tally.refused, tally.failed), (2, 13));
    assert_not_in_audit(&app, "acme", &[&marker, &text, &text["whsec_".len()..]]).await;
}

#[tokio::test]
async fn a_sources_own_tolerance_is_honoured() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let secret = SigningSecret::generate();
    let text = secret.to_text().to_string();
    let source = add_source(
        &app,
        "acme",
        "tight",
        InboundScheme::Standard,
        &text,
        Some(60),
    )
    .await;
    assert_eq!(source.tolerance_secs, 60);
    let body = json!({ "type": "order.created" }).to_string();
    let b = body.as_bytes();
    let now = now_secs(&app);
    for (id, ts) in [("msg_61_old", now - 61), ("msg_61_new", now + 61)] {
        assert_unverified(
            &post_hook(&app, "acme", "tight", &standard(&secret, id, ts, b), b).await,
            id,
        );
    }
    for (id, ts) in [("msg_59_old", now - 59), ("msg_59_new", now + 59)] {
        let (status, answer) =
            post_hook(&app, "acme", "tight", &standard(&secret, id, ts, b), b).await;
        assert_eq!(status, StatusCode::OK, "{id}: {answer}");
    }
    let kept: Vec<Value> = events_of(&app, &acme, "tight")
        .await
        .iter()
        .map(|e| e["delivery"].clone())
        .collect();
    assert_eq!(kept, [json!("msg_59_old"), json!("msg_59_new")]);
    let trail = inbound_audit(&app, "acme").await;
    assert!(trail.refused.is_empty(), "{:?}", trail.refused);
    assert_eq!(trail.failed.len(), 2, "{:?}", trail.failed);
    for entry in &trail.failed {
        let reason = assert_inbound_failure(entry, "tight", "outside 60 s");
        assert!(reason.contains("window"), "{reason}");
    }
}

// ---- tenants

#[tokio::test]
async fn a_tenants_sources_and_events_are_closed_to_every_other_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let marker = marker();
    let body = json!({ "secret_plan": marker }).to_string();
    let signed = github(GITHUB_SECRET, body.as_bytes(), "d-acme", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &signed, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Reading: only acme's own agent, at acme's path.
    let (status, answer) = read_events(&app, "acme", "gh", Some(&globex.agent_token), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(!answer.to_string().contains(&marker));
    let (status, answer) = read_events(&app, "globex", "gh", Some(&globex.agent_token), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = read_events(&app, "globex", "gh", Some(&acme.agent_token), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = read_events(&app, "acme", "gh", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A human's token is not an agent's.
    let (status, _) = read_events(&app, "acme", "gh", Some(&app.admin_token), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Sending: acme's source name under another tenant, or under no tenant, is nothing.
    let (status, answer) = post_hook(&app, "globex", "gh", &signed, body.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = post_hook(&app, "nowhere", "gh", &signed, body.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_hook(&app, "acme", "nope", &signed, body.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // globex's own `gh`, with its own secret: acme's signature does not verify there, and
    // each tenant reads only its own events.
    const GLOBEX_SECRET: &str = "globex keeps its own counsel";
    add_source(
        &app,
        "globex",
        "gh",
        InboundScheme::Github,
        GLOBEX_SECRET,
        None,
    )
    .await;
    assert_unverified(
        &post_hook(&app, "globex", "gh", &signed, body.as_bytes()).await,
        "acme's signature at globex",
    );
    let theirs = json!({ "globex": true }).to_string();
    let headers = github(GLOBEX_SECRET, theirs.as_bytes(), "d-acme", "push");
    let (status, answer) = post_hook(&app, "globex", "gh", &headers, theirs.as_bytes()).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({ "accepted": 1 })),
        "the same delivery id at another tenant's source is not a replay"
    );
    let acme_events = events_of(&app, &acme, "gh").await;
    let globex_events = events_of(&app, &globex, "gh").await;
    assert_eq!(acme_events.len(), 1);
    assert_eq!(acme_events[0]["body"]["secret_plan"], marker.as_str());
    assert_eq!(globex_events.len(), 1);
    assert_eq!(globex_events[0]["body"], json!({ "globex": true }));
    // The failed verification is in globex's trail, not acme's.
    assert_eq!(failure_reasons(&app, "acme").await.len(), 0);
    let failed = inbound_audit(&app, "globex").await.failed;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_inbound_failure(&failed[0], "gh", "acme's signature at globex");
    assert_not_in_audit(&app, "globex", &[&marker]).await;

    // Managing sources: an approver may not at all; globex's admin not acme's.
    let approver = app.api_as(&globex.approver_token);
    let err = approver
        .create_inbound_source(
            "globex",
            &source_in("mine", InboundScheme::Github, GITHUB_SECRET, None),
        )
        .await
        .expect_err("an approver cannot add sources");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
    let err = approver
        .list_inbound_sources("globex")
        .await
        .expect_err("an approver cannot list sources");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
    let err = approver
        .revoke_inbound_source("globex", "gh")
        .await
        .expect_err("an approver cannot revoke sources");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");

    let globex_admin = app.api_as(&human(&app, "globex-admin", "admin", "globex").await);
    let err = globex_admin
        .list_inbound_sources("acme")
        .await
        .expect_err("another tenant's sources");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{err}");
    let err = globex_admin
        .create_inbound_source(
            "acme",
            &source_in("planted", InboundScheme::Github, WRONG_SECRET, None),
        )
        .await
        .expect_err("a source in another tenant");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{err}");
    let err = globex_admin
        .revoke_inbound_source("acme", "gh")
        .await
        .expect_err("revoking another tenant's source");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{err}");
    let own = globex_admin
        .list_inbound_sources("globex")
        .await
        .expect("globex's admin lists globex's sources");
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].tenant.as_str(), globex.id);

    // acme's source is untouched by all of it.
    let acme_sources = app
        .admin_api()
        .list_inbound_sources("acme")
        .await
        .expect("list");
    let names: Vec<(&str, bool)> = acme_sources
        .iter()
        .map(|s| (s.name.as_str(), s.revoked_at.is_none()))
        .collect();
    assert_eq!(names, [("gh", true)]);
    let again = json!({ "still": "works" }).to_string();
    let headers = github(GITHUB_SECRET, again.as_bytes(), "d-acme-2", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, again.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 2 })));

    // A deleted tenant's sources are gone with it; the other tenant's are not.
    app.admin_api()
        .delete_tenant("globex")
        .await
        .expect("delete globex");
    let headers = github(GLOBEX_SECRET, theirs.as_bytes(), "d-after-delete", "push");
    let (status, answer) = post_hook(&app, "globex", "gh", &headers, theirs.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(events_of(&app, &acme, "gh").await.len(), 2);
}

// ---- revocation

#[tokio::test]
async fn a_revoked_source_accepts_nothing_and_its_secret_is_destroyed() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let source = add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let vault_name = format!("inbound.{}", source.id);
    assert!(
        secret_names(&app, "acme").await.contains(&vault_name),
        "the secret is in the vault as {vault_name}"
    );
    let body = json!({ "before": true }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-before", "push");
    let (status, _) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK);

    let revoked = app
        .admin_api()
        .revoke_inbound_source("acme", "gh")
        .await
        .expect("revoke");
    assert_eq!(revoked, json!({ "revoked": "gh" }));
    assert!(
        !secret_names(&app, "acme").await.contains(&vault_name),
        "the secret is gone from the vault"
    );
    let listed = app
        .admin_api()
        .list_inbound_sources("acme")
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some(), "{listed:?}");

    // A valid signature, a fresh delivery id: nothing to deliver to.
    let body = json!({ "after": true }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-after", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = read_events(&app, "acme", "gh", Some(&acme.agent_token), "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a revoked source has no events to read"
    );
    let err = app
        .admin_api()
        .revoke_inbound_source("acme", "gh")
        .await
        .expect_err("revoked twice");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{err}");

    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "inbound_accepted").len(), 1);
    let changes: Vec<&Value> = events_of_kind(&events, "inbound_source_changed")
        .into_iter()
        .map(|e| &e["detail"])
        .collect();
    assert_eq!(changes.len(), 2, "created and revoked: {changes:?}");
    assert_eq!(
        changes[1]["revoked"], changes[0]["created"],
        "the revocation names the source it revoked: {changes:?}"
    );
    assert_not_in_audit(&app, "acme", &[GITHUB_SECRET]).await;
}

// ---- bad input

#[tokio::test]
async fn bad_sources_are_refused_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let api = app.admin_api();
    let secrets_before = secret_names(&app, "acme").await;
    let whsec = SigningSecret::generate().to_text().to_string();
    let refused: Vec<(&str, SourceIn)> = vec![
        (
            "upper case",
            source_in("GitHub", InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "a space",
            source_in("git hub", InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "a dot",
            source_in("git.hub", InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "a slash",
            source_in("git/hub", InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "a leading dash",
            source_in("-gh", InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "33 bytes",
            source_in(&"a".repeat(33), InboundScheme::Github, GITHUB_SECRET, None),
        ),
        (
            "15-byte secret",
            source_in("gh", InboundScheme::Github, "fifteen-bytes!!", None),
        ),
        (
            "257-byte secret",
            source_in("gh", InboundScheme::Github, &"s".repeat(257), None),
        ),
        (
            "not base64",
            source_in("sw", InboundScheme::Standard, "whsec_not base64!", None),
        ),
        (
            "3-byte whsec",
            source_in("sw", InboundScheme::Standard, "whsec_AAAA", None),
        ),
        (
            "a github secret",
            source_in("sw", InboundScheme::Standard, GITHUB_SECRET, None),
        ),
        (
            "tolerance 0",
            source_in("sw", InboundScheme::Standard, &whsec, Some(0)),
        ),
        (
            "tolerance 3601",
            source_in("sw", InboundScheme::Standard, &whsec, Some(3601)),
        ),
        (
            "tolerance 4000",
            source_in("gh", InboundScheme::Github, GITHUB_SECRET, Some(4000)),
        ),
    ];
    for (what, body) in &refused {
        let err = api
            .create_inbound_source("acme", body)
            .await
            .expect_err(what);
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{what}: {err}");
        let secret = body.secret.expose_secret();
        assert!(
            !err.to_string().contains(secret),
            "{what}: the secret echoed: {err}"
        );
    }
    // On the wire too.
    let raw = |body: Value| {
        app.api(
            Method::POST,
            "/tenants/acme/inbound",
            &app.admin_token,
            Some(body),
        )
    };
    let (status, answer) =
        raw(json!({ "name": "", "scheme": "github", "secret": GITHUB_SECRET })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // A scheme we do not know, a wrong type, a negative or unknown field: refused as
    // unprocessable, like every malformed body of the admin API.
    for body in [
        json!({ "name": "gl", "scheme": "gitlab", "secret": GITHUB_SECRET }),
        json!({ "name": "gl", "scheme": "GitHub", "secret": GITHUB_SECRET }),
        json!({ "name": "gl", "secret": GITHUB_SECRET }),
        json!({ "name": "gl", "scheme": "github" }),
        json!({ "name": "gl", "scheme": "github", "secret": GITHUB_SECRET, "tolerance_secs": -1 }),
        json!({ "name": "gl", "scheme": "github", "secret": GITHUB_SECRET, "extra": 1 }),
    ] {
        let (status, answer) = raw(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    // Secrets are never echoed in a refusal.
    let (_, answer) =
        raw(json!({ "name": "gh", "scheme": "github", "secret": "fifteen-bytes!!" })).await;
    assert!(!answer.to_string().contains("fifteen-bytes!!"), "{answer}");
    let (_, answer) =
        raw(json!({ "name": "sw", "scheme": "standard", "secret": "whsec_AAAA" })).await;
    assert!(!answer.to_string().contains("whsec_AAAA"), "{answer}");

    assert!(
        api.list_inbound_sources("acme")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        secret_names(&app, "acme").await,
        secrets_before,
        "no secret was stored"
    );
    let events = app.audit_events("acme").await;
    assert!(events_of_kind(&events, "inbound_source_changed").is_empty());

    // The bounds themselves are fine.
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        "sixteen-bytes!!!",
        Some(3600),
    )
    .await;
    add_source(&app, "acme", "sw", InboundScheme::Standard, &whsec, Some(1)).await;
    // A name is taken once; the second attempt changes nothing (the first secret still
    // verifies).
    let err = api
        .create_inbound_source(
            "acme",
            &source_in("gh", InboundScheme::Github, WRONG_SECRET, None),
        )
        .await
        .expect_err("a duplicate name");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{err}");
    let sources = api.list_inbound_sources("acme").await.expect("list");
    assert_eq!(sources.len(), 2);
    assert_eq!(
        secret_names(&app, "acme").await.len(),
        secrets_before.len() + 2
    );
    let body = json!({ "ok": true }).to_string();
    let headers = github("sixteen-bytes!!!", body.as_bytes(), "d-1", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first secret still verifies: {answer}"
    );
    let headers = github(WRONG_SECRET, body.as_bytes(), "d-2", "push");
    assert_unverified(
        &post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await,
        "the refused duplicate's secret",
    );
}

#[tokio::test]
async fn a_validly_signed_body_that_is_not_utf8_is_refused_and_not_kept() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let secret = SigningSecret::generate();
    add_source(
        &app,
        "acme",
        "sw",
        InboundScheme::Standard,
        &secret.to_text(),
        None,
    )
    .await;
    let bytes: &[u8] = b"{\"name\":\"\xff\xfe\xc0\xaf\"}";

    let headers = github(GITHUB_SECRET, bytes, "d-binary", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, bytes).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "bad_body", "{answer}");
    let headers = standard(&secret, "msg_binary", now_secs(&app), bytes);
    let (status, answer) = post_hook(&app, "acme", "sw", &headers, bytes).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    assert!(events_of(&app, &acme, "gh").await.is_empty());
    assert!(events_of(&app, &acme, "sw").await.is_empty());
    let reasons = refusal_reasons(&app, "acme").await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("UTF-8")), "{reasons:?}");
    assert!(
        failure_reasons(&app, "acme").await.is_empty(),
        "the signatures verified: not a failed authentication"
    );
    // The refused delivery id was not spent: the sender's retry with a proper body is kept.
    let body = json!({ "name": "ok" }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-binary", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
}

// ---- replays of what the signature covers

#[tokio::test]
async fn a_github_body_replayed_under_a_fresh_delivery_id_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let body =
        json!({ "action": "deleted", "repository": { "full_name": "acme/prod" } }).to_string();
    let b = body.as_bytes();
    let captured = github(GITHUB_SECRET, b, "d-original", "repository");
    let (status, answer) = post_hook(&app, "acme", "gh", &captured, b).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));

    // The attack: the captured body and signature under a delivery id never seen, with any
    // event name (GitHub signs neither header), or under the other delivery header.
    let mut tally = Tally::default();
    let mut alternative = github(GITHUB_SECRET, b, "", "repository");
    alternative.retain(|(name, _)| *name != "x-github-delivery");
    alternative.push(("x-delivery-id", "d-alternative".to_owned()));
    for (what, headers) in [
        (
            "a fresh delivery id",
            github(GITHUB_SECRET, b, "d-fresh", "repository"),
        ),
        (
            "a fresh delivery id and event",
            github(GITHUB_SECRET, b, "d-fresher", "push"),
        ),
        ("X-Delivery-Id", alternative),
    ] {
        let (status, answer) = post_hook(&app, "acme", "gh", &headers, b).await;
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {answer}");
        assert_eq!(answer["error"], "replayed", "{what}: {answer}");
        let reason = tally.refusal(&app, "acme", "gh", what).await;
        assert!(reason.contains("replay"), "{what}: {reason}");
    }
    let events = events_of(&app, &acme, "gh").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["delivery"], "d-original");

    // The refused ids were not spent: a new body under one of them is kept; and a body that
    // differs by one byte is another delivery.
    let next =
        json!({ "action": "created", "repository": { "full_name": "acme/prod" } }).to_string();
    let headers = github(GITHUB_SECRET, next.as_bytes(), "d-fresh", "repository");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, next.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 2 })));
    let spaced = format!("{body} ");
    let headers = github(GITHUB_SECRET, spaced.as_bytes(), "d-spaced", "repository");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, spaced.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 3 })));

    // What was seen is per source: another source (sharing the secret) takes the same body.
    add_source(
        &app,
        "acme",
        "mirror",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let (status, answer) = post_hook(&app, "acme", "mirror", &captured, b).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));

    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (4, 3, 0));
}

#[tokio::test]
async fn concurrent_copies_of_one_github_body_keep_exactly_one() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let body = json!({ "action": "published", "release": { "tag_name": "v1.0.0" } }).to_string();
    // Ten senders racing with one body and signature, each under a delivery id of its own.
    let sends = (0..10).map(|n| {
        let app = &app;
        let body = &body;
        async move {
            let headers = github(GITHUB_SECRET, body.as_bytes(), &format!("d-{n}"), "release");
            post_hook(app, "acme", "gh", &headers, body.as_bytes()).await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let kept: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, a)| a)
        .collect();
    let replays = answers
        .iter()
        .filter(|(s, a)| *s == StatusCode::CONFLICT && a["error"] == "replayed")
        .count();
    assert_eq!((kept.len(), replays), (1, 9), "{answers:?}");
    assert_eq!(kept[0], &json!({ "accepted": 1 }));
    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (1, 9, 0));
}

#[tokio::test]
async fn standard_webhooks_deduplicate_on_the_id_timestamp_and_body_they_sign() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let secret = SigningSecret::generate();
    add_source(
        &app,
        "acme",
        "billing",
        InboundScheme::Standard,
        &secret.to_text(),
        None,
    )
    .await;
    let now = now_secs(&app);
    let body = json!({ "type": "invoice.paid" }).to_string();
    let b = body.as_bytes();

    // The id is signed: the same body under another id, freshly signed, is another message.
    for (n, id) in ["msg_a", "msg_b"].into_iter().enumerate() {
        let headers = standard(&secret, id, now, b);
        let (status, answer) = post_hook(&app, "acme", "billing", &headers, b).await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, json!({ "accepted": n + 1 }))
        );
    }

    // What is signed is `id.timestamp.body`: a message whose id ends in `.` and digits can be
    // cut again into another id, timestamp and body under the very same signature. What was
    // seen covers the same bytes as the signature, so the re-cut message is a replay.
    let id = format!("msg_c.{now}");
    let sent = standard(&secret, &id, now, b);
    let (status, answer) = post_hook(&app, "acme", "billing", &sent, b).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 3 })));
    let recut_body = format!("{now}.{body}");
    let recut = vec![
        ("webhook-id", "msg_c".to_owned()),
        ("webhook-timestamp", now.to_string()),
        ("webhook-signature", sent[2].1.clone()),
    ];
    assert_eq!(
        sign(&secret, "msg_c", now, recut_body.as_bytes()),
        sent[2].1,
        "the re-cut message carries a valid signature"
    );
    let (status, answer) = post_hook(&app, "acme", "billing", &recut, recut_body.as_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "replayed", "{answer}");
    let mut tally = Tally::default();
    let reason = tally
        .refusal(&app, "acme", "billing", "a re-cut message")
        .await;
    assert!(reason.contains("replay"), "{reason}");

    let trail = inbound_audit(&app, "acme").await;
    let kept: Vec<&Value> = trail
        .accepted
        .iter()
        .map(|e| &e["detail"]["delivery"])
        .collect();
    assert_eq!(kept, [&json!("msg_a"), &json!("msg_b"), &json!(id)]);
    assert!(trail.failed.is_empty(), "{:?}", trail.failed);
}

/// The signature covers the timestamp as a number (`0` and digits verify like the digits),
/// so what was seen must too: a zero-padded timestamp does not make a re-cut message new.
#[tokio::test]
async fn a_zero_padded_timestamp_does_not_dodge_the_standard_digest() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let secret = SigningSecret::generate();
    add_source(
        &app,
        "acme",
        "billing",
        InboundScheme::Standard,
        &secret.to_text(),
        None,
    )
    .await;
    let now = now_secs(&app);
    let body = json!({ "type": "invoice.paid" }).to_string();
    let id = format!("msg_c.{now}");
    let sent = standard(&secret, &id, now, body.as_bytes());
    let (status, answer) = post_hook(&app, "acme", "billing", &sent, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    // The same message, padded: its id was seen.
    let mut padded = sent.clone();
    padded[1].1 = format!("0{now}");
    let (status, answer) = post_hook(&app, "acme", "billing", &padded, body.as_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // Re-cut and padded: a new id, the original signature.
    let recut_body = format!("{now}.{body}");
    let recut = vec![
        ("webhook-id", "msg_c".to_owned()),
        ("webhook-timestamp", format!("0{now}")),
        ("webhook-signature", sent[2].1.clone()),
    ];
    let (status, answer) = post_hook(&app, "acme", "billing", &recut, recut_body.as_bytes()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a re-cut message under a padded timestamp verifies with the original signature and \
         must be refused as a replay: {answer}"
    );
    assert_eq!(answer["error"], "replayed", "{answer}");
    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (1, 2, 0));
}

// ---- form-encoded deliveries

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn signed_form_deliveries_are_verified_and_kept_and_unsigned_forms_refused_first() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let secret = SigningSecret::generate();
    add_source(
        &app,
        "acme",
        "sw",
        InboundScheme::Standard,
        &secret.to_text(),
        None,
    )
    .await;
    let json = json!({ "ref": "refs/heads/main", "note": "a & b = c?" }).to_string();
    let form = form_payload(&json);
    let f = form.as_bytes();

    // GitHub's form delivery, signed over the body as sent, with or without a charset.
    let headers = github(GITHUB_SECRET, f, "d-form", "push");
    let (status, answer) = post_hook_as(&app, "acme", "gh", FORM, &headers, f).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    let other = form_payload(&json!({ "ref": "refs/heads/next" }).to_string());
    let headers = github(GITHUB_SECRET, other.as_bytes(), "d-form-charset", "push");
    let with_charset = format!("{FORM}; charset=utf-8");
    let (status, answer) = post_hook_as(
        &app,
        "acme",
        "gh",
        &with_charset,
        &headers,
        other.as_bytes(),
    )
    .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 2 })));
    // A Standard Webhooks sender's form, signed with `webhook-signature`.
    let headers = standard(&secret, "msg_form", now_secs(&app), f);
    let (status, answer) = post_hook_as(&app, "acme", "sw", FORM, &headers, f).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    // Kept as sent: the form text, for the agent to read.
    let events = events_of(&app, &acme, "gh").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (
            &events[0]["delivery"],
            &events[0]["event"],
            &events[0]["body"]
        ),
        (&json!("d-form"), &json!("push"), &json!(form))
    );
    assert_eq!(events[1]["body"], json!(other));
    let events = events_of(&app, &acme, "sw").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["body"], json!(form));

    // The signature header lets a form in; it does not let a forgery through.
    let mut tally = Tally::default();
    let headers = github(WRONG_SECRET, f, "d-form-forged", "push");
    assert_unverified(
        &post_hook_as(&app, "acme", "gh", FORM, &headers, f).await,
        "a forged form",
    );
    let reason = tally.failure(&app, "acme", "gh", "a forged form").await;
    assert!(reason.contains("signature"), "{reason}");

    // Without `X-Hub-Signature-256` or `webhook-signature`, a form (or any body a page could
    // send without a preflight) is refused 415 before anything else: not verified, counted,
    // audited or kept, whether or not the source exists. GitHub's legacy SHA-1 header does
    // not let it in.
    let delivery = |id: &str| {
        vec![
            ("x-github-delivery", id.to_owned()),
            ("x-github-event", "push".to_owned()),
        ]
    };
    let mut legacy = delivery("d-sha1");
    legacy.push(("x-hub-signature", "sha1=0000".to_owned()));
    let ts = now_secs(&app).to_string();
    let unsigned: Vec<(&str, &str, &str, Headers)> = vec![
        ("an unsigned form", "gh", FORM, delivery("d-unsigned")),
        ("a legacy SHA-1 form", "gh", FORM, legacy),
        (
            "an unsigned form to a Standard source",
            "sw",
            FORM,
            vec![
                ("webhook-id", "msg_unsigned".to_owned()),
                ("webhook-timestamp", ts),
            ],
        ),
        (
            "an unsigned form to no source",
            "nope",
            FORM,
            delivery("d-nope"),
        ),
        ("unsigned text", "gh", "text/plain", delivery("d-text")),
        (
            "an unsigned multipart form",
            "gh",
            "multipart/form-data; boundary=x",
            delivery("d-multipart"),
        ),
    ];
    for (what, source, content_type, headers) in &unsigned {
        let (status, answer) = post_hook_as(&app, "acme", source, content_type, headers, f).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{what}: {answer}"
        );
    }
    // The exemption is the inbound route's alone: elsewhere a signature header opens nothing.
    let headers = github(GITHUB_SECRET, f, "d-elsewhere", "push");
    let response = send_raw(&app, "/t/acme/mcp", FORM, &headers, f).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // And a page's request, naming its origin, is refused whatever it carries.
    let mut from_page = github(GITHUB_SECRET, f, "d-page", "push");
    from_page.push(("origin", "https://evil.example".to_owned()));
    let (status, _) = post_hook_as(&app, "acme", "gh", FORM, &from_page, f).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (3, 0, 1));
    let events = app.audit_events("acme").await;
    assert_eq!(
        events_of_kind(&events, "auth_failed").len(),
        1,
        "only the forgery was an authentication, and it failed"
    );
    assert_eq!(events_of(&app, &acme, "gh").await.len(), 2);
    assert_eq!(events_of(&app, &acme, "sw").await.len(), 1);
}

// ---- lockout

/// A well-formed agent token nobody was given.
const UNKNOWN_TOKEN: &str = "pca_0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn failed_signatures_lock_the_address_out_like_wrong_tokens() {
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 3).await;
    let acme = app.seed_tenant("acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let body = json!({ "action": "created", "issue": { "number": 1 } }).to_string();
    let b = body.as_bytes();
    let valid = github(GITHUB_SECRET, b, "d-valid", "issues");
    let forged = github(WRONG_SECRET, b, "d-forged", "issues");
    let mut unsigned = valid.clone();
    unsigned.retain(|(name, _)| *name != "x-hub-signature-256");

    // Two forgeries: refused and counted, no lockout yet.
    for n in 1..=2 {
        assert_unverified(
            &post_hook(&app, "acme", "gh", &forged, b).await,
            &format!("forgery {n}"),
        );
    }
    let events = app.audit_events("acme").await;
    assert_eq!(failure_reasons(&app, "acme").await.len(), 2);
    assert!(events_of_kind(&events, "locked_out").is_empty());
    // The third (a missing signature counts like a wrong one) starts the lockout.
    assert_unverified(
        &post_hook(&app, "acme", "gh", &unsigned, b).await,
        "missing signature",
    );

    // For the lockout's first 30 s everything from the address is refused before it is
    // read: a valid signature, a forgery, the agent's own token.
    let retry = |secs: u64| (StatusCode::TOO_MANY_REQUESTS, Some(secs));
    assert_eq!(
        post_hook_retry_after(&app, "gh", &valid, b).await,
        retry(30)
    );
    assert_eq!(
        post_hook_retry_after(&app, "gh", &forged, b).await,
        retry(30)
    );
    let (status, _) = read_events(&app, "acme", "gh", Some(&acme.agent_token), "").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "one lockout for tokens too"
    );
    app.clock.advance(29_999);
    assert_eq!(post_hook_retry_after(&app, "gh", &valid, b).await, retry(1));

    // From then on a valid signature is served again (the delivery refused during the
    // lockout was not spent)…
    app.clock.advance(1);
    let (status, answer) = post_hook(&app, "acme", "gh", &valid, b).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    // …while a forgery, or no signature, stays refused until the lockout ends, uncounted.
    assert_eq!(
        post_hook_retry_after(&app, "gh", &forged, b).await,
        retry(870)
    );
    assert_eq!(
        post_hook_retry_after(&app, "gh", &unsigned, b).await,
        retry(870)
    );

    // The trail: three failed authentications by the address on the inbound surface, one
    // lockout, no `inbound_refused`, the one delivery kept.
    let events = app.audit_events("acme").await;
    let trail = inbound_audit(&app, "acme").await;
    let reasons: Vec<String> = trail
        .failed
        .iter()
        .map(|e| assert_inbound_failure(e, "gh", "lockout"))
        .collect();
    assert_eq!(
        reasons,
        [
            "the signature does not match",
            "the signature does not match",
            "no X-Hub-Signature-256 header"
        ],
        "the failures during the lockout were not counted again"
    );
    let lockouts = events_of_kind(&events, "locked_out");
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(lockouts[0]["actor"], "ip:127.0.0.1");
    assert_eq!(lockouts[0]["resource"], "inbound");
    assert!(trail.refused.is_empty(), "{:?}", trail.refused);
    let kept: Vec<&Value> = trail
        .accepted
        .iter()
        .map(|e| &e["detail"]["delivery"])
        .collect();
    assert_eq!(kept, [&json!("d-valid")]);
    let events = events_of(&app, &acme, "gh").await;
    assert_eq!(events.len(), 1, "{events:?}");

    // When the lockout ends a forgery is refused and counted again, in the same budget as
    // wrong tokens: one forgery and two unknown tokens lock the address out once more.
    app.clock.advance(870_000);
    assert_unverified(
        &post_hook(&app, "acme", "gh", &forged, b).await,
        "forgery after the lockout",
    );
    for _ in 0..2 {
        let (status, _) = read_events(&app, "acme", "gh", Some(UNKNOWN_TOKEN), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let fresh = json!({ "action": "closed" }).to_string();
    let headers = github(GITHUB_SECRET, fresh.as_bytes(), "d-fresh", "issues");
    assert_eq!(
        post_hook_retry_after(&app, "gh", &headers, fresh.as_bytes()).await,
        retry(30)
    );
    app.clock.advance(30_000);
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "locked_out").len(), 2);
    assert_eq!(failure_reasons(&app, "acme").await.len(), 4);
}

// ---- reusing a name

#[tokio::test]
async fn a_revoked_sources_name_can_be_reused_with_a_secret_of_its_own() {
    const NEW_SECRET: &str = "the new gh's own secret, 2025";
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let api = app.admin_api();
    let old = add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let body = json!({ "from": "the old gh" }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-old", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    // While the source lives, its name is taken.
    let err = api
        .create_inbound_source(
            "acme",
            &source_in("gh", InboundScheme::Github, NEW_SECRET, None),
        )
        .await
        .expect_err("a live name");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{err}");

    api.revoke_inbound_source("acme", "gh")
        .await
        .expect("revoke");
    let new = add_source(&app, "acme", "gh", InboundScheme::Github, NEW_SECRET, None).await;
    assert_ne!(new.id, old.id);
    assert!(new.revoked_at.is_none(), "{new:?}");
    let secrets = secret_names(&app, "acme").await;
    assert!(
        secrets.contains(&format!("inbound.{}", new.id)),
        "{secrets:?}"
    );
    assert!(
        !secrets.contains(&format!("inbound.{}", old.id)),
        "{secrets:?}"
    );
    let listed: Vec<(String, bool)> = api
        .list_inbound_sources("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.id.to_string(), s.revoked_at.is_some()))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&(old.id.to_string(), true)), "{listed:?}");
    assert!(listed.contains(&(new.id.to_string(), false)), "{listed:?}");

    // The old secret signs nothing for the new source; the new one does, and the new source
    // shows none of the old one's events.
    let mut tally = Tally::default();
    let body = json!({ "from": "the new gh" }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-new", "push");
    assert_unverified(
        &post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await,
        "the old secret",
    );
    let reason = tally.failure(&app, "acme", "gh", "the old secret").await;
    assert!(reason.contains("signature"), "{reason}");
    let headers = github(NEW_SECRET, body.as_bytes(), "d-new", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));
    let events = events_of(&app, &acme, "gh").await;
    let deliveries: Vec<&Value> = events.iter().map(|e| &e["delivery"]).collect();
    assert_eq!(deliveries, [&json!("d-new")]);

    // The name is taken again, and the refused duplicate changes nothing.
    let err = api
        .create_inbound_source(
            "acme",
            &source_in("gh", InboundScheme::Github, WRONG_SECRET, None),
        )
        .await
        .expect_err("a live name, again");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{err}");
    assert_eq!(
        api.list_inbound_sources("acme").await.expect("list").len(),
        2
    );
    let again = json!({ "from": "the new gh", "n": 2 }).to_string();
    let headers = github(NEW_SECRET, again.as_bytes(), "d-new-2", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, again.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 2 })));

    let events = app.audit_events("acme").await;
    let changes: Vec<&Value> = events_of_kind(&events, "inbound_source_changed")
        .into_iter()
        .map(|e| &e["detail"])
        .collect();
    assert_eq!(changes.len(), 3, "created, revoked, created: {changes:?}");
    assert_eq!(changes[2]["created"], json!(new.id));
    assert_not_in_audit(&app, "acme", &[GITHUB_SECRET, NEW_SECRET, WRONG_SECRET]).await;
}

// ---- the kill switch

/// A tenant that has already received webhooks (so the gateway has looked it up before) is
/// suspended: its sources refuse everything until it is resumed.
#[tokio::test]
async fn a_suspended_tenant_refuses_inbound_webhooks_until_resumed() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    create_tenant(&app, "globex").await;
    for tenant in ["acme", "globex"] {
        add_source(
            &app,
            tenant,
            "gh",
            InboundScheme::Github,
            GITHUB_SECRET,
            None,
        )
        .await;
    }
    let send = |delivery: &'static str| {
        let app = &app;
        async move {
            let body = json!({ "delivery": delivery }).to_string();
            let headers = github(GITHUB_SECRET, body.as_bytes(), delivery, "push");
            post_hook(app, "acme", "gh", &headers, body.as_bytes()).await
        }
    };
    assert_eq!(
        send("d-1").await,
        (StatusCode::OK, json!({ "accepted": 1 }))
    );

    app.admin_api()
        .suspend_tenant("acme")
        .await
        .expect("suspend");
    let (status, answer) = send("d-2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "suspended", "{answer}");
    // Another tenant is not stopped.
    let body = json!({ "globex": true }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-2", "push");
    let (status, answer) = post_hook(&app, "globex", "gh", &headers, body.as_bytes()).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "accepted": 1 })));

    app.admin_api().resume_tenant("acme").await.expect("resume");
    // The refused delivery was neither kept nor spent: the sender's retry is kept.
    assert_eq!(
        send("d-2").await,
        (StatusCode::OK, json!({ "accepted": 2 }))
    );
    let deliveries: Vec<Value> = events_of(&app, &acme, "gh")
        .await
        .iter()
        .map(|e| e["delivery"].clone())
        .collect();
    assert_eq!(deliveries, [json!("d-1"), json!("d-2")]);
    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (2, 0, 0));
}

/// A tenant suspended before its first webhook: refused while suspended, accepted once
/// resumed.
#[tokio::test]
async fn a_resumed_tenant_accepts_inbound_webhooks_again() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    add_source(
        &app,
        "acme",
        "gh",
        InboundScheme::Github,
        GITHUB_SECRET,
        None,
    )
    .await;
    let body = json!({ "zen": "Mind your words, they are important." }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-1", "ping");
    app.admin_api()
        .suspend_tenant("acme")
        .await
        .expect("suspend");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "suspended", "{answer}");
    app.admin_api().resume_tenant("acme").await.expect("resume");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({ "accepted": 1 })),
        "accepted again once resumed"
    );
    let trail = inbound_audit(&app, "acme").await;
    assert_eq!(trail.counts(), (1, 0, 0));
}

// ---- scoped tokens

#[tokio::test]
async fn a_scoped_token_reads_only_the_sources_its_scope_names() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let secret = SigningSecret::generate();
    for name in ["gh", "gh2"] {
        add_source(
            &app,
            "acme",
            name,
            InboundScheme::Github,
            GITHUB_SECRET,
            None,
        )
        .await;
    }
    add_source(
        &app,
        "acme",
        "billing",
        InboundScheme::Standard,
        &secret.to_text(),
        None,
    )
    .await;
    for name in ["gh", "gh2"] {
        let body = json!({ "source": name }).to_string();
        let headers = github(GITHUB_SECRET, body.as_bytes(), "d-1", "push");
        let (status, answer) = post_hook(&app, "acme", name, &headers, body.as_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
    }
    let body = json!({ "type": "invoice.paid" }).to_string();
    let headers = standard(&secret, "msg_1", now_secs(&app), body.as_bytes());
    let (status, answer) = post_hook(&app, "acme", "billing", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // What any token gets for a source that does not exist.
    let (status, missing) = read_events(&app, "acme", "nope", Some(&acme.agent_token), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    let all = ["gh", "gh2", "billing"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], all.to_vec()),
        (vec!["hooks"], all.to_vec()),
        (vec!["hooks/gh"], vec!["gh"]),
        (vec!["hooks/gh2", "hooks/billing"], vec!["gh2", "billing"]),
        (vec!["crm", "hooks/gh"], vec!["gh"]),
        (vec!["crm"], vec![]),
        (vec!["crm/gh"], vec![]),
        (vec!["hooks/nope"], vec![]),
    ];
    for (scope, readable) in cases {
        let token = app
            .admin_api()
            .create_token(
                "acme",
                &acme.agent_id,
                &TokenIn {
                    scope: scope.iter().map(|s| (*s).to_owned()).collect(),
                    ttl_secs: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("a token scoped to {scope:?}: {e}"));
        for source in all {
            let (status, answer) = read_events(&app, "acme", source, Some(&token.token), "").await;
            if readable.contains(&source) {
                assert_eq!(status, StatusCode::OK, "{scope:?} reads {source}: {answer}");
                assert_eq!(answer["source"], source, "{answer}");
                assert_eq!(
                    answer["events"].as_array().map(Vec::len),
                    Some(1),
                    "{scope:?} reads {source}: {answer}"
                );
            } else {
                assert_eq!(
                    (status, &answer),
                    (StatusCode::NOT_FOUND, &missing),
                    "{scope:?} reads {source}: as if it did not exist"
                );
            }
        }
    }
    // The tenant's unscoped token reads every source.
    for source in all {
        assert_eq!(events_of(&app, &acme, source).await.len(), 1, "{source}");
    }
}

// ---- the CLI

/// Run the binary against this gateway as the bootstrap admin with `stdin` piped in and
/// `env` besides (no other `PORTCULLIS_*` variables).
async fn cli_with_stdin(app: &TestApp, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> CliRun {
    use tokio::io::AsyncWriteExt as _;
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .current_dir(app.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command
        .env("PORTCULLIS_URL", &app.base)
        .env("PORTCULLIS_ADMIN_TOKEN", &app.admin_token)
        .envs(env.iter().copied());
    let mut child = command.spawn().expect("cli starts");
    let mut input = child.stdin.take().expect("stdin piped");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("cli timed out")
        .expect("cli runs");
    CliRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_inbound_cli_adds_lists_and_revokes_sources_without_echoing_secrets() {
    let app = TestApp::spawn().await;
    create_tenant(&app, "acme").await;
    let whsec = SigningSecret::generate();
    let whsec_text = whsec.to_text().to_string();

    // The secret on standard input (with the newline `echo` adds).
    let run = cli_with_stdin(
        &app,
        &[
            "inbound", "add", "--tenant", "acme", "gh", "--scheme", "github",
        ],
        &format!("{GITHUB_SECRET}\n"),
        &[],
    )
    .await;
    assert!(run.ok(), "{run:?}");
    let added: Value = serde_json::from_str(&run.stdout).expect("add prints JSON");
    assert_eq!(
        (&added["name"], &added["scheme"]),
        (&json!("gh"), &json!("github"))
    );
    // Or from the environment, with a tolerance of its own.
    let run = run_cli(
        app.dir.path(),
        &[
            "inbound",
            "add",
            "--tenant",
            "acme",
            "billing",
            "--scheme",
            "standard",
            "--from-env",
            "BILLING_SECRET",
            "--tolerance-secs",
            "60",
        ],
        &[
            ("PORTCULLIS_URL", &app.base),
            ("PORTCULLIS_ADMIN_TOKEN", &app.admin_token),
            ("BILLING_SECRET", &whsec_text),
        ],
    )
    .await;
    assert!(run.ok(), "{run:?}");
    let added: Value = serde_json::from_str(&run.stdout).expect("add prints JSON");
    assert_eq!(added["tolerance_secs"], 60);
    assert!(!run.stdout.contains(&whsec_text) && !run.stderr.contains(&whsec_text));

    // Refused: no secret at all (empty standard input), an unknown scheme, a bad secret.
    let run = app
        .cli_as(
            &app.admin_token,
            &[
                "inbound", "add", "--tenant", "acme", "empty", "--scheme", "github",
            ],
        )
        .await;
    assert!(!run.ok(), "an empty secret is refused: {run:?}");
    let run = cli_with_stdin(
        &app,
        &[
            "inbound", "add", "--tenant", "acme", "gl", "--scheme", "gitlab",
        ],
        GITHUB_SECRET,
        &[],
    )
    .await;
    assert!(!run.ok(), "{run:?}");
    let run = cli_with_stdin(
        &app,
        &[
            "inbound", "add", "--tenant", "acme", "short", "--scheme", "github",
        ],
        "too-short",
        &[],
    )
    .await;
    assert!(!run.ok(), "{run:?}");
    assert!(
        !run.stdout.contains("too-short") && !run.stderr.contains("too-short"),
        "{run:?}"
    );

    // What the CLI stored verifies (the trailing newline was not part of the secret).
    let body = json!({ "via": "cli" }).to_string();
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-cli", "push");
    let (status, answer) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let headers = standard(&whsec, "msg_cli", now_secs(&app) - 59, body.as_bytes());
    let (status, answer) = post_hook(&app, "acme", "billing", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let run = app
        .cli_as(&app.admin_token, &["inbound", "list", "--tenant", "acme"])
        .await;
    assert!(run.ok(), "{run:?}");
    let listed: Vec<Value> = serde_json::from_str(&run.stdout).expect("list prints JSON");
    let names: Vec<&Value> = listed.iter().map(|s| &s["name"]).collect();
    assert_eq!(names, [&json!("billing"), &json!("gh")], "{listed:?}");
    assert!(!run.stdout.contains(GITHUB_SECRET) && !run.stdout.contains(&whsec_text));

    let run = app
        .cli_as(
            &app.admin_token,
            &["inbound", "revoke", "--tenant", "acme", "gh"],
        )
        .await;
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("revoked"), "{run:?}");
    let sources = app
        .admin_api()
        .list_inbound_sources("acme")
        .await
        .expect("list");
    let gh = sources.iter().find(|s| s.name == "gh").expect("gh listed");
    assert!(gh.revoked_at.is_some(), "{gh:?}");
    assert!(
        !secret_names(&app, "acme")
            .await
            .contains(&format!("inbound.{}", gh.id))
    );
    let headers = github(GITHUB_SECRET, body.as_bytes(), "d-cli-2", "push");
    let (status, _) = post_hook(&app, "acme", "gh", &headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let run = app
        .cli_as(
            &app.admin_token,
            &["inbound", "revoke", "--tenant", "acme", "gh"],
        )
        .await;
    assert!(!run.ok(), "revoking twice fails: {run:?}");
}
