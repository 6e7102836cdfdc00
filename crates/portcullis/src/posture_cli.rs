//! `portcullis dataflow` (which connections, tools and model providers received or returned
//! which data classes) and `portcullis attest` (the tenant's posture, signed by the gateway;
//! `attest verify` checks one offline). The reports come from the admin API; verification
//! needs nothing but the file and the public key.

use crate::admin_cli::{Remote, client, print_json};
use clap::{Args, Subcommand};
use portcullis_core::attestation::{self, SignedAttestation};
use portcullis_server::admin::posture::PeriodQuery;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DataflowArgs {
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    tenant: String,
    /// How far back: `30d` (default), `12h`, `90m`.
    #[arg(long, default_value = "30d")]
    since: String,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AttestArgs {
    #[command(subcommand)]
    command: Option<AttestCommand>,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    tenant: Option<String>,
    /// The period: `90d` (default), `30d`, `12h`.
    #[arg(long, default_value = "90d")]
    since: String,
    /// Write the signed report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Check a signed report offline against the gateway's public key (hex Ed25519 as
    /// `portcullis public-key` prints it, or `name+id+base64` from `--note`). Exits 1 naming
    /// the problem.
    Verify {
        file: PathBuf,
        #[arg(long)]
        public_key: String,
    },
}

pub async fn dataflow(args: DataflowArgs) -> anyhow::Result<ExitCode> {
    let c = client(&args.remote)?;
    let report = c
        .dataflow(
            &args.tenant,
            &PeriodQuery {
                since: Some(args.since),
            },
        )
        .await?;
    if args.remote.json() {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<15} {:<36} {:<9} {:<36} ACTIONS",
        "PARTY", "NAME", "DIRECTION", "DATA CLASSES"
    );
    for flow in &report.flows {
        let join = |m: &std::collections::BTreeMap<String, u64>| {
            let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k}×{n}")).collect();
            if parts.is_empty() {
                "none found".to_owned()
            } else {
                parts.join(", ")
            }
        };
        println!(
            "{:<15} {:<36} {:<9} {:<36} {}",
            flow.party_kind,
            flow.party,
            flow.direction,
            join(&flow.classes),
            join(&flow.actions)
        );
    }
    if report.flows.is_empty() {
        println!("(nothing crossed in this period)");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    if let Some(AttestCommand::Verify { file, public_key }) = args.command {
        return verify(&file, &public_key);
    }
    let Some(tenant) = args.tenant else {
        anyhow::bail!("--tenant is required (or `attest verify FILE --public-key K`)");
    };
    let c = client(&args.remote)?;
    let signed = c
        .attestation(
            &tenant,
            &PeriodQuery {
                since: Some(args.since),
            },
        )
        .await?;
    let text = serde_json::to_string_pretty(&signed)?;
    match args.out {
        Some(path) => {
            std::fs::write(&path, format!("{text}\n"))?;
            let m = &signed.attestation.model_requests;
            println!(
                "signed attestation for `{tenant}` written to {}: {} model request(s), {}‰ zero-retention, {} BYO-key, {} configuration change(s)",
                path.display(),
                m.total,
                m.zero_retention_permille,
                m.byo_key,
                signed.attestation.changes_total
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(file: &std::path::Path, public_key: &str) -> anyhow::Result<ExitCode> {
    // Hex (`portcullis public-key`) or the signed-note form (`portcullis public-key --note`).
    let key = portcullis_core::note::parse_vkey(public_key)
        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?
        .key;
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let signed: SignedAttestation = match serde_json::from_str(&text) {
        Ok(signed) => signed,
        Err(e) => {
            println!("NOT VALID: not a signed attestation: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match attestation::verify(&signed, &key) {
        Ok(()) => {
            let a = &signed.attestation;
            println!(
                "valid: tenant `{}`, {} to {}, signed by {}",
                a.tenant,
                portcullis_server::clock::rfc3339(a.from),
                portcullis_server::clock::rfc3339(a.to),
                signed.public_key
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("NOT VALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
