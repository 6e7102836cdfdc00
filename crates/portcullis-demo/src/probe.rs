//! The escape probe: an MCP server with one tool, `attempt`, that tries one way out of its
//! sandbox (writing outside its folder, reading the gateway's files or environment, opening
//! a socket, forking without bound, exhausting memory, regaining privileges, tracing or
//! signalling the gateway, loading a kernel module, mounting) and reports whether it was
//! blocked. The sandbox tests run it as a real confined upstream.

use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::Path;

/// One escape attempt.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AttemptArgs {
    /// `write_file`, `read_file`, `list_folder`, `connect_tcp`, `connect_unix`, `allocate`,
    /// `run`, `fork_many`, `ptrace`, `signal`, `load_module`, `mount`, `whoami`,
    /// `through_proxy` (a tunnel through the gateway's egress proxy), or, to test
    /// supervision, `spin` (seconds of CPU), `fill` (MiB into a file in its folder) and
    /// `freeze` (stop answering).
    pub escape: String,
    /// What it aims at: a path, `host:port`, a pid, a size in MiB or a count.
    #[serde(default)]
    pub target: String,
    /// Arguments for `run`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The probe server.
#[derive(Clone)]
pub struct ProbeServer {
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for ProbeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeServer").finish_non_exhaustive()
    }
}

impl Default for ProbeServer {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

fn number<T: std::str::FromStr + Default>(target: &str) -> T {
    target.parse().unwrap_or_default()
}

#[tool_router]
impl ProbeServer {
    /// Try one escape and report `{"escape", "blocked", "detail"}`.
    #[tool(annotations(title = "Attempt an escape", read_only_hint = true))]
    async fn attempt(&self, Parameters(args): Parameters<AttemptArgs>) -> CallToolResult {
        use portcullis_sandbox::probe;
        let target = args.target.as_str();
        let path = Path::new(target);
        let outcome = match args.escape.as_str() {
            "write_file" => probe::write_file(path),
            "read_file" => probe::read_file(path),
            "list_folder" => probe::list_folder(path),
            "connect_tcp" => probe::connect_tcp(target),
            "connect_unix" => probe::connect_unix(path),
            "allocate" => probe::allocate(number(target)),
            "run" => probe::run(path, &args.args),
            "fork_many" => probe::fork_many(number(target)),
            "ptrace" => probe::ptrace(number(target)),
            "signal" => probe::signal(number(target)),
            "load_module" => probe::load_module(),
            "mount" => probe::mount(path),
            "whoami" => probe::whoami(),
            "spin" => probe::spin(number(target)),
            "fill" => probe::fill(Path::new("probe-fill"), number(target)),
            "freeze" => probe::freeze(),
            "through_proxy" => probe::through_proxy(target),
            "x32" => probe::x32_call(),
            other => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "unknown escape `{other}`"
                ))]);
            }
        };
        let body = serde_json::json!({
            "escape": args.escape,
            "blocked": outcome.blocked,
            "detail": outcome.detail,
        });
        CallToolResult::success(vec![ContentBlock::text(body.to_string())])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ProbeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "portcullis-escape-probe",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tries one way out of its sandbox per call and says whether it was blocked.",
            )
    }
}

/// Serve the probe over stdin/stdout until stdin closes.
pub async fn serve_stdio() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use rmcp::ServiceExt as _;
    let running = ProbeServer::default()
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("starting the probe MCP stdio service")?;
    running.waiting().await.context("running the probe")?;
    Ok(())
}
