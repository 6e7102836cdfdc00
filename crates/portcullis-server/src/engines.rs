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
    /// A stored document's engine; compiled (off the runtime, see [`compile_untrusted`]) only
    /// the first time its hash is seen.
    pub async fn get_or_compile(
        &self,
        document: PolicyDocument,
        hash: &str,
    ) -> Result<Arc<Engine>, String> {
        if let Some(engine) = self.by_hash.read().expect("lock poisoned").get(hash) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(compile_untrusted(document).await?);
        let mut map = self.by_hash.write().expect("lock poisoned");
        if map.len() >= 1_024 {
            map.clear();
        }
        map.insert(hash.to_owned(), engine.clone());
        Ok(engine)
    }
}

/// Compile a document (an upload, a draft to check, a stored one first seen) away from the
/// async runtime: one at a time, on its own thread with a large stack. The document's shape
/// is bounded before parsing (`policy::MAX_NESTING`, `policy::MAX_OPERATORS`), but Cedar and
/// our own passes over its JSON form still recurse per level, at tens of KB a level in a
/// debug build — more than a runtime worker's 2 MB stack holds. A flood of drafts waits
/// here instead of taking the runtime's workers.
pub async fn compile_untrusted(document: PolicyDocument) -> Result<Engine, String> {
    static COMPILING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _turn = COMPILING
        .acquire()
        .await
        .map_err(|_| "the policy compiler is shut down".to_owned())?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("policy-compile".into())
        .stack_size(256 << 20)
        .spawn(move || {
            let _ = answer.send(Engine::compile(&document).map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("cannot start the policy compiler: {e}"))?;
    answered
        .await
        .map_err(|_| "the policy compiler failed".to_owned())?
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
