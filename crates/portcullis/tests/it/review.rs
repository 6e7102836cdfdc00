//! The access review (`GET /admin/v1/access-review`, `portcullis access review`): last use
//! from the audit trail, recommendations that follow the (manual) clock, tenant scoping, and
//! nothing secret in the answer.

use crate::support::*;
use portcullis_server::admin::review::{AccessReview, Action, ReviewQuery, Rotation, TenantReview};
use portcullis_server::admin::secrets::SecretIn;
use reqwest::{Method, StatusCode};
use serde_json::json;

const DAY: i64 = 86_400_000;

async fn review_of(app: &TestApp, tenant: &str) -> TenantReview {
    let query = ReviewQuery {
        tenant: Some(tenant.into()),
        unused_days: None,
    };
    let mut review = app
        .admin_api()
        .access_review(&query)
        .await
        .unwrap_or_else(|e| panic!("access review: {e}"));
    assert_eq!(review.unused_days, 30);
    assert_eq!(review.tenants.len(), 1, "{review:?}");
    review.tenants.remove(0)
}

/// The recommendations as the CLI prints them: `ACTION TARGET: REASON`.
fn lines(review: &TenantReview) -> Vec<String> {
    review
        .recommendations
        .iter()
        .map(|r| format!("{} {}: {}", r.action.words(), r.target, r.reason))
        .collect()
}

fn recommends(review: &TenantReview, action: Action, target: &str) -> bool {
    review
        .recommendations
        .iter()
        .any(|r| r.action == action && r.target == target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_follow_use_and_time() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut idle = demo_connection(app.dir.path(), "acme-idle");
    idle.name = "idle".into();
    app.admin_api()
        .create_connection("acme", &idle)
        .await
        .expect("idle connection");
    let value = format!(
        "review-canary-{}",
        &portcullis_core::id::TenantId::generate().as_str()[4..]
    );
    app.admin_api()
        .put_secret(
            "acme",
            "api-key",
            &SecretIn {
                value: value.clone().into(),
                rotate_every_days: Some(10),
            },
        )
        .await
        .expect("put secret");

    // Day 0: everything is fresh; nothing is unused yet, the rotation is not due.
    let fresh = review_of(&app, "acme").await;
    assert!(
        !fresh
            .recommendations
            .iter()
            .any(|r| matches!(r.action, Action::RevokeConnection | Action::DeleteSecret)),
        "{:?}",
        lines(&fresh)
    );
    let key = fresh.secrets.iter().find(|s| s.name == "api-key").unwrap();
    assert_eq!(key.rotation, Rotation::Ok);
    assert!(key.used_by.is_empty());
    let crm_secret = fresh
        .secrets
        .iter()
        .find(|s| s.name == "crm.PORTCULLIS_DEMO_EFFECT_LOG")
        .expect("the sealed environment value is listed");
    assert_eq!(crm_secret.used_by, ["crm"]);
    let kinds: Vec<_> = fresh
        .connections
        .iter()
        .map(|c| (c.name.as_str(), c.kind.as_deref(), c.grants))
        .collect();
    assert_eq!(
        kinds,
        [("crm", Some("stdio"), 1), ("idle", Some("stdio"), 0)]
    );

    // Day 4: the rotation is due within a week.
    app.clock.advance(4 * DAY);
    let due = review_of(&app, "acme").await;
    let key = due.secrets.iter().find(|s| s.name == "api-key").unwrap();
    assert_eq!(key.rotation, Rotation::Due);
    assert!(
        recommends(&due, Action::RotateSecret, "api-key"),
        "{:?}",
        lines(&due)
    );

    // Day 20: overdue; the agent reads one tool of its `*` grant.
    app.clock.advance(16 * DAY);
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(status(&read), "ok");
    let used_at = app.clock.now();
    let overdue = review_of(&app, "acme").await;
    let key = overdue
        .secrets
        .iter()
        .find(|s| s.name == "api-key")
        .unwrap();
    assert_eq!(key.rotation, Rotation::Overdue);
    assert!(recommends(&overdue, Action::RotateSecret, "api-key"));

    // A minute short of 30 days the idle connection is not yet unused.
    app.clock.advance(10 * DAY - 60_000);
    let almost = review_of(&app, "acme").await;
    assert!(
        !recommends(&almost, Action::RevokeConnection, "idle"),
        "{:?}",
        lines(&almost)
    );

    // Day 31.
    app.clock.advance(DAY + 60_000);
    let late = review_of(&app, "acme").await;
    let l = lines(&late);
    assert!(recommends(&late, Action::RevokeConnection, "idle"), "{l:?}");
    assert!(
        l.contains(&"revoke connection idle: never used since created 31 days ago".to_owned()),
        "{l:?}"
    );
    assert!(!recommends(&late, Action::RevokeConnection, "crm"), "{l:?}");
    let crm = late.connections.iter().find(|c| c.name == "crm").unwrap();
    assert_eq!(crm.last_used_at, Some(used_at));
    assert_eq!(
        serde_json::to_value(crm.status).unwrap(),
        json!("active"),
        "{crm:?}"
    );
    let narrow = late
        .recommendations
        .iter()
        .find(|r| r.action == Action::NarrowGrant)
        .unwrap_or_else(|| panic!("no narrowing: {l:?}"));
    assert_eq!(narrow.target, "crm/* for agent");
    assert!(
        narrow.reason.contains("used only get_contact"),
        "{}",
        narrow.reason
    );
    assert!(!recommends(&late, Action::RemoveGrant, "crm/* for agent"));
    let grant = late.grants.iter().find(|g| g.connection == "crm").unwrap();
    assert_eq!(grant.tools_used, ["get_contact"]);
    // Unused by any connection for 31 days: deleting beats rotating.
    assert!(recommends(&late, Action::DeleteSecret, "api-key"), "{l:?}");
    assert!(!recommends(
        &late,
        Action::DeleteSecret,
        "crm.PORTCULLIS_DEMO_EFFECT_LOG"
    ));
    let agent = late.agents.iter().find(|a| a.name == "agent").unwrap();
    assert_eq!(agent.last_call_at, Some(used_at));

    // Nothing secret in the answer: not the vault value, not the sealed environment values.
    let (code, raw) = app
        .api(
            Method::GET,
            "/access-review?tenant=acme",
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let text = raw.to_string();
    for needle in [value.as_str(), "effects.jsonl", "acme-idle-"] {
        assert!(!text.contains(needle), "`{needle}` in {text}");
    }

    // The CLI: JSON that parses as the API's type, and the same lines for a reader.
    let json_run = app
        .cli_as(
            &app.admin_token,
            &["access", "review", "--tenant", "acme", "--json"],
        )
        .await;
    assert!(json_run.ok(), "{json_run:?}");
    let parsed: AccessReview = serde_json::from_str(&json_run.stdout).expect("--json parses");
    assert_eq!(parsed.tenants[0].recommendations, late.recommendations);
    assert!(!json_run.stdout.contains(&value));
    let human = app
        .cli_as(&app.admin_token, &["access", "review", "--tenant", "acme"])
        .await;
    assert!(human.ok(), "{human:?}");
    assert!(
        human
            .stdout
            .contains("  revoke connection idle: never used since created 31 days ago\n"),
        "{}",
        human.stdout
    );
    // A shorter window from the CLI: the read 11 days ago is now too old.
    let short = app
        .cli_as(
            &app.admin_token,
            &[
                "access",
                "review",
                "--tenant",
                "acme",
                "--unused-days",
                "7",
                "--json",
            ],
        )
        .await;
    assert!(short.ok(), "{short:?}");
    let short: AccessReview = serde_json::from_str(&short.stdout).expect("--json parses");
    assert_eq!(short.unused_days, 7);
    assert!(recommends(
        &short.tenants[0],
        Action::RevokeConnection,
        "crm"
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_human_reviews_only_what_it_may_see() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    app.seed_tenant("beta").await;

    let all = app
        .admin_api()
        .access_review(&ReviewQuery::default())
        .await
        .expect("unscoped review");
    let names: Vec<_> = all.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["acme", "beta"]);

    // acme's approver: only acme, with or without naming it; beta does not exist for it.
    let approver = app.api_as(&acme.approver_token);
    let own = approver
        .access_review(&ReviewQuery::default())
        .await
        .expect("an approver may read the review");
    let names: Vec<_> = own.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["acme"]);
    let (code, _) = app
        .api(
            Method::GET,
            "/access-review?tenant=beta",
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let cli = app
        .cli_as(&acme.approver_token, &["access", "review", "--json"])
        .await;
    assert!(cli.ok(), "{cli:?}");
    let parsed: AccessReview = serde_json::from_str(&cli.stdout).expect("--json parses");
    assert_eq!(parsed.tenants.len(), 1);
    assert_eq!(parsed.tenants[0].tenant, "acme");

    for bad in ["0", "3651", "-1", "soon"] {
        let (code, body) = app
            .api(
                Method::GET,
                &format!("/access-review?unused_days={bad}"),
                &app.admin_token,
                None,
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "unused_days={bad}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
    }
    let (code, _) = app
        .api(
            Method::GET,
            "/access-review?unused_days=3650",
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    app.stop().await;
}
