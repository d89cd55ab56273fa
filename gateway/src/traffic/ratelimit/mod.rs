//! Per-route rate limits with GCRA (the generic cell rate algorithm: a
//! leaky bucket kept as one "theoretical arrival time" per key).
//!
//! - [`quota`]: the configuration, the decision and the GCRA step (pure);
//! - [`local`]: the in-memory store (one replica's counters);
//! - [`remote`]: the same arithmetic in Redis, shared by every replica;
//! - [`leases`]: cells reserved ahead so a busy key is not a Redis call per
//!   request.
//!
//! [`RateLimiter`] puts them together: with Redis configured it asks Redis
//! (through leases) and, when Redis fails or is slow, answers from the local
//! store: never an open door, never an error.

pub mod leases;
pub mod local;
pub mod quota;
pub mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use common::Problem;

use crate::redis_link::RedisLink;
use leases::{Leases, Take};
use local::{Local, shard_of};
pub use quota::{Decision, LimitBy, Quota, RateLimitConfig};
use remote::Remote;

/// Which store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Redis,
    /// Redis configured but not answering: limiting locally.
    Degraded,
}

impl Backend {
    /// As `/readyz` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Redis => "redis",
            Backend::Degraded => "local (redis unreachable)",
        }
    }
}

/// The one 429 a quota refusal gets: problem+json with `Retry-After`,
/// `RateLimit` and `RateLimit-Policy`. `what` completes "... allows <quota>".
pub fn refused(decision: &Decision, quota: &Quota, policy: &str, what: &str) -> HttpResponse {
    let mut res = Problem::too_many_requests(
        "rate-limited",
        format!("{what} {}; retry later", quota.describe()),
    )
    .to_response();
    for (n, v) in decision.headers(quota, policy) {
        res.headers_mut().insert(n, v);
    }
    res
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

    /// Counters in Redis through `link` (shared by every replica), the
    /// local store answering whenever Redis does not; `lease_ms` as in
    /// [`crate::redis_link::RedisSettings`].
    pub fn shared(link: Arc<RedisLink>, lease_ms: u64) -> Self {
        Self {
            local: Local::new(),
            remote: Some(Arc::new(Remote::new(link))),
            leases: Arc::new(Leases::new(Duration::from_millis(lease_ms))),
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
                        && *deadline
                            .get_or_insert_with(|| Instant::now() + remote.link.timeout())
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
        // `reserve` refuses at once while the link backs off.
        if let Ok(grant) = remote.reserve(key, quota, lease.max(1)).await {
            if lease > 0 {
                self.leases.store(key, &grant, 1);
            }
            return grant.decision(grant.granted.saturating_sub(1));
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
                Err(_) => leases.release(&key),
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
            Some(r) if !r.link.is_up() => Backend::Degraded,
            Some(_) => Backend::Redis,
        }
    }

    /// Checks answered locally because Redis failed.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;
    use crate::traffic::ratelimit::local::{SHARDS, SWEEP_AT};
    use crate::traffic::ratelimit::quota::tests::quota;

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

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn settings(url: String) -> crate::redis_link::RedisSettings {
        crate::redis_link::RedisSettings {
            url: Some(url),
            ca_file: None,
            key_prefix: format!("test:{}:", uuid::Uuid::new_v4()),
            timeout_ms: 200,
            lease_ms: 50,
        }
    }

    async fn limiter(s: &crate::redis_link::RedisSettings) -> RateLimiter {
        RateLimiter::shared(RedisLink::open(s).await.unwrap(), s.lease_ms)
    }

    #[tokio::test]
    async fn two_limiters_share_one_limit_in_redis() {
        let s = settings(redis_url());
        let (a, b) = (limiter(&s).await, limiter(&s).await);
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
        let (a, b) = (limiter(&s).await, limiter(&s).await);
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
        let l = limiter(&settings(format!("redis://127.0.0.1:{port}"))).await;
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
