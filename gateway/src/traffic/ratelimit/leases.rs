//! Reservations ahead of use: a busy key costs one Redis round trip per
//! lease of cells rather than one per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::local::{SHARDS, SWEEP_AT, shard_of};
use super::quota::{Decision, Quota};
use super::remote::Grant;
use crate::clock::mono_us;

/// Cells of a Redis bucket reserved by this replica and not used yet.
#[derive(Debug)]
struct Held {
    cells: u32,
    /// `now_us` after which unused cells are dropped.
    expires: u64,
    /// How many cells the next reservation asks for.
    size: u32,
    /// A reservation is on its way.
    refilling: bool,
    /// The bucket's remaining cells and its reset time at the last grant
    /// (for the `RateLimit` header).
    bucket_remaining: u32,
    reset_at: u64,
    /// Redis refused until then: no cell can free up sooner, whoever asks,
    /// so refusals until then need no call.
    denied_until: u64,
}

/// What [`Leases::take`] decided.
#[derive(Debug)]
pub(super) enum Take {
    /// Served from held cells; `Some(n)`: reserve n more in the background.
    Served(Decision, Option<u32>),
    /// Nothing held: the caller reserves this many (and owns the refill).
    Reserve(u32),
    /// Nothing held and a reservation already on its way: ask for one cell.
    Busy,
}

/// Reservations ahead of use, so a busy key costs a Redis round trip per
/// lease rather than per request (what Kong's `sync_rate` and Envoy's
/// quota buckets trade for throughput). Reserving moves the shared TAT as
/// that many requests would, so the replicas together never admit more than
/// the limit; the price is that cells one replica holds may go unused while
/// another is refused, at most one lease per replica and per `lease_ms`.
/// A lease is sized by demand (doubling while it runs out early, halving
/// when it expires unused) and never exceeds an eighth of the burst or what
/// the rate emits in `lease_ms`; a quota where that is 1 or less is checked
/// exactly, one call per request (so `3/m` stays exact across replicas).
/// A refusal is remembered until its `Retry-After`, which is exact too: the
/// replicas can only take cells, never give them back.
pub(super) struct Leases {
    window_us: u64,
    shards: Vec<Mutex<HashMap<String, Held>>>,
    /// Per shard: a reservation landed (or failed); requests that found one
    /// on its way wait for it instead of calling Redis themselves.
    pub(super) landed: Vec<tokio::sync::Notify>,
}

impl Leases {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window_us: window.as_micros() as u64,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            landed: (0..SHARDS).map(|_| tokio::sync::Notify::new()).collect(),
        }
    }

    /// A reservation for `key` is on its way.
    pub(super) fn reserving(&self, key: &str) -> bool {
        self.shard(key)
            .lock()
            .is_ok_and(|s| s.get(key).is_some_and(|h| h.refilling))
    }

    /// The largest lease for `q` (1: no leasing).
    pub(super) fn cap(&self, q: &Quota) -> u32 {
        let per_window = u32::try_from(self.window_us / q.emission_us).unwrap_or(u32::MAX);
        per_window.min(q.burst / 8).max(1)
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Held>> {
        &self.shards[shard_of(key)]
    }

    pub(super) fn take(&self, key: &str, cap: u32) -> Take {
        let now = mono_us();
        let Ok(mut shard) = self.shard(key).lock() else {
            return Take::Busy;
        };
        if !shard.contains_key(key) {
            // Swept each time the map reaches a power of two past SWEEP_AT,
            // so many live keys never make every new key pay for a sweep.
            if shard.len() >= SWEEP_AT && shard.len().is_power_of_two() {
                shard.retain(|_, h| {
                    h.refilling || (h.cells > 0 && h.expires > now) || h.denied_until > now
                });
            }
            shard.insert(
                key.to_owned(),
                Held {
                    cells: 0,
                    expires: 0,
                    size: 1,
                    refilling: false,
                    bucket_remaining: 0,
                    reset_at: 0,
                    denied_until: 0,
                },
            );
        }
        let Some(held) = shard.get_mut(key) else {
            return Take::Busy;
        };
        if now < held.denied_until {
            return Take::Served(
                Decision::Deny {
                    retry_after: Duration::from_micros(held.denied_until - now),
                    reset_after: Duration::from_micros(held.reset_at.saturating_sub(now)),
                },
                None,
            );
        }
        if held.cells > 0 && now < held.expires {
            held.cells -= 1;
            let decision = Decision::Allow {
                remaining: held.bucket_remaining.saturating_add(held.cells),
                reset_after: Duration::from_micros(held.reset_at.saturating_sub(now)),
            };
            // Running low while in use: demand outgrows the lease.
            let refill = (!held.refilling && held.cells <= held.size / 4).then(|| {
                held.refilling = true;
                held.size = (held.size * 2).min(cap);
                held.size
            });
            return Take::Served(decision, refill);
        }
        if held.refilling {
            return Take::Busy;
        }
        held.size = if held.cells > 0 {
            // Expired unused: the lease was larger than the demand.
            (held.size / 2).max(1)
        } else {
            (held.size * 2).min(cap)
        }
        .min(cap);
        held.cells = 0;
        held.refilling = true;
        Take::Reserve(held.size)
    }

    /// Keep what a reservation granted beyond the cells already used.
    pub(super) fn store(&self, key: &str, grant: &Grant, used: u32) {
        self.keep(key, grant, used);
        self.landed[shard_of(key)].notify_waiters();
    }

    fn keep(&self, key: &str, grant: &Grant, used: u32) {
        let now = mono_us();
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        if let Some(held) = shard.get_mut(key) {
            held.refilling = false;
            if grant.granted == 0 {
                held.denied_until = now + grant.remaining_or_retry;
                held.reset_at = now + grant.reset_after.as_micros() as u64;
                return;
            }
            let fresh = grant.granted.saturating_sub(used);
            held.cells = if now < held.expires {
                held.cells.saturating_add(fresh)
            } else {
                fresh
            };
            held.expires = now + self.window_us;
            held.bucket_remaining = u32::try_from(grant.remaining_or_retry).unwrap_or(u32::MAX);
            held.reset_at = now + grant.reset_after.as_micros() as u64;
        }
    }

    /// A reservation failed: let the next request try again.
    pub(super) fn release(&self, key: &str) {
        if let Ok(mut shard) = self.shard(key).lock()
            && let Some(held) = shard.get_mut(key)
        {
            held.refilling = false;
        }
        self.landed[shard_of(key)].notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_forget_keys_that_hold_nothing() {
        let leases = Leases::new(Duration::from_millis(50));
        let n = SWEEP_AT * SHARDS * 2;
        for i in 0..n {
            let key = format!("k{i}");
            assert!(matches!(leases.take(&key, 8), Take::Reserve(_)));
            leases.release(&key);
        }
        let held: usize = leases
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum();
        assert!(held < n, "{held} of {n} keys still held");
    }
}
