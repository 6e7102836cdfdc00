//! Audit commands that read the database directly — verification works without a running
//! gateway, with nothing but the database and the public key.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use portcullis_core::audit::AuditEvent;
use portcullis_core::id::TenantId;
use portcullis_core::note::NoteVerifier;
use portcullis_server::audit::{Anchors, Verdict, checkpoint_tenant, verify_trails};
use portcullis_server::clock::{parse_rfc3339, rfc3339};
use portcullis_server::config::Config;
use portcullis_store::{AuditFilter, Store, StoreError, StoreOptions};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify every tenant's trail (or one): the hash chain, the Merkle tree, the signed
    /// checkpoints in the database and those in the witness log outside it. Exits 1 and names
    /// the problem when anything was edited, deleted, reordered, truncated or rolled back, or
    /// when a tenant's trail is gone; reports the entries past the last witnessed checkpoint.
    Verify {
        /// Tenant name, tenant id, or `system`.
        #[arg(long)]
        tenant: Option<String>,
        /// A checkpoint key: `name+id+base64` (as `audit public-key` prints) or hex Ed25519;
        /// repeat for keys used before a rotation (default: the local key file's).
        #[arg(long)]
        public_key: Vec<String>,
        /// A witness log (default: `audit.witness_file`, or audit-witness.log in the data
        /// folder); repeat to read the logs of several replicas as one.
        #[arg(long)]
        witness: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the inclusion proof of entry SEQ in the tenant's newest checkpoint (RFC 9162):
    /// leaf index, tree size, leaf hash, the path, and the signed checkpoint it leads to.
    Prove {
        /// The entry's sequence number.
        seq: i64,
        #[arg(long)]
        tenant: String,
    },
    /// Print the consistency proof between two of a tenant's checkpoints (RFC 9162): the
    /// older tree is a prefix of the newer.
    Consistency {
        #[arg(long)]
        tenant: String,
        /// Size of the older checkpoint.
        #[arg(long)]
        from: i64,
        /// Size of the newer checkpoint (default: the newest).
        #[arg(long)]
        to: Option<i64>,
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
            witness,
            json,
        } => {
            let keys = if public_key.is_empty() {
                let key =
                    portcullis_server::bootstrap::load_keys(&config.key_file())?.verifying_key();
                vec![NoteVerifier {
                    name: portcullis_core::note::KEY_NAME.into(),
                    key,
                }]
            } else {
                public_key
                    .iter()
                    .map(|k| {
                        portcullis_core::note::parse_vkey(k)
                            .with_context(|| format!("--public-key `{k}`"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let only = match tenant {
                Some(name) => Some(resolve_tenant(&store, &name).await?),
                None => None,
            };
            let witness = if witness.is_empty() {
                vec![config.witness_file()]
            } else {
                for path in &witness {
                    if !path.exists() {
                        bail!("no witness log at `{}`", path.display());
                    }
                }
                witness
            };
            let names = tenant_names(&store).await?;
            // A count and a rate on a terminal; indicatif draws nothing when stderr is not one.
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {human_pos} entries verified ({per_sec})",
                )
                .expect("template"),
            );
            let tick = |n: usize| bar.inc(n as u64);
            let verified = verify_trails(&store, &keys, &witness, only.as_ref(), &tick).await;
            bar.finish_and_clear();
            let verdicts = match verified {
                Ok(v) => v,
                Err(portcullis_server::audit::VerifyError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    println!("FAIL  {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let all_ok = verdicts.iter().all(|v| v.outcome.is_ok());
            let mut reports = Vec::new();
            for Verdict { tenant, outcome } in verdicts {
                let name = names.get(&tenant).cloned().unwrap_or_default();
                match outcome {
                    Ok(r) => {
                        if !json {
                            println!(
                                "OK    {name} ({tenant}): {} entries, {} checkpoints, witnessed to {} ({} unwitnessed), root {}",
                                r.entries,
                                r.checkpoints,
                                r.witnessed,
                                r.unwitnessed,
                                &r.root[..16]
                            );
                        }
                        reports.push(serde_json::json!({ "tenant": tenant, "name": name, "ok": true, "entries": r.entries, "checkpoints": r.checkpoints, "head": r.head_hash, "root": r.root, "witnessed": r.witnessed, "unwitnessed": r.unwitnessed }));
                    }
                    Err(problem) => {
                        if !json {
                            println!("FAIL  {name} ({tenant}): {problem}");
                        }
                        reports.push(serde_json::json!({ "tenant": tenant, "name": name, "ok": false, "problem": problem }));
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": all_ok, "witness": witness, "tenants": reports })
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
            let anchors = Anchors::new(
                &store,
                config.audit.origin.clone(),
                config.witness_file(),
                0,
            );
            let tenants = match tenant {
                Some(name) => vec![resolve_tenant(&store, &name).await?],
                None => store.audit_tenants().await?,
            };
            let now = portcullis_server::clock::Clock::System.now();
            for tenant in tenants {
                match checkpoint_tenant(&store, &keys, &anchors, &tenant, now).await? {
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
        AuditCommand::Prove { seq, tenant } => {
            let tenant = resolve_tenant(&store, &tenant).await?;
            let checkpoint = store
                .checkpoints(&tenant)
                .await?
                .into_iter()
                .rfind(|c| c.note.is_some())
                .context("this trail has no checkpoint yet (run `portcullis audit checkpoint`)")?;
            let size = checkpoint.body.size;
            if seq < 1 || seq > size {
                bail!(
                    "entry {seq} is not in the newest checkpoint (entries 1 to {size}); run `portcullis audit checkpoint` first"
                );
            }
            let leaves = leaves(&store, &tenant, size).await?;
            let index = u64::try_from(seq - 1)?;
            let path = portcullis_core::merkle::inclusion_proof(&leaves, index)?;
            let root = portcullis_core::merkle::root(&leaves);
            let note = checkpoint.note.unwrap_or_default();
            let stated = portcullis_core::note::parse_checkpoint(&note)?;
            if stated.root != root {
                bail!(
                    "the entries no longer match the checkpoint at size {size}; run `portcullis audit verify`"
                );
            }
            let entry = store
                .audit_page(&tenant, seq - 1, 1)
                .await?
                .into_iter()
                .next()
                .context("entry missing")?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "tenant": tenant,
                    "seq": seq,
                    "leaf_index": index,
                    "tree_size": size,
                    "entry_hash": entry.hash,
                    "leaf_hash": hex::encode(leaves[usize::try_from(index)?]),
                    "inclusion_path": path.iter().map(hex::encode).collect::<Vec<_>>(),
                    "root_hash": hex::encode(root),
                    "checkpoint": note,
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Consistency { tenant, from, to } => {
            let tenant = resolve_tenant(&store, &tenant).await?;
            let notes: Vec<(i64, String)> = store
                .checkpoints(&tenant)
                .await?
                .into_iter()
                .filter_map(|c| c.note.map(|n| (c.body.size, n)))
                .collect();
            let find = |size: i64| {
                notes
                    .iter()
                    .find(|(s, _)| *s == size)
                    .map(|(_, n)| n.clone())
                    .with_context(|| format!("no checkpoint at size {size}"))
            };
            let to = match to {
                Some(to) => to,
                None => notes
                    .last()
                    .map(|(s, _)| *s)
                    .context("this trail has no checkpoint yet")?,
            };
            if from > to {
                bail!("--from {from} is after --to {to}");
            }
            let (old, new) = (find(from)?, find(to)?);
            let leaves = leaves(&store, &tenant, to).await?;
            let path = portcullis_core::merkle::consistency_proof(&leaves, u64::try_from(from)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "tenant": tenant,
                    "old_size": from,
                    "new_size": to,
                    "consistency_path": path.iter().map(hex::encode).collect::<Vec<_>>(),
                    "old_checkpoint": old,
                    "new_checkpoint": new,
                }))?
            );
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
            let sink: Box<dyn Write + Send> = match &output {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create `{}`", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let count = match format {
                ExportFormat::Jsonl => {
                    let vkey = portcullis_server::bootstrap::load_keys(&config.key_file())
                        .ok()
                        .map(|k| {
                            portcullis_core::note::vkey(
                                portcullis_core::note::KEY_NAME,
                                &k.verifying_key(),
                            )
                        });
                    export_verifiable(&store, &filter, vkey, sink).await?
                }
                ExportFormat::Csv => export(&store, &filter, format, sink).await?,
            };
            eprintln!("exported {count} events");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `portcullis verify-export`: the standalone verifier over a file, with a progress bar on a
/// terminal.
pub fn verify_export(
    file: &Path,
    public_keys: &[String],
    checkpoints: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let keys: Vec<NoteVerifier> = public_keys
        .iter()
        .map(|k| {
            portcullis_core::note::parse_vkey(k).with_context(|| format!("--public-key `{k}`"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut external = Vec::new();
    for path in checkpoints {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        external.extend(
            portcullis_verify::parse_checkpoints(&text)
                .with_context(|| format!("`{}`", path.display()))?,
        );
    }
    let handle =
        std::fs::File::open(file).with_context(|| format!("cannot open `{}`", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = indicatif::ProgressBar::new(size);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} verified ({bytes_per_sec})",
        )
        .expect("template"),
    );
    let reader = std::io::BufReader::with_capacity(1 << 20, progress.wrap_read(handle));
    let result = portcullis_verify::verify(reader, &keys, &external);
    progress.finish_and_clear();
    match result {
        Ok(reports) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": true, "tenants": reports })
                    )?
                );
            } else {
                for r in &reports {
                    println!(
                        "OK    {}: {} entries, root {}, {} checkpoints in the export and {} given, checkpointed to {} ({} past it), {} executions each covered by a verified receipt, {} effects run under a guardrail in force",
                        r.tenant,
                        r.entries,
                        &r.root[..16],
                        r.checkpoints,
                        r.external_checkpoints,
                        r.checkpointed,
                        r.unanchored,
                        r.executions,
                        r.guardrail_runs
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(portcullis_verify::VerifyError::Read(e)) => Err(e.into()),
        Err(problem) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": false, "problem": problem.to_string() })
                    )?
                );
            } else {
                println!("FAIL  {problem}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The Merkle leaves of a tenant's first `size` entries.
async fn leaves(
    store: &Store,
    tenant: &TenantId,
    size: i64,
) -> anyhow::Result<Vec<portcullis_core::merkle::Hash>> {
    let mut leaves = Vec::with_capacity(usize::try_from(size)?);
    portcullis_server::audit::for_each_leaf(store, tenant, 0, size, |leaf| leaves.push(leaf))
        .await?;
    if leaves.len() != usize::try_from(size)? {
        bail!("entries are missing below size {size}; run `portcullis audit verify`");
    }
    Ok(leaves)
}

/// The JSON-lines export: a header, then per tenant its checkpoints, guardrails and receipts
/// (with the actions they cover) and its entries from the first — everything
/// `portcullis verify-export` needs. A filtered export (time, actor, kind) holds the header
/// and the matching entries only, and says it is not complete.
async fn export_verifiable(
    store: &Store,
    filter: &AuditFilter,
    vkey: Option<String>,
    sink: Box<dyn Write + Send>,
) -> anyhow::Result<u64> {
    use portcullis_verify::{Header, Line};
    let complete = filter.from.is_none()
        && filter.to.is_none()
        && filter.actor.is_none()
        && filter.kind.is_none();
    let mut out = std::io::BufWriter::new(sink);
    let line =
        |out: &mut std::io::BufWriter<Box<dyn Write + Send>>, value: &Line| -> anyhow::Result<()> {
            serde_json::to_writer(&mut *out, value)?;
            out.write_all(b"\n")?;
            Ok(())
        };
    line(
        &mut out,
        &Line::Header(Header {
            format: portcullis_verify::FORMAT.into(),
            version: portcullis_verify::VERSION,
            exported_at: portcullis_server::clock::Clock::System.now(),
            complete,
            public_keys: vkey.into_iter().collect(),
        }),
    )?;
    if !complete {
        let count = export(store, filter, ExportFormat::Jsonl, Box::new(out)).await?;
        return Ok(count);
    }
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events exported")
            .expect("template"),
    );
    let tenants: Vec<TenantId> = match &filter.tenant {
        Some(t) => vec![t.clone()],
        None => {
            let set: std::collections::BTreeSet<TenantId> =
                store.audit_tenants().await?.into_iter().collect();
            set.into_iter().collect()
        }
    };
    let count = portcullis_server::audit::write_export_body(store, &tenants, &mut out, &|n| {
        progress.set_position(n)
    })
    .await?;
    out.flush()?;
    progress.finish_and_clear();
    Ok(count)
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
    sink: Box<dyn Write + Send>,
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
    Csv(Box<csv::Writer<Box<dyn Write + Send>>>),
    Jsonl(std::io::BufWriter<Box<dyn Write + Send>>),
}

impl Sink {
    fn write(&mut self, event: &AuditEvent) -> anyhow::Result<()> {
        match self {
            Self::Jsonl(w) => {
                let mut value = serde_json::to_value(event)?;
                value["type"] = serde_json::Value::String("entry".into());
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
