//! `portcullis webhooks …` and `portcullis inbound …`: a tenant's outbound webhook endpoints
//! (signing secrets shown once), their delivery log and redelivery; and the sources of
//! inbound webhooks it accepts (secrets go in from standard input or the environment, never
//! the command line). Clients of the admin API.

use crate::admin_cli::{Remote, client, date, print_json, read_secret_value};
use clap::Subcommand;
use portcullis_server::admin::webhooks::{
    DeliveriesQuery, EndpointIn, EndpointView, EndpointWithSecret, SourceIn,
};
use portcullis_store::InboundScheme;
use secrecy::ExposeSecret as _;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its signing secret (`whsec_…`) once.
    Add {
        #[arg(long)]
        tenant: String,
        /// Where to send (https://…; plain http only to networks the operator allows).
        #[arg(value_name = "URL")]
        target: String,
        /// An event to send (repeatable): action.held, approval.decided, action.executed,
        /// action.failed, guardrail.changed, token.locked_out, connection.revoked,
        /// audit.checkpoint, webhook.endpoint_disabled, or `*` for all.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The tenant's endpoints (never a secret).
    List {
        #[arg(long)]
        tenant: String,
    },
    Show {
        #[arg(long)]
        tenant: String,
        endpoint: String,
    },
    Enable {
        #[arg(long)]
        tenant: String,
        endpoint: String,
    },
    Disable {
        #[arg(long)]
        tenant: String,
        endpoint: String,
    },
    /// Delete an endpoint and its secrets; its pending deliveries fail, its log stays.
    Delete {
        #[arg(long)]
        tenant: String,
        endpoint: String,
    },
    /// A new signing secret, printed once; the previous one keeps signing during the grace
    /// period (`webhooks.rotation_grace_secs`).
    RotateSecret {
        #[arg(long)]
        tenant: String,
        endpoint: String,
    },
    /// An endpoint's deliveries, newest first: state, attempts, next attempt.
    Deliveries {
        #[arg(long)]
        tenant: String,
        endpoint: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One delivery with every attempt (time, status, latency, error).
    Delivery {
        #[arg(long)]
        tenant: String,
        delivery: String,
    },
    /// Deliver a message again (the same `webhook-id`), now.
    Redeliver {
        #[arg(long)]
        tenant: String,
        delivery: String,
    },
}

#[derive(Subcommand)]
pub enum InboundCommand {
    /// Accept signed webhooks at `/t/TENANT/hooks/NAME`. The secret is read from standard
    /// input (or `--from-env VAR`).
    Add {
        #[arg(long)]
        tenant: String,
        name: String,
        /// `github` (X-Hub-Signature-256) or `standard` (Standard Webhooks, `whsec_…`).
        #[arg(long)]
        scheme: String,
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
        /// Replay window in seconds (default: `webhooks.inbound_tolerance_secs`).
        #[arg(long)]
        tolerance_secs: Option<u32>,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Stop accepting a source's webhooks and destroy its secret.
    Revoke {
        #[arg(long)]
        tenant: String,
        name: String,
    },
}

fn endpoint_line(e: &EndpointView) -> String {
    let endpoint = &e.endpoint;
    let reason = endpoint
        .disabled_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!(
        "{}  {:<8}{reason}  {}  [{}]",
        endpoint.id,
        e.status,
        endpoint.url,
        endpoint.events.names().join(", ")
    )
}

fn print_secret(shown: &EndpointWithSecret, json: bool) {
    if json {
        print_json(shown);
        return;
    }
    println!("{}", endpoint_line(&shown.endpoint));
    println!(
        "signing secret (shown once): {}",
        shown.secret.expose_secret()
    );
    if let Some(until) = shown.previous_valid_until {
        println!("the previous secret also signs until {}", date(Some(until)));
    }
}

pub async fn run_webhooks(remote: Remote, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let c = client(&remote)?;
    let json = remote.json();
    match command {
        WebhooksCommand::Add {
            tenant,
            target,
            events,
            description,
        } => {
            let body = EndpointIn {
                url: target,
                events,
                description,
            };
            print_secret(&c.create_webhook(&tenant, &body).await?, json);
        }
        WebhooksCommand::List { tenant } => {
            let list = c.list_webhooks(&tenant).await?;
            if json {
                print_json(&list);
            } else {
                if list.is_empty() {
                    println!("no webhook endpoints");
                }
                for e in &list {
                    println!("{}", endpoint_line(e));
                }
            }
        }
        WebhooksCommand::Show { tenant, endpoint } => {
            print_json(&c.webhook(&tenant, &endpoint).await?)
        }
        WebhooksCommand::Enable { tenant, endpoint } => {
            println!(
                "{}",
                endpoint_line(&c.enable_webhook(&tenant, &endpoint).await?)
            )
        }
        WebhooksCommand::Disable { tenant, endpoint } => {
            println!(
                "{}",
                endpoint_line(&c.disable_webhook(&tenant, &endpoint).await?)
            )
        }
        WebhooksCommand::Delete { tenant, endpoint } => {
            c.delete_webhook(&tenant, &endpoint).await?;
            println!("endpoint {endpoint} deleted");
        }
        WebhooksCommand::RotateSecret { tenant, endpoint } => {
            print_secret(&c.rotate_webhook_secret(&tenant, &endpoint).await?, json);
        }
        WebhooksCommand::Deliveries {
            tenant,
            endpoint,
            limit,
        } => {
            let query = DeliveriesQuery { limit: Some(limit) };
            let list = c.webhook_deliveries(&tenant, &endpoint, &query).await?;
            if json {
                print_json(&list);
            } else {
                if list.is_empty() {
                    println!("no deliveries");
                }
                for d in &list {
                    let next = if d.state == portcullis_store::DeliveryState::Pending {
                        format!("  next {}", date(Some(d.next_attempt_at)))
                    } else {
                        String::new()
                    };
                    println!(
                        "{}  {:<8} {:<26} {:<24} attempts {}{next}",
                        d.id,
                        d.state.as_str(),
                        d.message_id,
                        d.event_type,
                        d.attempts
                    );
                }
            }
        }
        WebhooksCommand::Delivery { tenant, delivery } => {
            let shown = c.webhook_delivery(&tenant, &delivery).await?;
            if json {
                print_json(&shown);
            } else {
                let d = &shown.delivery;
                println!(
                    "{}  {}  message {} ({})  endpoint {}",
                    d.id,
                    d.state.as_str(),
                    d.message_id,
                    d.event_type,
                    d.endpoint_id
                );
                for a in &shown.attempt_log {
                    println!(
                        "  #{:<2} {}  {:<8} {:>6} ms  {}{}",
                        a.attempt,
                        date(Some(a.started_at)),
                        a.status.map_or("-".to_owned(), |s| s.to_string()),
                        a.latency_ms,
                        a.outcome,
                        a.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        WebhooksCommand::Redeliver { tenant, delivery } => {
            let d = c.redeliver_webhook(&tenant, &delivery).await?;
            if json {
                print_json(&d);
            } else {
                println!("message {} queued again as delivery {}", d.message_id, d.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_inbound(remote: Remote, command: InboundCommand) -> anyhow::Result<ExitCode> {
    let c = client(&remote)?;
    match command {
        InboundCommand::Add {
            tenant,
            name,
            scheme,
            from_env,
            tolerance_secs,
        } => {
            let Some(scheme) = InboundScheme::parse(&scheme) else {
                anyhow::bail!("--scheme is `github` or `standard`");
            };
            let secret = read_secret_value(from_env.as_deref())?;
            let body = SourceIn {
                name,
                scheme,
                secret,
                tolerance_secs,
            };
            print_json(&c.create_inbound_source(&tenant, &body).await?);
        }
        InboundCommand::List { tenant } => print_json(&c.list_inbound_sources(&tenant).await?),
        InboundCommand::Revoke { tenant, name } => {
            c.revoke_inbound_source(&tenant, &name).await?;
            println!("inbound source `{name}` revoked; its secret is destroyed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
