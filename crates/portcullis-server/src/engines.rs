//! Compiled policy engines: the built-in policies (compiled once per process) and each
//! tenant's engine, cached by policy-document hash so a document is compiled only when it
//! changes.

use portcullis_core::policy::{Engine, PolicyDocument, PolicySettings};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

static BUILTIN: LazyLock<Arc<Engine>> = LazyLock::new(|| Arc::new(Engine::builtin_only()));

/// The built-in policies alone, compiled once per process.
pub fn builtin() -> Arc<Engine> {
    BUILTIN.clone()
}

/// Compiled engines by policy-document hash: recompiled only when a document changes.
#[derive(Default)]
pub struct Engines {
    by_hash: RwLock<HashMap<String, Arc<Engine>>>,
}

impl Engines {
    pub fn get_or_compile(
        &self,
        document: &PolicyDocument,
        hash: &str,
    ) -> Result<Arc<Engine>, String> {
        if let Some(engine) = self.by_hash.read().expect("lock poisoned").get(hash) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(Engine::compile(document).map_err(|e| e.to_string())?);
        let mut map = self.by_hash.write().expect("lock poisoned");
        if map.len() >= 1_024 {
            map.clear();
        }
        map.insert(hash.to_owned(), engine.clone());
        Ok(engine)
    }
}

/// Parse a stored or uploaded document.
pub fn document(cedar: &str, settings: &Value) -> Result<PolicyDocument, String> {
    let settings: PolicySettings = serde_json::from_value(settings.clone())
        .map_err(|e| format!("policy settings are invalid: {e}"))?;
    Ok(PolicyDocument {
        cedar: cedar.to_owned(),
        settings,
    })
}
