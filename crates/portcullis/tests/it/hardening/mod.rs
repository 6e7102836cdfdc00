//! Attacks on what sits around the gate (issue "Hardening the gate"): each test was written
//! as the attack an earlier run found, and fails on the code before the fix.

mod approvers;
mod crashes;
mod credentials;
mod duplicates;
mod exposure;
mod flow_and_money;
mod lockout;
mod programs;
mod reverts;
mod web;

use crate::support::*;
use portcullis_server::admin::humans::AdminIn;
use serde_json::{Value, json};

/// Create a human in `tenant` (or unscoped) as the bootstrap admin; returns (name, token).
pub(crate) async fn human(
    app: &TestApp,
    name: &str,
    role: &str,
    tenant: Option<&str>,
) -> (String, String) {
    let body = AdminIn {
        name: name.into(),
        role: role.into(),
        tenant: tenant.map(str::to_owned),
        ttl_secs: None,
    };
    let created = app
        .admin_api()
        .create_admin(&body)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    (name.to_owned(), created.token)
}

/// An email to `to` with a short body.
pub(crate) fn mail(to: &str, n: usize) -> Value {
    json!({ "to": to, "subject": format!("Note {n}"), "body": "A short note." })
}

/// The number of effects of one tool the upstream executed.
pub(crate) fn effects_of(tenant: &Tenant, tool: &str) -> usize {
    effect_lines(&tenant.effect_log)
        .iter()
        .filter(|e| e["tool"] == tool)
        .count()
}
