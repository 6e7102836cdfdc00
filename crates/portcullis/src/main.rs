//! The `portcullis` binary: a thin `main` over clap subcommands. `serve` runs the gateway;
//! the admin commands talk to a running gateway's admin API; `audit` reads the database
//! directly so an auditor can verify without the server; `demo-upstream` is the shipped demo
//! MCP server.

mod access_cli;
mod admin_cli;
mod audit_cli;
mod mcp_cli;
mod models_cli;
mod policy_cli;
mod posture_cli;
mod shares_cli;
mod trust_cli;
mod webhooks_cli;

use clap::{Parser, Subcommand};

// mimalloc: the gateway's per-call work (MCP framing, Cedar's evaluator) allocates many small,
// short-lived values; it is faster and keeps latency tails shorter than the system allocator.
// Built with `no_thp`: it turns transparent huge pages off for the process as it starts, since
// every 2 MiB region of its arenas a huge page backs stays resident whole (about a third of an
// idle gateway's memory otherwise).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_server::config::{Config, DEFAULT_CONFIG};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A security gateway for AI agents: reads flow, effects wait for a human."
)]
struct Cli {
    /// Configuration file (default: ./portcullis.toml when it exists).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// On first start, also create a ready demo tenant, CRM connection, agent and approver.
        #[arg(long)]
        demo: bool,
    },
    /// Print the built-in, commented default configuration.
    PrintDefaultConfig,
    /// Create or upgrade the database schema (idempotent; safe from several replicas at once).
    /// For PostgreSQL, give the owner's URL; it also creates the `portcullis_app` role.
    Migrate {
        /// Database URL (default: the configured `data.database_url`).
        #[arg(long, env = "PORTCULLIS_MIGRATE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Print the public key that verifies receipts and audit checkpoints (hex Ed25519; with
    /// --note, the C2SP signed-note verifier key `name+id+base64`).
    PublicKey {
        #[arg(long)]
        note: bool,
    },
    /// Verify an audit export offline (`audit export --format jsonl`): the chain and Merkle
    /// tree against every checkpoint in it and every one given, and a receipt or guardrail
    /// behind every effect. Needs no database and no server. Exits 1 naming the problem.
    VerifyExport {
        /// The export (JSON lines).
        file: PathBuf,
        /// A key to trust: hex Ed25519 or `name+id+base64`; repeat after a rotation.
        #[arg(long, required = true)]
        public_key: Vec<String>,
        /// Checkpoints held elsewhere (a witness log, or one signed note) the export must be
        /// consistent with; repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run the demo CRM/mail/billing MCP server (stdio, or streamable HTTP with --http);
    /// with --conformance, the MCP conformance-suite fixture server instead.
    DemoUpstream {
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Serve the MCP conformance-suite fixture server instead of the demo CRM.
        #[arg(long)]
        conformance: bool,
        /// Serve the sandbox escape probe (stdio only): one tool, `attempt`, that tries one
        /// way out of its sandbox and says whether it was blocked.
        #[arg(long, conflicts_with_all = ["http", "conformance"])]
        probe: bool,
    },
    /// Talk to a tenant's MCP endpoint as an agent would (list tools, call one).
    Mcp(mcp_cli::McpArgs),
    #[command(flatten)]
    Admin(admin_cli::AdminCommand),
    /// Check, test and explain Cedar policies offline; upload or show a tenant's policy.
    #[command(subcommand)]
    Policy(policy_cli::PolicyCommand),
    #[command(flatten)]
    Trust(trust_cli::TrustCommand),
    /// The vault's master key (reads the database and the key file directly).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Verify, export and checkpoint the audit trail (reads the database directly).
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// The periodic access review: last use of every connection, secret and grant, and
    /// what to revoke, narrow or rotate.
    #[command(subcommand)]
    Access(access_cli::AccessCommand),
    /// A tenant's outbound webhooks (Standard Webhooks): endpoints, the delivery log,
    /// redelivery.
    Webhooks {
        #[command(flatten)]
        remote: admin_cli::Remote,
        #[command(subcommand)]
        command: webhooks_cli::WebhooksCommand,
    },
    /// Signed share links for a tenant's audit export or an approval's evidence.
    Shares {
        #[command(flatten)]
        remote: admin_cli::Remote,
        #[command(subcommand)]
        command: shares_cli::SharesCommand,
    },
    /// A tenant's model routes (OpenAI- and Anthropic-compatible, zero retention by
    /// default), its provider allow and block lists, and the credits ledger.
    Models {
        #[command(flatten)]
        remote: admin_cli::Remote,
        #[command(subcommand)]
        command: models_cli::ModelsCommand,
    },
    /// Which connections, tools and model providers received or returned which data
    /// classes (from the redactor's findings in the audit trail).
    Dataflow(posture_cli::DataflowArgs),
    /// A tenant's posture over a period, signed by the gateway (zero-retention share,
    /// BYO-key requests, providers and their policy, redaction rules, configuration
    /// changes); `attest verify FILE --public-key K` checks one offline.
    Attest(posture_cli::AttestArgs),
    /// The sources of signed inbound webhooks a tenant accepts (GitHub-style or Standard
    /// Webhooks).
    Inbound {
        #[command(flatten)]
        remote: admin_cli::Remote,
        #[command(subcommand)]
        command: webhooks_cli::InboundCommand,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Make a new master key current and rewrap every tenant key under it (no secret is
    /// decrypted). Key file: a new key is added to the key file; restart every replica with
    /// it. PKCS#11: `--to LABEL` names the new key (made in the token if missing); then set
    /// `vault.pkcs11_key_label` to it.
    RotateMaster {
        #[arg(long, value_name = "LABEL")]
        to: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve { demo } => serve(cli.config.as_deref(), demo).await?,
        Command::PrintDefaultConfig => print!("{DEFAULT_CONFIG}"),
        Command::Migrate { database_url } => {
            let config = Config::load(cli.config.as_deref())?;
            if database_url.is_none() {
                portcullis_server::bootstrap::ensure_data_dir(&config)?;
            }
            let url = database_url.unwrap_or_else(|| config.database_url());
            portcullis_store::migrate(&url).await?;
            println!("schema is up to date");
            // Connection environments stored in plain text before the vault existed move into
            // it, through the gateway's own database account and key provider.
            let moved = portcullis_server::bootstrap::seal_with_config(&config).await?;
            println!("{moved} plain environment value(s) sealed into the vault");
        }
        Command::PublicKey { note } => {
            let config = Config::load(cli.config.as_deref())?;
            let keys = portcullis_server::bootstrap::load_keys(&config.key_file())?;
            if note {
                let key = keys.verifying_key();
                println!(
                    "{}",
                    portcullis_core::note::vkey(portcullis_core::note::KEY_NAME, &key)
                );
            } else {
                println!("{}", hex::encode(keys.verifying_key().as_bytes()));
            }
        }
        Command::VerifyExport {
            file,
            public_key,
            checkpoint,
            json,
        } => return audit_cli::verify_export(&file, &public_key, &checkpoint, json),
        Command::DemoUpstream {
            http: _,
            conformance: _,
            probe: true,
        } => portcullis_demo::probe::serve_stdio().await?,
        Command::DemoUpstream {
            http, conformance, ..
        } => demo_upstream(http, conformance).await?,
        Command::Mcp(args) => return mcp_cli::run(args).await,
        Command::Admin(command) => return admin_cli::run(command).await,
        Command::Policy(command) => return policy_cli::run(command).await,
        Command::Trust(command) => return trust_cli::run(command).await,
        Command::Audit(command) => return audit_cli::run(command, cli.config.as_deref()).await,
        Command::Vault(VaultCommand::RotateMaster { to }) => {
            let config = Config::load(cli.config.as_deref())?;
            let (master, count) =
                portcullis_server::bootstrap::rotate_master(&config, to.as_deref()).await?;
            println!("master key `{master}` is current; {count} tenant key(s) rewrapped");
        }
        Command::Access(command) => return access_cli::run(command).await,
        Command::Webhooks { remote, command } => {
            return webhooks_cli::run_webhooks(remote, command).await;
        }
        Command::Shares { remote, command } => return shares_cli::run(remote, command).await,
        Command::Models { remote, command } => return models_cli::run(remote, command).await,
        Command::Dataflow(args) => return posture_cli::dataflow(args).await,
        Command::Attest(args) => return posture_cli::attest(args).await,
        Command::Inbound { remote, command } => {
            return webhooks_cli::run_inbound(remote, command).await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(config_file: Option<&std::path::Path>, demo: bool) -> anyhow::Result<()> {
    let config = Config::load(config_file)?;
    portcullis_server::init_tracing(&config.log);
    let listen = config.server.listen;
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "listening beyond loopback without TLS: put a TLS-terminating proxy in front");
    }
    // The file read (an explicit one, or `portcullis.toml` here when present).
    let config_file = config_file
        .map(std::path::Path::to_path_buf)
        .or_else(|| {
            let default = std::path::PathBuf::from("portcullis.toml");
            default.exists().then_some(default)
        })
        .map(|file| file.canonicalize().unwrap_or(file));
    let options = portcullis_server::BuildOptions {
        self_exe: Some(std::env::current_exe()?),
        config_file,
        demo,
        ..Default::default()
    };
    let mut app = portcullis_server::Application::build(config, options).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    if let Some(token) = app.first_start.admin_token.take() {
        println!("First start: bootstrap admin token (shown once, stored only as a hash):");
        println!("  export PORTCULLIS_ADMIN_TOKEN={}", token.expose());
    }
    if let Some(demo) = app.first_start.demo.take() {
        println!(
            "Demo tenant `{}` is ready. MCP endpoint: {base}/t/{}/mcp",
            demo.tenant, demo.tenant
        );
        println!(
            "  agent token (shown once):    {}",
            demo.agent_token.expose()
        );
        println!(
            "  approver `{}` token (shown once): {}",
            demo.approver,
            demo.approver_token.expose()
        );
    }
    println!("portcullis listening on {base}");
    tracing::info!(%addr, "listening");
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    app.serve(listener, shutdown).await?;
    Ok(())
}

async fn demo_upstream(http: Option<String>, conformance: bool) -> anyhow::Result<()> {
    let name = if conformance {
        "conformance upstream"
    } else {
        "demo upstream"
    };
    match http {
        None if conformance => portcullis_demo::serve_conformance_stdio().await,
        None => portcullis_demo::serve_stdio().await,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            let bound = listener.local_addr()?;
            eprintln!("{name} listening on http://{bound}/mcp");
            println!("PORT={}", bound.port());
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            if conformance {
                portcullis_demo::serve_conformance_http(listener, shutdown).await
            } else {
                portcullis_demo::serve_http(listener, shutdown).await
            }
        }
    }
}
