//! `portcullis policy`: check, test and explain Cedar policies offline (for a tenant's own
//! CI: no gateway needed), and upload or show a tenant's policy on a running gateway.

use crate::admin_cli::{Remote, client, print_json};
use anyhow::{Context, bail};
use clap::Subcommand;
use portcullis_core::policy::{Engine, PolicyDocument, PolicySettings, table};
use portcullis_server::admin::policy::{PolicyIn, PolicyView};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file (and settings) against the schema; lists every problem.
    Validate {
        file: PathBuf,
        /// Settings of the built-in approval points (JSON).
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run a decision table (one expected decision per line) against a policy file; exits 1
    /// when any case fails.
    Test {
        file: PathBuf,
        table: PathBuf,
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show which policies decide one call, and why. The call is one decision-table line
    /// without its expectation: `AGENT CONNECTION/TOOL EFFECT {ARGS} [OPTIONS]`.
    Explain {
        file: PathBuf,
        #[arg(long)]
        call: String,
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the Cedar schema policies are validated against.
    Schema,
    /// Upload a tenant's policy to a running gateway (validated there again).
    Put {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        file: PathBuf,
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Show a tenant's policy in force, each policy with its plain-English sentence.
    Show {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn settings(path: Option<&Path>) -> anyhow::Result<PolicySettings> {
    match path {
        None => Ok(PolicySettings::default()),
        Some(p) => serde_json::from_str(&read(p)?)
            .with_context(|| format!("{} is not valid policy settings", p.display())),
    }
}

fn compile(file: &Path, settings_file: Option<&Path>) -> anyhow::Result<Result<Engine, String>> {
    let document = PolicyDocument {
        cedar: read(file)?,
        settings: settings(settings_file)?,
    };
    Ok(Engine::compile(&document).map_err(|e| e.to_string()))
}

pub async fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate {
            file,
            settings,
            json,
        } => match compile(&file, settings.as_deref())? {
            Err(problems) => {
                eprintln!("{problems}");
                Ok(ExitCode::FAILURE)
            }
            Ok(engine) => {
                if json {
                    print_json(&json!({
                        "valid": true,
                        "hash": engine.hash(),
                        "policies": engine.rules().iter().map(|r| json!({
                            "id": r.id, "kind": r.kind, "builtin": r.builtin, "english": r.english(),
                        })).collect::<Vec<_>>(),
                    }));
                } else {
                    let own = engine.rules().iter().filter(|r| !r.builtin).count();
                    println!(
                        "valid: {own} policies (+{} built-in), policy hash {}",
                        engine.rules().len() - own,
                        engine.hash()
                    );
                    for rule in engine.rules() {
                        println!("  {:<28} {}", rule.id, rule.english());
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        PolicyCommand::Test {
            file,
            table: table_file,
            settings,
            json,
        } => {
            let engine = match compile(&file, settings.as_deref())? {
                Ok(engine) => engine,
                Err(problems) => bail!("{problems}"),
            };
            let cases = table::parse(&read(&table_file)?).map_err(anyhow::Error::msg)?;
            let results = table::run(&engine, &cases);
            let failed = results.iter().filter(|r| !r.passed).count();
            if json {
                print_json(
                    &json!({ "cases": results.len(), "failed": failed, "results": results }),
                );
            } else {
                for r in &results {
                    let mark = if r.passed { "ok  " } else { "FAIL" };
                    println!(
                        "{mark} line {:>3}: expected {}, got {} by [{}]{}",
                        r.line,
                        r.expected.as_str(),
                        r.got.outcome().as_str(),
                        r.got.policies().join(", "),
                        if r.missing_policies.is_empty() {
                            String::new()
                        } else {
                            format!("; expected also [{}]", r.missing_policies.join(", "))
                        }
                    );
                }
                println!("{} cases, {failed} failed", results.len());
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain {
            file,
            call,
            settings,
            json,
        } => {
            let engine = match compile(&file, settings.as_deref())? {
                Ok(engine) => engine,
                Err(problems) => bail!("{problems}"),
            };
            let explained = table::explain(&engine, &call).map_err(anyhow::Error::msg)?;
            let (evaluation, deciding) = (&explained.evaluation, &explained.deciding);
            if json {
                print_json(&explained);
            } else {
                println!("{}", evaluation.outcome().as_str().to_uppercase());
                for reason in evaluation.reasons() {
                    println!("  because: {reason}");
                }
                for d in deciding {
                    println!(
                        "  policy {}: {}",
                        d.id,
                        d.english
                            .as_deref()
                            .unwrap_or("(not a policy: evaluation error)")
                    );
                }
                if !evaluation.points().is_empty() {
                    let points: Vec<&str> =
                        evaluation.points().iter().map(|p| p.as_str()).collect();
                    println!("  approval points: {}", points.join(", "));
                }
                println!("  policy hash: {}", evaluation.policy_hash());
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Schema => {
            print!("{}", portcullis_core::policy::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Put {
            remote,
            tenant,
            file,
            settings: settings_file,
        } => {
            let c = client(&remote)?;
            let body = PolicyIn {
                cedar: read(&file)?,
                settings: serde_json::to_value(settings(settings_file.as_deref())?)?,
            };
            let out = c.put_policy(&tenant, &body).await?;
            show(&remote, &out);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Show { remote, tenant } => {
            let out = client(&remote)?.policy(&tenant).await?;
            show(&remote, &out);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(remote: &Remote, out: &PolicyView) {
    if remote.json() {
        print_json(out);
        return;
    }
    println!(
        "version {} · policy hash {}",
        out.version
            .map_or("built-in only".into(), |v| v.to_string()),
        out.hash
    );
    for p in &out.policies {
        println!("  {:<28} {}", p.id, p.english);
    }
}
