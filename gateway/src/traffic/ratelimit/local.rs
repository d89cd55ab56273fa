//! The in-memory store: one TAT per key, spread over shards so workers
//! rarely contend; keys whose TAT has passed are swept as a shard grows.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use super::quota::{Decision, Quota, gcra};
use crate::clock::mono_us;

pub(super) const SHARDS: usize = 16;
/// A shard is swept of idle keys when it grows past this (then past twice
/// what the sweep left).
pub(super) const SWEEP_AT: usize = 4096;

/// Which of the `SHARDS` a key lives in (the local store's and the leases').
pub(super) fn shard_of(key: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

struct Shard {
    tats: HashMap<String, u64>,
    sweep_at: usize,
}

/// The in-memory store: keys spread over shards so workers rarely contend.
pub(super) struct Local {
    shards: Vec<Mutex<Shard>>,
}

impl Local {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
        }
    }

    pub(super) fn check(&self, key: &str, q: &Quota) -> Decision {
        let shard = &self.shards[shard_of(key)];
        let now = mono_us();
        let Ok(mut s) = shard.lock() else {
            // A poisoned shard: refuse rather than admit without counting.
            return Decision::Deny {
                retry_after: Duration::from_secs(1),
                reset_after: Duration::from_secs(1),
            };
        };
        let tat = s.tats.get(key).copied().unwrap_or(0);
        let (decision, new_tat) = gcra(tat, now, q);
        if let Some(t) = new_tat {
            s.tats.insert(key.to_owned(), t);
            if s.tats.len() > s.sweep_at {
                // A key whose TAT is past is the same as an absent one.
                s.tats.retain(|_, t| *t > now);
                s.sweep_at = (s.tats.len() * 2).max(SWEEP_AT);
            }
        }
        decision
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.tats.len()).unwrap_or(0))
            .sum()
    }
}
