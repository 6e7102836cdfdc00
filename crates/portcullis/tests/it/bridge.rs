//! Sampling and elicitation for agents on 2026-07-28 (issue "A transparent MCP gateway"): the
//! upstream speaks the earlier revision and sends its requests mid-call; an agent on the new
//! revision gets them as an input-required result and retries with the answers. The state it
//! echoes is a one-use handle that only the same agent, for the same call, can resume.
#![allow(
    deprecated,
    reason = "sampling is deprecated by SEP-2577 but still part of both revisions"
)]

use crate::support::*;
use portcullis_core::effect::EffectClass;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, ProtocolVersion, SamplingMessage,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
};
use serde_json::json;

/// An agent that answers sampling with a fixed completion and accepts every elicitation.
#[derive(Clone)]
struct Answering;

impl ClientHandler for Answering {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        capabilities.roots = Some(Default::default());
        ClientConfig::new(capabilities, Implementation::new("answering-agent", "1"))
    }

    async fn list_roots(
        &self,
        _cx: RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListRootsResult::new(vec![
            rmcp::model::Root::new("file:///home/agent/project"),
        ]))
    }

    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, rmcp::ErrorData> {
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("forty-two"),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        _params: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "name": "Ada" })))
    }
}

async fn answering(app: &TestApp, token: &str, era: Era) -> RunningService<RoleClient, Answering> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.mcp_url("acme"))
            .auth_header(token.to_owned()),
    );
    match era {
        Era::Initialize => Answering.serve(transport).await,
        Era::Discover => {
            Answering
                .serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover {
                        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                    },
                )
                .await
        }
    }
    .expect("agent connects")
}

/// The conformance upstream (which samples and elicits mid-call) as acme's `conf` connection.
async fn with_conformance_upstream(app: &TestApp, acme: &Tenant) {
    conformance_connection(app, acme, "conf", false).await;
}

/// The conformance upstream as connection `name`, forwarding the agent's roots or not.
async fn conformance_connection(app: &TestApp, acme: &Tenant, name: &str, forward_roots: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portcullis_demo::serve_conformance_http(
        listener,
        std::future::pending(),
    ));
    let id = add_http_connection(
        app,
        acme,
        name,
        format!("http://{addr}/mcp"),
        &[
            ("test_sampling", EffectClass::Read),
            ("test_elicitation", EffectClass::Read),
            ("test_roots", EffectClass::Read),
        ],
        forward_roots,
    )
    .await;
    app.wait_ready(&id).await;
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_string(&result.content).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_reach_agents_of_both_eras() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    with_conformance_upstream(&app, &acme).await;
    for era in [Era::Initialize, Era::Discover] {
        let agent = answering(&app, &acme.agent_token, era).await;
        let sampled = agent
            .call_tool(
                CallToolRequestParams::new("conf__test_sampling")
                    .with_arguments(args(json!({ "prompt": "What is six times seven?" }))),
            )
            .await
            .unwrap_or_else(|e| panic!("{era:?}: {e}"));
        assert!(text(&sampled).contains("forty-two"), "{era:?}: {sampled:?}");
        let elicited = agent
            .call_tool(
                CallToolRequestParams::new("conf__test_elicitation")
                    .with_arguments(args(json!({ "message": "Who are you?" }))),
            )
            .await
            .unwrap_or_else(|e| panic!("{era:?}: {e}"));
        assert!(text(&elicited).contains("accept"), "{era:?}: {elicited:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_state_resumes_only_its_own_call_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    with_conformance_upstream(&app, &acme).await;
    let agent = answering(&app, &acme.agent_token, Era::Discover).await;
    let call = |prompt: &str| {
        CallToolRequestParams::new("conf__test_sampling")
            .with_arguments(args(json!({ "prompt": prompt })))
    };
    let CallToolResponse::InputRequired(asked) = agent
        .call_tool_once(call("six times seven"))
        .await
        .expect("call")
    else {
        panic!("the upstream's sampling request comes back as input required");
    };
    let state = asked.request_state.clone().expect("a request state");
    let requests = asked.input_requests.clone().expect("input requests");
    let key = requests.keys().next().expect("one question").clone();
    let answer = json!({
        "role": "assistant",
        "content": { "type": "text", "text": "forty-two" },
        "model": "test-model",
    });
    let retry = |params: CallToolRequestParams, state: &str| {
        let mut params = params;
        params.request_state = Some(state.to_owned());
        params.input_responses = Some([(key.clone(), answer.clone())].into());
        params
    };
    // Another agent of the tenant, the same agent with other arguments, a forged state:
    // none of them resumes it.
    let other = agent_token(&app, "acme", "other-agent").await;
    let intruder = answering(&app, &other, Era::Discover).await;
    assert!(
        intruder
            .call_tool_once(retry(call("six times seven"), &state))
            .await
            .is_err()
    );
    assert!(
        agent
            .call_tool_once(retry(call("something else"), &state))
            .await
            .is_err()
    );
    assert!(
        agent
            .call_tool_once(retry(call("six times seven"), "00ff"))
            .await
            .is_err()
    );
    // The agent's own retry finishes the call, once.
    let done = agent
        .call_tool_once(retry(call("six times seven"), &state))
        .await
        .expect("resumed");
    let CallToolResponse::Complete(result) = done else {
        panic!("the resumed call completes: {done:?}");
    };
    assert!(text(&result).contains("forty-two"), "{result:?}");
    assert!(
        agent
            .call_tool_once(retry(call("six times seven"), &state))
            .await
            .is_err(),
        "a request state is good for one retry"
    );
    app.stop().await;
}

/// A token for a new agent of `tenant` (no grants needed to try a resume).
async fn agent_token(app: &TestApp, tenant: &str, name: &str) -> String {
    let api = app.admin_api();
    let agent = api
        .create_agent(
            tenant,
            &portcullis_server::admin::tenants::NameIn { name: name.into() },
        )
        .await
        .expect("agent");
    api.create_token(
        tenant,
        agent.id.as_str(),
        &portcullis_server::admin::tokens::TokenIn::default(),
    )
    .await
    .expect("token")
    .token
}

/// Roots reach an upstream only where the operator chose it for the connection: a client's
/// roots would otherwise replace the folders the operator gave a filesystem server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_are_forwarded_only_where_the_operator_chose_it() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    conformance_connection(&app, &acme, "kept", false).await;
    conformance_connection(&app, &acme, "shared", true).await;
    for era in [Era::Initialize, Era::Discover] {
        let agent = answering(&app, &acme.agent_token, era).await;
        let roots =
            |connection: &str| CallToolRequestParams::new(format!("{connection}__test_roots"));
        let kept = agent.call_tool(roots("kept")).await.expect("call");
        assert!(!text(&kept).contains("file:///"), "{era:?}: {kept:?}");
        let shared = agent.call_tool(roots("shared")).await.expect("call");
        assert!(
            text(&shared).contains("file:///home/agent/project"),
            "{era:?}: {shared:?}"
        );
    }
    app.stop().await;
}
