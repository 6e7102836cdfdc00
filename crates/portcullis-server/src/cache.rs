//! A read-through cache of what authentication and the gate consult on every call: tenants by
//! name, agent tokens by hash, a tenant's connections, an agent's grants and a connection's
//! tools — and, for HTTP API calls, a secret's sealed blobs (never its value). SQLite reads through sqlx cost tens of microseconds each; a call needs five.
//!
//! INVARIANT: a revocation or any other change takes effect on the very next request. Every
//! admin API write and every upstream tool sync bumps the generation before its response
//! returns; entries are tagged with the generation current when their read *started*, so a
//! read racing a change can never be served after the change. Tenants are never renamed or
//! deleted, so they stay cached. Negative answers (unknown tokens) are never cached.
//!
//! With several replicas (PostgreSQL) a change can come from another process. Every request
//! reads the database's access generation (bumped in the transaction of every change, in the
//! same query as the lockout check) and invalidates on any difference, so another replica's
//! revocation is seen by the very next request here. The change feed (LISTEN/NOTIFY) also
//! invalidates and reconciles upstream connections; while it is down the cache is bypassed.

use portcullis_core::id::{AgentId, ConnectionId, TenantId};
use portcullis_store::{
    AgentAuth, Connection, Grant, Guardrail, PolicyVersion, SealedSecret, Store, StoreResult,
    Tenant, ToolRecord,
};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Entries kept per map before it is cleared (bounds memory under many tokens or tenants).
const MAX_ENTRIES: usize = 20_000;

struct Map<K, V> {
    entries: RwLock<HashMap<K, (u64, V)>>,
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K, generation: u64) -> Option<V> {
        let entries = self.entries.read().expect("lock poisoned");
        entries
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, generation: u64, value: V) {
        let mut entries = self.entries.write().expect("lock poisoned");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, value));
    }
}

pub struct AccessCache {
    generation: AtomicU64,
    /// The shared store's access generation last seen (PostgreSQL); -1 before the first look.
    shared_generation: std::sync::atomic::AtomicI64,
    /// False while changes made elsewhere could go unnoticed: then nothing is served from
    /// or stored in the cache.
    enabled: std::sync::atomic::AtomicBool,
    tenants: Map<String, Tenant>,
    tokens: Map<String, AgentAuth>,
    connections: Map<TenantId, Arc<Vec<Connection>>>,
    grants: Map<(TenantId, AgentId), Arc<Vec<Grant>>>,
    tools: Map<(TenantId, ConnectionId), Arc<Vec<ToolRecord>>>,
    policies: Map<TenantId, Option<Arc<PolicyVersion>>>,
    guardrails: Map<TenantId, Arc<Vec<Guardrail>>>,
    /// A secret's sealed blobs and the (wrapped) tenant key they were sealed under: never a
    /// value. Saves the read on every injected HTTP API call.
    sealed: Map<(TenantId, String), Arc<SealedSecret>>,
}

impl Default for AccessCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(1),
            shared_generation: std::sync::atomic::AtomicI64::new(-1),
            enabled: std::sync::atomic::AtomicBool::new(true),
            tenants: Map::new(),
            tokens: Map::new(),
            connections: Map::new(),
            grants: Map::new(),
            tools: Map::new(),
            policies: Map::new(),
            guardrails: Map::new(),
            sealed: Map::new(),
        }
    }
}

impl AccessCache {
    /// Forget everything that may have changed. Call after every committed change to agents,
    /// tokens, connections, grants or tools, before answering the request that made it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Compare the shared store's access generation (read on every request, with the lockout
    /// check) with the last one seen; a difference means another replica changed something,
    /// so drop everything before this request reads the cache.
    pub fn observe_shared_generation(&self, shared: i64) {
        // Invalidate before recording the new value: a concurrent request that already sees
        // the new value then finds the cache invalidated, never stale.
        if self.shared_generation.load(Ordering::SeqCst) != shared {
            self.invalidate();
            self.shared_generation.store(shared, Ordering::SeqCst);
        }
    }

    /// Serve from the cache (`true`) or bypass it (`false`, e.g. while the change feed of a
    /// shared store is down). Switching either way invalidates.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
        self.invalidate();
    }

    /// How many times the cache has been invalidated so far (for observing, not deciding).
    pub fn invalidations(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The generation to tag a read with, or `None` when the cache is bypassed.
    fn generation(&self) -> Option<u64> {
        self.enabled
            .load(Ordering::SeqCst)
            .then(|| self.generation.load(Ordering::SeqCst))
    }

    pub async fn tenant_by_name(&self, store: &Store, name: &str) -> StoreResult<Tenant> {
        // Tenants are immutable once created: generation 0 marks "valid forever".
        if let Some(tenant) = self.tenants.get(&name.to_owned(), 0) {
            return Ok(tenant);
        }
        let tenant = store.tenant_by_name(name).await?;
        self.tenants.put(name.to_owned(), 0, tenant.clone());
        Ok(tenant)
    }

    pub async fn agent_token(&self, store: &Store, hash: &str) -> StoreResult<AgentAuth> {
        let Some(generation) = self.generation() else {
            return store.agent_token_by_hash(hash).await;
        };
        if let Some(auth) = self.tokens.get(&hash.to_owned(), generation) {
            return Ok(auth);
        }
        let auth = store.agent_token_by_hash(hash).await?;
        self.tokens.put(hash.to_owned(), generation, auth.clone());
        Ok(auth)
    }

    /// A secret's sealed blobs with its tenant key (see `Store::sealed_secret`).
    pub async fn sealed_secret(
        &self,
        store: &Store,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Arc<SealedSecret>> {
        let key = (tenant.clone(), name.to_owned());
        let generation = self.generation();
        if let Some(found) = generation.and_then(|g| self.sealed.get(&key, g)) {
            return Ok(found);
        }
        let found = Arc::new(store.sealed_secret(tenant, name).await?);
        if let Some(g) = generation {
            self.sealed.put(key, g, found.clone());
        }
        Ok(found)
    }

    pub async fn connections(
        &self,
        store: &Store,
        tenant: &TenantId,
    ) -> StoreResult<Arc<Vec<Connection>>> {
        let Some(generation) = self.generation() else {
            return Ok(Arc::new(store.list_connections(tenant).await?));
        };
        if let Some(v) = self.connections.get(tenant, generation) {
            return Ok(v);
        }
        let v = Arc::new(store.list_connections(tenant).await?);
        self.connections.put(tenant.clone(), generation, v.clone());
        Ok(v)
    }

    pub async fn grants(
        &self,
        store: &Store,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> StoreResult<Arc<Vec<Grant>>> {
        let Some(generation) = self.generation() else {
            return Ok(Arc::new(store.grants_for_agent(tenant, agent).await?));
        };
        let key = (tenant.clone(), agent.clone());
        if let Some(v) = self.grants.get(&key, generation) {
            return Ok(v);
        }
        let v = Arc::new(store.grants_for_agent(tenant, agent).await?);
        self.grants.put(key, generation, v.clone());
        Ok(v)
    }

    pub async fn tools(
        &self,
        store: &Store,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> StoreResult<Arc<Vec<ToolRecord>>> {
        let Some(generation) = self.generation() else {
            return Ok(Arc::new(store.tools(tenant, connection).await?));
        };
        let key = (tenant.clone(), connection.clone());
        if let Some(v) = self.tools.get(&key, generation) {
            return Ok(v);
        }
        let v = Arc::new(store.tools(tenant, connection).await?);
        self.tools.put(key, generation, v.clone());
        Ok(v)
    }
}

impl AccessCache {
    /// The tenant's current policy document, if it ever stored one.
    pub async fn policy(
        &self,
        store: &Store,
        tenant: &TenantId,
    ) -> StoreResult<Option<Arc<PolicyVersion>>> {
        let Some(generation) = self.generation() else {
            return Ok(store.current_policy(tenant).await?.map(Arc::new));
        };
        if let Some(v) = self.policies.get(tenant, generation) {
            return Ok(v);
        }
        let v = store.current_policy(tenant).await?.map(Arc::new);
        self.policies.put(tenant.clone(), generation, v.clone());
        Ok(v)
    }

    /// The tenant's active guardrails.
    pub async fn guardrails(
        &self,
        store: &Store,
        tenant: &TenantId,
    ) -> StoreResult<Arc<Vec<Guardrail>>> {
        let Some(generation) = self.generation() else {
            return Ok(Arc::new(store.guardrails(tenant).await?));
        };
        if let Some(v) = self.guardrails.get(tenant, generation) {
            return Ok(v);
        }
        let v = Arc::new(store.guardrails(tenant).await?);
        self.guardrails.put(tenant.clone(), generation, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_an_older_generation_are_never_served() {
        let map: Map<&str, u32> = Map::new();
        map.put("k", 1, 7);
        assert_eq!(map.get(&"k", 1), Some(7));
        assert_eq!(
            map.get(&"k", 2),
            None,
            "a change since the read invalidates it"
        );
    }
}
