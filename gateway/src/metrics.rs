//! Observability: Prometheus metrics (`GET /metrics`) and per-route request
//! statistics for the admin (`GET /stats`). Both are fed by one middleware
//! that sees every request: its route (the configured prefix for proxied
//! requests, the endpoint for the gateway's own), method, status and the
//! time to the response head.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use common::Problem;
use hdrhistogram::Histogram;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::ratelimit::{Backend, RateLimiter};
use crate::state::Gateway;

/// The route a proxied request took (set by the proxy for the middleware).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounterVec,
    cache: IntCounterVec,
    upstream_attempts: IntCounterVec,
    stats: Mutex<HashMap<String, RouteStats>>,
    since: chrono::DateTime<chrono::Utc>,
}

struct RouteStats {
    success: u64,
    client_error: u64,
    server_error: u64,
    sum_us: u128,
    /// Microseconds, 1 us to 10 min, 3 significant digits.
    latency: Histogram<u64>,
}

/// `GET /stats` per route.
#[derive(Debug, Serialize)]
pub struct RouteStatsView {
    pub requests: u64,
    /// Answers below 400.
    pub success: u64,
    /// Answers 400 and above (`client_error` + `server_error`).
    pub error: u64,
    pub client_error: u64,
    pub server_error: u64,
    pub latency_ms: LatencyView,
}

#[derive(Debug, Serialize)]
pub struct LatencyView {
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

fn method_label(m: &str) -> &str {
    METHODS
        .iter()
        .find(|k| **k == m)
        .copied()
        .unwrap_or("OTHER")
}

fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

pub fn backend_name(l: &RateLimiter) -> &'static str {
    match l.backend() {
        Backend::Local => "local",
        Backend::Redis => "redis",
        Backend::Degraded => "local (redis unreachable)",
    }
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_requests_total",
                "Requests answered, by route, method and status class",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_request_duration_seconds",
                "Time to the response head, by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "gatehouse_rate_limited_total",
                "Requests refused by a rate limit (429)",
            ),
            &["route"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "gatehouse_cache_total",
                "Response cache lookups by result (hit, miss, bypass)",
            ),
            &["route", "result"],
        )?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "gatehouse_upstream_attempts_total",
                "Attempts to reach an upstream, by outcome (ok, failed, retried)",
            ),
            &["upstream", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            rate_limited,
            cache,
            upstream_attempts,
            stats: Mutex::new(HashMap::new()),
            since: chrono::Utc::now(),
        })
    }

    pub fn record(&self, route: &str, method: &str, status: u16, started: Instant) {
        let elapsed = started.elapsed();
        let method = method_label(method);
        self.requests
            .with_label_values(&[route, method, class(status)])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        if !stats.contains_key(route) {
            let Ok(h) = Histogram::new_with_bounds(1, 600_000_000, 3) else {
                return;
            };
            stats.insert(
                route.to_owned(),
                RouteStats {
                    success: 0,
                    client_error: 0,
                    server_error: 0,
                    sum_us: 0,
                    latency: h,
                },
            );
        }
        if let Some(s) = stats.get_mut(route) {
            match status {
                0..=399 => s.success += 1,
                400..=499 => s.client_error += 1,
                _ => s.server_error += 1,
            }
            s.sum_us += u128::from(us);
            s.latency.saturating_record(us);
        }
    }

    pub fn rate_limited(&self, route: &str) {
        self.rate_limited.with_label_values(&[route]).inc();
    }

    pub fn cache(&self, route: &str, result: &str) {
        self.cache.with_label_values(&[route, result]).inc();
    }

    pub fn upstream_attempt(&self, upstream: &str, outcome: &str) {
        self.upstream_attempts
            .with_label_values(&[upstream, outcome])
            .inc();
    }

    /// Per-route statistics since start.
    pub fn stats(&self) -> BTreeMap<String, RouteStatsView> {
        let Ok(stats) = self.stats.lock() else {
            return BTreeMap::new();
        };
        let ms = |us: u64| (us as f64) / 1000.0;
        stats
            .iter()
            .map(|(route, s)| {
                let n = s.latency.len();
                let avg = if n == 0 {
                    0.0
                } else {
                    (s.sum_us as f64) / (n as f64) / 1000.0
                };
                (
                    route.clone(),
                    RouteStatsView {
                        requests: n,
                        success: s.success,
                        error: s.client_error + s.server_error,
                        client_error: s.client_error,
                        server_error: s.server_error,
                        latency_ms: LatencyView {
                            avg,
                            p50: ms(s.latency.value_at_quantile(0.50)),
                            p95: ms(s.latency.value_at_quantile(0.95)),
                            p99: ms(s.latency.value_at_quantile(0.99)),
                            max: ms(s.latency.max()),
                        },
                    },
                )
            })
            .collect()
    }
}

/// The middleware: one observation per request, at the response head.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let gw = req.app_data::<web::Data<Gateway>>().cloned();
    let res = next.call(req).await?;
    if let Some(gw) = gw {
        let request = res.request();
        let route = request
            .extensions()
            .get::<RouteLabel>()
            .map(|r| r.0.clone())
            .or_else(|| {
                request
                    .match_pattern()
                    .filter(|p| !p.contains('{') || p.starts_with("/admin/"))
            })
            .unwrap_or_else(|| "unmatched".to_owned());
        gw.metrics.record(
            &route,
            request.method().as_str(),
            res.status().as_u16(),
            started,
        );
    }
    Ok(res)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`: Prometheus text format. Needs the configured bearer
/// token when `metrics.bearer_token` is set.
pub async fn endpoint(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    if let Some(token) = &gw.metrics_token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected = token.expose_secret().as_bytes();
        let same = sent.len() == expected.len()
            && sent
                .bytes()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Problem::unauthorized("the metrics token is missing or wrong").to_response();
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&gw.metrics.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
        return Problem::internal().to_response();
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    let live = gw.live.load();
    text.push_str("# HELP gatehouse_upstream_target_up Whether the target is in rotation (1) or not (0).\n# TYPE gatehouse_upstream_target_up gauge\n");
    let mut counters = String::from(
        "# HELP gatehouse_upstream_target_requests_total Requests sent to the target.\n# TYPE gatehouse_upstream_target_requests_total counter\n",
    );
    let mut failures = String::from(
        "# HELP gatehouse_upstream_target_failures_total Failed attempts (connection, broken answer, timeout).\n# TYPE gatehouse_upstream_target_failures_total counter\n",
    );
    let now = crate::upstreams::now_ms();
    for (name, up) in live.upstreams.iter() {
        for t in up.targets() {
            let labels = format!(
                "upstream=\"{}\",target=\"{}\"",
                escape(name),
                escape(&t.url)
            );
            let v = t.view();
            let _ = writeln!(
                text,
                "gatehouse_upstream_target_up{{{labels}}} {}",
                u8::from(t.available(now))
            );
            let _ = writeln!(
                counters,
                "gatehouse_upstream_target_requests_total{{{labels}}} {}",
                v.requests
            );
            let _ = writeln!(
                failures,
                "gatehouse_upstream_target_failures_total{{{labels}}} {}",
                v.failures
            );
        }
    }
    text.push_str(&counters);
    text.push_str(&failures);
    let _ = writeln!(
        text,
        "# HELP gatehouse_rate_limit_fallbacks_total Rate-limit checks answered locally because Redis failed.\n# TYPE gatehouse_rate_limit_fallbacks_total counter\ngatehouse_rate_limit_fallbacks_total {}",
        gw.limiter.fallbacks()
    );
    let _ = writeln!(
        text,
        "# HELP gatehouse_rate_limit_redis_calls_total Calls made to Redis for rate limits (a lease of cells counts once).\n# TYPE gatehouse_rate_limit_redis_calls_total counter\ngatehouse_rate_limit_redis_calls_total {}",
        gw.limiter.redis_calls()
    );
    let _ = writeln!(
        text,
        "# HELP gatehouse_cache_bytes Bytes held by the response cache.\n# TYPE gatehouse_cache_bytes gauge\ngatehouse_cache_bytes {}",
        gw.cache.weight()
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// `GET /stats` body.
#[derive(Debug, Serialize)]
struct StatsView {
    since: chrono::DateTime<chrono::Utc>,
    routes: BTreeMap<String, RouteStatsView>,
}

/// `GET /stats` (admin): request counts and latency per route since start.
pub fn stats_view(gw: &Gateway) -> HttpResponse {
    HttpResponse::Ok().json(StatsView {
        since: gw.metrics.since,
        routes: gw.metrics.stats(),
    })
}
