//! HTTP API connections: a plain REST API reached through the gate at
//! `/t/{tenant}/http/{connection}/{path}`, its credential injected at egress, its effects
//! held and approved exactly like MCP tool calls.

use crate::support::*;
use portcullis_server::admin::connections::ConnectionIn;
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::secrets::SecretIn;
use portcullis_server::api::ApiRoute;
use portcullis_server::upstream::{ConnectionSpec, Credential, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One request the fake API received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub uri: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// A loopback REST API that records every request and answers `{"ok": true, "path": …}`.
pub(crate) async fn fake_api() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    uri: uri.to_string(),
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                axum::Json(json!({ "ok": true, "path": uri.path() }))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api"), seen)
}

/// Wait for the connection and grant all of it to the tenant's agent.
async fn ready_and_granted(app: &TestApp, tenant: &Tenant, connection: &str) {
    app.wait_ready(connection).await;
    app.admin_api()
        .add_grant(
            "acme",
            &GrantIn {
                agent: tenant.agent_id.clone(),
                connection: connection.to_owned(),
                tool: "*".into(),
            },
        )
        .await
        .expect("grant");
}

struct Billing {
    tenant: Tenant,
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    canary: String,
}

async fn billing(app: &TestApp) -> Billing {
    let tenant = app.seed_tenant("acme").await;
    let (base_url, seen) = fake_api().await;
    let canary = format!(
        "sk_live_{}",
        hex::encode(portcullis_core::random_bytes::<12>())
    );
    app.admin_api()
        .put_secret(
            "acme",
            "billing-key",
            &SecretIn {
                value: canary.clone().into(),
                rotate_every_days: None,
            },
        )
        .await
        .expect("put the secret");
    let routes = vec![ApiRoute::parse("charge=POST:/v1/charges:spend").unwrap()];
    let connection = app
        .admin_api()
        .create_connection(
            "acme",
            &ConnectionIn {
                name: "billing".into(),
                spec: ConnectionSpec::new(
                    Transport::Api {
                        base_url,
                        auth: Some(Credential::Bearer {
                            secret: "billing-key".into(),
                        }),
                        routes,
                    },
                    Default::default(),
                ),
                redaction: Default::default(),
            },
        )
        .await
        .expect("create the API connection");
    ready_and_granted(app, &tenant, connection.id.as_str()).await;
    Billing {
        url: format!("{}/t/acme/http/billing", app.base),
        tenant,
        seen,
        canary,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_goes_through_with_the_credential_injected() {
    let app = TestApp::spawn().await;
    let b = billing(&app).await;
    let response = app
        .http
        .get(format!("{}/v1/customers?limit=2", b.url))
        .bearer_auth(&b.tenant.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "ok": true, "path": "/api/v1/customers" }));
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/api/v1/customers?limit=2");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {}", b.canary).as_str()),
        "the gateway adds the credential; the agent never had it"
    );
    let events = app.audit_events("acme").await;
    let calls = events_of_kind(&events, "tool_call");
    assert!(
        calls
            .iter()
            .any(|e| e["decision"] == "allow" && e["resource"].as_str().unwrap().ends_with("/read")),
        "{calls:?}"
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(&b.canary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_is_held_until_approved_and_runs_once() {
    let app = TestApp::spawn().await;
    let b = billing(&app).await;
    let send = |body: Value| {
        app.http
            .post(format!("{}/v1/charges", b.url))
            .bearer_auth(&b.tenant.agent_token)
            .json(&body)
            .send()
    };
    let charge = json!({ "amount": 1200, "currency": "eur", "customer": "cus_1" });
    let held = send(charge.clone()).await.unwrap();
    assert_eq!(held.status(), StatusCode::ACCEPTED);
    let held: Value = held.json().await.unwrap();
    assert_eq!(held["status"], "pending_approval");
    let approval = held["approval_id"].as_str().unwrap().to_owned();
    assert!(
        b.seen.lock().unwrap().is_empty(),
        "nothing reaches the API before approval"
    );

    // The approver sees the request itself.
    let view = app.approval(&approval).await;
    assert_eq!(view.tool, "charge");
    assert_eq!(view.action.arguments["body"], charge);
    assert_eq!(view.action.arguments["method"], "POST");

    // A different body is a different action: a hold of its own, not this approval.
    let other = send(json!({ "amount": 999999, "currency": "eur", "customer": "cus_1" }))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["approval_id"], held["approval_id"]);

    app.approve(&b.tenant, &approval).await;
    let ran = send(charge.clone()).await.unwrap();
    assert_eq!(ran.status(), StatusCode::OK);
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].body).unwrap(),
        charge
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {}", b.canary).as_str())
    );

    // Sent again: a new hold, never a second run.
    let again = send(charge).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(b.seen.lock().unwrap().len(), 1);
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "execute").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_paths_and_agents_are_refused() {
    let app = TestApp::spawn().await;
    let b = billing(&app).await;
    let get = |url: String, token: String| app.http.get(url).bearer_auth(token).send();

    // Encoded separators and empty segments never reach the API (clients already remove
    // `..`; the gateway refuses it too, see the unit tests of `api`).
    // Nor an escape that would match another route than the one the upstream runs: the
    // `charge` route (spend) cannot be reached as `%63harges` or `charges;x` under `write`.
    for path in [
        "/v1/a%2Fb",
        "/v1/a%5Cb",
        "/v1//x",
        "/v1/%2E%2E%2Fadmin",
        "/v1/%63harges",
        "/v1/charges;x",
    ] {
        let response = get(format!("{}{path}", b.url), b.tenant.agent_token.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    // An encoded connection name is not the connection (and never reaches the API's root).
    let response = get(
        format!("{}/t/acme/http/bill%69ng/v1/x", app.base),
        b.tenant.agent_token.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Another connection name, or an MCP connection, is unknown.
    for url in [
        format!("{}/t/acme/http/nope/v1/x", app.base),
        format!("{}/t/acme/http/crm/v1/x", app.base),
    ] {
        let response = get(url.clone(), b.tenant.agent_token.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
    }
    // No token, a wrong token, another tenant's agent.
    let response = app
        .http
        .get(format!("{}/v1/x", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let other = app.seed_tenant("globex").await;
    let response = get(format!("{}/v1/x", b.url), other.agent_token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // An agent of the tenant without a grant on the connection sees nothing.
    let response = get(
        format!("{}/t/acme/http/billing/v1/x", app.base),
        ungranted_agent(&app).await,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(b.seen.lock().unwrap().is_empty(), "nothing reached the API");
}

async fn ungranted_agent(app: &TestApp) -> String {
    use portcullis_server::admin::tenants::NameIn;
    use portcullis_server::admin::tokens::TokenIn;
    let agent = app
        .admin_api()
        .create_agent(
            "acme",
            &NameIn {
                name: "other".into(),
            },
        )
        .await
        .unwrap();
    app.admin_api()
        .create_token("acme", agent.id.as_str(), &TokenIn::default())
        .await
        .unwrap()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_at_a_refused_address_is_refused_at_creation() {
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let refused = app
        .admin_api()
        .create_connection(
            "acme",
            &ConnectionIn {
                name: "meta".into(),
                spec: ConnectionSpec::new(
                    Transport::Api {
                        base_url: "http://169.254.169.254/latest".into(),
                        auth: None,
                        routes: Vec::new(),
                    },
                    Default::default(),
                ),
                redaction: Default::default(),
            },
        )
        .await
        .expect_err("the metadata address is refused");
    assert_eq!(refused.status(), Some(StatusCode::BAD_REQUEST));
    assert!(refused.to_string().contains("(metadata)"), "{refused}");
}

/// A loopback OAuth token endpoint: accepts the refresh token it last issued (rotating it on
/// every use) until told to refuse every grant.
struct FakeOAuth {
    url: String,
    minted: Arc<Mutex<Vec<String>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

async fn fake_oauth() -> FakeOAuth {
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let current = Arc::new(Mutex::new("refresh-0".to_owned()));
    let (m, r) = (minted.clone(), refuse.clone());
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let (m, r, current) = (m.clone(), r.clone(), current.clone());
            async move {
                let presented = body
                    .split('&')
                    .find_map(|p| p.strip_prefix("refresh_token="))
                    .unwrap_or_default()
                    .to_owned();
                let mut current = current.lock().unwrap();
                if r.load(std::sync::atomic::Ordering::SeqCst) || presented != *current {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        axum::Json(json!({ "error": "invalid_grant" })),
                    );
                }
                let n = m.lock().unwrap().len() + 1;
                let access = format!("access-{n}");
                m.lock().unwrap().push(access.clone());
                *current = format!("refresh-{n}");
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({
                        "access_token": access,
                        "token_type": "Bearer",
                        "expires_in": 86400,
                        "refresh_token": *current,
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeOAuth {
        url: format!("http://{addr}/token"),
        minted,
        refuse,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connection_gets_short_lived_tokens_and_needs_reconnection_when_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.seed_tenant("acme").await;
    let (base_url, seen) = fake_api().await;
    let oauth = fake_oauth().await;
    for (name, value) in [
        ("crm-refresh", "refresh-0"),
        ("crm-client", "client-secret"),
    ] {
        let secret = SecretIn {
            value: value.to_owned().into(),
            rotate_every_days: None,
        };
        app.admin_api()
            .put_secret("acme", name, &secret)
            .await
            .unwrap();
    }
    let connection = app
        .admin_api()
        .create_connection(
            "acme",
            &ConnectionIn {
                name: "crmapi".into(),
                spec: ConnectionSpec::new(
                    Transport::Api {
                        base_url,
                        auth: Some(Credential::Oauth {
                            token_url: oauth.url.clone(),
                            client_id: "portcullis".into(),
                            client_secret: Some("crm-client".into()),
                            refresh_token: "crm-refresh".into(),
                            scope: None,
                        }),
                        routes: Vec::new(),
                    },
                    Default::default(),
                ),
                redaction: Default::default(),
            },
        )
        .await
        .expect("create");
    ready_and_granted(&app, &tenant, connection.id.as_str()).await;
    let url = format!("{}/t/acme/http/crmapi", app.base);
    let get = || {
        app.http
            .get(format!("{url}/contacts"))
            .bearer_auth(&tenant.agent_token)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        oauth.minted.lock().unwrap().len(),
        1,
        "cached between calls"
    );
    // The provider offered a day; the broker serves a token for at most 15 minutes.
    app.clock.advance(15 * 60 * 1000);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        oauth.minted.lock().unwrap().len(),
        2,
        "a new token after the cap"
    );
    let auths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    assert_eq!(
        auths,
        vec!["Bearer access-1", "Bearer access-1", "Bearer access-2"]
    );
    // The rotated refresh token went into the vault as a new version.
    let secrets = app.admin_api().list_secrets("acme").await.unwrap();
    let refresh = secrets.iter().find(|s| s.name == "crm-refresh").unwrap();
    assert_eq!(refresh.version, 3);

    // A held write waits; then the provider refuses the grant.
    let held = app
        .http
        .post(format!("{url}/contacts"))
        .bearer_auth(&tenant.agent_token)
        .json(&json!({ "name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), StatusCode::ACCEPTED);
    let approval = held.json::<Value>().await.unwrap()["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    oauth
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    app.clock.advance(15 * 60 * 1000);
    let refused = get().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    eventually("the held write shows needs_reconnection", || async {
        app.approval(&approval).await.status == portcullis_store::ApprovalStatus::NeedsReconnection
    })
    .await;
    let events = app.audit_events("acme").await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains("access-"),
        "no access token in the audit"
    );

    // Reconnecting: a new refresh token, a restart; the write is pending again.
    oauth
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    app.admin_api()
        .restart_connection("acme", connection.id.as_str())
        .await
        .unwrap();
    eventually("the mark is cleared", || async {
        app.approval(&approval).await.status == portcullis_store::ApprovalStatus::Pending
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_is_held_as_sent() {
    let app = TestApp::spawn().await;
    let b = billing(&app).await;
    let response = app
        .http
        .post(format!("{}/v1/refunds", b.url))
        .bearer_auth(&b.tenant.agent_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("charge=ch_1&amount=500")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let held: Value = response.json().await.unwrap();
    let view = app.approval(held["approval_id"].as_str().unwrap()).await;
    assert_eq!(view.tool, "write");
    assert_eq!(view.action.arguments["body"], "charge=ch_1&amount=500");
    assert_eq!(
        view.action.arguments["content_type"],
        "application/x-www-form-urlencoded"
    );
    // Without credentials, the same body is what a web page could send: refused before
    // authentication.
    let page = app
        .http
        .post(format!("{}/v1/refunds", b.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("charge=ch_1&amount=500")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_secret_version_is_injected_on_the_very_next_call() {
    let app = TestApp::spawn().await;
    let b = billing(&app).await;
    let get = || {
        app.http
            .get(format!("{}/v1/customers", b.url))
            .bearer_auth(&b.tenant.agent_token)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    app.admin_api()
        .put_secret(
            "acme",
            "billing-key",
            &SecretIn {
                value: "sk_live_second_version".to_owned().into(),
                rotate_every_days: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    let auths: Vec<String> = b
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    assert_eq!(
        auths,
        vec![
            format!("Bearer {}", b.canary),
            format!("Bearer {}", b.canary),
            "Bearer sk_live_second_version".to_owned(),
        ]
    );
    // Deleted: the next call is not sent at all.
    app.admin_api()
        .delete_secret("acme", "billing-key")
        .await
        .unwrap();
    assert_eq!(get().await.unwrap().status(), StatusCode::BAD_GATEWAY);
    assert_eq!(b.seen.lock().unwrap().len(), 3);
}
