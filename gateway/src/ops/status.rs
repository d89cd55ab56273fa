//! The operational endpoints: `/metrics` (Prometheus), `/stats` (admin),
//! and `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::Ops;
use crate::identity::admission::AdminBearer;
use crate::live::Live;
use crate::ops::metrics::RouteStatsView;
use crate::traffic::Traffic;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Whether the request carries the metrics token (compared in constant time: no timing leak).
fn has_metrics_token(req: &HttpRequest, token: &SecretString) -> bool {
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = token.expose_secret().as_bytes();
    sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The per-target families (up, requests, failures), each family's samples together.
fn target_samples(text: &mut String, live: &Live) {
    text.push_str("# HELP gatehouse_upstream_target_up Whether the target is in rotation (1) or not (0).\n# TYPE gatehouse_upstream_target_up gauge\n");
    let mut counters = String::from(
        "# HELP gatehouse_upstream_target_requests_total Requests sent to the target.\n# TYPE gatehouse_upstream_target_requests_total counter\n",
    );
    let mut failures = String::from(
        "# HELP gatehouse_upstream_target_failures_total Failed attempts (connection, broken answer, timeout).\n# TYPE gatehouse_upstream_target_failures_total counter\n",
    );
    let now = crate::clock::mono_ms();
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
}

/// The shared state's samples: rate-limit fallbacks and Redis calls, audit, cache, Redis up.
fn shared_state_samples(text: &mut String, gw: &Ops, traffic: &Traffic) {
    sample(
        text,
        "gatehouse_rate_limit_fallbacks_total",
        "counter",
        "Rate-limit checks answered locally because Redis failed.",
        traffic.limiter.fallbacks(),
    );
    sample(
        text,
        "gatehouse_rate_limit_redis_calls_total",
        "counter",
        "Calls made to Redis for rate limits (a lease of cells counts once).",
        traffic.limiter.redis_calls(),
    );
    sample(
        text,
        "gatehouse_audit_write_failures_total",
        "counter",
        "Audit records that could not be written (the requests they describe answered anyway).",
        gw.audit.failures(),
    );
    sample(
        text,
        "gatehouse_cache_bytes",
        "gauge",
        "Bytes held by the response cache.",
        traffic.cache.weight(),
    );
    if let Some(redis) = &gw.redis {
        sample(
            text,
            "gatehouse_redis_up",
            "gauge",
            "Whether shared state goes to Redis now (1) or this replica keeps it alone (0).",
            u64::from(redis.is_up()),
        );
    }
}

/// The trace export's samples (spans exported, dropped, failed) and the certificate's expiry.
fn export_and_tls_samples(text: &mut String, gw: &Ops) {
    let traces = gw.tracing.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    sample(
        text,
        "gatehouse_trace_spans_exported_total",
        "counter",
        "Finished spans the OTLP collector accepted.",
        load(&traces.exported),
    );
    sample(
        text,
        "gatehouse_trace_spans_dropped_total",
        "counter",
        "Finished spans dropped because the export queue was full (a slow or absent collector).",
        load(&traces.dropped),
    );
    sample(
        text,
        "gatehouse_trace_spans_failed_total",
        "counter",
        "Finished spans whose export the collector refused or that timed out.",
        load(&traces.failed),
    );
    if let Some(tls) = &gw.tls {
        sample(
            text,
            "gatehouse_tls_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the serving TLS certificate expires (Unix seconds).",
            u64::try_from(tls.expires_at()).unwrap_or(0),
        );
    }
}

/// `GET /metrics`: Prometheus text format. Needs the configured bearer
/// token when `metrics.bearer_token` is set.
pub async fn endpoint(
    req: HttpRequest,
    gw: web::Data<Ops>,
    traffic: web::Data<Traffic>,
) -> HttpResponse {
    if let Some(token) = &gw.metrics_token
        && !has_metrics_token(&req, token)
    {
        return Problem::unauthorized("the metrics token is missing or wrong").to_response();
    }
    let mut text = match gw.metrics.encode() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            return Problem::internal().to_response();
        }
    };
    target_samples(&mut text, &gw.live.load());
    shared_state_samples(&mut text, &gw, &traffic);
    export_and_tls_samples(&mut text, &gw);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// One unlabelled sample with its HELP and TYPE lines.
fn sample(text: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        text,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// `GET /stats` body.
#[derive(Debug, Serialize)]
struct StatsView {
    since: chrono::DateTime<chrono::Utc>,
    routes: BTreeMap<String, RouteStatsView>,
}

/// `GET /stats` (admin): request counts and latency per route since start.
#[utoipa::path(get, path = "/stats", summary = "Request counts and latency per route", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Per route: request counts (success/error) and latency average, p95 and p99 in ms", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stats(_: AdminBearer, gw: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok().json(StatsView {
        since: gw.metrics.since,
        routes: gw.metrics.stats(),
    })
}

/// Readiness body: each upstream's state.
#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    upstreams: BTreeMap<String, &'static str>,
    rate_limits: &'static str,
}

/// `GET /readyz`: ready when the configuration is loaded and every upstream
/// has a target in rotation (by the health checks and passive ejection).
pub async fn readyz(gw: web::Data<Traffic>) -> HttpResponse {
    let live = gw.live.load();
    let states: BTreeMap<String, &'static str> = live
        .upstreams
        .iter()
        .map(|(n, u)| (n.clone(), if u.has_available() { "up" } else { "down" }))
        .collect();
    let down: Vec<&str> = states
        .iter()
        .filter(|(_, s)| **s == "down")
        .map(|(n, _)| n.as_str())
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(Readiness {
            status: "ok",
            upstreams: states,
            rate_limits: gw.limiter.backend().name(),
        })
    } else {
        let mut res =
            Problem::service_unavailable(format!("no healthy target for: {}", down.join(", ")))
                .to_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        res
    }
}
