//! Observability: Prometheus metrics (`GET /metrics`) and per-route request
//! statistics for the admin (`GET /stats`). Every request is observed once:
//! its route (the configured prefix for proxied requests, the endpoint for
//! the gateway's own), method, status and the time to the response head.
//! The proxy observes what it serves (its logging phase), and
//! `edge::observe` the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::Serialize;

/// The route a request the router handed to the proxy belongs to (see
/// `proxy::handle`), for `edge::observe`.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Set on a request the router handed to the proxy whose observation the
/// proxy already made, so `edge::observe` does not count it twice.
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
    discovery: IntCounterVec,
    logins: IntCounterVec,
    login_lockouts: IntCounterVec,
    /// `token_verifications`' two series, resolved at start.
    token_hits: IntCounter,
    token_checks: IntCounter,
    /// Every route label's meters (reloads keep a label's figures).
    meters: RwLock<HashMap<String, Arc<RouteMeters>, foldhash::fast::RandomState>>,
    /// An empty latency histogram, cloned for each new label.
    histogram: Histogram<u64>,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// One route label's meters: its Prometheus series, resolved on first use
/// per method and status class, and its `/stats` figures. A proxied route
/// holds its own (`Route::meters`), so recording a request hashes no label
/// set and looks nothing up in a shared map (about 1,200 instructions per
/// request before, measured with callgrind).
pub struct RouteMeters {
    label: String,
    /// By method (`METHODS`, then `OTHER`) and status class.
    requests: [[OnceLock<IntCounter>; 5]; METHODS.len() + 1],
    latency: [OnceLock<prometheus::Histogram>; METHODS.len() + 1],
    stats: Mutex<RouteStats>,
}

impl std::fmt::Debug for RouteMeters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMeters")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
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

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The method's index in `METHODS`, or `METHODS.len()` for `OTHER`.
fn method_index(m: &str) -> usize {
    METHODS
        .iter()
        .position(|k| *k == m)
        .unwrap_or(METHODS.len())
}

fn method_label(i: usize) -> &'static str {
    METHODS.get(i).copied().unwrap_or("OTHER")
}

/// The status class's index in `CLASSES`.
fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// A counter family, registered (`/metrics` sorts by name: registration order never shows).
fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> anyhow::Result<IntCounterVec> {
    let family = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// A gauge family, registered.
fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> anyhow::Result<IntGaugeVec> {
    let family = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// `gatehouse_request_duration_seconds`, registered, with buckets from 0.5 ms to 30 s.
fn request_latency(registry: &Registry) -> anyhow::Result<HistogramVec> {
    let family = HistogramVec::new(
        HistogramOpts::new(
            "gatehouse_request_duration_seconds",
            "Time to the response head, by route and method",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]),
        &["route", "method"],
    )?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// The WebSocket families, registered: open connections, frames, payload bytes, closes.
fn websocket_families(
    registry: &Registry,
) -> anyhow::Result<(IntGaugeVec, IntCounterVec, IntCounterVec, IntCounterVec)> {
    let open = gauge(
        registry,
        "gatehouse_websocket_connections",
        "WebSocket connections open now, by route",
        &["route"],
    )?;
    let messages = counter(
        registry,
        "gatehouse_websocket_frames_total",
        "WebSocket frames relayed, by route and the side that sent them (client, upstream)",
        &["route", "from"],
    )?;
    let bytes = counter(
        registry,
        "gatehouse_websocket_payload_bytes_total",
        "WebSocket payload bytes relayed, by route and the side that sent them",
        &["route", "from"],
    )?;
    let closed = counter(
        registry,
        "gatehouse_websocket_closed_total",
        "WebSocket connections ended, by route and reason",
        &["route", "reason"],
    )?;
    Ok((open, messages, bytes, closed))
}

/// The login families, registered with every series at 0 (a scrape shows them before any login).
fn login_families(registry: &Registry) -> anyhow::Result<(IntCounterVec, IntCounterVec)> {
    let logins = counter(
        registry,
        "gatehouse_logins_total",
        "Password logins by outcome (success, failure, locked, rate_limited, error)",
        &["outcome"],
    )?;
    let login_lockouts = counter(
        registry,
        "gatehouse_login_lockouts_total",
        "Logins refused unchecked because a failure budget is spent, by whose (username, address)",
        &["by"],
    )?;
    for outcome in [
        "success",
        "failure",
        "locked",
        "rate_limited",
        "error",
        "mfa_required",
        "mfa_failure",
    ] {
        logins.with_label_values(&[outcome]);
    }
    for by in ["username", "address"] {
        login_lockouts.with_label_values(&[by]);
    }
    Ok((logins, login_lockouts))
}

/// `gatehouse_token_verifications_total`'s two series (cache hit, verified), resolved once.
fn token_series(registry: &Registry) -> anyhow::Result<(IntCounter, IntCounter)> {
    let token_verifications = counter(
        registry,
        "gatehouse_token_verifications_total",
        "Bearer tokens presented to routes, by how they were checked (cache_hit: the verified-token cache; verified: signature checked)",
        &["result"],
    )?;
    Ok((
        token_verifications.with_label_values(&["cache_hit"]),
        token_verifications.with_label_values(&["verified"]),
    ))
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = counter(
            &registry,
            "gatehouse_requests_total",
            "Requests answered, by route, method and status class",
            &["route", "method", "status"],
        )?;
        let latency = request_latency(&registry)?;
        let rate_limited = counter(
            &registry,
            "gatehouse_rate_limited_total",
            "Requests refused by a rate limit (429)",
            &["route"],
        )?;
        let cache = counter(
            &registry,
            "gatehouse_cache_total",
            "Response cache lookups by result (hit, miss, bypass)",
            &["route", "result"],
        )?;
        let upstream_attempts = counter(
            &registry,
            "gatehouse_upstream_attempts_total",
            "Attempts to reach an upstream, by outcome (ok, failed, retried)",
            &["upstream", "outcome"],
        )?;
        let discovery = counter(
            &registry,
            "gatehouse_discovery_lookups_total",
            "DNS discovery lookups, by upstream and result (found, empty: the name has no address, failed: the last addresses stay)",
            &["upstream", "result"],
        )?;
        let (ws_open, ws_messages, ws_bytes, ws_closed) = websocket_families(&registry)?;
        let (logins, login_lockouts) = login_families(&registry)?;
        let (token_hits, token_checks) = token_series(&registry)?;
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
            discovery,
            logins,
            login_lockouts,
            token_hits,
            token_checks,
            meters: RwLock::new(HashMap::default()),
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            since: chrono::Utc::now(),
        })
    }

    /// The meters of the route labelled `route`, made on first use.
    pub fn meters(&self, route: &str) -> Arc<RouteMeters> {
        if let Ok(all) = self.meters.read()
            && let Some(m) = all.get(route)
        {
            return m.clone();
        }
        let made = || {
            Arc::new(RouteMeters {
                label: route.to_owned(),
                requests: Default::default(),
                latency: Default::default(),
                stats: Mutex::new(RouteStats {
                    success: 0,
                    client_error: 0,
                    server_error: 0,
                    sum_us: 0,
                    latency: self.histogram.clone(),
                }),
            })
        };
        match self.meters.write() {
            Ok(mut all) => all.entry(route.to_owned()).or_insert_with(made).clone(),
            // A writer panicked: record into meters of this request's own.
            Err(_) => made(),
        }
    }

    /// One request on the route labelled `route` (the gateway's own
    /// endpoints; proxied routes hold their meters, see [`Self::record_on`]).
    pub fn record(&self, route: &str, method: &str, status: u16, started: Instant) {
        self.record_on(&self.meters(route), method, status, started);
    }

    /// One request, answered `status`, on the route these meters are of.
    pub fn record_on(&self, meters: &RouteMeters, method: &str, status: u16, started: Instant) {
        let elapsed = started.elapsed();
        let m = method_index(method);
        let class = class_index(status);
        if let Some(c) = meters.requests.get(m).and_then(|by| by.get(class)) {
            c.get_or_init(|| {
                self.requests
                    .with_label_values(&[&meters.label, method_label(m), CLASSES[class]])
            })
            .inc();
        }
        if let Some(h) = meters.latency.get(m) {
            h.get_or_init(|| {
                self.latency
                    .with_label_values(&[&meters.label, method_label(m)])
            })
            .observe(elapsed.as_secs_f64());
        }
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let Ok(mut s) = meters.stats.lock() else {
            return;
        };
        match status {
            0..=399 => s.success += 1,
            400..=499 => s.client_error += 1,
            _ => s.server_error += 1,
        }
        s.sum_us += u128::from(us);
        s.latency.saturating_record(us);
    }

    /// A login ended so (`outcome`: success, failure, locked, rate_limited,
    /// error; mfa_required: the password was right and a code is asked
    /// for; mfa_failure: a wrong code at the second step).
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
        if cache_hit {
            self.token_hits.inc();
        } else {
            self.token_checks.inc();
        }
    }

    /// A DNS discovery lookup of `upstream` ended so.
    pub fn discovery(&self, upstream: &str, result: &str) {
        self.discovery.with_label_values(&[upstream, result]).inc();
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
        let Ok(all) = self.meters.read() else {
            return BTreeMap::new();
        };
        let ms = |us: u64| (us as f64) / 1000.0;
        all.iter()
            .filter_map(|(route, m)| Some((route, m.stats.lock().ok()?)))
            .filter(|(_, s)| !s.latency.is_empty())
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
