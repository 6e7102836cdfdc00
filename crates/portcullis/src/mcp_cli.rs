//! `portcullis mcp`: a small MCP client (rmcp, streamable HTTP, 2026-07-28 or the older
//! `initialize` handshake) for trying a gateway endpoint from the shell, as an agent would.

use anyhow::Context;
use clap::{Args, Subcommand};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt as _, ServiceExt as _};
use std::process::ExitCode;

#[derive(Args)]
pub struct McpArgs {
    /// The tenant's MCP endpoint, e.g. http://127.0.0.1:8745/t/demo/mcp
    #[arg(long, env = "PORTCULLIS_MCP_URL")]
    url: String,
    /// The agent token.
    #[arg(long, env = "PORTCULLIS_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Use the older `initialize` handshake instead of 2026-07-28 `server/discover`.
    #[arg(long)]
    legacy: bool,
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(Subcommand)]
pub enum McpCommand {
    /// List the tools this agent may use.
    Tools,
    /// Call a tool with JSON arguments; prints the result as JSON.
    Call {
        tool: String,
        #[arg(default_value = "{}")]
        arguments: String,
    },
}

pub async fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let arguments = match &args.command {
        McpCommand::Call { arguments, .. } => Some(
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(arguments)
                .context("arguments must be a JSON object")?,
        ),
        McpCommand::Tools => None,
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(args.url.clone())
            .auth_header(args.token.clone()),
    );
    let client = if args.legacy {
        ().serve(transport).await
    } else {
        ().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
    }
    .with_context(|| format!("cannot connect to {}", args.url))?;
    let code = match args.command {
        McpCommand::Tools => {
            for tool in client.list_all_tools().await? {
                // The gateway's own classification decides; the upstream's hints do not.
                let held = tool
                    .meta
                    .as_ref()
                    .and_then(|m| {
                        m.0.get(portcullis_server::mcp::render::CLASSIFICATION_META_KEY)
                    })
                    .and_then(|c| c["held"].as_bool())
                    .unwrap_or(true);
                println!(
                    "{:<24} {}",
                    tool.name,
                    if !held {
                        "runs at once (read or draft)"
                    } else {
                        "held for approval"
                    }
                );
            }
            ExitCode::SUCCESS
        }
        McpCommand::Call { tool, .. } => {
            let mut params = CallToolRequestParams::new(tool);
            if let Some(arguments) = arguments {
                params = params.with_arguments(arguments);
            }
            let result = client.call_tool(params).await?;
            let shown = result
                .structured_content
                .clone()
                .unwrap_or_else(|| serde_json::to_value(&result.content).unwrap_or_default());
            println!("{}", serde_json::to_string_pretty(&shown)?);
            if result.is_error == Some(true) {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    let _ = client.cancel().await;
    Ok(code)
}
