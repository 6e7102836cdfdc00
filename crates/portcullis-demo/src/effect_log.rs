//! Append-only JSON-lines record of side-effecting tool executions, for tests.

use std::{io::Write as _, path::PathBuf};

use serde::Serialize;

/// Environment variable naming the effect log file (unset: no log).
pub const EFFECT_LOG_ENV: &str = "PORTCULLIS_DEMO_EFFECT_LOG";

/// Where effect lines go, if anywhere. Read once when a server is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct EffectLog {
    path: Option<PathBuf>,
}

#[derive(Serialize)]
struct Line<'a, A: Serialize> {
    tool: &'a str,
    arguments: &'a A,
}

impl EffectLog {
    pub(crate) fn from_env() -> Self {
        Self {
            path: std::env::var_os(EFFECT_LOG_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Appends `{"tool":..,"arguments":..}\n` in a single write, then flushes.
    pub(crate) fn record<A: Serialize>(&self, tool: &str, arguments: &A) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&Line { tool, arguments })?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // O_APPEND + one write of the whole line keeps concurrent writers'
        // lines intact.
        let written = file.write(&line)?;
        if written != line.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!(
                    "short write to effect log: {written} of {} bytes",
                    line.len()
                ),
            ));
        }
        file.flush()
    }
}
