//! `portcullis shares …`: signed share links for a tenant's audit export or one approval's
//! evidence — create (the URL is printed once), list, revoke. A client of the admin API.

use crate::admin_cli::{Remote, client, date, print_json};
use clap::Subcommand;
use portcullis_server::admin::shares::ShareIn;
use secrecy::ExposeSecret as _;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SharesCommand {
    /// Share `audit-export` (the tenant's verifiable export) or `approval:<id>` (that
    /// approval's evidence); prints the link once.
    Create {
        #[arg(long)]
        tenant: String,
        artifact: String,
        /// 1h, 24h, 7d, 30d or none.
        #[arg(long, default_value = "24h")]
        expires: String,
    },
    /// The tenant's links: artifact, expiry, downloads (never a token).
    List {
        #[arg(long)]
        tenant: String,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

pub async fn run(remote: Remote, command: SharesCommand) -> anyhow::Result<ExitCode> {
    let c = client(&remote)?;
    match command {
        SharesCommand::Create {
            tenant,
            artifact,
            expires,
        } => {
            let created = c
                .create_share(&tenant, &ShareIn { artifact, expires })
                .await?;
            if remote.json() {
                print_json(&created);
            } else {
                println!(
                    "{}  {}  until {}",
                    created.link.id,
                    created.link.artifact,
                    created
                        .link
                        .expires_at
                        .map_or("revoked".to_owned(), |t| date(Some(t)))
                );
                println!(
                    "link (shown once): {}{}",
                    remote.url().trim_end_matches('/'),
                    created.path.expose_secret()
                );
            }
        }
        SharesCommand::List { tenant } => print_json(&c.list_shares(&tenant).await?),
        SharesCommand::Revoke { tenant, id } => {
            c.revoke_share(&tenant, &id).await?;
            println!("share link {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
