//! Admin commands: a client of a running gateway's admin API (`--url`, `--token`, or
//! `PORTCULLIS_URL` and `PORTCULLIS_ADMIN_TOKEN`). Everything the API does, the CLI does.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
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
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create and list tenants.
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
    Create { name: String },
    List,
}

#[derive(Subcommand)]
pub enum AdminsCommand {
    /// Create a named human; prints their token once.
    Create {
        name: String,
        /// `admin` or `approver`.
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
    /// Register an upstream MCP server: a `--program` from the operator's catalog (stdio) or
    /// an `--http-url` (streamable HTTP).
    Add {
        #[arg(long)]
        tenant: String,
        name: String,
        /// A program from the catalog (`portcullis programs`).
        #[arg(
            long,
            conflicts_with = "http_url",
            required_unless_present = "http_url"
        )]
        program: Option<String>,
        /// An extra argument the program's catalog entry allows; repeatable.
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An environment variable the program's catalog entry allows, `KEY=VALUE`; repeatable.
        #[arg(long = "env")]
        envs: Vec<String>,
        #[arg(long = "http-url")]
        http_url: Option<String>,
        /// Operator classification, `tool=effect`; repeatable.
        #[arg(long)]
        classify: Vec<String>,
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

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub(crate) fn new(remote: &Remote) -> anyhow::Result<Self> {
        let Some(token) = remote.token.clone() else {
            bail!("no admin token: pass --token or set PORTCULLIS_ADMIN_TOKEN");
        };
        Ok(Self {
            http: reqwest::Client::new(),
            base: format!("{}/admin/v1", remote.url.trim_end_matches('/')),
            token,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = value
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("no detail");
            bail!(
                "{} ({status}): {detail}",
                value.get("code").and_then(Value::as_str).unwrap_or("error")
            );
        }
        Ok(value)
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
}

pub(crate) fn enc(segment: &str) -> String {
    // Path segments are names and ids; refuse anything that could change the path.
    segment
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .collect()
}

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn key_value(pairs: &[String], what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{what} `{pair}` must be KEY=VALUE")
        };
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(map)
}

fn time(value: &Value) -> String {
    value
        .as_i64()
        .map_or_else(|| "-".into(), portcullis_server::clock::rfc3339)
}

fn admin_line(a: &Value) -> String {
    let state = if a["revoked_at"].is_i64() {
        "revoked".to_owned()
    } else if let Some(at) = a["expires_at"].as_i64() {
        format!("expires {}", portcullis_server::clock::rfc3339(at))
    } else {
        "active".to_owned()
    };
    format!(
        "{:<20} {:<9} {:<16} {:<34} created by {}",
        a["name"].as_str().unwrap_or("?"),
        a["role"].as_str().unwrap_or("?"),
        a["tenant"].as_str().unwrap_or("(every tenant)"),
        state,
        a["created_by"].as_str().unwrap_or("?"),
    )
}

fn approval_line(a: &Value) -> String {
    format!(
        "{}  {:<18}  {:<8}  {}",
        a["id"].as_str().unwrap_or("?"),
        a["status"].as_str().unwrap_or("?"),
        a["effect"].as_str().unwrap_or("?"),
        a["summary"].as_str().unwrap_or("")
    )
}

fn approval_detail(a: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("approval   {}\n", a["id"].as_str().unwrap_or("?")));
    out.push_str(&format!(
        "status     {}\n",
        a["status"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!(
        "effect     {}\n",
        a["effect"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!(
        "summary    {}\n",
        a["summary"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "agent      {}\n",
        a["agent"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!(
        "tool       {}\n",
        a["tool"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!("arguments  {}\n", a["action"]["arguments"]));
    out.push_str(&format!(
        "action     sha256:{}\n",
        a["action_hash"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!("expires    {}\n", time(&a["expires_at"])));
    if let Some(reasons) = a["reasons"].as_array() {
        for reason in reasons {
            out.push_str(&format!("why held   {}\n", reason.as_str().unwrap_or("")));
        }
    }
    if let Some(by) = a["decided_by"].as_str() {
        out.push_str(&format!("decided by {by}"));
        if let Some(reason) = a["decision_reason"].as_str() {
            out.push_str(&format!(": {reason}"));
        }
        out.push('\n');
    }
    if let Some(receipt) = a["receipt"]["body"]["receipt_id"].as_str() {
        out.push_str(&format!("receipt    {receipt}\n"));
    }
    out
}

pub async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Tenants { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                TenantsCommand::Create { name } => {
                    c.post("/tenants", json!({ "name": name })).await?
                }
                TenantsCommand::List => c.get("/tenants").await?,
            };
            print_json(&out);
        }
        AdminCommand::Programs { remote } => {
            let c = Client::new(&remote)?;
            let list = c.get("/programs").await?;
            if remote.json {
                print_json(&list);
            } else {
                let rows = list.as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    println!(
                        "the catalog is empty: the operator lists programs under [programs.NAME] in the configuration"
                    );
                }
                for p in rows {
                    println!(
                        "{:<16} {}",
                        p["name"].as_str().unwrap_or_default(),
                        p["description"].as_str().unwrap_or_default()
                    );
                    for pattern in p["tenant_args"].as_array().into_iter().flatten() {
                        println!("  --arg     {}", pattern.as_str().unwrap_or_default());
                    }
                    for name in p["tenant_env"].as_array().into_iter().flatten() {
                        println!("  --env     {}=…", name.as_str().unwrap_or_default());
                    }
                }
            }
        }
        AdminCommand::Admins { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                AdminsCommand::Create {
                    name,
                    role,
                    tenant,
                    ttl_secs,
                } => {
                    c.post(
                        "/admins",
                        json!({ "name": name, "role": role, "tenant": tenant, "ttl_secs": ttl_secs }),
                    )
                    .await?
                }
                AdminsCommand::List { tenant } => {
                    let query = tenant.map_or_else(String::new, |t| format!("?tenant={}", enc(&t)));
                    let list = c.get(&format!("/admins{query}")).await?;
                    if !remote.json {
                        for a in list.as_array().into_iter().flatten() {
                            println!("{}", admin_line(a));
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    list
                }
                AdminsCommand::Revoke { name } => {
                    c.post(&format!("/admins/{}/revoke", enc(&name)), json!({}))
                        .await?
                }
                AdminsCommand::Rotate { name, ttl_secs } => {
                    c.post(
                        &format!("/admins/{}/rotate", enc(&name)),
                        json!({ "ttl_secs": ttl_secs }),
                    )
                    .await?
                }
                AdminsCommand::Expire {
                    name,
                    in_secs,
                    never,
                } => {
                    let expires_at = if never {
                        Value::Null
                    } else {
                        let secs = in_secs.unwrap_or(0);
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        json!(now + secs as i64 * 1000)
                    };
                    c.put(
                        &format!("/admins/{}/expiry", enc(&name)),
                        json!({ "expires_at": expires_at }),
                    )
                    .await?
                }
            };
            print_json(&out);
        }
        AdminCommand::Agents { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                AgentsCommand::Create { tenant, name } => {
                    c.post(
                        &format!("/tenants/{}/agents", enc(&tenant)),
                        json!({ "name": name }),
                    )
                    .await?
                }
                AgentsCommand::List { tenant } => {
                    c.get(&format!("/tenants/{}/agents", enc(&tenant))).await?
                }
                AgentsCommand::Revoke { tenant, id } => {
                    c.post(
                        &format!("/tenants/{}/agents/{}/revoke", enc(&tenant), enc(&id)),
                        json!({}),
                    )
                    .await?
                }
            };
            print_json(&out);
        }
        AdminCommand::Tokens { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                TokensCommand::Create {
                    tenant,
                    agent,
                    scope,
                    ttl_secs,
                } => {
                    c.post(
                        &format!("/tenants/{}/agents/{}/tokens", enc(&tenant), enc(&agent)),
                        json!({ "scope": scope, "ttl_secs": ttl_secs }),
                    )
                    .await?
                }
                TokensCommand::Revoke { tenant, id } => {
                    c.post(
                        &format!("/tenants/{}/tokens/{}/revoke", enc(&tenant), enc(&id)),
                        json!({}),
                    )
                    .await?
                }
            };
            print_json(&out);
        }
        AdminCommand::Connections { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                ConnectionsCommand::Add {
                    tenant,
                    name,
                    program,
                    args,
                    envs,
                    http_url,
                    classify,
                } => {
                    let mut body = match (program, http_url) {
                        (Some(program), None) => {
                            json!({ "kind": "stdio", "program": program, "args": args, "env": key_value(&envs, "--env")? })
                        }
                        (None, Some(url)) => json!({ "kind": "http", "url": url }),
                        _ => bail!("give exactly one of --program and --http-url"),
                    };
                    body["name"] = json!(name);
                    body["classify"] = Value::Object(key_value(&classify, "--classify")?);
                    c.post(&format!("/tenants/{}/connections", enc(&tenant)), body)
                        .await?
                }
                ConnectionsCommand::List { tenant } => {
                    c.get(&format!("/tenants/{}/connections", enc(&tenant)))
                        .await?
                }
                ConnectionsCommand::Revoke { tenant, id } => {
                    c.post(
                        &format!("/tenants/{}/connections/{}/revoke", enc(&tenant), enc(&id)),
                        json!({}),
                    )
                    .await?
                }
                ConnectionsCommand::Restart { tenant, id } => {
                    c.post(
                        &format!("/tenants/{}/connections/{}/restart", enc(&tenant), enc(&id)),
                        json!({}),
                    )
                    .await?
                }
                ConnectionsCommand::Tools { tenant, id } => {
                    c.get(&format!(
                        "/tenants/{}/connections/{}/tools",
                        enc(&tenant),
                        enc(&id)
                    ))
                    .await?
                }
                ConnectionsCommand::Classify {
                    tenant,
                    id,
                    tool,
                    effect,
                } => {
                    c.send(
                        reqwest::Method::PUT,
                        &format!(
                            "/tenants/{}/connections/{}/tools/{}",
                            enc(&tenant),
                            enc(&id),
                            enc(&tool)
                        ),
                        Some(json!({ "effect": effect })),
                    )
                    .await?
                }
                ConnectionsCommand::Accept { tenant, id, tool } => {
                    c.post(
                        &format!(
                            "/tenants/{}/connections/{}/tools/{}/accept",
                            enc(&tenant),
                            enc(&id),
                            enc(&tool)
                        ),
                        json!({}),
                    )
                    .await?
                }
            };
            print_json(&out);
        }
        AdminCommand::Grants { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                GrantsCommand::Add {
                    tenant,
                    agent,
                    connection,
                    tool,
                } => {
                    c.post(
                        &format!("/tenants/{}/grants", enc(&tenant)),
                        json!({ "agent": agent, "connection": connection, "tool": tool }),
                    )
                    .await?
                }
                GrantsCommand::Remove {
                    tenant,
                    agent,
                    connection,
                    tool,
                } => {
                    c.post(
                        &format!("/tenants/{}/grants/revoke", enc(&tenant)),
                        json!({ "agent": agent, "connection": connection, "tool": tool }),
                    )
                    .await?
                }
            };
            print_json(&out);
        }
        AdminCommand::Approvals { remote, command } => {
            let c = Client::new(&remote)?;
            let out = match command {
                ApprovalsCommand::List { tenant, status } => {
                    let mut query = Vec::new();
                    if let Some(t) = tenant {
                        query.push(format!("tenant={}", enc(&t)));
                    }
                    if let Some(s) = status {
                        query.push(format!("status={}", enc(&s)));
                    }
                    let list = c.get(&format!("/approvals?{}", query.join("&"))).await?;
                    if !remote.json {
                        let rows = list.as_array().cloned().unwrap_or_default();
                        if rows.is_empty() {
                            println!("no approval requests");
                        }
                        rows.iter().for_each(|a| println!("{}", approval_line(a)));
                        return Ok(ExitCode::SUCCESS);
                    }
                    list
                }
                ApprovalsCommand::Show { id } => c.get(&format!("/approvals/{}", enc(&id))).await?,
                ApprovalsCommand::Approve { id, reason } => {
                    c.post(
                        &format!("/approvals/{}/approve", enc(&id)),
                        json!({ "reason": reason }),
                    )
                    .await?
                }
                ApprovalsCommand::Deny { id, reason } => {
                    c.post(
                        &format!("/approvals/{}/deny", enc(&id)),
                        json!({ "reason": reason }),
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
