//! Prometheus metrics: requests, decisions by outcome, holds, approvals, auth failures and
//! upstream latency, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<EndpointLabel, Counter>,
    pub decisions: Family<OutcomeLabel, Counter>,
    pub holds: Counter,
    pub approvals: Family<OutcomeLabel, Counter>,
    pub executions: Family<OutcomeLabel, Counter>,
    pub auth_failures: Counter,
    /// Requests refused as ones a web page could have sent (host, origin, simple body).
    pub cross_site_refusals: Counter,
    pub upstream_latency: Histogram,
    /// Approved actions found redeemed with no recorded outcome (see `approvals list
    /// --status unknown`).
    pub executions_unknown: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<EndpointLabel, Counter>::default();
        registry.register("requests", "HTTP requests by endpoint", requests.clone());
        let decisions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "decisions",
            "Tool call decisions by outcome",
            decisions.clone(),
        );
        let holds = Counter::default();
        registry.register("holds", "Approval requests created", holds.clone());
        let approvals = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "approvals",
            "Approval verdicts by outcome",
            approvals.clone(),
        );
        let executions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "executions",
            "Upstream tool calls by outcome",
            executions.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Failed authentications",
            auth_failures.clone(),
        );
        let cross_site_refusals = Counter::default();
        registry.register(
            "cross_site_refusals",
            "Requests refused before authentication as ones a web page could have sent",
            cross_site_refusals.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        registry.register(
            "upstream_latency_seconds",
            "Upstream tool call latency",
            upstream_latency.clone(),
        );
        let executions_unknown = Counter::default();
        registry.register(
            "executions_unknown",
            "Approved actions redeemed whose outcome was never recorded (never re-run)",
            executions_unknown.clone(),
        );
        Self {
            registry,
            executions_unknown,
            requests,
            decisions,
            holds,
            approvals,
            executions,
            auth_failures,
            cross_site_refusals,
            upstream_latency,
        }
    }

    pub fn request(&self, endpoint: &'static str) {
        self.requests
            .get_or_create(&EndpointLabel { endpoint })
            .inc();
    }

    pub fn decision(&self, outcome: &'static str) {
        self.decisions
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
