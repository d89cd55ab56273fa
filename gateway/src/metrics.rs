//! Observability: Prometheus metrics (`GET /metrics`) and per-route request
//! statistics for the admin (`GET /stats`). Both are fed by one middleware
//! that sees every request: its route (the configured prefix for proxied
//! requests, the endpoint for the gateway's own), method, status and the
//! time to the response head.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use hdrhistogram::Histogram;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::Serialize;

/// The route a proxied request took (set by the proxy's request filter).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Set on a request whose observation the proxy's logging phase already
/// made, so the middleware does not count it twice.
#[derive(Debug, Clone, Copy)]
pub struct Recorded;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounterVec,
    cache: IntCounterVec,
    upstream_attempts: IntCounterVec,
    ws_open: IntGaugeVec,
    ws_messages: IntCounterVec,
    ws_bytes: IntCounterVec,
    ws_closed: IntCounterVec,
    logins: IntCounterVec,
    login_lockouts: IntCounterVec,
    token_verifications: IntCounterVec,
    stats: Mutex<HashMap<String, RouteStats, foldhash::fast::RandomState>>,
    pub since: chrono::DateTime<chrono::Utc>,
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
        let ws_open = IntGaugeVec::new(
            Opts::new(
                "gatehouse_websocket_connections",
                "WebSocket connections open now, by route",
            ),
            &["route"],
        )?;
        let ws_messages = IntCounterVec::new(
            Opts::new(
                "gatehouse_websocket_frames_total",
                "WebSocket frames relayed, by route and the side that sent them (client, upstream)",
            ),
            &["route", "from"],
        )?;
        let ws_bytes = IntCounterVec::new(
            Opts::new(
                "gatehouse_websocket_payload_bytes_total",
                "WebSocket payload bytes relayed, by route and the side that sent them",
            ),
            &["route", "from"],
        )?;
        let ws_closed = IntCounterVec::new(
            Opts::new(
                "gatehouse_websocket_closed_total",
                "WebSocket connections ended, by route and reason",
            ),
            &["route", "reason"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "gatehouse_logins_total",
                "Password logins by outcome (success, failure, locked, rate_limited, error)",
            ),
            &["outcome"],
        )?;
        let login_lockouts = IntCounterVec::new(
            Opts::new(
                "gatehouse_login_lockouts_total",
                "Logins refused unchecked because a failure budget is spent, by whose (username, address)",
            ),
            &["by"],
        )?;
        let token_verifications = IntCounterVec::new(
            Opts::new(
                "gatehouse_token_verifications_total",
                "Bearer tokens presented to routes, by how they were checked (cache_hit: the verified-token cache; verified: signature checked)",
            ),
            &["result"],
        )?;
        for outcome in ["success", "failure", "locked", "rate_limited", "error"] {
            logins.with_label_values(&[outcome]);
        }
        for by in ["username", "address"] {
            login_lockouts.with_label_values(&[by]);
        }
        for result in ["cache_hit", "verified"] {
            token_verifications.with_label_values(&[result]);
        }
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(login_lockouts.clone()))?;
        registry.register(Box::new(token_verifications.clone()))?;
        registry.register(Box::new(ws_open.clone()))?;
        registry.register(Box::new(ws_messages.clone()))?;
        registry.register(Box::new(ws_bytes.clone()))?;
        registry.register(Box::new(ws_closed.clone()))?;
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
            ws_open,
            ws_messages,
            ws_bytes,
            ws_closed,
            logins,
            login_lockouts,
            token_verifications,
            stats: Mutex::new(HashMap::default()),
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

    /// A password login ended so (`outcome`: success, failure, locked,
    /// rate_limited, error).
    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// A login refused because the `by` (username, address) budget is spent.
    pub fn login_locked(&self, by: &str) {
        self.logins.with_label_values(&["locked"]).inc();
        self.login_lockouts.with_label_values(&[by]).inc();
    }

    /// A route's bearer token: from the verified-token cache or checked.
    pub fn token_verification(&self, cache_hit: bool) {
        let result = if cache_hit { "cache_hit" } else { "verified" };
        self.token_verifications.with_label_values(&[result]).inc();
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

    /// The counters of one relayed WebSocket connection on `route`, looked
    /// up once so relaying a frame costs no label lookup; the connection
    /// counts as open until the returned value is dropped.
    pub fn websocket(&self, route: &str) -> WebSocketCounters {
        let open = self.ws_open.with_label_values(&[route]);
        open.inc();
        WebSocketCounters {
            from_client: (
                self.ws_messages.with_label_values(&[route, "client"]),
                self.ws_bytes.with_label_values(&[route, "client"]),
            ),
            from_upstream: (
                self.ws_messages.with_label_values(&[route, "upstream"]),
                self.ws_bytes.with_label_values(&[route, "upstream"]),
            ),
            closed: self.ws_closed.clone(),
            route: route.to_owned(),
            open,
        }
    }

    /// The registry's families in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
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

/// See [`Metrics::websocket`].
pub struct WebSocketCounters {
    /// (frames, payload bytes) sent by each side.
    pub from_client: (IntCounter, IntCounter),
    pub from_upstream: (IntCounter, IntCounter),
    closed: IntCounterVec,
    route: String,
    open: IntGauge,
}

impl WebSocketCounters {
    /// The connection ended, for `reason`.
    pub fn closed(&self, reason: &str) {
        self.closed.with_label_values(&[&self.route, reason]).inc();
    }
}

impl Drop for WebSocketCounters {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The middleware: one observation per request, at the response head, for
/// every request the proxy's logging phase did not record itself.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(metrics) = metrics
        && res.request().extensions().get::<Recorded>().is_none()
    {
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
        metrics.record(
            &route,
            request.method().as_str(),
            res.status().as_u16(),
            started,
        );
    }
    Ok(res)
}
