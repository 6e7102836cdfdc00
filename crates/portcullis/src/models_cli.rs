//! `portcullis models …`: a tenant's model routes (OpenAI- and Anthropic-compatible, keys
//! from the vault), its provider allow and block lists, and the credits ledger. A client of
//! the admin API.

use crate::admin_cli::{Remote, client, print_json};
use clap::Subcommand;
use portcullis_server::admin::models::UsageQuery;
use portcullis_server::models::route::{Api, ModelRoute, PiiMode, ProviderPolicy};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Create or replace a route. Put the provider key in the vault first
    /// (`portcullis secrets put --tenant T NAME`).
    Put {
        #[arg(long)]
        tenant: String,
        /// The route's name.
        name: String,
        /// The wire format callers and provider speak: openai or anthropic.
        #[arg(long)]
        api: String,
        /// The provider's name, as the provider policy names it (openai, azure, anthropic…).
        #[arg(long)]
        provider: String,
        /// `https://api.openai.com/v1`, `https://api.anthropic.com`.
        #[arg(long)]
        base_url: String,
        /// A model callers may ask for (a prefix may end in `*`); repeatable.
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// The vault secret holding the provider key.
        #[arg(long)]
        key_secret: String,
        /// The key is the operator's, not the tenant's own.
        #[arg(long)]
        operator_key: bool,
        /// Send without the no-retention settings (and allow features that keep data).
        #[arg(long)]
        allow_retention: bool,
        /// `NAME=VALUE`: a header the provider honours for no retention; repeatable.
        #[arg(long = "retention-header")]
        retention_headers: Vec<String>,
        /// Personal data in prompts: mask (default), pseudonymise or off.
        #[arg(long, default_value = "mask")]
        pii: String,
        /// With --pii pseudonymise: put the values back into answers.
        #[arg(long)]
        restore: bool,
        /// A file whose text is every request's system prompt (never returned to callers).
        #[arg(long)]
        system_prompt_file: Option<std::path::PathBuf>,
        /// Credits per 1,000 input tokens (default 1000: one per token).
        #[arg(long, default_value_t = 1000)]
        credits_per_1k_input: i64,
        #[arg(long, default_value_t = 1000)]
        credits_per_1k_output: i64,
    },
    /// The tenant's routes and provider policy (as JSON; a system prompt is shown to admins).
    List {
        #[arg(long)]
        tenant: String,
    },
    Delete {
        #[arg(long)]
        tenant: String,
        name: String,
    },
    /// Which providers routes may use: `--allow` limits to those named, `--block` refuses
    /// those named (wins over allow). No flags: every provider.
    Providers {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        allow: Vec<String>,
        #[arg(long)]
        block: Vec<String>,
    },
    /// The credits ledger: requests, tokens and credits per route, provider and model.
    Usage {
        #[arg(long)]
        tenant: String,
        /// How far back: `30d`, `12h` (default 30d).
        #[arg(long, default_value = "30d")]
        since: String,
    },
}

pub async fn run(remote: Remote, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    let c = client(&remote)?;
    match command {
        ModelsCommand::Put {
            tenant,
            name,
            api,
            provider,
            base_url,
            models,
            key_secret,
            operator_key,
            allow_retention,
            retention_headers,
            pii,
            restore,
            system_prompt_file,
            credits_per_1k_input,
            credits_per_1k_output,
        } => {
            let api = match api.as_str() {
                "openai" => Api::Openai,
                "anthropic" => Api::Anthropic,
                other => anyhow::bail!("--api is openai or anthropic, not `{other}`"),
            };
            let pii = match pii.as_str() {
                "mask" => PiiMode::Mask,
                "pseudonymise" | "pseudonymize" => PiiMode::Pseudonymise,
                "off" => PiiMode::Off,
                other => anyhow::bail!("--pii is mask, pseudonymise or off, not `{other}`"),
            };
            let mut headers = BTreeMap::new();
            for pair in retention_headers {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--retention-header is NAME=VALUE"))?;
                headers.insert(name.to_owned(), value.to_owned());
            }
            let system_prompt = match system_prompt_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let route = ModelRoute {
                api,
                provider,
                base_url,
                models,
                key_secret,
                byo: !operator_key,
                zero_retention: !allow_retention,
                retention_headers: headers,
                pii,
                restore,
                system_prompt,
                credits_per_1k_input,
                credits_per_1k_output,
            };
            let view = c.put_model_route(&tenant, &name, &route).await?;
            if remote.json() {
                print_json(&view);
            } else {
                println!(
                    "model route `{}` ({} API, provider {}): {}; zero retention {}, PII {}",
                    view.name,
                    view.route.api.as_str(),
                    view.route.provider,
                    view.route.models.join(", "),
                    if view.route.zero_retention {
                        "on"
                    } else {
                        "off"
                    },
                    view.route.pii.as_str(),
                );
            }
        }
        ModelsCommand::List { tenant } => print_json(&c.models(&tenant).await?),
        ModelsCommand::Delete { tenant, name } => {
            c.delete_model_route(&tenant, &name).await?;
            println!("model route `{name}` deleted");
        }
        ModelsCommand::Providers {
            tenant,
            allow,
            block,
        } => {
            let policy = ProviderPolicy {
                allow: (!allow.is_empty()).then_some(allow),
                block,
            };
            print_json(&c.set_model_providers(&tenant, &policy).await?);
        }
        ModelsCommand::Usage { tenant, since } => {
            let query = UsageQuery { since: Some(since) };
            let report = c.model_usage(&tenant, &query).await?;
            if remote.json() {
                print_json(&report);
            } else {
                println!(
                    "{:<16} {:<12} {:<24} {:>8} {:>10} {:>10} {:>10}",
                    "ROUTE", "PROVIDER", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "CREDITS"
                );
                for l in &report.lines {
                    println!(
                        "{:<16} {:<12} {:<24} {:>8} {:>10} {:>10} {:>10}",
                        l.route,
                        l.provider,
                        l.model,
                        l.requests,
                        l.input_tokens,
                        l.output_tokens,
                        l.credits
                    );
                }
                println!("total credits: {}", report.total_credits);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
