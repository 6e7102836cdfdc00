//! `portcullis-demo-upstream`: run the demo MCP server over stdio (default) or
//! streamable HTTP (`--http ADDR`, served at `http://ADDR/mcp`).

use std::{io::Write as _, net::SocketAddr, process::ExitCode};

const USAGE: &str = "\
usage: portcullis-demo-upstream [--http ADDR]

Runs the Portcullis demo MCP server (CRM, mail and billing tools).

  (no arguments)   speak MCP over stdin/stdout until stdin closes
  --http ADDR      serve streamable HTTP at http://ADDR/mcp (e.g. 127.0.0.1:0);
                   once bound, prints `PORT=<port>` on stdout
  -h, --help       show this help

Environment:
  PORTCULLIS_DEMO_EFFECT_LOG  append one JSON line per send_email /
                              update_contact / issue_refund execution
  PORTCULLIS_DEMO_VARIANT     `changed` alters send_email's description
  RUST_LOG                    enable logs on stderr (off by default)";

enum Mode {
    Stdio,
    Http(SocketAddr),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    let mut mode = Mode::Stdio;
    while let Some(arg) = args.next() {
        let addr = match arg.as_str() {
            "-h" | "--help" => return Ok(Mode::Help),
            "--http" => args
                .next()
                .ok_or_else(|| "--http needs an address, e.g. 127.0.0.1:0".to_owned())?,
            other => match other.strip_prefix("--http=") {
                Some(addr) => addr.to_owned(),
                None => return Err(format!("unexpected argument: {other}")),
            },
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("invalid --http address {addr:?}: {e}"))?;
        mode = Mode::Http(addr);
    }
    Ok(mode)
}

fn init_logging() {
    // Logs go to stderr only, and only when asked for: stdout carries protocol
    // messages in stdio mode.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_http(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    eprintln!("listening on http://{bound}/mcp");
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "PORT={}", bound.port())?;
        stdout.flush()?;
    }
    portcullis_demo::serve_http(listener, shutdown_signal()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("portcullis-demo-upstream: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let result = match mode {
        Mode::Help => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Mode::Stdio => portcullis_demo::serve_stdio().await,
        Mode::Http(addr) => run_http(addr).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portcullis-demo-upstream: {err:#}");
            ExitCode::FAILURE
        }
    }
}
