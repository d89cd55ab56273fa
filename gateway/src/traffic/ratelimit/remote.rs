//! Quotas counted in Redis: the same GCRA as the local store, in one Lua
//! script on Redis's own clock, so a limit means the same thing on every
//! replica. One call may reserve several cells at once (a lease, see
//! `leases`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::quota::{Decision, Quota};
use crate::redis_link::RedisLink;

/// GCRA on Redis's clock, reserving up to `ARGV[4]` cells at once (a
/// lease; 1 is the plain per-request check). Returns
/// {granted, remaining | retry_after_us, reset_after_us}: `granted` 0 is a
/// refusal. Reserving n cells moves the TAT as n requests would, so a lease
/// never lets the replicas together admit more than the limit.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + tolerance - tat) / emission)
if room < 1 then
  return {0, tat + emission - tolerance - now, tat - now}
end
local n = want
if n > room then n = room end
local new_tat = tat + n * emission
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = room - n
if remaining > burst - 1 then remaining = burst - 1 end
return {n, remaining, new_tat - now}
";

pub(super) struct Remote {
    pub(super) link: Arc<RedisLink>,
    script: redis::Script,
    /// Calls made to Redis.
    pub(super) calls: AtomicU64,
}

impl Remote {
    pub(super) fn new(link: Arc<RedisLink>) -> Self {
        Self {
            link,
            script: redis::Script::new(SCRIPT),
            calls: AtomicU64::new(0),
        }
    }

    /// Reserve up to `want` cells of `key`'s bucket in one call.
    pub(super) async fn reserve(&self, key: &str, q: &Quota, want: u32) -> Result<Grant, String> {
        let Some(mut conn) = self.link.conn() else {
            return Err("not connected".into());
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut inv = self.script.key(self.link.key(key));
        inv.arg(q.emission_us)
            .arg(q.tolerance_us())
            .arg(q.burst)
            .arg(want.max(1));
        let (granted, a, reset) = self
            .link
            .call(inv.invoke_async::<(i64, i64, i64)>(&mut conn))
            .await?;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Grant {
            granted: u32::try_from(granted).unwrap_or(0),
            remaining_or_retry: u64::try_from(a).unwrap_or(0),
            reset_after: us(reset),
        })
    }
}

/// Redis's answer to a reservation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grant {
    /// Cells reserved; 0 is a refusal.
    pub(super) granted: u32,
    /// Cells left in the bucket after the reservation, or (refused) the
    /// microseconds until one is.
    pub(super) remaining_or_retry: u64,
    pub(super) reset_after: Duration,
}

impl Grant {
    /// The decision for the request that asked, which uses one cell; the
    /// rest of the grant stays with the caller.
    pub(super) fn decision(&self, kept: u32) -> Decision {
        if self.granted == 0 {
            Decision::Deny {
                retry_after: Duration::from_micros(self.remaining_or_retry),
                reset_after: self.reset_after,
            }
        } else {
            Decision::Allow {
                remaining: u32::try_from(self.remaining_or_retry)
                    .unwrap_or(u32::MAX)
                    .saturating_add(kept),
                reset_after: self.reset_after,
            }
        }
    }
}
