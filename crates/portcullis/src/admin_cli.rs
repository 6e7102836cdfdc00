//! Admin commands: a client of a running gateway's admin API (`--url`, `--token`, or
//! `PORTCULLIS_URL` and `PORTCULLIS_ADMIN_TOKEN`). Everything the API does, the CLI does.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use portcullis_core::effect::EffectClass;
use portcullis_server::admin::approvals::{ApprovalQuery, ApprovalView, VerdictIn};
use portcullis_server::admin::client::AdminClient;
use portcullis_server::admin::common::TenantQuery;
use portcullis_server::admin::connections::{ClassifyIn, ConnectionIn, RedactionIn};
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::humans::{AdminIn, AdminView, ExpiryIn, RotateIn};
use portcullis_server::admin::secrets::SecretIn;
use portcullis_server::admin::tenants::{ConsoleIn, EgressHosts, NameIn};
use portcullis_server::admin::tokens::TokenIn;
use portcullis_server::api::ApiRoute;
use portcullis_server::upstream::{ConnectionSpec, Credential, EnvValue, Transport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Args, Clone)]
pub struct Remote {
    /// Base URL of the gateway.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_URL",
        default_value = "http://127.0.0.1:8745"
    )]
    url: String,
    /// Admin or approver token.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl Remote {
    pub fn json(&self) -> bool {
        self.json
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Tenants: create, list, delete, their egress hosts and their console sign-in rule.
    Tenants {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// List the operator's program catalog: what stdio connections may launch.
    Programs {
        #[command(flatten)]
        remote: Remote,
    },
    /// Create, list, rotate, expire and revoke human admins and approvers.
    Admins {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: AdminsCommand,
    },
    /// Create, list and revoke agents.
    Agents {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Create and revoke agent tokens.
    Tokens {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Register, inspect and revoke upstream connections and classify their tools.
    Connections {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Grant connections' tools to agents, or take them away.
    Grants {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Store, list and delete a tenant's secrets (values go in, never out); rotate its key.
    Secrets {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// List, show, approve and deny held actions.
    Approvals {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    Create {
        name: String,
    },
    List,
    /// Show or set the hosts the tenant's outbound requests may reach (exact hosts and
    /// `*.domain` patterns; it only narrows the operator's egress policy).
    Egress {
        name: String,
        /// Allow only these hosts; repeatable.
        #[arg(long = "host", conflicts_with = "any")]
        hosts: Vec<String>,
        /// Remove the list: any public host.
        #[arg(long)]
        any: bool,
    },
    /// Set whether the tenant's humans need a TOTP code to sign in to the console. With
    /// `optional`, a human who has not enrolled one signs in with the password alone; one
    /// who has is always asked for a code, and large decisions still need a fresh one.
    Console {
        #[arg(long)]
        tenant: String,
        /// `required` (the default of every tenant) or `optional`.
        #[arg(long, value_parser = ["required", "optional"])]
        totp: String,
    },
    /// Delete a tenant for good: its keys are destroyed (its secrets can never be read
    /// again), its connections, agents' tokens and humans revoked. The audit trail stays.
    Delete {
        name: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Store a secret, or its next version. The value is read from standard input (one
    /// trailing newline dropped) or from `--from-env VAR`, never from the command line.
    Put {
        #[arg(long)]
        tenant: String,
        name: String,
        /// Read the value from this environment variable instead of standard input.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
        /// Rotation is due this many days after each new version.
        #[arg(long)]
        rotate_every_days: Option<u32>,
    },
    /// Names, versions, dates, last use and rotation due — never a value.
    List {
        #[arg(long)]
        tenant: String,
    },
    Delete {
        #[arg(long)]
        tenant: String,
        name: String,
    },
    /// Replace the tenant's key-encryption key; every secret is rewrapped, none decrypted.
    RotateKey {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
pub enum AdminsCommand {
    /// Create a named human; prints their token once.
    Create {
        name: String,
        /// `admin`, `approver`, `auditor` (reads everything, the audit trail included) or `viewer` (reads everything but the audit trail).
        #[arg(long, default_value = "approver")]
        role: String,
        /// Limit them to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Life of the credential in seconds (default: until revoked).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// List the humans you may manage (never their tokens).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a human's credential; it is refused on its next request.
    Revoke { name: String },
    /// Replace a human's token (the old one stops working at once); prints the new one once.
    Rotate {
        name: String,
        /// Life of the new credential in seconds (default: until revoked).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Set when a human's credential expires.
    Expire {
        name: String,
        /// Expire this many seconds from now (0: at once).
        #[arg(long, conflicts_with = "never", required_unless_present = "never")]
        in_secs: Option<u64>,
        /// Never expire (until revoked).
        #[arg(long)]
        never: bool,
    },
    /// Set your own console password (read from standard input or `--from-env VAR`; at
    /// least 12 characters). Ends your console sessions.
    Password {
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// Enroll your own second factor for the console; prints the otpauth:// URI (and the
    /// base32 secret) once for your authenticator app. Replaces an earlier one.
    Totp,
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    Create {
        #[arg(long)]
        tenant: String,
        name: String,
    },
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

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Mint an agent token; prints it once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
        /// Limit the token to a connection (`crm`) or one tool (`crm/send_email`); repeatable.
        #[arg(long)]
        scope: Vec<String>,
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Register an upstream: a `--program` from the operator's catalog (stdio MCP), an
    /// `--http-url` (streamable-HTTP MCP) or an `--api-url` (a plain HTTP API).
    Add(Box<AddConnection>),
    List {
        #[arg(long)]
        tenant: String,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Reconnect an upstream (restart a stdio process) and re-list its tools.
    Restart {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Show a connection's tools with their classification and pins.
    Tools {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Set a tool's effect class.
    Classify {
        #[arg(long)]
        tenant: String,
        id: String,
        tool: String,
        effect: String,
    },
    /// Accept a tool's changed definition.
    Accept {
        #[arg(long)]
        tenant: String,
        id: String,
        tool: String,
    },
    /// Set what the connection's tool results hide from agents (from the next call on).
    Redaction {
        #[arg(long)]
        tenant: String,
        id: String,
        /// Personal data: `off` (passed), `mask` or `pseudonymise`.
        #[arg(long, value_parser = ["off", "mask", "pseudonymise"])]
        pii: Option<String>,
        /// Credentials: `mask` or `off` (passed).
        #[arg(long, value_parser = ["mask", "off"])]
        secrets: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        connection: String,
        /// One tool, or every tool of the connection when omitted.
        #[arg(long, default_value = "*")]
        tool: String,
    },
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        connection: String,
        #[arg(long, default_value = "*")]
        tool: String,
    },
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests (newest first).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// pending, approved, denied, executed, expired, needs_reconnection, unknown
        #[arg(long, visible_alias = "state")]
        status: Option<String>,
    },
    Show {
        id: String,
    },
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// The admin API's client for these flags: the gateway's URL and the human's token.
pub(crate) fn client(remote: &Remote) -> anyhow::Result<AdminClient> {
    let Some(token) = remote.token.clone() else {
        bail!("no admin token: pass --token or set PORTCULLIS_ADMIN_TOKEN");
    };
    Ok(AdminClient::new(&remote.url, token))
}

/// An answer as indented JSON, fields in the order the API sends them.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn key_value(pairs: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{what} `{pair}` must be KEY=VALUE")
        };
        map.insert(k.to_owned(), v.to_owned());
    }
    Ok(map)
}

fn admin_line(a: &AdminView) -> String {
    let state = if a.revoked_at.is_some() {
        "revoked".to_owned()
    } else if let Some(at) = a.expires_at {
        format!("expires {}", portcullis_server::clock::rfc3339(at))
    } else {
        "active".to_owned()
    };
    format!(
        "{:<20} {:<9} {:<16} {:<34} created by {}",
        a.name,
        a.role.as_str(),
        a.tenant.as_deref().unwrap_or("(every tenant)"),
        state,
        a.created_by.as_deref().unwrap_or("?"),
    )
}

fn approval_line(a: &ApprovalView) -> String {
    format!(
        "{}  {:<18}  {:<8}  {}",
        a.id,
        a.status.as_str(),
        a.effect.as_str(),
        a.summary
    )
}

fn approval_detail(a: &ApprovalView) -> String {
    let mut out = String::new();
    out.push_str(&format!("approval   {}\n", a.id));
    out.push_str(&format!("status     {}\n", a.status.as_str()));
    out.push_str(&format!("effect     {}\n", a.effect.as_str()));
    out.push_str(&format!("summary    {}\n", a.summary));
    out.push_str(&format!("agent      {}\n", a.agent));
    out.push_str(&format!("tool       {}\n", a.tool));
    out.push_str(&format!("arguments  {}\n", a.action.arguments));
    out.push_str(&format!("action     sha256:{}\n", a.action_hash));
    out.push_str(&format!(
        "expires    {}\n",
        portcullis_server::clock::rfc3339(a.expires_at)
    ));
    for reason in &a.reasons {
        out.push_str(&format!("why held   {reason}\n"));
    }
    if let Some(by) = &a.decided_by {
        out.push_str(&format!("decided by {by}"));
        if let Some(reason) = &a.decision_reason {
            out.push_str(&format!(": {reason}"));
        }
        out.push('\n');
    }
    if let Some(receipt) = &a.receipt {
        out.push_str(&format!("receipt    {}\n", receipt.body.receipt_id));
    }
    out
}

/// A stdio connection's transport from the command line, or an HTTP one.
/// What agents see of a connection, and what it may ask of them.
#[derive(clap::Args, Debug)]
pub struct ExposureArgs {
    /// How agents see tools and prompts named: `namespaced` (`crm__get_contact`, the
    /// default) or `upstream` (the upstream's own names where they collide with nothing
    /// else an agent sees; its resource URIs too when it is the only such connection).
    #[arg(long, default_value = "namespaced")]
    names: String,
    /// Show a tool or prompt under another name, `upstream_name=agent_name`; repeatable.
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// Answer the upstream's `roots/list` with the calling agent's roots (off: on a
    /// filesystem server they would replace the folders you chose).
    #[arg(long)]
    forward_roots: bool,
}

/// What the command line says about the upstream.
struct Upstream<'a> {
    program: Option<String>,
    args: Vec<String>,
    envs: &'a [String],
    env_secrets: &'a [String],
    http_url: Option<String>,
    api_url: Option<String>,
    routes: &'a [String],
    auth: Option<String>,
    oauth: OAuthArgs,
}

/// `connections add`.
#[derive(Args)]
pub struct AddConnection {
    #[arg(long)]
    tenant: String,
    name: String,
    /// A program from the catalog (`portcullis programs`).
    #[arg(
            long,
            conflicts_with = "http_url",
            required_unless_present_any = ["http_url", "api_url"]
        )]
    program: Option<String>,
    /// An extra argument the program's catalog entry allows; repeatable.
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable the program's catalog entry allows, `KEY=VALUE`; repeatable.
    /// The value is sealed into the tenant's vault as the secret `CONNECTION.KEY`; the
    /// connection keeps only that name.
    #[arg(long = "env")]
    envs: Vec<String>,
    /// An environment variable whose value is a secret already in the vault,
    /// `KEY=SECRET_NAME`; repeatable.
    #[arg(long = "env-secret")]
    env_secrets: Vec<String>,
    #[arg(long = "http-url")]
    http_url: Option<String>,
    /// A plain HTTP API (not MCP): agents call it at `/t/TENANT/http/NAME/PATH` through
    /// the gate; each request is decided by the route it matches (`--route`).
    #[arg(long = "api-url", conflicts_with_all = ["program", "http_url"])]
    api_url: Option<String>,
    /// An HTTP API route, `NAME=METHODS:PATH:EFFECT` (`create_charge=POST:/v1/charges:spend`,
    /// `*` one path segment, `**` the rest); repeatable, tried in order. Unrouted GET/HEAD
    /// are `read`, DELETE `delete`, anything else `write`.
    #[arg(long = "route", requires = "api_url")]
    routes: Vec<String>,
    /// The credential the gateway adds to every request to the HTTP upstream or API, from
    /// a vault secret: `bearer:SECRET`, `basic:USER:SECRET`, `header:NAME:SECRET` or
    /// `query:NAME:SECRET`.
    #[arg(long)]
    auth: Option<String>,
    #[command(flatten)]
    oauth: OAuthArgs,
    /// Operator classification, `tool=effect`; repeatable.
    #[arg(long)]
    classify: Vec<String>,
    #[command(flatten)]
    exposure: ExposureArgs,
    /// Personal data in what the tools return: `off` (passed; the default), `mask`
    /// (`[EMAIL]`) or `pseudonymise` (`[EMAIL_1]`, stable within the agent's session).
    #[arg(long = "redact-pii", value_parser = ["off", "mask", "pseudonymise"], default_value = "off")]
    redact_pii: String,
    /// Credentials in what the tools return: `mask` (the default) or `off` (passed).
    #[arg(long = "redact-secrets", value_parser = ["mask", "off"], default_value = "mask")]
    redact_secrets: String,
}

/// An OAuth 2 client for an HTTP API connection: the gateway mints access tokens (at most 15
/// minutes old) from the refresh token in the vault.
#[derive(Args, Clone, Default)]
pub struct OAuthArgs {
    /// The provider's token endpoint.
    #[arg(long = "oauth-token-url", requires_all = ["oauth_client_id", "oauth_refresh_token"], conflicts_with = "auth")]
    oauth_token_url: Option<String>,
    #[arg(long = "oauth-client-id")]
    oauth_client_id: Option<String>,
    /// The vault secret holding the client secret (none: a public client).
    #[arg(long = "oauth-client-secret", value_name = "SECRET")]
    oauth_client_secret: Option<String>,
    /// The vault secret holding the refresh token.
    #[arg(long = "oauth-refresh-token", value_name = "SECRET")]
    oauth_refresh_token: Option<String>,
    #[arg(long = "oauth-scope")]
    oauth_scope: Option<String>,
}

fn connection_spec(
    upstream: Upstream<'_>,
    classify: &[String],
    exposure: &ExposureArgs,
) -> anyhow::Result<ConnectionSpec> {
    let mut auth = upstream
        .auth
        .as_deref()
        .map(Credential::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(token_url) = upstream.oauth.oauth_token_url {
        auth = Some(Credential::Oauth {
            token_url,
            client_id: upstream.oauth.oauth_client_id.unwrap_or_default(),
            client_secret: upstream.oauth.oauth_client_secret,
            refresh_token: upstream.oauth.oauth_refresh_token.unwrap_or_default(),
            scope: upstream.oauth.oauth_scope,
        });
    }
    if auth.is_some() && upstream.program.is_some() {
        bail!("--auth is for --http-url and --api-url; a program gets secrets with --env-secret");
    }
    if let Some(base_url) = upstream.api_url {
        let routes = upstream
            .routes
            .iter()
            .map(|r| ApiRoute::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let transport = Transport::Api {
            base_url,
            auth,
            routes,
        };
        return finish_spec(transport, classify, exposure);
    }
    let transport = match (upstream.program, upstream.http_url) {
        (Some(program), None) => {
            let mut env: BTreeMap<String, EnvValue> = key_value(upstream.envs, "--env")?
                .into_iter()
                .map(|(k, v)| (k, EnvValue::Plain(v)))
                .collect();
            for (k, secret) in key_value(upstream.env_secrets, "--env-secret")? {
                if env.insert(k.clone(), EnvValue::Secret { secret }).is_some() {
                    bail!("`{k}` is given by both --env and --env-secret");
                }
            }
            Transport::Stdio {
                program,
                args: upstream.args,
                env,
            }
        }
        (None, Some(url)) => Transport::Http { url, auth },
        _ => bail!("give exactly one of --program, --http-url and --api-url"),
    };
    finish_spec(transport, classify, exposure)
}

fn finish_spec(
    transport: Transport,
    classify: &[String],
    exposure: &ExposureArgs,
) -> anyhow::Result<ConnectionSpec> {
    let classify = key_value(classify, "--classify")?
        .into_iter()
        .map(|(tool, effect)| {
            let effect = EffectClass::parse(&effect)
                .with_context(|| format!("--classify `{tool}={effect}`"))?;
            Ok((tool, effect))
        })
        .collect::<anyhow::Result<_>>()?;
    let names = match exposure.names.as_str() {
        "namespaced" => portcullis_server::upstream::Names::Namespaced,
        "upstream" => portcullis_server::upstream::Names::Upstream,
        other => bail!("--names `{other}`: use `namespaced` or `upstream`"),
    };
    Ok(ConnectionSpec {
        transport,
        classify,
        names,
        aliases: key_value(&exposure.aliases, "--alias")?,
        forward_roots: exposure.forward_roots,
    })
}

/// A secret's value from an environment variable or standard input (one trailing newline
/// dropped), never from the command line (it would be in the shell history and `ps`).
pub(crate) fn read_secret_value(from_env: Option<&str>) -> anyhow::Result<secrecy::SecretString> {
    let mut value = match from_env {
        Some(var) => std::env::var(var).with_context(|| format!("environment variable `{var}`"))?,
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the secret from standard input")?;
            text
        }
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("the secret value is empty");
    }
    Ok(secrecy::SecretString::from(value))
}

/// A UTC date and time, or `never`.
pub(crate) fn date(millis: Option<i64>) -> String {
    let Some(millis) = millis else {
        return "never".into();
    };
    time::OffsetDateTime::from_unix_timestamp(millis / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| millis.to_string())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Tenants { remote, command } => {
            let c = client(&remote)?;
            match command {
                TenantsCommand::Create { name } => {
                    print_json(&c.create_tenant(&NameIn { name }).await?)
                }
                TenantsCommand::List => print_json(&c.list_tenants().await?),
                TenantsCommand::Egress { name, hosts, any } => {
                    let shown = if hosts.is_empty() && !any {
                        c.tenant_egress(&name).await?
                    } else {
                        c.set_tenant_egress(&name, &EgressHosts { hosts }).await?
                    };
                    print_json(&shown);
                }
                TenantsCommand::Console { tenant, totp } => {
                    print_json(&c.set_tenant_console(&tenant, &ConsoleIn { totp }).await?);
                }
                TenantsCommand::Delete { name, yes } => {
                    if !yes {
                        bail!(
                            "deleting a tenant destroys its keys and cannot be undone: add --yes"
                        );
                    }
                    c.delete_tenant(&name).await?;
                    println!("tenant `{name}` deleted; its keys are destroyed");
                }
            }
        }
        AdminCommand::Secrets { remote, command } => {
            let c = client(&remote)?;
            match command {
                SecretsCommand::Put {
                    tenant,
                    name,
                    from_env,
                    rotate_every_days,
                } => {
                    if !portcullis_server::vault::valid_secret_name(&name) {
                        bail!(
                            "secret names are 1-64 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
                        );
                    }
                    let value = read_secret_value(from_env.as_deref())?;
                    let body = SecretIn {
                        value,
                        rotate_every_days,
                    };
                    print_json(&c.put_secret(&tenant, &name, &body).await?);
                }
                SecretsCommand::List { tenant } => {
                    let list = c.list_secrets(&tenant).await?;
                    if remote.json {
                        print_json(&list);
                    } else {
                        if list.is_empty() {
                            println!("no secrets");
                        }
                        for s in list {
                            println!(
                                "{:<32} v{:<3} updated {}  last used {}  rotation due {}",
                                s.name,
                                s.version,
                                date(Some(s.updated_at)),
                                date(s.last_used_at),
                                date(s.rotation_due_at),
                            );
                        }
                    }
                }
                SecretsCommand::Delete { tenant, name } => {
                    if !portcullis_server::vault::valid_secret_name(&name) {
                        bail!("no such secret name: `{name}`");
                    }
                    c.delete_secret(&tenant, &name).await?;
                    println!("secret `{name}` deleted");
                }
                SecretsCommand::RotateKey { tenant } => {
                    print_json(&c.rotate_tenant_key(&tenant).await?);
                }
            }
        }
        AdminCommand::Programs { remote } => {
            let c = client(&remote)?;
            let list = c.list_programs(&TenantQuery::default()).await?;
            if remote.json {
                print_json(&list);
            } else {
                if list.is_empty() {
                    println!(
                        "the catalog is empty: the operator lists programs under [programs.NAME] in the configuration"
                    );
                }
                for p in list {
                    println!("{:<16} {}", p.name, p.description);
                    for pattern in &p.tenant_args {
                        println!("  --arg     {pattern}");
                    }
                    for name in &p.tenant_env {
                        println!("  --env     {name}=…");
                    }
                }
            }
        }
        AdminCommand::Admins { remote, command } => {
            let c = client(&remote)?;
            match command {
                AdminsCommand::Create {
                    name,
                    role,
                    tenant,
                    ttl_secs,
                } => {
                    let body = AdminIn {
                        name,
                        role,
                        tenant,
                        ttl_secs,
                    };
                    print_json(&c.create_admin(&body).await?);
                }
                AdminsCommand::List { tenant } => {
                    let list = c.list_admins(&TenantQuery { tenant }).await?;
                    if remote.json {
                        print_json(&list);
                    } else {
                        list.iter().for_each(|a| println!("{}", admin_line(a)));
                    }
                }
                AdminsCommand::Revoke { name } => print_json(&c.revoke_admin(&name).await?),
                AdminsCommand::Password { from_env } => {
                    let password = read_secret_value(from_env.as_deref())?;
                    let body = portcullis_server::admin::humans::PasswordIn { password };
                    c.set_own_password(&body).await?;
                    println!("console password set; your console sessions have ended");
                }
                AdminsCommand::Totp => {
                    use secrecy::ExposeSecret as _;
                    let enrolled = c.enroll_own_totp().await?;
                    if remote.json {
                        print_json(&enrolled);
                    } else {
                        println!("add this to your authenticator app (shown once):");
                        println!("  {}", enrolled.otpauth_uri.expose_secret());
                        println!("  secret: {}", enrolled.secret.expose_secret());
                    }
                }
                AdminsCommand::Rotate { name, ttl_secs } => {
                    print_json(&c.rotate_admin(&name, &RotateIn { ttl_secs }).await?);
                }
                AdminsCommand::Expire {
                    name,
                    in_secs,
                    never,
                } => {
                    let expires_at =
                        (!never).then(|| now_millis() + in_secs.unwrap_or(0) as i64 * 1000);
                    print_json(&c.set_admin_expiry(&name, &ExpiryIn { expires_at }).await?);
                }
            }
        }
        AdminCommand::Agents { remote, command } => {
            let c = client(&remote)?;
            match command {
                AgentsCommand::Create { tenant, name } => {
                    print_json(&c.create_agent(&tenant, &NameIn { name }).await?);
                }
                AgentsCommand::List { tenant } => print_json(&c.list_agents(&tenant).await?),
                AgentsCommand::Revoke { tenant, id } => {
                    print_json(&c.revoke_agent(&tenant, &id).await?);
                }
            }
        }
        AdminCommand::Tokens { remote, command } => {
            let c = client(&remote)?;
            match command {
                TokensCommand::Create {
                    tenant,
                    agent,
                    scope,
                    ttl_secs,
                } => {
                    let body = TokenIn { scope, ttl_secs };
                    print_json(&c.create_token(&tenant, &agent, &body).await?);
                }
                TokensCommand::Revoke { tenant, id } => {
                    print_json(&c.revoke_token(&tenant, &id).await?);
                }
            }
        }
        AdminCommand::Connections { remote, command } => {
            let c = client(&remote)?;
            match command {
                ConnectionsCommand::Add(add) => {
                    let AddConnection {
                        tenant,
                        name,
                        program,
                        args,
                        envs,
                        env_secrets,
                        http_url,
                        api_url,
                        routes,
                        auth,
                        oauth,
                        classify,
                        exposure,
                        redact_pii,
                        redact_secrets,
                    } = *add;
                    let upstream = Upstream {
                        program,
                        args,
                        envs: &envs,
                        env_secrets: &env_secrets,
                        http_url,
                        api_url,
                        routes: &routes,
                        auth,
                        oauth,
                    };
                    let spec = connection_spec(upstream, &classify, &exposure)?;
                    let redaction = portcullis_store::ResultRedaction {
                        pii: portcullis_store::PiiMode::parse(&redact_pii)
                            .context("--redact-pii")?,
                        secrets: portcullis_store::SecretsMode::parse(&redact_secrets)
                            .context("--redact-secrets")?,
                    };
                    let body = ConnectionIn {
                        name,
                        spec,
                        redaction,
                    };
                    print_json(&c.create_connection(&tenant, &body).await?);
                }
                ConnectionsCommand::List { tenant } => {
                    print_json(&c.list_connections(&tenant).await?);
                }
                ConnectionsCommand::Revoke { tenant, id } => {
                    print_json(&c.revoke_connection(&tenant, &id).await?);
                }
                ConnectionsCommand::Restart { tenant, id } => {
                    print_json(&c.restart_connection(&tenant, &id).await?);
                }
                ConnectionsCommand::Tools { tenant, id } => {
                    print_json(&c.list_tools(&tenant, &id).await?);
                }
                ConnectionsCommand::Classify {
                    tenant,
                    id,
                    tool,
                    effect,
                } => {
                    let body = ClassifyIn { effect };
                    print_json(&c.classify_tool(&tenant, &id, &tool, &body).await?);
                }
                ConnectionsCommand::Accept { tenant, id, tool } => {
                    print_json(&c.accept_tool(&tenant, &id, &tool).await?);
                }
                ConnectionsCommand::Redaction {
                    tenant,
                    id,
                    pii,
                    secrets,
                } => {
                    if pii.is_none() && secrets.is_none() {
                        bail!("nothing to change: pass --pii and/or --secrets");
                    }
                    let body = RedactionIn { pii, secrets };
                    print_json(&c.set_connection_redaction(&tenant, &id, &body).await?);
                }
            }
        }
        AdminCommand::Grants { remote, command } => {
            let c = client(&remote)?;
            match command {
                GrantsCommand::Add {
                    tenant,
                    agent,
                    connection,
                    tool,
                } => {
                    let body = GrantIn {
                        agent,
                        connection,
                        tool,
                    };
                    print_json(&c.add_grant(&tenant, &body).await?);
                }
                GrantsCommand::Remove {
                    tenant,
                    agent,
                    connection,
                    tool,
                } => {
                    let body = GrantIn {
                        agent,
                        connection,
                        tool,
                    };
                    print_json(&c.remove_grant(&tenant, &body).await?);
                }
            }
        }
        AdminCommand::Approvals { remote, command } => {
            let c = client(&remote)?;
            let out = match command {
                ApprovalsCommand::List { tenant, status } => {
                    let query = ApprovalQuery {
                        tenant,
                        status,
                        ..ApprovalQuery::default()
                    };
                    let list = c.list_approvals(&query).await?;
                    if remote.json {
                        print_json(&list);
                    } else {
                        if list.is_empty() {
                            println!("no approval requests");
                        }
                        list.iter().for_each(|a| println!("{}", approval_line(a)));
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                ApprovalsCommand::Show { id } => c.approval(&id).await?,
                ApprovalsCommand::Approve { id, reason } => {
                    c.approve(&id, &VerdictIn { reason }).await?
                }
                ApprovalsCommand::Deny { id, reason } => {
                    c.deny(
                        &id,
                        &VerdictIn {
                            reason: Some(reason),
                        },
                    )
                    .await?
                }
            };
            if remote.json {
                print_json(&out);
            } else {
                print!("{}", approval_detail(&out));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
