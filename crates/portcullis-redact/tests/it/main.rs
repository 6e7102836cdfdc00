//! The redactor's integration tests: one binary, one module per area.

mod corpus_quality;
mod encoded;
mod fake;
mod injection;
mod modes;
mod pii;
mod properties;
mod rules;
mod spans;

#[path = "../../benches/throughput/corpus.rs"]
#[allow(dead_code)]
mod corpus;
