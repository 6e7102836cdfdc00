//! Resources, resource templates, prompts, completions and the logging level through the
//! gateway (issue "A transparent MCP gateway"), in both protocol eras: namespaced, under the
//! same grants and token scopes as tools, every listing and read audited, and anything the
//! agent may not use "not found".

use crate::support::*;
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::tenants::NameIn;
use portcullis_server::admin::tokens::TokenIn;
use rmcp::model::{
    ArgumentInfo, CompleteRequestParams, GetPromptRequestParams, ReadResourceRequestParams,
    Reference, ResourceContents,
};
use serde_json::{Value, json};

const CONTACT: &str = "portcullis://crm/crm://contacts/c_1";

fn text_of(contents: &[ResourceContents]) -> (String, String) {
    match &contents[0] {
        ResourceContents::TextResourceContents { uri, text, .. } => (uri.clone(), text.clone()),
        other => panic!("expected text contents: {other:?}"),
    }
}

/// "Resource not found" in the code of the client's revision (-32002 before 2026-07-28,
/// -32602 since), never a "forbidden" that would confirm the resource exists.
fn assert_not_found(e: &rmcp::ErrorData) {
    assert!(matches!(e.code.0, -32002 | -32602), "{e:?}");
    assert!(e.message.starts_with("resource not found"), "{e:?}");
}

/// An agent of `tenant` granted `items` of its demo connection, and its token (`scope`).
async fn agent_with(
    app: &TestApp,
    tenant: &Tenant,
    name: &str,
    items: &[&str],
    scope: &[&str],
) -> String {
    let api = app.admin_api();
    let agent = api
        .create_agent(&tenant.name, &NameIn { name: name.into() })
        .await
        .expect("agent");
    for item in items {
        api.add_grant(
            &tenant.name,
            &GrantIn {
                agent: agent.id.to_string(),
                connection: tenant.connection_id.clone(),
                tool: (*item).into(),
            },
        )
        .await
        .expect("grant");
    }
    let token = TokenIn {
        scope: scope.iter().map(|s| (*s).to_owned()).collect(),
        ttl_secs: None,
    };
    api.create_token(&tenant.name, agent.id.as_str(), &token)
        .await
        .expect("token")
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_prompts_and_completions_pass_through_in_both_eras() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    for era in [Era::Initialize, Era::Discover] {
        let client = app.client("acme", &acme.agent_token, era).await;
        let peer = &client.running;
        let resources = peer.list_all_resources().await.expect("resources/list");
        let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
        assert!(uris.contains(&CONTACT), "{era:?}: {uris:?}");
        assert!(
            uris.iter().all(|u| u.starts_with("portcullis://crm/")),
            "{uris:?}"
        );
        let templates = peer
            .list_all_resource_templates()
            .await
            .expect("resources/templates/list");
        assert_eq!(
            templates[0].uri_template,
            "portcullis://crm/crm://contacts/{id}"
        );
        let read = peer
            .read_resource(ReadResourceRequestParams::new(CONTACT))
            .await
            .expect("resources/read");
        let (uri, text) = text_of(&read.contents);
        assert_eq!(
            uri, CONTACT,
            "the content names the URI the agent asked for"
        );
        let contact: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(contact["name"], "Ada Lovelace");

        let prompts = peer.list_all_prompts().await.expect("prompts/list");
        assert_eq!(prompts[0].name, "crm__follow_up");
        let mut get = GetPromptRequestParams::new("crm__follow_up");
        get.arguments = Some(args(json!({ "customer_id": "c_1" })));
        let prompt = peer.get_prompt(get).await.expect("prompts/get");
        let message = serde_json::to_string(&prompt.messages).expect("json");
        assert!(message.contains("Ada Lovelace"), "{message}");

        let completion = peer
            .complete(CompleteRequestParams::new(
                Reference::for_prompt("crm__follow_up"),
                ArgumentInfo::new("customer_id", "c_"),
            ))
            .await
            .expect("completion/complete");
        assert!(completion.completion.values.contains(&"c_1".to_owned()));
        #[expect(deprecated, reason = "older clients still set a level")]
        peer.set_level(rmcp::model::SetLevelRequestParams::new(
            rmcp::model::LoggingLevel::Debug,
        ))
        .await
        .expect("logging/setLevel is accepted");
    }
    let events = app.audit_events("acme").await;
    for kind in [
        "resources_listed",
        "resource_read",
        "prompts_listed",
        "prompt_get",
    ] {
        assert!(
            events_of_kind(&events, kind).len() >= 2,
            "each era's {kind} is audited"
        );
    }
    let reads = events_of_kind(&events, "resource_read");
    assert_eq!(reads[0]["resource"], format!("resource:{CONTACT}"));
    assert_eq!(reads[0]["decision"], "allow");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_grant_or_scope_leaves_out_is_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // Granted one tool only; granted resources but not prompts; everything but a token
    // scoped to one tool.
    let tool_only = agent_with(&app, &acme, "tool-only", &["get_contact"], &[]).await;
    let resources_only =
        agent_with(&app, &acme, "reader", &["get_contact", "resources:*"], &[]).await;
    let scoped = agent_with(&app, &acme, "scoped", &["*"], &["crm/get_contact"]).await;
    for era in [Era::Initialize, Era::Discover] {
        for (token, sees_resources) in [
            (&tool_only, false),
            (&resources_only, true),
            (&scoped, false),
        ] {
            let client = app.client("acme", token, era).await;
            let peer = &client.running;
            let listed = peer.list_all_resources().await.expect("list");
            assert_eq!(!listed.is_empty(), sees_resources, "{era:?}");
            let read = peer
                .read_resource(ReadResourceRequestParams::new(CONTACT))
                .await;
            match (sees_resources, read) {
                (true, Ok(_)) => {}
                (false, Err(rmcp::ServiceError::McpError(e))) => assert_not_found(&e),
                (want, got) => panic!("{era:?}: sees resources {want}, got {got:?}"),
            }
            assert!(peer.list_all_prompts().await.expect("list").is_empty());
            let mut get = GetPromptRequestParams::new("crm__follow_up");
            get.arguments = Some(args(json!({ "customer_id": "c_1" })));
            let refused = peer.get_prompt(get).await.expect_err("prompt hidden");
            assert!(refused.to_string().contains("unknown prompt"), "{refused}");
            let completion = peer
                .complete(CompleteRequestParams::new(
                    Reference::for_prompt("crm__follow_up"),
                    ArgumentInfo::new("customer_id", "c_"),
                ))
                .await
                .expect("complete");
            assert!(
                completion.completion.values.is_empty(),
                "nothing leaks through completion"
            );
        }
    }
    let events = app.audit_events("acme").await;
    let denied: Vec<_> = events_of_kind(&events, "resource_read")
        .into_iter()
        .filter(|e| e["decision"] == "deny")
        .collect();
    assert!(!denied.is_empty());
    assert!(
        denied
            .iter()
            .any(|e| e["detail"]["why"] == "not granted to this agent"),
        "the trail records why: {denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|e| e["detail"]["why"] == "outside this token's scope")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connections_or_tenants_resource_cannot_be_named() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let _globex = app.seed_tenant("globex").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    // The upstream's own URI, a connection acme does not have (globex's connections are not
    // acme's), path tricks, and a URI that only looks like one.
    for uri in [
        "crm://contacts/c_1",
        "portcullis://billing/crm://contacts/c_1",
        "portcullis://globex/crm://contacts/c_1",
        "portcullis://../crm/crm://contacts/c_1",
        "portcullis://crm",
        "portcullis:///crm://contacts/c_1",
    ] {
        let refused = client
            .running
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .expect_err(uri);
        match refused {
            rmcp::ServiceError::McpError(e) => assert_not_found(&e),
            other => panic!("{uri}: {other:?}"),
        }
    }
    // A resource the upstream does not have is the upstream's answer, not a leak.
    let missing = client
        .running
        .read_resource(ReadResourceRequestParams::new(
            "portcullis://crm/crm://contacts/c_404",
        ))
        .await;
    assert!(missing.is_err());
    app.stop().await;
}
