//! Shared state of one running server: configuration, store, keys, clock, metrics, guards,
//! the upstream supervisor and the redactor.

use crate::clock::Clock;
use crate::config::Config;
use crate::guards::Guards;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use portcullis_core::keys::KeyRing;
use portcullis_store::Store;
use std::sync::Arc;

pub struct AppState {
    pub config: Config,
    pub cache: Arc<crate::cache::AccessCache>,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    /// Checkpoint writing: origin, witness log, and what wakes the checkpoint worker.
    pub anchors: Arc<crate::audit::Anchors>,
    pub clock: Clock,
    pub metrics: Metrics,
    pub guards: Guards,
    pub upstreams: Upstreams,
    pub engines: crate::engines::Engines,
    /// The operator's program catalog (what stdio connections may launch).
    pub catalog: Arc<crate::programs::Catalog>,
    /// Tenant secrets (write-only through the API; revealed only at egress).
    pub vault: Arc<crate::vault::Vault>,
    /// The one outbound HTTP client and the policy it enforces.
    pub egress: Arc<crate::egress::Egress>,
    /// Reverse proxies whose forwarding headers name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The hosts and origins requests may name (checked before authentication).
    pub sites: crate::web::Sites,
    /// Calls of 2026-07-28 agents suspended on an upstream's question (see `bridge`).
    pub bridges:
        crate::bridge::Bridges<Result<rmcp::model::CallToolResult, crate::upstream::UpstreamError>>,
    /// Wakes the webhook worker: an entry was appended here, or an attempt ended.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// The redactor, built once (its automaton and expressions compiled at start-up): tool
    /// results and effect arguments (`gate::scrub`), model prompts (`models`).
    pub redactor: Arc<portcullis_redact::Redactor>,
}

impl AppState {
    /// The client a request comes from: the connecting address, or the one a trusted
    /// proxy's forwarding header names.
    pub fn client_ip(&self, peer: std::net::IpAddr, headers: &http::HeaderMap) -> std::net::IpAddr {
        crate::auth::client_ip(
            peer,
            headers,
            &self.trusted_proxies,
            self.config.server.forwarded_header,
        )
    }
}
