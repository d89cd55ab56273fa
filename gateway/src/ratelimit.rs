//! Per-route rate limits with GCRA (the generic cell rate algorithm: a
//! leaky bucket kept as one "theoretical arrival time" per key). The same
//! arithmetic runs in memory and, when Redis is configured, in one Lua
//! script on Redis's own clock, so a limit means the same thing either way
//! and several gateway replicas share it. When Redis fails or is slow, the
//! local store answers (never an open door, never an error), the gateway
//! logs the change once, and Redis is tried again after a short back-off.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderName, HeaderValue};
use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

/// `rate_limit:` on a route, e.g. `{rate: 10/s, burst: 20, by: user}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `N/s`, `N/m` or `N/h`.
    pub rate: String,
    /// Requests allowed at once; default N.
    #[serde(default)]
    pub burst: Option<u32>,
    /// `user` (the token's subject; the client IP on public routes) or `ip`.
    #[serde(default)]
    pub by: LimitBy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    #[default]
    User,
    Ip,
}

/// A parsed quota: one request per `emission_us`, `burst` at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    emission_us: u64,
    burst: u32,
    count: u32,
    unit: char,
}

impl Quota {
    pub fn from_config(c: &RateLimitConfig) -> Result<Quota, String> {
        let bad = || format!("rate `{}`: expected N/s, N/m or N/h", c.rate);
        let (n, unit) = c.rate.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let (unit, period_us): (char, u64) = match unit.trim() {
            "s" => ('s', 1_000_000),
            "m" => ('m', 60_000_000),
            "h" => ('h', 3_600_000_000),
            _ => return Err(bad()),
        };
        if count == 0 || count > 1_000_000 {
            return Err(format!("rate `{}`: N must be 1 to 1000000", c.rate));
        }
        let burst = c.burst.unwrap_or(count);
        if burst == 0 || burst > 1_000_000 {
            return Err(format!("burst {burst}: must be 1 to 1000000"));
        }
        Ok(Quota {
            emission_us: (period_us / u64::from(count)).max(1),
            burst,
            count,
            unit,
        })
    }

    /// e.g. `10/s burst 20`.
    pub fn describe(&self) -> String {
        format!("{}/{} burst {}", self.count, self.unit, self.burst)
    }

    fn tolerance_us(&self) -> u64 {
        self.emission_us * u64::from(self.burst)
    }

    /// Seconds in which a full burst drains back.
    fn window_secs(&self) -> u64 {
        self.tolerance_us().div_ceil(1_000_000).max(1)
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow {
        remaining: u32,
        reset_after: Duration,
    },
    Deny {
        retry_after: Duration,
        reset_after: Duration,
    },
}

fn secs_up(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft, structured
    /// fields), plus `Retry-After` when denied.
    pub fn headers(&self, quota: &Quota, policy: &str) -> Vec<(HeaderName, HeaderValue)> {
        let (remaining, reset) = match self {
            Decision::Allow {
                remaining,
                reset_after,
            } => (*remaining, secs_up(*reset_after)),
            Decision::Deny { reset_after, .. } => (0, secs_up(*reset_after)),
        };
        let mut out = Vec::with_capacity(3);
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), v));
            }
        };
        put(
            "ratelimit-policy",
            format!("\"{policy}\";q={};w={}", quota.burst, quota.window_secs()),
        );
        put("ratelimit", format!("\"{policy}\";r={remaining};t={reset}"));
        if let Decision::Deny { retry_after, .. } = self {
            put("retry-after", secs_up(*retry_after).max(1).to_string());
        }
        out
    }
}

/// One GCRA step: the decision and, when allowed, the key's new TAT.
/// `tat` is 0 for an unknown key; times in microseconds.
fn gcra(tat: u64, now: u64, q: &Quota) -> (Decision, Option<u64>) {
    let tat = tat.max(now);
    let new_tat = tat + q.emission_us;
    // Signed: early in the clock's life `new_tat - tolerance` is below zero.
    let allow_at = i128::from(new_tat) - i128::from(q.tolerance_us());
    let now_i = i128::from(now);
    if allow_at > now_i {
        return (
            Decision::Deny {
                retry_after: Duration::from_micros((allow_at - now_i) as u64),
                reset_after: Duration::from_micros(tat - now),
            },
            None,
        );
    }
    let remaining =
        ((now_i - allow_at) / i128::from(q.emission_us)).min(i128::from(q.burst - 1)) as u32;
    (
        Decision::Allow {
            remaining,
            reset_after: Duration::from_micros(new_tat - now),
        },
        Some(new_tat),
    )
}

/// Microseconds on a monotonic clock (never 0).
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

const SHARDS: usize = 16;
/// A shard is swept of idle keys when it grows past this (then past twice
/// what the sweep left).
const SWEEP_AT: usize = 4096;

/// Which of the `SHARDS` a key lives in (the local store's and the leases').
fn shard_of(key: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

struct Shard {
    tats: HashMap<String, u64>,
    sweep_at: usize,
}

/// The in-memory store: keys spread over shards so workers rarely contend.
struct Local {
    shards: Vec<Mutex<Shard>>,
}

impl Local {
    fn new() -> Self {
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

    fn check(&self, key: &str, q: &Quota) -> Decision {
        let shard = &self.shards[shard_of(key)];
        let now = now_us();
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
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.tats.len()).unwrap_or(0))
            .sum()
    }
}

/// Where counters live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`; unset: in memory only.
    #[serde(default)]
    pub url: Option<String>,
    /// Prepended to every key.
    pub key_prefix: String,
    /// Budget of one Redis call before the local store answers.
    pub timeout_ms: u64,
    /// How long cells reserved ahead in Redis may wait to be used (see
    /// [`Leases`]); 0 makes every request one Redis call.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_lease_ms() -> u64 {
    50
}

/// Which store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Redis,
    /// Redis configured but not answering: limiting locally.
    Degraded,
}

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

const BACKOFF: Duration = Duration::from_secs(1);

struct Remote {
    client: redis::Client,
    conn: ArcSwapOption<redis::aio::ConnectionManager>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    /// No Redis call before this (`now_us`), after a failure.
    retry_at: AtomicU64,
    degraded: AtomicBool,
    connecting: AtomicBool,
    /// Calls made to Redis.
    calls: AtomicU64,
}

impl Remote {
    fn fail(&self, why: &str) {
        self.retry_at
            .store(now_us() + BACKOFF.as_micros() as u64, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "Redis is not answering; rate limits are counted locally until it does"
            );
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again; rate limits are shared again");
        }
    }

    /// Connect in the background (one attempt at a time); requests meanwhile
    /// go to the local store.
    fn connect_later(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(1), connect(&me.client)).await {
                Ok(Ok(conn)) => {
                    me.conn.store(Some(Arc::new(conn)));
                }
                Ok(Err(e)) => me.fail(&e.to_string()),
                Err(_) => me.fail("connecting timed out"),
            }
            me.connecting.store(false, Ordering::Release);
        });
    }

    /// Reserve up to `want` cells of `key`'s bucket in one call.
    async fn reserve(&self, key: &str, q: &Quota, want: u32) -> Result<Grant, String> {
        let Some(conn) = self.conn.load_full() else {
            return Err("not connected".into());
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = conn.as_ref().clone();
        let mut inv = self.script.key(format!("{}{key}", self.prefix));
        inv.arg(q.emission_us)
            .arg(q.tolerance_us())
            .arg(q.burst)
            .arg(want.max(1));
        let call = inv.invoke_async::<(i64, i64, i64)>(&mut conn);
        let (granted, a, reset) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
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
struct Grant {
    /// Cells reserved; 0 is a refusal.
    granted: u32,
    /// Cells left in the bucket after the reservation, or (refused) the
    /// microseconds until one is.
    remaining_or_retry: u64,
    reset_after: Duration,
}

impl Grant {
    /// The decision for the request that asked, which uses one cell; the
    /// rest of the grant stays with the caller.
    fn decision(&self, kept: u32) -> Decision {
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
enum Take {
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
struct Leases {
    window_us: u64,
    shards: Vec<Mutex<HashMap<String, Held>>>,
    /// Per shard: a reservation landed (or failed); requests that found one
    /// on its way wait for it instead of calling Redis themselves.
    landed: Vec<tokio::sync::Notify>,
}

impl Leases {
    fn new(window: Duration) -> Self {
        Self {
            window_us: window.as_micros() as u64,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            landed: (0..SHARDS).map(|_| tokio::sync::Notify::new()).collect(),
        }
    }

    /// A reservation for `key` is on its way.
    fn reserving(&self, key: &str) -> bool {
        self.shard(key)
            .lock()
            .is_ok_and(|s| s.get(key).is_some_and(|h| h.refilling))
    }

    /// The largest lease for `q` (1: no leasing).
    fn cap(&self, q: &Quota) -> u32 {
        let per_window = u32::try_from(self.window_us / q.emission_us).unwrap_or(u32::MAX);
        per_window.min(q.burst / 8).max(1)
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Held>> {
        &self.shards[shard_of(key)]
    }

    fn take(&self, key: &str, cap: u32) -> Take {
        let now = now_us();
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
    fn store(&self, key: &str, grant: &Grant, used: u32) {
        self.keep(key, grant, used);
        self.landed[shard_of(key)].notify_waiters();
    }

    fn keep(&self, key: &str, grant: &Grant, used: u32) {
        let now = now_us();
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
    fn release(&self, key: &str) {
        if let Ok(mut shard) = self.shard(key).lock()
            && let Some(held) = shard.get_mut(key)
        {
            held.refilling = false;
        }
        self.landed[shard_of(key)].notify_waiters();
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

pub struct RateLimiter {
    local: Local,
    remote: Option<Arc<Remote>>,
    leases: Arc<Leases>,
    fallbacks: AtomicU64,
}

impl RateLimiter {
    /// Counters in memory only.
    pub fn local() -> Self {
        Self {
            local: Local::new(),
            remote: None,
            leases: Arc::new(Leases::new(Duration::ZERO)),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// With `settings.url`, counters in Redis. Never fails: an unreachable
    /// Redis (at most 1 s is spent trying at start) means local counting
    /// until it answers.
    pub async fn new(settings: &RedisSettings) -> Self {
        let Some(url) = settings.url.as_deref().filter(|u| !u.is_empty()) else {
            return Self::local();
        };
        let client = match redis::Client::open(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "redis.url is not usable; rate limits are counted locally");
                return Self::local();
            }
        };
        let remote = Arc::new(Remote {
            client,
            conn: ArcSwapOption::empty(),
            script: redis::Script::new(SCRIPT),
            prefix: settings.key_prefix.clone(),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            retry_at: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            connecting: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        });
        match tokio::time::timeout(Duration::from_secs(1), connect(&remote.client)).await {
            Ok(Ok(conn)) => remote.conn.store(Some(Arc::new(conn))),
            Ok(Err(e)) => remote.fail(&e.to_string()),
            Err(_) => remote.fail("connecting timed out"),
        }
        Self {
            local: Local::new(),
            remote: Some(remote),
            leases: Arc::new(Leases::new(Duration::from_millis(settings.lease_ms))),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Count one request for `key` against `quota`.
    pub async fn check(&self, key: &str, quota: &Quota) -> Decision {
        let Some(remote) = &self.remote else {
            return self.local.check(key, quota);
        };
        // 0: a plain one-cell call; n: this request reserves n (and keeps
        // what it does not use).
        let mut lease = 0;
        let cap = self.leases.cap(quota);
        // Waiting for another request's reservation is bounded by the
        // Redis budget, as a call of our own would be.
        let mut deadline = None;
        loop {
            match self.leases.take(key, cap) {
                Take::Served(decision, refill) => {
                    if let Some(n) = refill {
                        self.refill_later(remote, key, quota, n);
                    }
                    return decision;
                }
                Take::Reserve(n) => lease = n,
                // A lease for this key is on its way: wait for it (within
                // the Redis budget) rather than call Redis as well; dozens
                // of concurrent requests would otherwise each make a call
                // whenever a lease runs out.
                Take::Busy
                    if cap > 1
                        && *deadline.get_or_insert_with(|| Instant::now() + remote.timeout)
                            > Instant::now() =>
                {
                    let landed = self.leases.landed[shard_of(key)].notified();
                    tokio::pin!(landed);
                    landed.as_mut().enable();
                    // It may have landed between `take` and `enable`.
                    if self.leases.reserving(key)
                        && let Some(until) = deadline
                    {
                        let _ = tokio::time::timeout_at(until.into(), landed).await;
                    }
                    continue;
                }
                Take::Busy => {}
            }
            break;
        }
        if now_us() >= remote.retry_at.load(Ordering::Relaxed) {
            if remote.conn.load().is_none() {
                remote.connect_later();
            } else {
                match remote.reserve(key, quota, lease.max(1)).await {
                    Ok(grant) => {
                        remote.recovered();
                        if lease > 0 {
                            self.leases.store(key, &grant, 1);
                        }
                        return grant.decision(grant.granted.saturating_sub(1));
                    }
                    Err(why) => remote.fail(&why),
                }
            }
        }
        if lease > 0 {
            self.leases.release(key);
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.local.check(key, quota)
    }

    /// Reserve `n` more cells for `key` without holding up a request.
    fn refill_later(&self, remote: &Arc<Remote>, key: &str, quota: &Quota, n: u32) {
        let (remote, leases) = (remote.clone(), self.leases.clone());
        let (key, quota) = (key.to_owned(), quota.clone());
        tokio::spawn(async move {
            match remote.reserve(&key, &quota, n).await {
                Ok(grant) => leases.store(&key, &grant, 0),
                Err(why) => {
                    remote.fail(&why);
                    leases.release(&key);
                }
            }
        });
    }

    /// Calls made to Redis for rate limits (reservations included).
    pub fn redis_calls(&self) -> u64 {
        self.remote
            .as_ref()
            .map_or(0, |r| r.calls.load(Ordering::Relaxed))
    }

    pub fn backend(&self) -> Backend {
        match &self.remote {
            None => Backend::Local,
            Some(r) if r.degraded.load(Ordering::Relaxed) || r.conn.load().is_none() => {
                Backend::Degraded
            }
            Some(_) => Backend::Redis,
        }
    }

    /// The Redis connection for the other shared state (login counters,
    /// revocations), while Redis answers; `None` when local or backing off.
    pub fn shared(&self) -> Option<crate::limiter::SharedRedis> {
        let r = self.remote.as_ref()?;
        if now_us() < r.retry_at.load(Ordering::Relaxed) {
            return None;
        }
        let conn = r.conn.load_full()?;
        Some(crate::limiter::SharedRedis {
            conn: conn.as_ref().clone(),
            timeout: r.timeout,
            prefix: r.prefix.clone(),
        })
    }

    /// The client (for a subscription) and the key prefix, when Redis is configured.
    pub fn redis_client(&self) -> Option<(redis::Client, String)> {
        self.remote
            .as_ref()
            .map(|r| (r.client.clone(), r.prefix.clone()))
    }

    /// Checks answered locally because Redis failed.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn quota(rate: &str, burst: Option<u32>) -> Quota {
        Quota::from_config(&RateLimitConfig {
            rate: rate.into(),
            burst,
            by: LimitBy::User,
        })
        .unwrap()
    }

    #[test]
    fn config_parsing() {
        let q = quota("10/s", Some(20));
        assert_eq!(q.describe(), "10/s burst 20");
        assert_eq!(q.emission_us, 100_000);
        assert_eq!(quota("3/m", None).describe(), "3/m burst 3");
        for bad in ["abc", "10", "10/d", "0/s", "-1/s", "1.5/s", "/s"] {
            let e = Quota::from_config(&RateLimitConfig {
                rate: bad.into(),
                burst: None,
                by: LimitBy::Ip,
            })
            .unwrap_err();
            assert!(e.contains("rate"), "{bad}: {e}");
        }
        assert!(
            Quota::from_config(&RateLimitConfig {
                rate: "1/s".into(),
                burst: Some(0),
                by: LimitBy::Ip
            })
            .is_err()
        );
    }

    #[test]
    fn gcra_is_right_at_the_start_of_the_clock() {
        let q = quota("3/m", None);
        let (d, _) = gcra(0, 5, &q);
        assert!(matches!(d, Decision::Allow { remaining: 2, .. }), "{d:?}");
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let q = quota("1/s", Some(3));
        let t0 = 1_000_000_000;
        let mut tat = 0;
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let (d, new) = gcra(tat, t0, &q);
            let Decision::Allow { remaining: r, .. } = d else {
                panic!("{d:?}")
            };
            remaining.push(r);
            tat = new.unwrap();
        }
        assert_eq!(remaining, [2, 1, 0]);
        let (d, new) = gcra(tat, t0, &q);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: Duration::from_secs(1),
                reset_after: Duration::from_secs(3)
            }
        );
        assert!(new.is_none(), "a denied request costs nothing");
        // 0.5 s later: still denied, half a second to wait.
        let (d, _) = gcra(tat, t0 + 500_000, &q);
        assert!(
            matches!(d, Decision::Deny { retry_after, .. } if retry_after == Duration::from_millis(500))
        );
        // 1 s later: exactly one more.
        let (d, new) = gcra(tat, t0 + 1_000_000, &q);
        assert!(matches!(d, Decision::Allow { remaining: 0, .. }), "{d:?}");
        tat = new.unwrap();
        assert!(!gcra(tat, t0 + 1_000_000, &q).0.is_allowed());
        // Idle long enough: the full burst again.
        let (d, _) = gcra(tat, t0 + 60_000_000, &q);
        assert!(matches!(d, Decision::Allow { remaining: 2, .. }), "{d:?}");
    }

    #[test]
    fn headers_follow_the_draft() {
        let q = quota("3/m", Some(3));
        let allow = Decision::Allow {
            remaining: 2,
            reset_after: Duration::from_secs(20),
        };
        let h: Vec<(String, String)> = allow
            .headers(&q, "route")
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            h,
            [
                (
                    "ratelimit-policy".to_owned(),
                    "\"route\";q=3;w=60".to_owned()
                ),
                ("ratelimit".to_owned(), "\"route\";r=2;t=20".to_owned())
            ]
        );
        let deny = Decision::Deny {
            retry_after: Duration::from_millis(19_200),
            reset_after: Duration::from_millis(59_200),
        };
        let h = deny.headers(&q, "route");
        assert_eq!(h[1].1, "\"route\";r=0;t=60");
        assert_eq!(h[2].0, "retry-after");
        assert_eq!(h[2].1, "20");
    }

    #[test]
    fn the_local_store_counts_exactly_under_concurrency_and_forgets_idle_keys() {
        let limiter = Arc::new(RateLimiter::local());
        let q = quota("1/h", Some(50));
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    for _ in 0..100 {
                        if rt.block_on(limiter.check("k", &q)).is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 50);
        // Keys whose TAT has passed are swept once a shard grows.
        let fast = quota("1000000/s", Some(1));
        let local = Local::new();
        for i in 0..(SWEEP_AT * SHARDS * 2) {
            local.check(&format!("k{i}"), &fast);
        }
        assert!(local.len() < SWEEP_AT * SHARDS * 2, "{}", local.len());
    }

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

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn settings(url: String) -> RedisSettings {
        RedisSettings {
            url: Some(url),
            key_prefix: format!("test:{}:", uuid::Uuid::new_v4()),
            timeout_ms: 200,
            lease_ms: 50,
        }
    }

    #[tokio::test]
    async fn two_limiters_share_one_limit_in_redis() {
        let s = settings(redis_url());
        let (a, b) = (RateLimiter::new(&s).await, RateLimiter::new(&s).await);
        assert_eq!(a.backend(), Backend::Redis);
        let q = quota("5/m", None);
        let mut allowed = 0;
        for i in 0..10 {
            let l = if i % 2 == 0 { &a } else { &b };
            if l.check("shared", &q).await.is_allowed() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        assert_eq!(a.fallbacks() + b.fallbacks(), 0);
        // The first answer of a fresh key: full burst minus one.
        let d = a.check("other", &q).await;
        assert!(matches!(d, Decision::Allow { remaining: 4, .. }), "{d:?}");
    }

    #[tokio::test]
    async fn leases_spare_redis_calls_and_never_admit_more_than_the_limit() {
        let s = settings(redis_url());
        let (a, b) = (RateLimiter::new(&s).await, RateLimiter::new(&s).await);
        // 2,000/s with a burst of 400: a lease is at most 50 cells (an
        // eighth of the burst; the rate emits 100 in 50 ms).
        let q = quota("2000/s", Some(400));
        assert_eq!(a.leases.cap(&q), 50);
        let started = Instant::now();
        // Well within the burst (each replica may hold up to a lease and a
        // quarter unused): every check admitted, a few calls in all (the
        // leases double from 1 cell up to 50).
        for i in 0..250 {
            let l = if i % 2 == 0 { &a } else { &b };
            let d = l.check("busy", &q).await;
            assert!(d.is_allowed(), "check {i}: {d:?}");
        }
        let calls = a.redis_calls() + b.redis_calls();
        assert!(calls <= 30, "{calls} Redis calls for 250 checks");
        // Past it: refusals with a Retry-After of one emission interval.
        let (mut allowed, mut denied) = (250u64, 0u64);
        for i in 0..6000 {
            let l = if i % 2 == 0 { &a } else { &b };
            match l.check("busy", &q).await {
                Decision::Allow { .. } => allowed += 1,
                Decision::Deny { retry_after, .. } => {
                    assert!(retry_after <= Duration::from_micros(500), "{retry_after:?}");
                    denied += 1;
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert!(denied > 0);
        // Never more than the burst plus what the rate emitted meanwhile.
        let ceiling = 400 + (elapsed * 2000.0).ceil() as u64;
        assert!(allowed <= ceiling, "{allowed} admitted, at most {ceiling}");
        // At most one lease per replica may go unused (and a remembered
        // refusal may outlast its cell by a round trip).
        let floor = (400 + (elapsed * 1000.0) as u64).saturating_sub(2 * 63);
        assert!(allowed >= floor, "{allowed} admitted, at least {floor}");
        assert_eq!(a.fallbacks() + b.fallbacks(), 0);
        // Fifty requests at once on a fresh busy key: those that find a lease
        // on its way wait for it instead of each calling Redis.
        let crowd = quota("100000/s", Some(100000));
        let before = a.redis_calls();
        let checks = (0..50).map(|_| async {
            let mut admitted = 0;
            for _ in 0..100 {
                if a.check("crowd", &crowd).await.is_allowed() {
                    admitted += 1;
                }
                tokio::task::yield_now().await;
            }
            admitted
        });
        let admitted: u32 = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .sum();
        assert_eq!(admitted, 5000);
        let calls = a.redis_calls() - before;
        assert!(
            calls <= 40,
            "{calls} Redis calls for 5000 concurrent checks"
        );
        // A slow key keeps the exact path: one call each, as before.
        let slow = quota("3/m", None);
        assert_eq!(a.leases.cap(&slow), 1);
        let before = a.redis_calls();
        for _ in 0..3 {
            assert!(a.check("slow", &slow).await.is_allowed());
        }
        assert_eq!(a.redis_calls() - before, 3);
        // Refused: remembered until Retry-After, no further calls.
        assert!(!a.check("slow", &slow).await.is_allowed());
        let before = a.redis_calls();
        for _ in 0..10 {
            assert!(!a.check("slow", &slow).await.is_allowed());
        }
        assert_eq!(a.redis_calls(), before);
    }

    #[tokio::test]
    async fn an_unreachable_redis_means_local_limits() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let l = RateLimiter::new(&settings(format!("redis://127.0.0.1:{port}"))).await;
        assert_eq!(l.backend(), Backend::Degraded);
        let q = quota("3/m", None);
        let mut allowed = 0;
        for _ in 0..6 {
            if l.check("k", &q).await.is_allowed() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
        assert_eq!(l.fallbacks(), 6);
    }
}
