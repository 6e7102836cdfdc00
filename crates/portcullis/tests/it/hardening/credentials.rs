//! People's credentials have a lifecycle (list, revoke, rotate, expire — all audited), and
//! sock puppets cannot vote: an identity the agent's owner created counts as the owner, and an
//! identity created after a request was held cannot approve it.

use super::human;
use crate::policy::vote;
use crate::support::*;
use portcullis_server::admin::agents::OwnerIn;
use portcullis_server::admin::humans::AdminIn;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// An approver of acme with a credential life of `ttl_secs`.
fn approver(name: &str, ttl_secs: Option<u64>) -> AdminIn {
    AdminIn {
        name: name.into(),
        role: "approver".into(),
        tenant: Some("acme".into()),
        ttl_secs,
    }
}

/// Record `owner` as the human acme's agent acts for.
async fn set_owner(app: &TestApp, owner: &str) {
    let body = OwnerIn {
        owner: Some(owner.into()),
    };
    app.admin_api()
        .set_agent_owner("acme", "agent", &body)
        .await
        .expect("set owner");
}

/// Whether `token` is accepted by the admin API right now.
async fn works(app: &TestApp, token: &str) -> StatusCode {
    app.api(Method::GET, "/approvals?tenant=acme", token, None)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_listed_revoked_rotated_and_expired() {
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    app.seed_tenant("globex").await;
    let (_, bob) = human(&app, "bob", "approver", Some("acme")).await;
    assert_eq!(works(&app, &bob).await, StatusCode::OK);

    // Listed with who created them, never with a token.
    // Read raw: what goes over the wire must not carry a token.
    let (code, list) = app
        .api(Method::GET, "/admins", &app.admin_token, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let text = list.to_string();
    assert!(!text.contains(&bob) && !text.contains("token"), "{list}");
    let entry = list
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["name"] == "bob")
        .expect("bob is listed")
        .clone();
    assert_eq!(entry["created_by"], "admin", "{entry}");
    assert_eq!(entry["tenant"], "acme", "{entry}");

    // Rotation: the old token stops at once, the new one works.
    let (code, rotated) = app
        .api(Method::POST, "/admins/bob/rotate", &app.admin_token, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{rotated}");
    let bob2 = rotated["token"].as_str().expect("new token").to_owned();
    assert_eq!(works(&app, &bob).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&app, &bob2).await, StatusCode::OK);
    // Anyone may rotate their own token.
    let (code, own) = app
        .api(Method::POST, "/admins/bob/rotate", &bob2, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{own}");
    let bob3 = own["token"].as_str().expect("token").to_owned();
    assert_eq!(works(&app, &bob2).await, StatusCode::UNAUTHORIZED);

    // Revocation: refused on the very next request.
    let (code, _) = app
        .api(Method::POST, "/admins/bob/revoke", &app.admin_token, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(works(&app, &bob3).await, StatusCode::UNAUTHORIZED);

    // Expiry: a credential with a life stops when it ends.
    let dave = app
        .admin_api()
        .create_admin(&approver("dave", Some(60)))
        .await
        .expect("create dave")
        .token;
    assert_eq!(works(&app, &dave).await, StatusCode::OK);
    app.clock.advance(61_000);
    assert_eq!(works(&app, &dave).await, StatusCode::UNAUTHORIZED);
    let (_, carol) = human(&app, "carol", "approver", Some("acme")).await;
    let now = app.clock.now();
    let (code, _) = app
        .api(
            Method::PUT,
            "/admins/carol/expiry",
            &app.admin_token,
            Some(json!({ "expires_at": now })),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(works(&app, &carol).await, StatusCode::UNAUTHORIZED);

    // Scope: a tenant's admin manages only its tenant's humans.
    let (_, acme_admin) = human(&app, "acme-boss", "admin", Some("acme")).await;
    let (_, globex_human) = human(&app, "gina", "approver", Some("globex")).await;
    for target in ["gina", "admin"] {
        let (code, _) = app
            .api(
                Method::POST,
                &format!("/admins/{target}/revoke"),
                &acme_admin,
                None,
            )
            .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{target}");
    }
    assert_eq!(
        app.api(Method::GET, "/approvals?tenant=globex", &globex_human, None)
            .await
            .0,
        StatusCode::OK
    );
    // An approver cannot revoke someone else.
    let (_, eve) = human(&app, "eve", "approver", Some("acme")).await;
    let (code, _) = app
        .api(Method::POST, "/admins/acme-boss/revoke", &eve, None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // The last unscoped admin cannot lock everyone out.
    let (code, body) = app
        .api(Method::POST, "/admins/admin/revoke", &app.admin_token, None)
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");

    // Every change is on the record.
    let events = app.audit_events("acme").await;
    assert_eq!(events_of_kind(&events, "admin_rotated").len(), 2);
    assert_eq!(events_of_kind(&events, "admin_revoked").len(), 1);
    assert_eq!(events_of_kind(&events, "admin_changed").len(), 1);

    // The CLI lists them too.
    let listed = app.cli_as(&app.admin_token, &["admins", "list"]).await;
    assert!(listed.ok(), "{listed:?}");
    assert!(
        listed.stdout.contains("bob") && listed.stdout.contains("revoked"),
        "{listed:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cannot_approve_through_an_identity_they_created() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let (_, olivia) = human(&app, "olivia", "admin", Some("acme")).await;
    set_owner(&app, "olivia").await;
    // Olivia's creations, directly and through another admin she made.
    let create = |name: &'static str, role: &'static str, token: String| {
        let app = &app;
        async move {
            let (code, body) = app
                .api(
                    Method::POST,
                    "/admins",
                    &token,
                    Some(json!({ "name": name, "role": role, "tenant": "acme" })),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{body}");
            body["token"].as_str().expect("token").to_owned()
        }
    };
    let pat = create("pat", "approver", olivia.clone()).await;
    let ted = create("ted", "admin", olivia.clone()).await;
    let tess = create("tess", "approver", ted.clone()).await;

    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "ada@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    for (who, token) in [
        ("olivia", &olivia),
        ("pat", &pat),
        ("ted", &ted),
        ("tess", &tess),
    ] {
        let (code, body) = vote(&app, token, &id, "approve", "mine").await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    assert_eq!(app.approval(&id).await.status, ApprovalStatus::Pending);
    // Someone the owner did not create may approve.
    let (code, body) = vote(&app, &acme.approver_token, &id, "approve", "ok").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_created_after_a_request_was_held_cannot_vote_on_it() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "ada@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    app.clock.advance(1_000);
    let (_, late) = human(&app, "late", "approver", Some("acme")).await;
    let (code, body) = vote(&app, &late, &id, "approve", "me too").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("after this request was held"),
        "{body}"
    );
    // It may vote on requests held after it existed.
    app.clock.advance(1_000);
    let next = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "bob@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    let (code, body) = vote(&app, &late, &next, "approve", "fine").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_lengthens_their_own_credential_and_a_re_keyed_one_is_a_puppet() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let created = app
        .admin_api()
        .create_admin(&approver("bea", Some(600)))
        .await
        .expect("create bea");
    let bea = created.token;
    let expiry = created.admin.expires_at.expect("an expiry");
    // Rotating keeps the expiry; rotating one's own may not clear or extend it.
    let (code, own) = app
        .api(Method::POST, "/admins/bea/rotate", &bea, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{own}");
    assert_eq!(own["admin"]["expires_at"], expiry);
    let bea = own["token"].as_str().expect("token").to_owned();
    let (code, _) = app
        .api(
            Method::POST,
            "/admins/bea/rotate",
            &bea,
            Some(json!({ "ttl_secs": 360 * 24 * 3600 })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (_, boss) = human(&app, "acme-lead", "admin", Some("acme")).await;
    let lead = app
        .admin_api()
        .list_admins(&Default::default())
        .await
        .expect("list admins")
        .into_iter()
        .find(|a| a.name == "acme-lead")
        .expect("listed");
    assert!(lead.expires_at.is_none());
    let now = app.clock.now();
    let (code, _) = app
        .api(
            Method::PUT,
            "/admins/acme-lead/expiry",
            &app.admin_token,
            Some(json!({ "expires_at": now + 60_000 })),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = app
        .api(
            Method::PUT,
            "/admins/acme-lead/expiry",
            &boss,
            Some(json!({ "expires_at": null })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");

    // A credential another identity re-keyed is in that identity's hands: created before the
    // request or not, it cannot approve requests held before it changed hands, and if the
    // re-keying identity owns the agent, it counts as the owner.
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "ada@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    app.clock.advance(1_000);
    let (code, rekeyed) = app
        .api(Method::POST, "/admins/acme-approver/rotate", &boss, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{rekeyed}");
    let handed_over = rekeyed["token"].as_str().expect("token").to_owned();
    let (code, body) = vote(&app, &handed_over, &id, "approve", "mine now").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    set_owner(&app, "acme-lead").await;
    app.clock.advance(1_000);
    let next = approval_id(
        &client
            .call(
                "crm__send_email",
                json!({ "to": "bob@example.com", "subject": "s", "body": "b" }),
            )
            .await,
    );
    let (code, body) = vote(&app, &handed_over, &next, "approve", "owner's puppet").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("re-keyed"),
        "{body}"
    );
    app.stop().await;
}
