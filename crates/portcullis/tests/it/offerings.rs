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

/// Add the demo upstream to `tenant` as connection `name`, passing names through (with
/// `aliases`), granted whole to the tenant's agent; waits until it is ready.
async fn passthrough_connection(
    app: &TestApp,
    tenant: &Tenant,
    name: &str,
    aliases: &[(&str, &str)],
) {
    let mut connection = demo_connection(app.dir.path(), &tenant.name);
    connection.name = name.into();
    connection.spec.names = portcullis_server::upstream::Names::Upstream;
    connection.spec.aliases = aliases
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let created = app
        .admin_api()
        .create_connection(&tenant.name, &connection)
        .await
        .expect("connection");
    app.admin_api()
        .add_grant(
            &tenant.name,
            &GrantIn {
                agent: tenant.agent_id.clone(),
                connection: created.id.to_string(),
                tool: "*".into(),
            },
        )
        .await
        .expect("grant");
    app.wait_ready(created.id.as_str()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_may_pass_its_names_through_where_nothing_collides() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    passthrough_connection(&app, &acme, "up", &[("list_contacts", "contacts")]).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let names = client.tool_names().await;
    for name in ["get_contact", "contacts", "send_email", "crm__get_contact"] {
        assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
    }
    assert!(
        !names.contains(&"list_contacts".to_owned()),
        "the alias replaces the name"
    );
    // Plain and namespaced names both reach the tool.
    for name in ["get_contact", "up__get_contact"] {
        let read = client.call(name, json!({ "id": "c_1" })).await;
        assert_eq!(structured(&read)["name"], "Ada Lovelace", "{name}");
    }
    // What the upstream says about a tool reaches the agent intact, with the gateway's own
    // classification beside it; an effect is never advertised as read-only.
    let tools = client.running.list_all_tools().await.expect("list");
    let send = tools
        .iter()
        .find(|t| t.name == "send_email")
        .expect("send_email");
    let meta = &send.meta.as_ref().expect("_meta").0["io.portcullis/classification"];
    assert_eq!(meta["held"], true, "{meta}");
    assert_eq!(
        send.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(false)
    );
    let get = tools
        .iter()
        .find(|t| t.name == "get_contact")
        .expect("get_contact");
    assert_eq!(
        get.annotations.as_ref().and_then(|a| a.title.as_deref()),
        Some("Get contact"),
        "the upstream's annotations are forwarded"
    );
    assert_eq!(
        get.meta.as_ref().expect("_meta").0["io.portcullis/classification"]["effect"],
        "read"
    );
    // Prompts and, as the only pass-through connection, resource URIs too.
    let prompts = client.running.list_all_prompts().await.expect("prompts");
    let prompt_names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert!(
        prompt_names.contains(&"follow_up") && prompt_names.contains(&"crm__follow_up"),
        "{prompt_names:?}"
    );
    let mut get_prompt = GetPromptRequestParams::new("follow_up");
    get_prompt.arguments = Some(args(json!({ "customer_id": "c_1" })));
    client
        .running
        .get_prompt(get_prompt)
        .await
        .expect("plain prompt name");
    let resources = client
        .running
        .list_all_resources()
        .await
        .expect("resources");
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(
        uris.contains(&"crm://contacts/c_1") && uris.contains(&CONTACT),
        "{uris:?}"
    );
    let read = client
        .running
        .read_resource(ReadResourceRequestParams::new("crm://contacts/c_1"))
        .await
        .expect("a passed-through URI reads");
    assert_eq!(text_of(&read.contents).0, "crm://contacts/c_1");

    // A second connection passing the same names through: every name they share goes back
    // to its namespaced form, and so do the URIs (they could be either's).
    passthrough_connection(&app, &acme, "up2", &[]).await;
    let names = client.tool_names().await;
    assert!(!names.contains(&"get_contact".to_owned()), "{names:?}");
    assert!(
        names.contains(&"up__get_contact".to_owned())
            && names.contains(&"up2__get_contact".to_owned())
    );
    assert!(
        names.contains(&"contacts".to_owned()),
        "a unique alias stays"
    );
    let refused = client.try_call("get_contact", json!({ "id": "c_1" })).await;
    assert!(refused.is_err_and(|e| e.contains("unknown tool")));
    let missing = client
        .running
        .read_resource(ReadResourceRequestParams::new("crm://contacts/c_1"))
        .await;
    assert!(
        missing.is_err(),
        "no URI passes through when two connections could serve it"
    );
    app.stop().await;
}

/// A legacy session subscribed to a resource hears of its update under the URI it used;
/// another session of the same tenant that did not subscribe hears nothing; an agent cannot
/// subscribe to what it may not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_sessions_hear_of_updates_and_only_they() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let watcher = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let bystander = app.client("acme", &acme.agent_token, Era::Initialize).await;
    #[expect(deprecated, reason = "initialize-era clients subscribe this way")]
    watcher
        .running
        .subscribe(rmcp::model::SubscribeRequestParams::new(CONTACT))
        .await
        .expect("resources/subscribe");
    let tool_only = agent_with(&app, &acme, "tool-only", &["get_contact"], &[]).await;
    let outsider = app.client("acme", &tool_only, Era::Initialize).await;
    #[expect(deprecated, reason = "initialize-era clients subscribe this way")]
    let refused = outsider
        .running
        .subscribe(rmcp::model::SubscribeRequestParams::new(CONTACT))
        .await;
    assert!(
        refused.is_err(),
        "no subscription to what the agent may not read"
    );

    // An approved update of the contact (an effect: held, approved, re-sent).
    let update = json!({ "id": "c_1", "company": "Analytical Engines Ltd" });
    let held = bystander.call("crm__update_contact", update.clone()).await;
    app.approve(&acme, &approval_id(&held)).await;
    let done = bystander.call("crm__update_contact", update).await;
    assert_eq!(done.is_error, Some(false), "{done:?}");
    let uri = tokio::time::timeout(WAIT, async {
        watcher.inbox.lock().await.updates.recv().await
    })
    .await
    .expect("the subscribed session hears of the update")
    .expect("an update");
    assert_eq!(uri, CONTACT, "under the URI the agent subscribed with");
    assert!(
        bystander.inbox.lock().await.updates.try_recv().is_err(),
        "a session that did not subscribe hears nothing"
    );
    #[expect(deprecated, reason = "initialize-era clients subscribe this way")]
    watcher
        .running
        .unsubscribe(rmcp::model::UnsubscribeRequestParams::new(CONTACT))
        .await
        .expect("resources/unsubscribe");
    app.stop().await;
}

/// 2026-07-28 clients validate `resultType` on every result (the Python SDK rejects a read or
/// a prompt without it); the upstream speaks the earlier revision and never sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_prompts_carry_their_result_type_on_2026() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let http = reqwest::Client::new();
    let url = app.mcp_url("acme");
    let read = json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read",
        "params": { "uri": CONTACT, "_meta": meta_2026() } });
    let prompt = json!({ "jsonrpc": "2.0", "id": 2, "method": "prompts/get",
        "params": { "name": "crm__follow_up", "arguments": { "customer_id": "c_1" }, "_meta": meta_2026() } });
    for (body, name) in [(read, CONTACT), (prompt, "crm__follow_up")] {
        let reply = post_2026_at(&http, &url, &acme.agent_token, &body, Some(name)).await;
        let result = reply.result().unwrap_or_else(|| panic!("{}", reply.text));
        assert_eq!(result["resultType"], "complete", "{result}");
    }
    app.stop().await;
}

/// The tenant's policies decide reads of resources and prompts like tool calls: a `forbid`
/// on `connection/resources:read` (with the URI in `context.args`) refuses that read, with the
/// policy named in the answer and the audit trail; one on `prompts:list` empties the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_policies_decide_resource_and_prompt_reads() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let cedar = r#"
@id("not-grace")
forbid (principal, action == Portcullis::Action::"read", resource == Portcullis::Tool::"crm/resources:read")
when { context.args.hasTag("uri") && context.args.getTag("uri") like "*/c_2" };
@id("no-prompt-list")
forbid (principal, action == Portcullis::Action::"read", resource == Portcullis::Tool::"crm/prompts:list");
"#;
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "/tenants/acme/policy",
            &app.admin_token,
            Some(json!({ "cedar": cedar, "settings": {} })),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    client
        .running
        .read_resource(ReadResourceRequestParams::new(CONTACT))
        .await
        .expect("another contact reads");
    let refused = client
        .running
        .read_resource(ReadResourceRequestParams::new(
            "portcullis://crm/crm://contacts/c_2",
        ))
        .await
        .expect_err("the policy refuses this read");
    assert!(
        refused.to_string().contains("denied by policy")
            && refused.to_string().contains("crm/resources:read"),
        "{refused}"
    );
    assert!(
        client
            .running
            .list_all_prompts()
            .await
            .expect("list")
            .is_empty(),
        "the policy refuses the listing"
    );
    let events = app.audit_events("acme").await;
    let denied = events_of_kind(&events, "resource_read")
        .into_iter()
        .find(|e| e["decision"] == "deny")
        .expect("the refused read is audited");
    assert_eq!(
        denied["resource"],
        "resource:portcullis://crm/crm://contacts/c_2"
    );
    assert!(
        denied["detail"]["policy"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|id| id == "not-grace")),
        "{denied}"
    );
    app.stop().await;
}
