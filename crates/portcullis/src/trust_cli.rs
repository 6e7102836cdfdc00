//! Trust commands against a running gateway: guardrails (the trust ladder), spend, the kill
//! switch, agent owners, tool profiles, votes and batch approvals. Guardrails print as
//! plain-English sentences, so a reviewer reads what they allow without reading JSON.

use crate::admin_cli::{Client, Remote, enc, print_json};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum GuardrailsCommand {
    /// List active guardrails as sentences.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Create a guardrail from a JSON spec file (admin). Starts at approve-each unless --mode.
    Create {
        #[arg(long)]
        tenant: String,
        name: String,
        /// JSON: {"connection","tool","agent","conditions":[…],"max_per_day","max_cost_cents_per_day","expires_at"}
        #[arg(long)]
        spec: std::path::PathBuf,
        /// approve_each, auto_with_notice or auto
        #[arg(long, default_value = "approve_each")]
        mode: String,
    },
    /// Move a guardrail on the ladder; `approve-each` takes effect on the very next call.
    Mode {
        #[arg(long)]
        tenant: String,
        /// Guardrail name or id.
        guardrail: String,
        /// approve_each, auto_with_notice or auto
        mode: String,
    },
    /// Revoke a guardrail.
    Revoke {
        #[arg(long)]
        tenant: String,
        guardrail: String,
    },
    /// Proposed guardrails from runs of approvals of the same shape with no denial.
    Suggest {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 5)]
        threshold: usize,
    },
}

#[derive(Subcommand)]
pub enum AmendCommand {
    /// Propose a correction or redaction of one audit entry (admin); a new entry.
    Propose {
        #[arg(long)]
        tenant: String,
        seq: i64,
        /// `correction` or `redaction`.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        note: String,
    },
    /// Approve a proposal (not your own); appends the amending entry.
    Approve {
        #[arg(long)]
        tenant: String,
        proposal: i64,
    },
    /// Reject a proposal (not your own).
    Reject {
        #[arg(long)]
        tenant: String,
        proposal: i64,
    },
    /// Proposals and their status.
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Corrections and redactions of the audit trail: proposed, then approved by another
    /// human, each a new entry (nothing is rewritten).
    Amendments {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: AmendCommand,
    },
    /// Guardrails: let a proven workflow run without asking, within limits.
    Guardrails {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: GuardrailsCommand,
    },
    /// The itemised spend ledger (default: today, UTC) with totals per agent and workflow.
    Spend {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
    },
    /// The kill switch: suspend an agent (or with no --agent, the whole tenant) at once.
    Suspend {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: Option<String>,
    },
    /// Lift a suspension (admin).
    Resume {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: Option<String>,
    },
    /// Record the human an agent acts for (they may not approve its actions).
    Owner {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        agent: String,
        /// Omit to clear.
        owner: Option<String>,
    },
    /// Set a tool's profile from a JSON file: tags, data_classes, cost_argument, cost_cents,
    /// preview {tool, arguments}.
    Profile {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        connection: String,
        tool: String,
        file: std::path::PathBuf,
    },
    /// Propose the inverse of an executed write (restores its captured before-state); a new
    /// held action someone else must approve, which the gateway then runs once.
    Revert {
        #[command(flatten)]
        remote: Remote,
        /// The executed approval to revert.
        id: String,
    },
    /// Show an approval's votes and the approver rules it was held under.
    Votes {
        #[command(flatten)]
        remote: Remote,
        id: String,
    },
    /// Approve several requests under one receipt, in two steps: without `--batch-hash` it
    /// shows the batch (every item, every argument) and its hash and approves nothing; with
    /// `--batch-hash HASH` (the one you reviewed) it approves exactly that batch, and nothing
    /// if anything changed since.
    Batch {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        tenant: String,
        ids: Vec<String>,
        /// The hash shown when you reviewed the batch.
        #[arg(long)]
        batch_hash: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn guardrail_line(g: &Value) -> String {
    format!(
        "{:<20} {:<17} {}",
        g["name"].as_str().unwrap_or_default(),
        g["mode"].as_str().unwrap_or_default(),
        g["english"].as_str().unwrap_or_default()
    )
}

fn mode(value: &str) -> anyhow::Result<Value> {
    portcullis_core::guardrail::GuardrailMode::parse(value)
        .map(|m| json!(m))
        .with_context(|| format!("unknown mode `{value}` (approve_each, auto_with_notice, auto)"))
}

pub async fn run(command: TrustCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrustCommand::Amendments { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                AmendCommand::Propose {
                    tenant,
                    seq,
                    kind,
                    note,
                } => {
                    c.post(
                        &format!("/tenants/{}/audit/{seq}/amendments", enc(&tenant)),
                        json!({ "kind": kind, "note": note }),
                    )
                    .await?
                }
                AmendCommand::Approve { tenant, proposal } => {
                    c.post(
                        &format!(
                            "/tenants/{}/audit/amendments/{proposal}/approve",
                            enc(&tenant)
                        ),
                        json!({}),
                    )
                    .await?
                }
                AmendCommand::Reject { tenant, proposal } => {
                    c.post(
                        &format!(
                            "/tenants/{}/audit/amendments/{proposal}/reject",
                            enc(&tenant)
                        ),
                        json!({}),
                    )
                    .await?
                }
                AmendCommand::List { tenant } => {
                    c.get(&format!("/tenants/{}/audit/amendments", enc(&tenant)))
                        .await?
                }
            };
            print_json(&out);
        }
        TrustCommand::Guardrails { remote, command } => {
            let c = Client::new(&remote)?;
            let (out, lines): (Value, Vec<String>) = match command {
                GuardrailsCommand::List { tenant } => {
                    let out = c
                        .get(&format!("/tenants/{}/guardrails", enc(&tenant)))
                        .await?;
                    let lines = out
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(guardrail_line)
                        .collect();
                    (out, lines)
                }
                GuardrailsCommand::Create {
                    tenant,
                    name,
                    spec,
                    mode: m,
                } => {
                    let spec: Value = serde_json::from_str(
                        &std::fs::read_to_string(&spec)
                            .with_context(|| format!("cannot read {}", spec.display()))?,
                    )
                    .context("the spec is not JSON")?;
                    let out = c
                        .post(
                            &format!("/tenants/{}/guardrails", enc(&tenant)),
                            json!({ "name": name, "spec": spec, "mode": mode(&m)? }),
                        )
                        .await?;
                    let line = guardrail_line(&out);
                    (out, vec![line])
                }
                GuardrailsCommand::Mode {
                    tenant,
                    guardrail,
                    mode: m,
                } => {
                    let out = c
                        .post(
                            &format!(
                                "/tenants/{}/guardrails/{}/mode",
                                enc(&tenant),
                                enc(&guardrail)
                            ),
                            json!({ "mode": mode(&m)? }),
                        )
                        .await?;
                    let line = guardrail_line(&out);
                    (out, vec![line])
                }
                GuardrailsCommand::Revoke { tenant, guardrail } => {
                    let out = c
                        .post(
                            &format!(
                                "/tenants/{}/guardrails/{}/revoke",
                                enc(&tenant),
                                enc(&guardrail)
                            ),
                            json!({}),
                        )
                        .await?;
                    (out, vec![format!("revoked {guardrail}")])
                }
                GuardrailsCommand::Suggest { tenant, threshold } => {
                    let out = c
                        .get(&format!(
                            "/tenants/{}/guardrails/suggestions?threshold={threshold}",
                            enc(&tenant)
                        ))
                        .await?;
                    let lines = out
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| {
                            format!(
                                "after {} approvals: {}\n  spec: {}",
                                s["approvals"],
                                s["english"].as_str().unwrap_or_default(),
                                s["spec"]
                            )
                        })
                        .collect();
                    (out, lines)
                }
            };
            if remote.json() {
                print_json(&out);
            } else if lines.is_empty() {
                println!("(none)");
            } else {
                lines.iter().for_each(|l| println!("{l}"));
            }
        }
        TrustCommand::Spend { remote, tenant } => {
            let out = Client::new(&remote)?
                .get(&format!("/tenants/{}/spend", enc(&tenant)))
                .await?;
            if remote.json() {
                print_json(&out);
            } else {
                let cents =
                    |v: &Value| portcullis_core::guardrail::dollars(v.as_i64().unwrap_or(0));
                println!(
                    "total {} (caps: {} per action, {} per day)",
                    cents(&out["total_cents"]),
                    cents(&out["caps"]["per_action_cents"]),
                    cents(&out["caps"]["per_day_cents"])
                );
                for (title, key) in [("by agent", "by_agent"), ("by workflow", "by_workflow")] {
                    println!("{title}:");
                    for (name, v) in out[key].as_object().into_iter().flatten() {
                        println!(
                            "  {name:<32} {:>4} runs {:>12}",
                            v["runs"],
                            cents(&v["cents"])
                        );
                    }
                }
                for e in out["entries"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {} {} {}",
                        e["time"].as_str().unwrap_or_default(),
                        e["tool"].as_str().unwrap_or_default(),
                        cents(&e["cost_cents"]),
                        e["guardrail"]
                            .as_str()
                            .map_or("approved".to_owned(), |g| format!("guardrail {g}"))
                    );
                }
            }
        }
        TrustCommand::Suspend {
            remote,
            tenant,
            agent,
        } => {
            switch(&remote, &tenant, agent.as_deref(), "suspend").await?;
        }
        TrustCommand::Resume {
            remote,
            tenant,
            agent,
        } => {
            switch(&remote, &tenant, agent.as_deref(), "resume").await?;
        }
        TrustCommand::Owner {
            remote,
            tenant,
            agent,
            owner,
        } => {
            let out = Client::new(&remote)?
                .put(
                    &format!("/tenants/{}/agents/{}/owner", enc(&tenant), enc(&agent)),
                    json!({ "owner": owner }),
                )
                .await?;
            print_json(&out);
        }
        TrustCommand::Profile {
            remote,
            tenant,
            connection,
            tool,
            file,
        } => {
            let profile: Value = serde_json::from_str(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            )
            .context("the profile is not JSON")?;
            let out = Client::new(&remote)?
                .put(
                    &format!(
                        "/tenants/{}/connections/{}/tools/{}/profile",
                        enc(&tenant),
                        enc(&connection),
                        enc(&tool)
                    ),
                    profile,
                )
                .await?;
            print_json(&out);
        }
        TrustCommand::Revert { remote, id } => {
            let out = Client::new(&remote)?
                .post(&format!("/approvals/{}/revert", enc(&id)), json!({}))
                .await?;
            if remote.json() {
                print_json(&out);
            } else {
                println!(
                    "{}  {}  {}",
                    out["id"].as_str().unwrap_or_default(),
                    out["status"].as_str().unwrap_or_default(),
                    out["summary"].as_str().unwrap_or_default()
                );
            }
        }
        TrustCommand::Votes { remote, id } => {
            let out = Client::new(&remote)?
                .get(&format!("/approvals/{}/votes", enc(&id)))
                .await?;
            print_json(&out);
        }
        TrustCommand::Batch {
            remote,
            tenant,
            ids,
            batch_hash,
            reason,
        } => {
            if ids.is_empty() {
                bail!("name the approval ids to approve together");
            }
            let c = Client::new(&remote)?;
            let Some(batch_hash) = batch_hash else {
                let preview = c
                    .post(
                        &format!("/tenants/{}/approvals/batch/preview", enc(&tenant)),
                        json!({ "items": ids }),
                    )
                    .await?;
                if remote.json() {
                    print_json(&preview);
                } else {
                    for item in preview["items"].as_array().into_iter().flatten() {
                        println!(
                            "{}  {}",
                            item["id"].as_str().unwrap_or_default(),
                            item["summary"].as_str().unwrap_or_default()
                        );
                        println!("    arguments  {}", item["arguments"]);
                        if let Some(cents) = item["cost_cents"].as_i64().filter(|c| *c > 0) {
                            println!("    cost       ${}.{:02}", cents / 100, cents % 100);
                        }
                    }
                    let hash = preview["batch_hash"].as_str().unwrap_or_default();
                    println!("batch hash {hash}");
                    println!(
                        "nothing approved yet: after reviewing every item above, run this command again with --batch-hash {hash}"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            };
            let out = c
                .post(
                    &format!("/tenants/{}/approvals/batch", enc(&tenant)),
                    json!({ "items": ids, "batch_hash": batch_hash, "reason": reason }),
                )
                .await?;
            if remote.json() {
                print_json(&out);
            } else {
                println!(
                    "approved {} requests under one receipt",
                    out.as_array().map_or(0, Vec::len)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn switch(
    remote: &Remote,
    tenant: &str,
    agent: Option<&str>,
    verb: &str,
) -> anyhow::Result<()> {
    let path = match agent {
        Some(agent) => format!("/tenants/{}/agents/{}/{verb}", enc(tenant), enc(agent)),
        None => format!("/tenants/{}/{verb}", enc(tenant)),
    };
    let out = Client::new(remote)?.post(&path, json!({})).await?;
    if remote.json() {
        print_json(&out);
    } else {
        let what = agent.map_or_else(|| format!("tenant {tenant}"), |a| format!("agent {a}"));
        println!(
            "{what}: {verb}{}",
            if verb == "suspend" { "ed" } else { "d" }
        );
    }
    Ok(())
}
