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

use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Create a human in `tenant` (or unscoped) as the bootstrap admin; returns (name, token).
pub(crate) async fn human(
    app: &TestApp,
    name: &str,
    role: &str,
    tenant: Option<&str>,
) -> (String, String) {
    let created = app
        .admin(
            Method::POST,
            "/admins",
            Some(json!({ "name": name, "role": role, "tenant": tenant })),
        )
        .await;
    (
        name.to_owned(),
        created["token"].as_str().expect("token").to_owned(),
    )
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
