//! Signed share links: a tenant's audit export downloads through its link and verifies
//! offline; links expire on the chosen clock, are revoked at once, open only their own
//! tenant's artifacts, keep only a hash of their token, and every download is audited.

use crate::support::*;
use portcullis_server::admin::shares::ShareIn;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

fn share(artifact: &str, expires: &str) -> ShareIn {
    ShareIn {
        artifact: artifact.to_owned(),
        expires: expires.to_owned(),
    }
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>, reqwest::header::HeaderMap) {
    let response = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, response.bytes().await.unwrap().to_vec(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_export_shared_by_link_verifies_offline_until_the_link_ends() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(
        &client
            .call(
                "crm__issue_refund",
                json!({ "customer_id": "c_1", "amount_cents": 900, "reason": "share" }),
            )
            .await,
    );
    app.approve(&acme, &id).await;
    client
        .call(
            "crm__issue_refund",
            json!({ "customer_id": "c_1", "amount_cents": 900, "reason": "share" }),
        )
        .await;

    let created = app
        .admin_api()
        .create_share("acme", &share("audit-export", "1h"))
        .await
        .unwrap();
    let path = created.path.expose_secret().to_owned();
    assert!(path.starts_with("/share/pcsh_"), "{path}");
    assert_eq!(created.link.expires_at, Some(app.clock.now() + 3_600_000));
    let (status, body, headers) = get(&app, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("audit-export.jsonl")
    );
    let text = String::from_utf8(body).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["complete"], true, "{header}");
    // Offline, with the export and the public key only.
    let file = app.dir.path().join("shared.jsonl");
    std::fs::write(&file, &text).unwrap();
    let key = app.cli_local(&["public-key", "--note"]).await;
    assert!(key.ok(), "{key:?}");
    let run = app
        .cli_local(&[
            "verify-export",
            file.to_str().unwrap(),
            "--public-key",
            key.stdout.trim(),
        ])
        .await;
    assert!(run.ok(), "the shared export verifies: {run:?}");
    // Only acme's trail.
    assert!(!text.contains("globex"));

    // Counted and audited; the list never shows the token.
    let listed = app.admin_api().list_shares("acme").await.unwrap();
    assert_eq!(listed[0].downloads, 1);
    let token = path.trim_start_matches("/share/");
    assert!(!serde_json::to_string(&listed).unwrap().contains(token));
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(events_of_kind(&events, "share_downloaded").len(), 1);
    assert!(!serde_json::to_string(&events).unwrap().contains(token));

    // The link ends after its hour.
    app.clock.advance(3_600_000);
    assert_eq!(get(&app, &path).await.0, StatusCode::NOT_FOUND);

    // A link without expiry lasts until revoked, then ends at once.
    let forever = app
        .admin_api()
        .create_share("acme", &share("audit-export", "none"))
        .await
        .unwrap();
    assert_eq!(forever.link.expires_at, None);
    let path = forever.path.expose_secret().to_owned();
    app.clock.advance(400 * 86_400_000);
    assert_eq!(get(&app, &path).await.0, StatusCode::OK);
    app.admin_api()
        .revoke_share("acme", forever.link.id.as_str())
        .await
        .unwrap();
    assert_eq!(get(&app, &path).await.0, StatusCode::NOT_FOUND);
    // A forged or mangled token opens nothing.
    for bad in [
        "/share/pcsh_0000000000000000000000000000000000000000000000000000000000000000",
        "/share/",
        &format!("/share/{}x", path.trim_start_matches("/share/")),
        &format!("/share/{}", "a".repeat(5000)),
    ] {
        assert_eq!(get(&app, bad).await.0, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opens_only_its_own_tenants_artifact_and_ends_with_the_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let held = |tenant: Tenant| {
        let app = &app;
        async move {
            let client = app
                .client(&tenant.name, &tenant.agent_token, Era::Discover)
                .await;
            approval_id(
                &client
                    .call(
                        "crm__issue_refund",
                        json!({ "customer_id": "c_1", "amount_cents": 100, "reason": "evidence" }),
                    )
                    .await,
            )
        }
    };
    let acme_approval = held(acme.clone()).await;
    let globex_approval = held(globex.clone()).await;

    // acme's evidence shares; globex's approval under acme is "not found".
    let evidence = app
        .admin_api()
        .create_share("acme", &share(&format!("approval:{acme_approval}"), "7d"))
        .await
        .unwrap();
    let (status, body, _) = get(&app, evidence.path.expose_secret()).await;
    assert_eq!(status, StatusCode::OK);
    let view: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(view["id"], acme_approval.as_str());
    let err = app
        .admin_api()
        .create_share("acme", &share(&format!("approval:{globex_approval}"), "7d"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not_found"), "{err}");
    // A tenant-scoped human cannot share another tenant's artifacts.
    let err = app
        .api_as(&acme.approver_token)
        .create_share("globex", &share("audit-export", "1h"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not_found"), "{err}");

    // Bad input changes nothing.
    for (artifact, expires) in [
        ("audit-export", "2h"),
        ("audit-export", ""),
        ("everything", "1h"),
        ("approval:apr_nope", "1h"),
    ] {
        let err = app
            .admin_api()
            .create_share("acme", &share(artifact, expires))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("bad_request") || err.to_string().contains("not_found"),
            "{artifact} {expires}: {err}"
        );
    }
    assert_eq!(app.admin_api().list_shares("acme").await.unwrap().len(), 1);

    // Viewers do not read the audit trail, so they cannot share it; auditors can.
    for (role, ok) in [("viewer", false), ("auditor", true)] {
        let human = app
            .admin_api()
            .create_admin(&portcullis_server::admin::humans::AdminIn {
                name: format!("acme-{role}"),
                role: role.into(),
                tenant: Some("acme".into()),
                ttl_secs: None,
            })
            .await
            .unwrap();
        let made = app
            .api_as(&human.token)
            .create_share("acme", &share("audit-export", "1h"))
            .await;
        assert_eq!(made.is_ok(), ok, "{role}: {made:?}");
    }

    // Deleting the tenant ends its links.
    app.admin_api().delete_tenant("acme").await.unwrap();
    assert_eq!(
        get(&app, evidence.path.expose_secret()).await.0,
        StatusCode::NOT_FOUND
    );
}
