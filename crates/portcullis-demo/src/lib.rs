//! A small, real MCP server modelling a business CRM / mail / billing tool.
//!
//! The Portcullis quickstart and integration tests run it as a genuine
//! upstream process: it speaks MCP over stdio ([`serve_stdio`]) or streamable
//! HTTP at `/mcp` ([`serve_http`]), accepts both the legacy `initialize`
//! handshake and the 2026-07-28 `server/discover` lifecycle, and exposes seven
//! tools (`list_contacts`, `get_contact`, `draft_email`, `send_email`,
//! `update_contact`, `issue_refund`, `count_to`) whose annotations let a
//! gateway seed effect classes.
//!
//! Two environment variables make it observable from tests:
//!
//! * [`EFFECT_LOG_ENV`] (`PORTCULLIS_DEMO_EFFECT_LOG`): a file path; every
//!   execution of `send_email`, `update_contact` or `issue_refund` appends one
//!   JSON line `{"tool":"<name>","arguments":{...}}` to it before returning.
//! * [`VARIANT_ENV`] (`PORTCULLIS_DEMO_VARIANT`): when `changed`, the
//!   description of `send_email` differs, to exercise definition pinning.
//!
//! State (three seeded contacts `c_1`..`c_3`, drafts, counters) lives in memory
//! and is shared by every connection of one process.
//!
//! The crate also ships [`conformance::ConformanceServer`], the fixture server the
//! official MCP conformance suite tests ([`serve_conformance_http`],
//! [`serve_conformance_stdio`]).

pub mod conformance;
mod effect_log;
pub mod probe;
mod server;

use std::future::Future;

use anyhow::Context as _;
use rmcp::{
    ServiceExt as _,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{local::LocalSessionManager, never::NeverSessionManager},
    },
};

pub use effect_log::EFFECT_LOG_ENV;
pub use server::{Contact, DemoServer, VARIANT_ENV, VARIANT_FILE_ENV};

/// Loopback `Host` values the HTTP endpoint accepts (DNS-rebinding guard).
const ALLOWED_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "::1", "[::1]"];
/// Loopback `Origin` values (any port) the conformance endpoint accepts when a request has one.
const ALLOWED_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// Serves MCP over stdin/stdout until stdin closes (or the client goes away).
///
/// Only protocol messages are written to stdout.
pub async fn serve_stdio() -> anyhow::Result<()> {
    let server = DemoServer::new();
    let running = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("starting the MCP stdio service")?;
    running
        .waiting()
        .await
        .context("running the MCP stdio service")?;
    Ok(())
}

/// Serves streamable HTTP MCP at `/mcp` on `listener` until `shutdown` resolves.
///
/// The endpoint is stateless (no `Mcp-Session-Id`): every request is answered
/// on its own POST, as an SSE stream when the tool emits notifications first.
/// All connections share one in-memory state. Only loopback `Host` headers are
/// accepted.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(ALLOWED_HOSTS)
        .with_cancellation_token(cancel.child_token());
    let prototype = DemoServer::new();
    let service = StreamableHttpService::new(
        move || Ok(prototype.clone()),
        std::sync::Arc::new(NeverSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    serve_router(listener, router, shutdown, cancel)
        .await
        .context("serving MCP over HTTP")
}

/// Serve `router` until `shutdown` resolves (then `cancel` ends its streams). Small segments
/// go out at once (`TCP_NODELAY`): otherwise Nagle holds an SSE event's tail until the
/// client's delayed ACK, about 40 ms per call.
async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|stream: &mut tokio::net::TcpStream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await
}

/// Serves the conformance upstream ([`conformance::ConformanceServer`]) over stdin/stdout until
/// stdin closes.
pub async fn serve_conformance_stdio() -> anyhow::Result<()> {
    let running = conformance::ConformanceServer::new()
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("starting the conformance MCP stdio service")?;
    running
        .waiting()
        .await
        .context("running the conformance MCP stdio service")?;
    Ok(())
}

/// Serves the conformance upstream ([`conformance::ConformanceServer`]) as streamable HTTP MCP
/// at `/mcp` on `listener` until `shutdown` resolves.
///
/// Unlike [`serve_http`] it keeps sessions (`Mcp-Session-Id`, one server value per session)
/// and answers every request as an SSE stream, so notifications and server-to-client requests
/// (sampling, elicitation) travel on the stream of the tool call that caused them. Only
/// loopback `Host` headers, and loopback `Origin` headers when present, are accepted.
pub async fn serve_conformance_http(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(false)
        .with_allowed_hosts(ALLOWED_HOSTS)
        .with_allowed_origins(ALLOWED_ORIGINS)
        .with_cancellation_token(cancel.child_token());
    let service = StreamableHttpService::new(
        || Ok(conformance::ConformanceServer::new()),
        std::sync::Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    serve_router(listener, router, shutdown, cancel)
        .await
        .context("serving the conformance MCP endpoint over HTTP")
}
