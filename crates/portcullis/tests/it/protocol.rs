//! Both MCP protocol eras through the gateway, notification forwarding (progress, logging),
//! the 2026-07-28 header rules, and shutdown with legacy sessions open.

use crate::support::*;
use reqwest::StatusCode;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, ProtocolVersion, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

const ERAS: [(Era, ProtocolVersion); 2] = [
    (Era::Discover, ProtocolVersion::V_2026_07_28),
    (Era::Initialize, ProtocolVersion::V_2025_11_25),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_read_hold_approve_and_execute_once() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    for (i, (era, version)) in ERAS.into_iter().enumerate() {
        let client = app.client("acme", &acme.agent_token, era).await;
        assert_eq!(client.protocol_version(), version, "{era:?}");
        let tools = client.tool_names().await;
        assert_eq!(
            tools,
            [
                "count_to",
                "create_contact",
                "draft_email",
                "get_contact",
                "issue_refund",
                "list_contacts",
                "send_email",
                "update_contact"
            ]
            .map(|t| format!("crm__{t}")),
            "{era:?}"
        );

        let read = client.call("crm__list_contacts", json!({})).await;
        assert_eq!(
            structured(&read)["contacts"].as_array().map(Vec::len),
            Some(3),
            "{era:?}: {read:?}"
        );

        let send = json!({ "to": format!("era{i}@example.com"), "subject": "Hi", "body": "Hello" });
        let held = client.call("crm__send_email", send.clone()).await;
        let id = approval_id(&held);
        assert_eq!(held.is_error, Some(true), "a held call is not a success");
        assert_eq!(
            effect_lines(&acme.effect_log).len(),
            i,
            "{era:?}: executed before approval"
        );
        app.approve(&acme, &id).await;
        let executed = client.call("crm__send_email", send.clone()).await;
        assert_eq!(
            structured(&executed)["status"],
            "sent",
            "{era:?}: {executed:?}"
        );
        assert_eq!(structured(&executed)["to"], send["to"]);
        let effects = effect_lines(&acme.effect_log);
        assert_eq!(effects.len(), i + 1, "{era:?}");
        let shown = app.approval(&id).await;
        assert_eq!(shown.status, ApprovalStatus::Executed, "{era:?}: {shown:?}");
    }
    app.stop().await;
}

/// Call `count_to` with the client's own progress token; returns the token and the result.
async fn count_to(
    client: &Client,
    n: u32,
) -> (rmcp::model::ProgressToken, rmcp::model::CallToolResult) {
    let params =
        CallToolRequestParams::new("crm__count_to").with_arguments(args(json!({ "n": n })));
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = client
        .running
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::with_timeout(WAIT))
        .await
        .expect("request sent");
    let token = handle.progress_token.clone();
    match handle.await_response().await.expect("count_to answered") {
        ServerResult::CallToolResult(result) => (token, result),
        other => panic!("unexpected answer: {other:?}"),
    }
}

// Upstream notifications are forwarded on rmcp's spawned notification-handler tasks, so the
// gateway must not hand the result back (and close the agent's stream) before they ran.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_progress_reaches_the_caller_with_its_own_token() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut failures = Vec::new();
    for (era, _) in ERAS {
        let client = app.client("acme", &acme.agent_token, era).await;
        let (token, result) = count_to(&client, 5).await;
        assert_eq!(result.is_error, Some(false), "{era:?}: {result:?}");
        let mut inbox = client.inbox.lock().await;
        let mut seen = Vec::new();
        while seen.len() < 5 {
            // The result is already here: whatever progress was forwarded arrived before it.
            let Ok(progress) =
                tokio::time::timeout(std::time::Duration::from_secs(2), inbox.progress.recv())
                    .await
            else {
                break;
            };
            let progress = progress.expect("inbox open");
            assert_eq!(
                progress.progress_token, token,
                "{era:?}: progress carries another token"
            );
            assert_eq!(progress.total, Some(5.0));
            seen.push(progress.progress);
        }
        seen.sort_by(f64::total_cmp);
        if seen != [1.0, 2.0, 3.0, 4.0, 5.0] {
            failures.push(format!("{era:?}: got progress {seen:?} of 1..=5"));
        }
    }
    assert!(failures.is_empty(), "progress lost: {failures:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_logging_reaches_the_caller() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let mut failures = Vec::new();
    for (era, _) in ERAS {
        let client = app.client("acme", &acme.agent_token, era).await;
        let (_, result) = count_to(&client, 5).await;
        assert_eq!(result.is_error, Some(false), "{era:?}: {result:?}");
        let mut inbox = client.inbox.lock().await;
        match tokio::time::timeout(std::time::Duration::from_secs(10), inbox.logs.recv()).await {
            Ok(log) => {
                let log = log.expect("inbox open");
                assert_eq!(log["level"], "info", "{era:?}: {log}");
                assert_eq!(log["logger"], "portcullis-demo", "{era:?}: {log}");
                assert_eq!(
                    log["data"],
                    json!({ "message": "counted to 5" }),
                    "{era:?}: {log}"
                );
            }
            Err(_) => failures.push(format!(
                "{era:?}: the upstream's log message never reached the agent"
            )),
        }
    }
    assert!(failures.is_empty(), "logging lost: {failures:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_name_header_that_disagrees_with_the_body_is_rejected() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let send = tools_call_2026(
        1,
        "crm__send_email",
        json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" }),
    );
    let read = tools_call_2026(2, "crm__get_contact", json!({ "id": "c_1" }));

    // A router reading the header would see a read; the body is a send (and the reverse).
    for (body, header) in [
        (&send, Some("crm__get_contact")),
        (&read, Some("crm__send_email")),
        (&send, None),
    ] {
        let reply = post_2026(&app, "acme", &acme.agent_token, body, header).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{header:?}: {}",
            reply.text
        );
        assert_eq!(
            reply.error_code(),
            Some(-32020),
            "{header:?}: {}",
            reply.text
        );
    }
    assert!(
        approvals_of(&app, "acme").await.is_empty(),
        "a rejected request was held"
    );
    assert!(effect_lines(&acme.effect_log).is_empty());
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert!(
        events_of_kind(&events, "tool_call").is_empty()
            && events_of_kind(&events, "hold").is_empty(),
        "a rejected request reached the gate"
    );

    // With matching headers the same bodies are decided on what they say.
    let reply = post_2026(
        &app,
        "acme",
        &acme.agent_token,
        &read,
        Some("crm__get_contact"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.result().expect("result")["structuredContent"]["name"],
        "Ada Lovelace"
    );
    let reply = post_2026(
        &app,
        "acme",
        &acme.agent_token,
        &send,
        Some("crm__send_email"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let result: Value = reply.result().expect("result");
    assert_eq!(
        result["structuredContent"]["status"], "pending_approval",
        "{result}"
    );
    // The Base64 form of the header is accepted when it matches.
    let encoded = format!("=?base64?{}?=", base64_encode("crm__get_contact"));
    let reply = post_2026(&app, "acme", &acme.agent_token, &read, Some(&encoded)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(effect_lines(&acme.effect_log).is_empty());
    app.stop().await;
}

fn base64_encode(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_promptly_with_legacy_sessions_open() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    // A legacy client holds a long-lived GET stream open; shutdown must end it, not wait on it.
    let legacy = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let modern = app.client("acme", &acme.agent_token, Era::Discover).await;
    assert_eq!(
        status(
            &legacy
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    assert_eq!(
        status(
            &modern
                .call("crm__get_contact", json!({ "id": "c_1" }))
                .await
        ),
        "ok"
    );
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("stop did not finish in time");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop((legacy, modern));
}

/// A plain client with default delayed ACKs (Python's `http.client`, one keep-alive
/// connection) in both protocol eras. A response written in segments that Nagle's algorithm
/// holds back stalls every call about 40 ms until the client's delayed ACK: the one timing
/// assertion in the suite, because it detects a protocol bug, not a speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_never_waits_for_a_delayed_ack() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/clients/plain_http.py"
    );
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(app.mcp_url("acme"))
            .arg(&acme.agent_token)
            .arg("crm__get_contact")
            .arg(r#"{"id":"c_1"}"#)
            .arg("15")
            .output(),
    )
    .await
    .expect("the plain client finished")
    .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let times: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the client prints JSON");
    for era in ["2026-07-28", "initialize"] {
        let median = times[era]["median_ms"].as_f64().expect("median");
        assert!(
            median < 30.0,
            "{era}: median {median:.1} ms per call: a delayed-ACK stall ({times})"
        );
    }
    app.stop().await;
}

/// A TCP proxy in front of `target` that counts the connections it accepted.
async fn counting_proxy(
    target: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = inbound.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_an_http_upstream_reuse_its_connections() {
    use portcullis_core::effect::EffectClass;
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(portcullis_demo::serve_http(
        upstream,
        std::future::pending(),
    ));
    let (proxy, accepted) = counting_proxy(upstream_addr).await;
    add_http_connection(
        &app,
        &acme,
        "web",
        format!("http://{proxy}/mcp"),
        &[("get_contact", EffectClass::Read)],
        false,
    )
    .await;
    for (era, _) in ERAS {
        let client = app.client("acme", &acme.agent_token, era).await;
        eventually("the HTTP upstream's tools", || async {
            client
                .try_call("web__get_contact", json!({ "id": "c_1" }))
                .await
                .is_ok_and(|r| r.is_error == Some(false))
        })
        .await;
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..20 {
            let result = client
                .call("web__get_contact", json!({ "id": "c_1" }))
                .await;
            assert_eq!(result.is_error, Some(false), "{era:?}: {result:?}");
        }
        let opened = accepted.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!(
            opened <= 2,
            "{era:?}: 20 sequential calls opened {opened} upstream connections; they should reuse one"
        );
    }
    app.stop().await;
}

/// The demo upstream as its own process, serving streamable HTTP on `port` (0: any).
async fn http_upstream_process(port: u16) -> (tokio::process::Child, u16) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo-upstream", "--http", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo upstream");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.expect("read stdout") {
        if let Some(port) = line.strip_prefix("PORT=") {
            return (child, port.parse().expect("port"));
        }
    }
    panic!("the demo upstream exited before listening");
}

/// An HTTP upstream that dies and comes back (a deploy, a crash) is found dead by the
/// supervisor, reported down, and reconnected without an admin; calls meanwhile fail at once
/// instead of waiting out the call timeout, and a held action waits rather than being lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_that_restarts_is_recovered_without_an_admin() {
    use portcullis_core::effect::EffectClass;
    use portcullis_server::upstream::Status;
    let app = TestApp::spawn_with(|c| {
        c.upstream.ping_interval_secs = 1;
        c.upstream.ping_timeout_secs = 1;
        // Long enough that a call waiting for a dead upstream would outlive the test's waits.
        c.upstream.call_timeout_secs = 600;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let (mut first, port) = http_upstream_process(0).await;
    let api = app.admin_api();
    let id = add_http_connection(
        &app,
        &acme,
        "web",
        format!("http://127.0.0.1:{port}/mcp"),
        &[("get_contact", EffectClass::Read)],
        false,
    )
    .await;
    let id: portcullis_core::id::ConnectionId = id.parse().expect("id");
    let status = || app.state.upstreams.status(&id);
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let read_ok = || async {
        client
            .try_call("web__get_contact", json!({ "id": "c_1" }))
            .await
            .is_ok_and(|r| r.is_error == Some(false))
    };
    eventually("the HTTP upstream serves", read_ok).await;

    // The upstream dies without a word.
    first.kill().await.expect("kill the upstream");
    eventually("the connection reported down", || async {
        matches!(status(), Status::Down { .. })
    })
    .await;
    let listed = api.list_connections("acme").await.expect("list");
    let web = listed.iter().find(|c| c.name == "web").expect("listed");
    assert!(
        matches!(
            web.status,
            portcullis_server::admin::connections::ConnectionState::Down { .. }
        ),
        "{:?}",
        web.status
    );
    let ready: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert!(ready["upstreams"]["down"].as_u64() >= Some(1), "{ready}");
    // While it is down a call is answered at once (the 600 s call timeout is not waited out).
    let failed = client
        .call("web__get_contact", json!({ "id": "c_1" }))
        .await;
    assert_eq!(failed.is_error, Some(true), "{failed:?}");

    // It comes back on the same address: the supervisor reconnects by itself.
    let (_second, again) = http_upstream_process(port).await;
    assert_eq!(again, port);
    eventually("the connection is ready again", || async {
        matches!(status(), Status::Ready { .. })
    })
    .await;
    eventually("calls are served again", read_ok).await;
    app.stop().await;
}
