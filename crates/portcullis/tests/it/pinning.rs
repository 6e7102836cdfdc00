//! Tool definition pinning: an upstream that changes a tool's definition gets that tool treated
//! as an unknown effect until an operator accepts the new definition.

use crate::support::*;
use portcullis_core::effect::EffectClass;
use portcullis_server::admin::connections::ToolView;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn tool(app: &TestApp, tenant: &Tenant, name: &str) -> ToolView {
    let tools = app
        .admin_api()
        .list_tools(&tenant.name, &tenant.connection_id)
        .await
        .expect("list tools");
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name}: {tools:?}"))
        .clone()
}

/// Serve the `changed` definitions: write the variant file, restart the upstream through the
/// admin API, and wait until the re-listed definitions are recorded.
async fn change_definitions(app: &TestApp, tenant: &Tenant) {
    std::fs::write(&tenant.variant_file, "changed").unwrap();
    let restarted = app
        .admin_api()
        .restart_connection(&tenant.name, &tenant.connection_id)
        .await
        .expect("restart");
    assert_eq!(restarted.restarting.as_str(), tenant.connection_id);
    eventually(
        "get_contact's changed definition to be recorded",
        || async { tool(app, tenant, "get_contact").await.definition_changed },
    )
    .await;
    app.wait_ready(&tenant.connection_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_definition_holds_a_read_until_accepted() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(
            &client
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let before = tool(&app, &acme, "get_contact").await;
    assert!(!before.definition_changed);

    change_definitions(&app, &acme).await;
    let changed = tool(&app, &acme, "get_contact").await;
    assert_eq!(
        changed.pinned_hash, before.pinned_hash,
        "the pin stays until accepted"
    );
    assert_ne!(changed.current_hash, before.current_hash);
    assert_eq!(
        changed.effect,
        EffectClass::Read,
        "the operator's classification is kept"
    );
    assert!(
        changed
            .description
            .as_deref()
            .unwrap()
            .contains("records who looked")
    );
    // Tools whose definitions did not change are untouched.
    assert!(!tool(&app, &acme, "list_contacts").await.definition_changed);

    // The read is now held as an unknown effect, and the agent is told it is not read-only.
    let tools = tokio::time::timeout(WAIT, client.running.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let listed = tools
        .iter()
        .find(|t| t.name == "crm__get_contact")
        .expect("still listed");
    assert_eq!(
        listed.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(false)
    );
    assert!(
        listed
            .description
            .as_deref()
            .unwrap()
            .contains("records who looked")
    );
    let held = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    let id = approval_id(&held);
    let approval = app.approval(&id).await;
    assert_eq!(approval.effect, EffectClass::Write, "an unknown effect");
    assert!(
        approval
            .reasons
            .join("; ")
            .contains("changed this tool's definition"),
        "{approval:?}"
    );
    assert_eq!(
        status(&client.call("crm__list_contacts", json!({})).await),
        "ok",
        "unchanged reads still flow"
    );

    let events = app.audit_events("acme").await;
    let changes: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "tool_definition_changed")
        .collect();
    assert!(
        changes.iter().any(|e| e["resource"]
            == format!("tool:{}/get_contact", acme.connection_id).as_str()
            && e["detail"]["pinned_hash"] == before.pinned_hash.as_str()
            && e["detail"]["current_hash"] == changed.current_hash.as_str()),
        "{changes:#?}"
    );
    assert!(
        changes
            .iter()
            .any(|e| e["resource"].as_str().unwrap().ends_with("/send_email"))
    );

    // Only an admin accepts a definition; an approver cannot.
    let (code, _) = app
        .api(
            Method::POST,
            &format!(
                "/tenants/acme/connections/{}/tools/get_contact/accept",
                acme.connection_id
            ),
            &acme.approver_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(tool(&app, &acme, "get_contact").await.definition_changed);

    let accepted = app
        .admin_api()
        .accept_tool("acme", &acme.connection_id, "get_contact")
        .await
        .expect("accept");
    assert!(!accepted.definition_changed);
    assert_eq!(accepted.pinned_hash, changed.current_hash);
    let read = client
        .call("crm__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(status(&read), "ok", "{read:?}");
    assert_eq!(structured(&read)["name"], "Ada Lovelace");
    let events = app.audit_events("acme").await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "tool_definition_accepted"
                && e["actor"].as_str().unwrap().starts_with("admin:")
                && e["detail"]["definition_hash"] == changed.current_hash.as_str()),
        "{events:#?}"
    );
    // send_email's change was not accepted: it still counts as changed.
    assert!(tool(&app, &acme, "send_email").await.definition_changed);

    let (code, _) = app
        .api(
            Method::POST,
            "/tenants/acme/connections/con_doesnotexist/restart",
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_given_for_the_old_definition_does_not_cover_the_new_one() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let send = json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" });
    let id = approval_id(&client.call("crm__send_email", send.clone()).await);
    app.approve(&acme, &id).await;

    // The upstream now BCCs the sales team: the approver did not see that tool.
    change_definitions(&app, &acme).await;
    let retry = client.call("crm__send_email", send.clone()).await;
    let fresh = approval_id(&retry);
    assert_ne!(fresh, id);
    assert!(effect_lines(&acme.effect_log).is_empty());
    assert_eq!(
        app.approval(&id).await.status,
        ApprovalStatus::Approved,
        "the old approval was not used"
    );
    let reasons = app.approval(&fresh).await.reasons.join("; ");
    assert!(
        reasons.contains("changed this tool's definition"),
        "{reasons}"
    );

    // Approving the new request (which names the new definition) executes it once.
    app.approve(&acme, &fresh).await;
    assert_eq!(status(&client.call("crm__send_email", send).await), "sent");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_needs_an_admin_and_a_live_connection() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let path = format!("/tenants/acme/connections/{}/restart", acme.connection_id);
    let (code, _) = app
        .api(Method::POST, &path, &acme.approver_token, None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = app.api(Method::POST, &path, &acme.agent_token, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let globex = app.seed_tenant("globex").await;
    let (code, _) = app
        .api(
            Method::POST,
            &format!("/tenants/globex/connections/{}/restart", acme.connection_id),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "another tenant's connection is not found"
    );
    let _ = globex;

    // Unchanged definitions survive a restart unchanged. Drafts count per upstream process,
    // so a fresh process is recognisable by its first draft id.
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let draft = json!({ "to": "ada@example.com", "subject": "s", "body": "b" });
    assert_eq!(
        structured(&client.call("crm__draft_email", draft.clone()).await)["draft_id"],
        "d_1"
    );
    assert_eq!(
        structured(&client.call("crm__draft_email", draft.clone()).await)["draft_id"],
        "d_2"
    );
    app.admin_api()
        .restart_connection("acme", &acme.connection_id)
        .await
        .expect("restart");
    eventually("a fresh upstream process to answer", || async {
        client
            .try_call("crm__draft_email", draft.clone())
            .await
            .is_ok_and(|r| r.structured_content.is_some_and(|v| v["draft_id"] == "d_1"))
    })
    .await;
    assert!(
        !kinds(&app.audit_events("acme").await).contains(&"tool_definition_changed".to_owned())
    );

    app.admin_api()
        .revoke_connection("acme", &acme.connection_id)
        .await
        .expect("revoke connection");
    let (code, _) = app.api(Method::POST, &path, &app.admin_token, None).await;
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "a revoked connection is not restarted"
    );
    app.stop().await;
}
