//! Login failure limits: per username and per client address, a fixed
//! window of failures followed by a lockout. Short enough that an attacker
//! cannot keep a real user out for long; strict enough to make guessing slow.
//!
//! The bound holds under concurrency: an attempt is *reserved* before the
//! password is checked ([`FailureLimiter::reserve`]) and *settled* after
//! ([`FailureLimiter::settle`]). A key admits a new attempt only while its
//! failures plus the attempts in flight are below `max_failures`, so at most
//! `max_failures` wrong passwords are ever checked per key and window, however
//! many arrive at once. A success does not clear the window's failures: a
//! real user's login in the middle of an attack gives the attacker no new
//! budget.
//!
//! With Redis (the gateway's [`RedisLink`]) reservation and settlement are one
//! Lua script each, so the bound holds across every replica; without Redis,
//! or while it does not answer, the same rule runs in this replica's memory
//! (the bound then holds per replica). Failures are always counted locally
//! too, so a Redis outage falls back to this replica's own counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use common::Problem;
use serde::Deserialize;

use crate::redis_link::RedisLink;

/// The 429 for a refused attempt, with `Retry-After`.
pub fn refused(retry_after: u64) -> HttpResponse {
    Problem::too_many_requests(
        "too-many-attempts",
        "too many failed password checks; retry later",
    )
    .to_response_retry_after(retry_after)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
}

/// How a reserved attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The credential was checked and was wrong: a failure.
    Failed,
    /// The credential was right.
    Passed,
    /// No verdict (the check could not run): as if never attempted.
    Void,
}

/// A reserved attempt; settle it with [`FailureLimiter::settle`].
#[derive(Debug)]
#[must_use = "a reservation holds an attempt until it is settled"]
pub struct Reservation {
    key: String,
    /// Made in Redis (else in this replica's memory).
    shared: bool,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    in_flight: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

pub struct FailureLimiter {
    /// `user` or `ip`: part of the shared keys.
    name: &'static str,
    reserve_script: redis::Script,
    settle_script: redis::Script,
    settings: LimitSettings,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Reserve one attempt: refused while locked (the lock's TTL is the answer)
/// or while failures plus attempts in flight reach the budget (retry in a
/// second, when one of those settles). The in-flight count expires on its
/// own, so a replica that dies holding reservations cannot leak them.
const RESERVE_SCRIPT: &str = r"
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return locked end
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local in_flight = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures + in_flight >= tonumber(ARGV[1]) then return 1000 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
";

/// Settle one attempt: it leaves the in-flight count; a failure joins the
/// window (the first starts it) and the budget's last locks the key.
const SETTLE_SCRIPT: &str = r"
local in_flight = redis.call('DECR', KEYS[2])
if in_flight < 0 then redis.call('SET', KEYS[2], '0', 'PX', ARGV[5]) end
if ARGV[1] == '1' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  if n >= tonumber(ARGV[2]) then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
    redis.call('DEL', KEYS[1])
  end
end
return 0
";

const MAX_KEYS: usize = 100_000;
/// How long an in-flight reservation may stay unsettled (a credential check
/// is bounded by the upstream's timeout, far below this).
const IN_FLIGHT_TTL: Duration = Duration::from_secs(120);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl FailureLimiter {
    pub fn new(name: &'static str, settings: LimitSettings) -> Self {
        Self {
            name,
            reserve_script: redis::Script::new(RESERVE_SCRIPT),
            settle_script: redis::Script::new(SETTLE_SCRIPT),
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn shared_keys(&self, link: &RedisLink, key: &str) -> [String; 3] {
        // Usernames come from request bodies: long ones are hashed.
        let hashed;
        let key = if key.len() > 128 {
            use sha2::Digest;
            hashed = format!("sha256-{:x}", sha2::Sha256::digest(key.as_bytes()));
            hashed.as_str()
        } else {
            key
        };
        [
            link.key(&format!("login:{}:{key}:failures", self.name)),
            link.key(&format!("login:{}:{key}:inflight", self.name)),
            link.key(&format!("login:{}:{key}:locked", self.name)),
        ]
    }

    /// Reserve an attempt for `key`, across replicas when `link` answers.
    /// `Err(seconds)`: refused; retry after that long.
    pub async fn reserve(
        &self,
        link: Option<&Arc<RedisLink>>,
        key: &str,
    ) -> Result<Reservation, u64> {
        if let Some(link) = link
            && let Some(mut conn) = link.conn()
        {
            let [failures, in_flight, locked] = self.shared_keys(link, key);
            let mut call = self.reserve_script.key(failures);
            call.key(in_flight)
                .key(locked)
                .arg(self.settings.max_failures)
                .arg(millis(IN_FLIGHT_TTL));
            match link.call(call.invoke_async::<i64>(&mut conn)).await {
                Ok(0) => {
                    return Ok(Reservation {
                        key: key.to_owned(),
                        shared: true,
                    });
                }
                Ok(ms) => return Err((ms.max(1) as u64).div_ceil(1000)),
                Err(why) => {
                    tracing::warn!(reason = %why, "login limits: Redis failed; counting locally")
                }
            }
        }
        self.reserve_local(key).map(|()| Reservation {
            key: key.to_owned(),
            shared: false,
        })
    }

    /// Settle a reservation: where it was made, and the failures locally too.
    pub async fn settle(
        &self,
        link: Option<&Arc<RedisLink>>,
        reservation: Reservation,
        outcome: Outcome,
    ) {
        let failed = outcome == Outcome::Failed;
        self.settle_local(&reservation.key, !reservation.shared, failed);
        if !reservation.shared {
            return;
        }
        let Some(link) = link else { return };
        let Some(mut conn) = link.conn() else {
            tracing::warn!("login limits: Redis is backing off; an attempt settles locally only");
            return;
        };
        let [failures, in_flight, locked] = self.shared_keys(link, &reservation.key);
        let mut call = self.settle_script.key(failures);
        call.key(in_flight)
            .key(locked)
            .arg(u8::from(failed))
            .arg(self.settings.max_failures)
            .arg(self.settings.window_secs * 1000)
            .arg(self.settings.lockout_secs * 1000)
            .arg(millis(IN_FLIGHT_TTL));
        if link
            .call(call.invoke_async::<i64>(&mut conn))
            .await
            .is_err()
        {
            tracing::warn!("login limits: an attempt could not be settled in Redis");
        }
    }

    fn entry<'a>(
        &self,
        entries: &'a mut HashMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> &'a mut Entry {
        let window = Duration::from_secs(self.settings.window_secs);
        if entries.len() >= MAX_KEYS {
            entries.retain(|_, e| {
                e.in_flight > 0
                    || now.duration_since(e.window_start) < window
                    || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            in_flight: 0,
            window_start: now,
            locked_until: None,
        });
        // A window or a lockout that has run out starts afresh.
        if e.locked_until.is_some_and(|u| u <= now)
            || (e.locked_until.is_none() && now.duration_since(e.window_start) >= window)
        {
            e.failures = 0;
            e.window_start = now;
            e.locked_until = None;
        }
        e
    }

    /// The same rule as [`RESERVE_SCRIPT`], in memory.
    fn reserve_local(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Err(self.settings.lockout_secs.max(1));
        };
        let e = self.entry(&mut entries, key, now);
        if let Some(until) = e.locked_until {
            return Err((until - now).as_secs().max(1));
        }
        if e.failures + e.in_flight >= self.settings.max_failures {
            return Err(1);
        }
        e.in_flight += 1;
        Ok(())
    }

    /// The same rule as [`SETTLE_SCRIPT`], in memory; `held`: the
    /// reservation was made here.
    fn settle_local(&self, key: &str, held: bool, failed: bool) {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let lockout = Duration::from_secs(self.settings.lockout_secs);
        let max = self.settings.max_failures;
        let e = self.entry(&mut entries, key, now);
        if held {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
        if failed {
            e.failures += 1;
            if e.failures >= max {
                e.locked_until = Some(now + lockout);
                e.failures = 0;
            }
        }
    }

    /// Whether `key` is locked out in this replica's memory (for tests and
    /// the admin's eyes); `Err(seconds)` while it is.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(entries) = self.entries.lock() else {
            return Err(self.settings.lockout_secs);
        };
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err((until - now).as_secs().max(1)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limiter(max: u32) -> FailureLimiter {
        FailureLimiter::new(
            "user",
            LimitSettings {
                max_failures: max,
                window_secs: 60,
                lockout_secs: 30,
            },
        )
    }

    #[tokio::test]
    async fn attempts_in_flight_count_against_the_budget() {
        let l = limiter(3);
        // Three at once are admitted, the fourth waits for one of them.
        let held: Vec<Reservation> =
            futures_util::future::join_all((0..3).map(|_| l.reserve(None, "a")))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        assert_eq!(l.reserve(None, "a").await.unwrap_err(), 1);
        assert!(l.reserve(None, "b").await.is_ok(), "keys are independent");
        // A void attempt frees its place; a pass does not clear failures.
        let mut held = held.into_iter();
        l.settle(None, held.next().unwrap(), Outcome::Void).await;
        let r = l.reserve(None, "a").await.unwrap();
        l.settle(None, r, Outcome::Passed).await;
        l.settle(None, held.next().unwrap(), Outcome::Failed).await;
        l.settle(None, held.next().unwrap(), Outcome::Failed).await;
        assert!(l.check("a").is_ok(), "two failures of three");
        let r = l.reserve(None, "a").await.unwrap();
        l.settle(None, r, Outcome::Failed).await;
        let retry = l.reserve(None, "a").await.unwrap_err();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(l.check("a").is_err());
    }

    #[tokio::test]
    async fn the_budget_holds_across_two_replicas_in_redis() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let s = crate::redis_link::RedisSettings {
            url: Some(url),
            ca_file: None,
            key_prefix: format!("test:{}:", uuid::Uuid::new_v4()),
            timeout_ms: 500,
            lease_ms: 0,
        };
        let link = RedisLink::open(&s).await.unwrap();
        let (a, b) = (limiter(5), limiter(5));
        // Forty attempts at once, split over two replicas: five admitted.
        let attempts = (0..40).map(|i| {
            let l = if i % 2 == 0 { &a } else { &b };
            let link = &link;
            async move {
                let r = l.reserve(Some(link), "victim").await.ok()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                l.settle(Some(link), r, Outcome::Failed).await;
                Some(())
            }
        });
        let admitted = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .flatten()
            .count();
        assert_eq!(admitted, 5);
        // Locked on both, with the lockout as the answer.
        for l in [&a, &b] {
            let retry = l.reserve(Some(&link), "victim").await.unwrap_err();
            assert!((2..=30).contains(&retry), "{retry}");
        }
    }
}
