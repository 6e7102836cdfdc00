//! First start: the data folder (0700), the local key file (0600), the database file (0600,
//! so SQLite creates its WAL and shared-memory files 0600 too), the bootstrap admin token
//! (printed once), the program catalog, and optionally a ready demo tenant. Every start
//! refuses a data folder or database files that group or others can read, unless the
//! operator explicitly allows it.

use crate::config::Config;
use crate::programs::{Catalog, ProgramConfig};
use crate::upstream::Transport;
use portcullis_core::effect::EffectClass;
use portcullis_core::keys::KeyRing;
use portcullis_core::token::{BearerSecret, TokenKind};
use portcullis_store::{AdminRole, NewAdmin, NewToken, Store, StoreError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot create data folder `{path}`: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read key file `{path}`: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("key file `{path}` is readable by other users (mode {mode:o}); run `chmod 600` on it")]
    KeyFilePermissions { path: String, mode: u32 },
    #[error(
        "`{path}` is readable or writable by group or others (mode {mode:o}); run `chmod {fix} {path}`, or set data.allow_open_permissions = true to start anyway"
    )]
    OpenPermissions {
        path: String,
        mode: u32,
        fix: &'static str,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The vault's key provider the configuration names: the key file's vault keys, or a
/// PKCS#11 token (its PIN from `PORTCULLIS_PKCS11_PIN`).
pub fn key_provider(
    config: &Config,
    keys: &KeyRing,
) -> Result<std::sync::Arc<dyn crate::vault::KeyProvider>, BootstrapError> {
    use crate::config::VaultProvider;
    match config.vault.provider {
        VaultProvider::Keyfile => Ok(std::sync::Arc::new(crate::vault::KeyFileProvider::new(
            keys,
        ))),
        VaultProvider::Pkcs11 => {
            let pin = std::env::var("PORTCULLIS_PKCS11_PIN").map_err(|_| {
                BootstrapError::Config(
                    "vault.provider = \"pkcs11\" needs the token's PIN in PORTCULLIS_PKCS11_PIN"
                        .into(),
                )
            })?;
            let provider =
                crate::vault::pkcs11::Pkcs11Provider::open(crate::vault::pkcs11::Pkcs11Config {
                    module: config.vault.pkcs11_module.clone().into(),
                    token_label: config.vault.pkcs11_token.clone(),
                    pin: pin.into(),
                    key_label: config.vault.pkcs11_key_label.clone(),
                })
                .map_err(|e| BootstrapError::Config(format!("vault: {e}")))?;
            // The master key is made once, here, if the token does not hold it yet.
            provider
                .ensure_master(&config.vault.pkcs11_key_label)
                .map_err(|e| BootstrapError::Config(format!("vault: {e}")))?;
            Ok(std::sync::Arc::new(provider))
        }
    }
}

/// The outbound policy and client: public addresses, plus the operator's `allow_private`
/// networks; the configured listen addresses count as the gateway's own.
pub fn egress(
    config: &Config,
    lookup: Option<std::sync::Arc<dyn crate::egress::Lookup>>,
) -> Result<crate::egress::Egress, BootstrapError> {
    let allowed = config.allow_private().map_err(BootstrapError::Config)?;
    let mut own = vec![config.server.listen];
    if let Ok(Some(metrics)) = config.metrics_listen() {
        own.push(metrics);
    }
    let lookup = lookup.unwrap_or_else(|| std::sync::Arc::new(crate::egress::SystemLookup));
    let roots = match config.egress.ca_file.as_str() {
        "" => Vec::new(),
        file => {
            let pem = std::fs::read(file)
                .map_err(|e| BootstrapError::Config(format!("egress.ca_file `{file}`: {e}")))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| BootstrapError::Config(format!("egress.ca_file `{file}`: {e}")))?
        }
    };
    crate::egress::Egress::with_roots(
        crate::egress::EgressPolicy::new(allowed, own),
        lookup,
        roots,
    )
    .map_err(|e| BootstrapError::Config(format!("cannot build the outbound HTTP client: {e}")))
}

/// Move every plain environment value of a stdio connection (stored before the vault
/// existed) into the tenant's vault as the secret `CONNECTION.VARIABLE`, leaving the
/// connection only the name; then rewrite the database file so the plain text is gone from
/// it and its log too (SQLite). Revoked connections are sealed as well. Returns how many
/// values were moved.
pub async fn seal_plain_environments(
    store: &Store,
    vault: &crate::vault::Vault,
    now: portcullis_core::UnixMillis,
) -> Result<usize, BootstrapError> {
    let mut moved = 0;
    for connection in store.all_connections().await? {
        let mut transport = connection.transport.clone();
        let Some(env) = transport
            .get_mut("env")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        let mut changed = false;
        for (variable, value) in env.iter_mut() {
            let Some(plain) = value.as_str() else {
                continue;
            };
            let name = format!("{}.{variable}", connection.name);
            match vault
                .put(
                    &connection.tenant,
                    &name,
                    plain.as_bytes(),
                    None,
                    "system",
                    now,
                )
                .await
            {
                Ok(_) => {}
                // A deleted tenant: its vault is destroyed; the value is simply dropped.
                Err(crate::vault::VaultError::NotFound)
                | Err(crate::vault::VaultError::Store(StoreError::NotFound)) => {}
                Err(e) => {
                    return Err(BootstrapError::Config(format!(
                        "sealing `{name}` into the vault: {e}"
                    )));
                }
            }
            *value = serde_json::json!({ "secret": name });
            changed = true;
            moved += 1;
        }
        if changed {
            store
                .replace_transport(&connection.tenant, &connection.id, &transport)
                .await?;
        }
    }
    if moved > 0 {
        store.purge_freed(true).await?;
        tracing::info!(moved, "sealed plain connection environments into the vault");
    }
    Ok(moved)
}

/// [`seal_plain_environments`] for `portcullis migrate`: the configured database (as the
/// gateway's own account) and key provider.
pub async fn seal_with_config(config: &Config) -> Result<usize, BootstrapError> {
    let keys = load_or_create_keys(&config.key_file())?;
    let store = Store::open(&config.database_url(), &Default::default()).await?;
    let vault = crate::vault::Vault::new(
        store.clone(),
        key_provider(config, &keys)?,
        config.vault.min_format,
    );
    let now = crate::clock::Clock::System.now();
    seal_plain_environments(&store, &vault, now).await
}

/// Make a new master key current and rewrap every tenant key under it (the keys themselves
/// and every secret stay as they are; nothing is decrypted but the tenant keys, in memory).
/// Key file: a new vault key is added to the key file (written to a new file, then renamed
/// over it, mode 0600) — every replica must be restarted with the new file. PKCS#11:
/// `to_label` names the new master key, made in the token if missing; set
/// `vault.pkcs11_key_label` to it afterwards. Returns the new master id and how many tenant
/// keys were rewrapped.
pub async fn rotate_master(
    config: &Config,
    to_label: Option<&str>,
) -> Result<(String, usize), BootstrapError> {
    use crate::config::VaultProvider;
    let path = config.key_file();
    let mut keys = load_keys(&path)?;
    let store = Store::open(&config.database_url(), &Default::default()).await?;
    let new: std::sync::Arc<dyn crate::vault::KeyProvider> = match config.vault.provider {
        VaultProvider::Keyfile => {
            keys.add_vault_key();
            write_keys(&path, &keys)?;
            std::sync::Arc::new(crate::vault::KeyFileProvider::new(&keys))
        }
        VaultProvider::Pkcs11 => {
            let label = to_label.ok_or_else(|| {
                BootstrapError::Config(
                    "with a PKCS#11 provider, name the new master key: --to LABEL".into(),
                )
            })?;
            let mut next = config.clone();
            next.vault.pkcs11_key_label = label.to_owned();
            key_provider(&next, &keys)?
        }
    };
    // The new provider still knows every earlier master key (the key file keeps them; the
    // token finds them by label), so it unwraps what the database holds and wraps anew.
    let vault = crate::vault::Vault::new(store, new.clone(), config.vault.min_format);
    let count = vault
        .rewrap_under_current_master()
        .await
        .map_err(|e| BootstrapError::Config(format!("rewrapping tenant keys: {e}")))?;
    Ok((new.current_master(), count))
}

/// Replace the key file atomically (a new file, fsynced, renamed over the old), mode 0600.
fn write_keys(path: &Path, keys: &KeyRing) -> Result<(), BootstrapError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| BootstrapError::KeyFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("json.new");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(&keys.to_file_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// Load an existing key file (refused when other users can read it). Commands that only
/// read or verify use this: a missing key file is an error, never a fresh key.
pub fn load_keys(path: &Path) -> Result<KeyRing, BootstrapError> {
    match load_or_create(path, false)? {
        Some(keys) => Ok(keys),
        None => Err(BootstrapError::KeyFile {
            path: path.display().to_string(),
            reason: "no such file (start `portcullis serve` once, or pass --config)".into(),
        }),
    }
}

/// Load the key file, creating it (mode 0600, never overwriting) when it does not exist.
pub fn load_or_create_keys(path: &Path) -> Result<KeyRing, BootstrapError> {
    Ok(load_or_create(path, true)?.expect("created when missing"))
}

fn load_or_create(path: &Path, create: bool) -> Result<Option<KeyRing>, BootstrapError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let display = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| BootstrapError::KeyFile {
                    path: display.clone(),
                    reason: e.to_string(),
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(BootstrapError::KeyFilePermissions {
                    path: display,
                    mode: mode & 0o777,
                });
            }
            KeyRing::from_file_bytes(&bytes)
                .map(Some)
                .map_err(|e| BootstrapError::KeyFile {
                    path: display,
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = KeyRing::generate();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| BootstrapError::KeyFile {
                    path: display.clone(),
                    reason: e.to_string(),
                })?;
            file.write_all(&keys.to_file_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| BootstrapError::KeyFile {
                    path: display,
                    reason: e.to_string(),
                })?;
            Ok(Some(keys))
        }
        Err(e) => Err(BootstrapError::KeyFile {
            path: display,
            reason: e.to_string(),
        }),
    }
}

/// Create the data folder (0700) if it does not exist.
pub fn ensure_data_dir(config: &Config) -> Result<(), BootstrapError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &config.data.dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| BootstrapError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    Ok(())
}

/// The embedded database file, when SQLite is configured.
fn sqlite_file(config: &Config) -> Option<std::path::PathBuf> {
    let url = config.database_url();
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Create the SQLite database file with mode 0600 before SQLite does (SQLite gives its WAL
/// and shared-memory files the database file's mode).
pub fn prepare_database_file(config: &Config) -> Result<(), BootstrapError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = sqlite_file(config) else {
        return Ok(());
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BootstrapError::DataDir {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// Refuse (or, when allowed, warn about) a data folder or database files that group or
/// others can read or write.
pub fn check_permissions(config: &Config) -> Result<(), BootstrapError> {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = vec![(config.data.dir.clone(), "700")];
    if let Some(db) = sqlite_file(config) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            paths.push((name.into(), "600"));
        }
    }
    for (path, fix) in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        let error = BootstrapError::OpenPermissions {
            path: path.display().to_string(),
            mode,
            fix,
        };
        if config.data.allow_open_permissions {
            tracing::warn!("{error}");
        } else {
            return Err(error);
        }
    }
    Ok(())
}

/// The program catalog: the configured entries, plus the demo upstream (`demo`: this
/// binary's `demo-upstream`) when the demo is on and the configuration does not define it.
pub fn catalog(config: &Config, options: &crate::BuildOptions) -> Result<Catalog, BootstrapError> {
    let mut entries = config.programs.clone();
    if options.demo && !entries.contains_key(DEMO_PROGRAM) {
        entries.insert(
            DEMO_PROGRAM.to_owned(),
            ProgramConfig {
                command: crate::programs::SELF_COMMAND.to_owned(),
                args: vec!["demo-upstream".into()],
                description: "The shipped demo CRM/mail/billing MCP server".into(),
                tenants: vec!["*".into()],
                // Our own program, for the quickstart: it starts with whatever this host
                // gives (a laptop user is not root), and the report says what that is.
                // Entries an operator writes must name each gap they accept.
                sandbox: crate::programs::SandboxEntry {
                    allow_missing: portcullis_sandbox::Protection::ALL
                        .iter()
                        .map(|p| p.name().to_owned())
                        .collect(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
    }
    Catalog::build(&entries, options.self_exe.as_deref()).map_err(BootstrapError::Config)
}

/// The catalog name of the demo upstream.
pub const DEMO_PROGRAM: &str = "demo";

/// Create the bootstrap admin when there is no admin yet. Returns its token, to print once.
pub async fn bootstrap_admin(
    store: &Store,
    now: i64,
) -> Result<Option<BearerSecret>, BootstrapError> {
    if store.count_admins().await? > 0 {
        return Ok(None);
    }
    let secret = BearerSecret::generate(TokenKind::Admin);
    store
        .create_admin(
            NewAdmin {
                name: "admin",
                role: AdminRole::Admin,
                tenant: None,
                token_hash: &secret.hash(),
                created_by: "system",
                expires_at: None,
            },
            "system",
            now,
        )
        .await?;
    Ok(Some(secret))
}

/// What `--demo` created on first start.
pub struct Demo {
    pub tenant: String,
    pub agent_token: BearerSecret,
    pub approver: String,
    pub approver_token: BearerSecret,
}

/// Create the demo tenant (`demo`), its CRM connection (the catalog's `demo` program over
/// stdio), an agent granted every CRM tool, and an approver. Does nothing if the tenant exists.
pub async fn seed_demo(
    store: &Store,
    now: i64,
    token_ttl_ms: i64,
) -> Result<Option<Demo>, BootstrapError> {
    match store.tenant_by_name("demo").await {
        Ok(_) => return Ok(None),
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let actor = "system:demo";
    let tenant = store.create_tenant("demo", actor, now).await?;
    let classify: BTreeMap<String, EffectClass> = [
        ("list_contacts", EffectClass::Read),
        ("get_contact", EffectClass::Read),
        ("count_to", EffectClass::Read),
        ("draft_email", EffectClass::Draft),
        ("send_email", EffectClass::Send),
        ("update_contact", EffectClass::Write),
        ("create_contact", EffectClass::Write),
        ("issue_refund", EffectClass::Spend),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let transport = Transport::Stdio {
        program: DEMO_PROGRAM.into(),
        args: Vec::new(),
        env: BTreeMap::new(),
    };
    let spec = crate::upstream::ConnectionSpec::new(transport, classify);
    let connection = store
        .create_connection(
            &tenant.id,
            "crm",
            &spec.to_json(),
            portcullis_store::ResultRedaction::default(),
            actor,
            now,
        )
        .await?;
    let agent = store
        .create_agent(&tenant.id, "demo-agent", actor, now)
        .await?;
    store
        .grant(&tenant.id, &agent.id, &connection.id, "*", actor, now)
        .await?;
    let agent_token = BearerSecret::generate(TokenKind::Agent);
    store
        .create_token(
            NewToken {
                tenant: &tenant.id,
                agent: &agent.id,
                token_hash: &agent_token.hash(),
                scope: &[],
                expires_at: now + token_ttl_ms,
            },
            actor,
            now,
        )
        .await?;
    let approver_token = BearerSecret::generate(TokenKind::Admin);
    store
        .create_admin(
            NewAdmin {
                name: "alice",
                role: AdminRole::Approver,
                tenant: Some(&tenant.id),
                token_hash: &approver_token.hash(),
                created_by: actor,
                expires_at: None,
            },
            actor,
            now,
        )
        .await?;
    Ok(Some(Demo {
        tenant: tenant.name,
        agent_token,
        approver: "alice".into(),
        approver_token,
    }))
}
