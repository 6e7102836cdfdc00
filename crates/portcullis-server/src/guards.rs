//! In-memory lockout and rate-limit tables: failures per client (an IPv4 address or an IPv6
//! /64) and token buckets per agent token, both bounded. With SQLite they are the counters;
//! with the shared counters of PostgreSQL they keep counting what the database could not.

use portcullis_core::UnixMillis;
use portcullis_core::id::TokenId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Default)]
struct Failures {
    window_start: UnixMillis,
    count: u32,
    locked_until: UnixMillis,
}

struct Bucket {
    tokens: f64,
    last: UnixMillis,
    limited: bool,
}

/// Who a lockout counts: one IPv4 address, or one IPv6 /64 (a single host usually holds a
/// whole /64, so counting addresses would let it rotate past the lockout), or — when the
/// table is full — everyone not yet in it, together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
    Overflow,
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Prefix(prefix) => {
                let addr = std::net::Ipv6Addr::from(u128::from(*prefix) << 64);
                write!(f, "{addr}/64")
            }
            Self::Overflow => f.write_str("overflow"),
        }
    }
}

/// Most clients with failures (and most token buckets) held in memory. A full table is
/// pruned of what has expired; clients that still do not fit share one counter, so flooding
/// the table from many addresses locks the flood out rather than forgetting anyone.
pub const MAX_TRACKED: usize = 65_536;

/// In-memory lockout and rate-limit counters (SQLite), and the fallback that keeps counting
/// when the shared counters (PostgreSQL) cannot be written.
#[derive(Default)]
pub struct Guards {
    failures: Mutex<HashMap<ClientKey, Failures>>,
    buckets: Mutex<HashMap<TokenId, Bucket>>,
    leases: Mutex<HashMap<TokenId, Lease>>,
    /// One lease refill at a time per shard of tokens: requests that find a token's lease
    /// spent wait for the one refill in flight instead of each taking a lease (which would
    /// drain the shared bucket and refuse what it could have admitted).
    refills: [tokio::sync::Mutex<()>; REFILL_SHARDS],
}

const REFILL_SHARDS: usize = 16;

/// Tokens this replica took from a token's shared bucket and has not spent yet.
struct Lease {
    remaining: u32,
    /// After this instant the rest is forfeited (never handed back).
    until: UnixMillis,
}

/// How long a lease may be spent from memory.
pub const LEASE_MS: UnixMillis = 1_000;

/// How many tokens a replica takes from a shared bucket at once: a sixteenth of the burst,
/// between 1 and 16.
///
/// INVARIANT: leases never over-admit. Every request this replica admits spent a token it took
/// from the shared bucket first, so all replicas together admit at most what the shared
/// bucket allows. The price is the other way round: a lease not spent within [`LEASE_MS`]
/// (traffic moved to another replica, or stopped) is forfeited, so a token may be refused up
/// to `lease_size - 1` requests per replica per second that the bucket would have allowed.
pub fn lease_size(burst: u32) -> u32 {
    (burst / 16).clamp(1, 16)
}

impl Guards {
    /// When `key`'s lockout ends, if it is locked out.
    pub fn locked_in_memory(&self, key: ClientKey, now: UnixMillis) -> Option<UnixMillis> {
        let map = self.failures.lock().expect("lock poisoned");
        // A client with its own entry is judged by it alone; only a client the full table
        // has no room for is counted with the overflow (so a flood cannot lock out clients
        // the table already knows).
        let entry = match map.get(&key) {
            Some(entry) => Some(entry),
            None if map.len() >= MAX_TRACKED => map.get(&ClientKey::Overflow),
            None => None,
        };
        entry
            .filter(|f| f.locked_until > now)
            .map(|f| f.locked_until)
    }

    /// Count one failure; returns true when this failure starts a lockout.
    pub fn fail_in_memory(
        &self,
        key: ClientKey,
        now: UnixMillis,
        rule: &portcullis_store::LockoutRule,
    ) -> bool {
        let window_ms = rule.window_ms;
        let mut map = self.failures.lock().expect("lock poisoned");
        let key = if map.contains_key(&key) || map.len() < MAX_TRACKED {
            key
        } else {
            // Full: forget what no longer matters (window over, not locked), then, if still
            // full, count this client with everyone else who does not fit.
            map.retain(|_, f| f.locked_until > now || now - f.window_start <= window_ms);
            if map.len() < MAX_TRACKED {
                key
            } else {
                ClientKey::Overflow
            }
        };
        let entry = map.entry(key).or_default();
        if now - entry.window_start > window_ms {
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count += 1;
        if entry.count >= rule.threshold && entry.locked_until <= now {
            entry.locked_until = now + rule.lockout_ms;
            entry.count = 0;
            return true;
        }
        false
    }

    /// Spend one leased token, if this replica holds an unexpired one for `token`.
    pub fn spend_lease(&self, token: &TokenId, now: UnixMillis) -> bool {
        let mut leases = self.leases.lock().expect("lock poisoned");
        match leases.get_mut(token) {
            Some(lease) if lease.remaining > 0 && now < lease.until => {
                lease.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    /// The lock a refill of `token`'s lease holds (see [`Guards::refills`]).
    pub fn refill_lock(&self, token: &TokenId) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        &self.refills[hasher.finish() as usize % REFILL_SHARDS]
    }

    /// Keep `remaining` more tokens taken from the shared bucket at `now`.
    pub fn lease(&self, token: &TokenId, remaining: u32, now: UnixMillis) {
        let mut leases = self.leases.lock().expect("lock poisoned");
        if leases.len() >= MAX_TRACKED && !leases.contains_key(token) {
            leases.retain(|_, l| l.remaining > 0 && now < l.until);
            if leases.len() >= MAX_TRACKED {
                // Forfeiting a lease only ever refuses more, never admits more.
                return;
            }
        }
        let lease = leases.entry(token.clone()).or_insert(Lease {
            remaining: 0,
            until: now,
        });
        let kept = if now < lease.until {
            lease.remaining
        } else {
            0
        };
        *lease = Lease {
            remaining: kept.saturating_add(remaining),
            until: now + LEASE_MS,
        };
    }

    /// How many clients the in-memory lockout table holds.
    pub fn tracked_clients(&self) -> usize {
        self.failures.lock().expect("lock poisoned").len()
    }

    /// How many token buckets are held in memory.
    pub fn tracked_buckets(&self) -> usize {
        self.buckets.lock().expect("lock poisoned").len()
    }

    /// Take one request from the token's bucket. `Err((retry_after, first))` when empty;
    /// `first` is true for the first refusal of an episode (that one is audited).
    pub fn take_in_memory(
        &self,
        token: &TokenId,
        now: UnixMillis,
        per_ms: f64,
        burst: f64,
    ) -> Result<(), (u64, bool)> {
        let mut map = self.buckets.lock().expect("lock poisoned");
        if map.len() >= MAX_TRACKED && !map.contains_key(token) {
            // A bucket refilled to the brim is the same as no bucket: forget those.
            map.retain(|_, b| {
                b.limited || b.tokens + (now - b.last).max(0) as f64 * per_ms < burst
            });
        }
        let bucket = map.entry(token.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
            limited: false,
        });
        bucket.tokens = (bucket.tokens + (now - bucket.last).max(0) as f64 * per_ms).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = false;
            Ok(())
        } else {
            let first = !bucket.limited;
            bucket.limited = true;
            Err((
                ((1.0 - bucket.tokens) / per_ms / 1000.0).ceil() as u64,
                first,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_failure_table_counts_newcomers_together_and_still_locks_them_out() {
        let guards = Guards::default();
        let rule = portcullis_store::LockoutRule {
            threshold: 3,
            window_ms: 60_000,
            lockout_ms: 600_000,
        };
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            guards.fail_in_memory(ClientKey::of(ip), 1_000, &rule);
        }
        assert_eq!(guards.tracked_clients(), MAX_TRACKED);
        // Newcomers share one counter: three of them lock every newcomer out.
        let newcomer =
            |n: u32| ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + n)));
        for n in 0..3 {
            guards.fail_in_memory(newcomer(n), 1_000, &rule);
        }
        assert_eq!(guards.tracked_clients(), MAX_TRACKED + 1);
        assert!(guards.locked_in_memory(newcomer(99), 1_001).is_some());
        // Clients the table knows are judged by their own entries, not the overflow's.
        let known = ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0001)));
        assert!(guards.locked_in_memory(known, 1_001).is_none());
        // Once the window is over, expired entries are pruned and room is made again.
        guards.fail_in_memory(newcomer(100), 120_000, &rule);
        assert!(
            guards.tracked_clients() < 10,
            "{}",
            guards.tracked_clients()
        );
    }

    #[test]
    fn a_lease_is_spent_once_per_token_and_lapses() {
        let guards = Guards::default();
        let token = TokenId::generate();
        let other = TokenId::generate();
        assert!(!guards.spend_lease(&token, 0), "no lease yet");
        guards.lease(&token, 2, 0);
        assert!(guards.spend_lease(&token, 10));
        assert!(!guards.spend_lease(&other, 10), "leases are per token");
        assert!(guards.spend_lease(&token, 20));
        assert!(!guards.spend_lease(&token, 30), "spent");
        guards.lease(&token, 5, 100);
        assert!(!guards.spend_lease(&token, 100 + LEASE_MS), "lapsed");
        // A refill adds to what is left of an unexpired lease; nothing is lost.
        guards.lease(&token, 2, 5_000);
        guards.lease(&token, 3, 5_010);
        assert_eq!(
            (0..10)
                .filter(|_| guards.spend_lease(&token, 5_020))
                .count(),
            5
        );
        assert_eq!(lease_size(200), 12);
        assert_eq!(lease_size(5), 1);
        assert_eq!(lease_size(10_000), 16);
    }
}
