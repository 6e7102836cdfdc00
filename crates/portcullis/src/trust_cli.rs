//! Trust commands against a running gateway: guardrails (the trust ladder), spend, the kill
//! switch, agent owners, tool profiles, votes and batch approvals. Guardrails print as
//! plain-English sentences, so a reviewer reads what they allow without reading JSON.

use crate::admin_cli::{Remote, client, print_json};
use anyhow::{Context, bail};
use clap::Subcommand;
use portcullis_core::guardrail::{GuardrailMode, GuardrailSpec, dollars};
use portcullis_core::profile::ToolProfile;
use portcullis_server::admin::agents::OwnerIn;
use portcullis_server::admin::amendments::{DecisionIn, ProposalIn};
use portcullis_server::admin::approvals::BatchIn;
use portcullis_server::admin::guardrails::{GuardrailIn, GuardrailView, ModeIn, SuggestionQuery};
use portcullis_server::admin::spend::{Caps, SpendQuery};
use serde::de::DeserializeOwned;
use std::path::Path;
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

fn guardrail_line(g: &GuardrailView) -> String {
    format!("{:<20} {:<17} {}", g.name, g.mode.as_str(), g.english)
}

fn mode(value: &str) -> anyhow::Result<GuardrailMode> {
    GuardrailMode::parse(value)
        .with_context(|| format!("unknown mode `{value}` (approve_each, auto_with_notice, auto)"))
}

/// A JSON file the user wrote, read as the request it is for (`what`: "spec", "profile").
fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("the {what} is not JSON"))?;
    serde_json::from_value(value).with_context(|| format!("the {what} is not a valid {what}"))
}

pub async fn run(command: TrustCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrustCommand::Amendments { remote, command } => {
            let c = client(&remote)?;
            match command {
                AmendCommand::Propose {
                    tenant,
                    seq,
                    kind,
                    note,
                } => {
                    let body = ProposalIn { kind, note };
                    print_json(&c.propose_amendment(&tenant, seq, &body).await?);
                }
                AmendCommand::Approve { tenant, proposal } => {
                    let decided = c
                        .approve_amendment(&tenant, proposal, &DecisionIn::default())
                        .await?;
                    print_json(&decided);
                }
                AmendCommand::Reject { tenant, proposal } => {
                    let decided = c
                        .reject_amendment(&tenant, proposal, &DecisionIn::default())
                        .await?;
                    print_json(&decided);
                }
                AmendCommand::List { tenant } => print_json(&c.list_amendments(&tenant).await?),
            }
        }
        TrustCommand::Guardrails { remote, command } => {
            let c = client(&remote)?;
            // What `--json` prints, and the lines printed otherwise.
            let (out, lines): (serde_json::Value, Vec<String>) = match command {
                GuardrailsCommand::List { tenant } => {
                    let list = c.list_guardrails(&tenant).await?;
                    let lines = list.iter().map(guardrail_line).collect();
                    (serde_json::to_value(&list)?, lines)
                }
                GuardrailsCommand::Create {
                    tenant,
                    name,
                    spec,
                    mode: m,
                } => {
                    let spec: GuardrailSpec = read_json(&spec, "spec")?;
                    let body = GuardrailIn {
                        name,
                        spec,
                        mode: mode(&m)?,
                    };
                    let created = c.create_guardrail(&tenant, &body).await?;
                    let line = guardrail_line(&created);
                    (serde_json::to_value(&created)?, vec![line])
                }
                GuardrailsCommand::Mode {
                    tenant,
                    guardrail,
                    mode: m,
                } => {
                    let body = ModeIn { mode: mode(&m)? };
                    let changed = c.set_guardrail_mode(&tenant, &guardrail, &body).await?;
                    let line = guardrail_line(&changed);
                    (serde_json::to_value(&changed)?, vec![line])
                }
                GuardrailsCommand::Revoke { tenant, guardrail } => {
                    let revoked = c.revoke_guardrail(&tenant, &guardrail).await?;
                    (
                        serde_json::to_value(&revoked)?,
                        vec![format!("revoked {guardrail}")],
                    )
                }
                GuardrailsCommand::Suggest { tenant, threshold } => {
                    let query = SuggestionQuery {
                        threshold: Some(threshold),
                    };
                    let suggestions = c.guardrail_suggestions(&tenant, &query).await?;
                    let lines = suggestions
                        .iter()
                        .map(|s| {
                            format!(
                                "after {} approvals: {}\n  spec: {}",
                                s.approvals,
                                s.english,
                                serde_json::to_string(&s.spec).unwrap_or_default()
                            )
                        })
                        .collect();
                    (serde_json::to_value(&suggestions)?, lines)
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
            let out = client(&remote)?
                .spend(&tenant, &SpendQuery::default())
                .await?;
            if remote.json() {
                print_json(&out);
            } else {
                let (per_action, per_day) = match &out.caps {
                    Caps::Limits(money) => (money.per_action_cents, money.per_day_cents),
                    Caps::Unusable { .. } => (0, 0),
                };
                println!(
                    "total {} (caps: {} per action, {} per day)",
                    dollars(out.total_cents),
                    dollars(per_action),
                    dollars(per_day)
                );
                for (title, totals) in [
                    ("by agent", &out.by_agent),
                    ("by workflow", &out.by_workflow),
                ] {
                    println!("{title}:");
                    for (name, v) in totals {
                        // The run count is not padded: this line has always printed it so.
                        println!("  {name:<32} {} runs {:>12}", v.runs, dollars(v.cents));
                    }
                }
                for e in &out.entries {
                    println!(
                        "  {} {} {} {}",
                        e.time,
                        e.tool,
                        dollars(e.cost_cents),
                        e.guardrail
                            .as_ref()
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
            switch(&remote, &tenant, agent.as_deref(), true).await?;
        }
        TrustCommand::Resume {
            remote,
            tenant,
            agent,
        } => {
            switch(&remote, &tenant, agent.as_deref(), false).await?;
        }
        TrustCommand::Owner {
            remote,
            tenant,
            agent,
            owner,
        } => {
            let out = client(&remote)?
                .set_agent_owner(&tenant, &agent, &OwnerIn { owner })
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
            let profile: ToolProfile = read_json(&file, "profile")?;
            let out = client(&remote)?
                .set_tool_profile(&tenant, &connection, &tool, &profile)
                .await?;
            print_json(&out);
        }
        TrustCommand::Revert { remote, id } => {
            let out = client(&remote)?.propose_revert(&id).await?;
            if remote.json() {
                print_json(&out);
            } else {
                println!("{}  {}  {}", out.id, out.status.as_str(), out.summary);
            }
        }
        TrustCommand::Votes { remote, id } => {
            let out = client(&remote)?.votes(&id).await?;
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
            let c = client(&remote)?;
            let Some(batch_hash) = batch_hash else {
                let body = BatchIn {
                    items: ids,
                    ..BatchIn::default()
                };
                let preview = c.preview_batch(&tenant, &body).await?;
                if remote.json() {
                    print_json(&preview);
                } else {
                    for item in &preview.items {
                        println!("{}  {}", item.id, item.summary);
                        println!("    arguments  {}", item.arguments);
                        if item.cost_cents > 0 {
                            let cents = item.cost_cents;
                            println!("    cost       ${}.{:02}", cents / 100, cents % 100);
                        }
                    }
                    let hash = &preview.batch_hash;
                    println!("batch hash {hash}");
                    println!(
                        "nothing approved yet: after reviewing every item above, run this command again with --batch-hash {hash}"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            };
            let body = BatchIn {
                items: ids,
                batch_hash: Some(batch_hash),
                reason,
            };
            let out = c.approve_batch(&tenant, &body).await?;
            if remote.json() {
                print_json(&out);
            } else {
                println!("approved {} requests under one receipt", out.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Turn the kill switch of an agent (or with none, the tenant) on or off.
async fn switch(
    remote: &Remote,
    tenant: &str,
    agent: Option<&str>,
    suspend: bool,
) -> anyhow::Result<()> {
    let c = client(remote)?;
    // The agent or the tenant as the API answered, printed with `--json`.
    let out = match (agent, suspend) {
        (Some(agent), true) => serde_json::to_value(c.suspend_agent(tenant, agent).await?)?,
        (Some(agent), false) => serde_json::to_value(c.resume_agent(tenant, agent).await?)?,
        (None, true) => serde_json::to_value(c.suspend_tenant(tenant).await?)?,
        (None, false) => serde_json::to_value(c.resume_tenant(tenant).await?)?,
    };
    if remote.json() {
        print_json(&out);
    } else {
        let what = agent.map_or_else(|| format!("tenant {tenant}"), |a| format!("agent {a}"));
        println!("{what}: {}", if suspend { "suspended" } else { "resumed" });
    }
    Ok(())
}
