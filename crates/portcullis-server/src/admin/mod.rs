//! The admin API (`/admin/v1`), for humans only: agent tokens are refused here. One module
//! per resource, each holding its routes, its handlers and — right beside them — its request
//! and response types; `common` holds what they share and `client` is the typed client the
//! CLI and the tests use. Tenants are addressed by name.
//!
//! Who may do what: admins manage everything in their scope (a tenant-scoped admin, its
//! tenant). Approvers decide approval requests and read the audit trail, and may do anything
//! that only makes the gateway stricter — narrow or revoke a guardrail, suspend an agent or
//! a tenant. Lifting a suspension, widening a guardrail, and changing policy, profiles or
//! owners need the admin role.

pub mod agents;
pub mod amendments;
pub mod approvals;
pub mod audit;
pub mod client;
pub mod common;
pub mod connections;
pub mod grants;
pub mod guardrails;
pub mod humans;
pub mod models;
pub mod policy;
pub mod posture;
pub mod programs;
pub mod review;
pub mod secrets;
pub mod shares;
pub mod spend;
pub mod suspension;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

use axum::Router;
use common::AppRef;

/// Every resource's routes, to be nested under `/admin/v1`.
pub fn router() -> Router<AppRef> {
    Router::new()
        .merge(tenants::routes())
        .merge(humans::routes())
        .merge(programs::routes())
        .merge(agents::routes())
        .merge(tokens::routes())
        .merge(connections::routes())
        .merge(grants::routes())
        .merge(approvals::routes())
        .merge(audit::routes())
        .merge(amendments::routes())
        .merge(policy::routes())
        .merge(guardrails::routes())
        .merge(spend::routes())
        .merge(review::routes())
        .merge(suspension::routes())
        .merge(secrets::routes())
        .merge(webhooks::routes())
        .merge(shares::routes())
        .merge(models::routes())
        .merge(posture::routes())
}
