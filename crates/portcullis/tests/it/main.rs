//! Integration tests: the real gateway on port 0, the real demo upstream process, real MCP
//! clients of both protocol eras.

mod support;

mod access;
mod amend;
mod anchors;
mod api;
mod approvals;
mod audit_trail;
mod bad_input;
mod bridge;
mod browser;
mod console;
mod console_pages;
mod crash;
mod hardening;
mod inbound;
mod models;
mod offerings;
mod pinning;
mod policy;
mod protocol;
mod receipts;
mod redaction;
mod replicas;
mod review;
mod sandbox;
mod sessions;
mod shares;
mod smoke;
mod tasks;
mod tenants;
mod trust;
mod vault;
mod webhooks;
