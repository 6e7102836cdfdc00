//! `portcullis access review`: the periodic access review through the admin API — per tenant,
//! every connection, secret, grant and agent with its last use, and the recommendations
//! (revoke, delete, remove, narrow, rotate) one per line.

use crate::admin_cli::{Remote, client, print_json};
use clap::Subcommand;
use portcullis_core::UnixMillis;
use portcullis_server::admin::review::{AccessReview, ReviewQuery, TenantReview, Usage};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AccessCommand {
    /// What every connection, secret and grant is used for, and what to revoke, narrow or
    /// rotate (admins and approvers).
    Review {
        #[command(flatten)]
        remote: Remote,
        /// One tenant (default: every tenant you may see).
        #[arg(long)]
        tenant: Option<String>,
        /// Days without use after which something counts as unused (1-3650).
        #[arg(long, default_value_t = portcullis_server::admin::review::DEFAULT_UNUSED_DAYS)]
        unused_days: u32,
    },
}

pub async fn run(command: AccessCommand) -> anyhow::Result<ExitCode> {
    match command {
        AccessCommand::Review {
            remote,
            tenant,
            unused_days,
        } => {
            let query = ReviewQuery {
                tenant,
                unused_days: Some(unused_days),
            };
            let review = client(&remote)?.access_review(&query).await?;
            if remote.json() {
                print_json(&review);
            } else {
                print!("{}", human(&review));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A UTC date, or `never`.
fn day(millis: Option<UnixMillis>) -> String {
    millis
        .and_then(|m| time::OffsetDateTime::from_unix_timestamp(m / 1000).ok())
        .map_or_else(|| "never".to_owned(), |t| t.date().to_string())
}

fn usage(status: Usage) -> &'static str {
    match status {
        Usage::Active => "active",
        Usage::Unused => "unused",
    }
}

/// Rows as left-aligned columns, each as wide as its widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn tenant_section(t: &TenantReview) -> String {
    let mut out = format!("tenant {}\n", t.tenant);
    out.push_str("connections\n");
    out.push_str(&table(
        &["NAME", "KIND", "CREATED", "LAST USED", "GRANTS", "STATUS"],
        t.connections
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.kind.clone().unwrap_or_else(|| "?".into()),
                    day(Some(c.created_at)),
                    day(c.last_used_at),
                    c.grants.to_string(),
                    usage(c.status).into(),
                ]
            })
            .collect(),
    ));
    out.push_str("secrets\n");
    out.push_str(&table(
        &[
            "NAME",
            "VERSION",
            "UPDATED",
            "LAST USED",
            "ROTATION DUE",
            "ROTATION",
            "USED BY",
        ],
        t.secrets
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.version.to_string(),
                    day(Some(s.updated_at)),
                    day(s.last_used_at),
                    s.rotation_due_at.map_or("-".into(), |d| day(Some(d))),
                    serde_json::to_value(s.rotation)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    if s.used_by.is_empty() {
                        "-".into()
                    } else {
                        s.used_by.join(",")
                    },
                ]
            })
            .collect(),
    ));
    out.push_str("grants\n");
    out.push_str(&table(
        &["AGENT", "CONNECTION", "TOOL", "LAST USED", "TOOLS USED"],
        t.grants
            .iter()
            .map(|g| {
                vec![
                    g.agent.clone(),
                    g.connection.clone(),
                    g.tool.clone(),
                    day(g.last_used_at),
                    if g.tools_used.is_empty() {
                        "-".into()
                    } else {
                        g.tools_used.join(",")
                    },
                ]
            })
            .collect(),
    ));
    out.push_str("agents\n");
    out.push_str(&table(
        &["NAME", "LAST CALL", "STATUS"],
        t.agents
            .iter()
            .map(|a| vec![a.name.clone(), day(a.last_call_at), usage(a.status).into()])
            .collect(),
    ));
    if t.recommendations.is_empty() {
        out.push_str("recommendations: none\n");
    } else {
        out.push_str("recommendations\n");
        for r in &t.recommendations {
            out.push_str(&format!(
                "  {} {}: {}\n",
                r.action.words(),
                r.target,
                r.reason
            ));
        }
    }
    out
}

/// The review as a reader scans it: one section per tenant.
fn human(review: &AccessReview) -> String {
    let mut out = format!(
        "access review ({} days without use counts as unused)\n",
        review.unused_days
    );
    for t in &review.tenants {
        out.push('\n');
        out.push_str(&tenant_section(t));
    }
    out
}
