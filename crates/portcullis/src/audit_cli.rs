//! Audit commands that read the database directly — verification works without a running
//! gateway, with nothing but the database and the public key.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use portcullis_core::audit::AuditEvent;
use portcullis_core::id::TenantId;
use portcullis_server::audit::{VerifyError, checkpoint_tenant, verify_tenant};
use portcullis_server::clock::{parse_rfc3339, rfc3339};
use portcullis_server::config::Config;
use portcullis_store::{AuditFilter, Store, StoreError, StoreOptions};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify every tenant's hash chain (or one) against its signed checkpoints. Exits 1 and
    /// names the first bad entry when anything was edited, deleted, reordered or truncated.
    Verify {
        /// Tenant name, tenant id, or `system`.
        #[arg(long)]
        tenant: Option<String>,
        /// Hex Ed25519 public key (default: derived from the local key file).
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export events as CSV or JSON lines.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write a signed checkpoint of every chain (or one) now.
    Checkpoint {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

async fn open(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    if url.starts_with("sqlite://") {
        let path = url.trim_start_matches("sqlite://");
        if !Path::new(path).exists() {
            bail!("no database at `{path}` (run `portcullis serve` first, or pass --config)");
        }
    }
    Store::open(&url, &StoreOptions::default())
        .await
        .context("cannot open the database")
}

async fn resolve_tenant(store: &Store, name: &str) -> anyhow::Result<TenantId> {
    if name == "system" {
        return Ok(TenantId::system());
    }
    if let Ok(id) = TenantId::parse(name) {
        return Ok(id);
    }
    match store.tenant_by_name(name).await {
        Ok(t) => Ok(t.id),
        Err(StoreError::NotFound) => bail!("no tenant named `{name}`"),
        Err(e) => Err(e.into()),
    }
}

async fn tenant_names(store: &Store) -> anyhow::Result<HashMap<TenantId, String>> {
    let mut names: HashMap<_, _> = store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    names.insert(TenantId::system(), "system".into());
    Ok(names)
}

pub async fn run(command: AuditCommand, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file)?;
    let store = open(&config).await?;
    match command {
        AuditCommand::Verify {
            tenant,
            public_key,
            json,
        } => {
            let key = match public_key {
                Some(hex_key) => portcullis_core::keys::parse_verifying_key(&hex_key)
                    .context("--public-key is not a hex Ed25519 public key")?,
                None => {
                    portcullis_server::bootstrap::load_keys(&config.key_file())?.verifying_key()
                }
            };
            let tenants = match tenant {
                Some(name) => vec![resolve_tenant(&store, &name).await?],
                None => store.audit_tenants().await?,
            };
            let names = tenant_names(&store).await?;
            let mut all_ok = true;
            let mut reports = Vec::new();
            for tenant in tenants {
                let name = names.get(&tenant).cloned().unwrap_or_default();
                match verify_tenant(&store, &tenant, &key).await {
                    Ok(r) => {
                        if !json {
                            println!(
                                "OK    {name} ({tenant}): {} entries, {} checkpoints, head {}",
                                r.entries,
                                r.checkpoints,
                                &r.head_hash[..16]
                            );
                        }
                        reports.push(serde_json::json!({ "tenant": tenant, "name": name, "ok": true, "entries": r.entries, "checkpoints": r.checkpoints, "head": r.head_hash }));
                    }
                    Err(VerifyError::Break(b)) => {
                        all_ok = false;
                        if !json {
                            println!("FAIL  {name} ({tenant}): {b}");
                        }
                        reports.push(serde_json::json!({ "tenant": tenant, "name": name, "ok": false, "problem": b.to_string() }));
                    }
                    Err(VerifyError::Store(e)) => return Err(e.into()),
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": all_ok, "tenants": reports })
                    )?
                );
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Checkpoint { tenant } => {
            let keys = portcullis_server::bootstrap::load_keys(&config.key_file())?;
            let tenants = match tenant {
                Some(name) => vec![resolve_tenant(&store, &name).await?],
                None => store.audit_tenants().await?,
            };
            let now = portcullis_server::clock::Clock::System.now();
            for tenant in tenants {
                match checkpoint_tenant(&store, &keys, &tenant, now).await? {
                    Some(cp) => println!(
                        "checkpoint {tenant}: size {} head {}",
                        cp.body.size,
                        &cp.body.head_hash[..16]
                    ),
                    None => println!("checkpoint {tenant}: up to date"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            format,
            tenant,
            from,
            to,
            actor,
            kind,
            output,
        } => {
            let parse_time = |label: &str, v: Option<String>| -> anyhow::Result<Option<i64>> {
                v.map(|t| {
                    parse_rfc3339(&t)
                        .with_context(|| format!("--{label} `{t}` is not an RFC 3339 time"))
                })
                .transpose()
            };
            if let Some(k) = &kind
                && portcullis_core::audit::AuditKind::parse(k).is_none()
            {
                bail!("--kind `{k}` is not an audit event kind");
            }
            let filter = AuditFilter {
                tenant: match tenant {
                    Some(name) => Some(resolve_tenant(&store, &name).await?),
                    None => None,
                },
                from: parse_time("from", from)?,
                to: parse_time("to", to)?,
                actor,
                kind,
            };
            let sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create `{}`", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let count = export(&store, &filter, format, sink).await?;
            eprintln!("exported {count} events");
            Ok(ExitCode::SUCCESS)
        }
    }
}

const COLUMNS: [&str; 13] = [
    "tenant",
    "seq",
    "time",
    "actor",
    "session",
    "kind",
    "resource",
    "decision",
    "receipt_id",
    "args_hash",
    "detail",
    "prev_hash",
    "hash",
];

async fn export(
    store: &Store,
    filter: &AuditFilter,
    format: ExportFormat,
    sink: Box<dyn Write>,
) -> anyhow::Result<u64> {
    // A spinner with a count on a terminal; indicatif draws nothing when stderr is not one.
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events exported")
            .expect("template"),
    );
    let mut out = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(sink);
            w.write_record(COLUMNS)?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Jsonl => Sink::Jsonl(std::io::BufWriter::new(sink)),
    };
    let mut after = None;
    let mut count = 0u64;
    loop {
        let page = store.audit_query(filter, after.clone(), 2_000).await?;
        for event in &page {
            out.write(event)?;
        }
        count += page.len() as u64;
        progress.set_position(count);
        match page.last() {
            Some(last) if page.len() == 2_000 => {
                after = Some((last.draft.tenant.clone(), last.seq))
            }
            _ => break,
        }
    }
    match out {
        Sink::Csv(mut w) => w.flush()?,
        Sink::Jsonl(mut w) => w.flush()?,
    }
    progress.finish_and_clear();
    Ok(count)
}

enum Sink {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Jsonl(std::io::BufWriter<Box<dyn Write>>),
}

impl Sink {
    fn write(&mut self, event: &AuditEvent) -> anyhow::Result<()> {
        match self {
            Self::Jsonl(w) => {
                let mut value = serde_json::to_value(event)?;
                value["time_rfc3339"] = serde_json::Value::String(rfc3339(event.time));
                serde_json::to_writer(&mut *w, &value)?;
                w.write_all(b"\n")?;
            }
            Self::Csv(w) => {
                let d = &event.draft;
                w.write_record([
                    d.tenant.as_str(),
                    &event.seq.to_string(),
                    &rfc3339(event.time),
                    &d.actor,
                    d.session.as_deref().unwrap_or(""),
                    d.kind.as_str(),
                    d.resource.as_deref().unwrap_or(""),
                    d.decision.as_deref().unwrap_or(""),
                    d.receipt_id.as_deref().unwrap_or(""),
                    d.args_hash.as_deref().unwrap_or(""),
                    &d.detail.to_string(),
                    &event.prev_hash,
                    &event.hash,
                ])?;
            }
        }
        Ok(())
    }
}
