//! Distributed traces: W3C Trace Context in and out, one OpenTelemetry
//! tracer per service, spans for what a request goes through, and OTLP
//! export (HTTP/protobuf or gRPC) that is off until an endpoint is set.
//!
//! Each service holds its own [`Tracing`] (its own provider, so its spans
//! carry its own `service.name` even when several services share a process,
//! as under `cargo run`). The request middleware
//! (`request_context` in the sibling `telemetry`) starts the service's server span,
//! a child of the incoming `traceparent` when the policy trusts it, and puts
//! it, with the tracer, in the OpenTelemetry context of everything the
//! request runs; [`child`] and [`in_child`] open spans under it,
//! [`inject`] writes the `traceparent` of the current span into a call's
//! headers, and the database hook ([`record_query`]) adds a span per query.
//!
//! Sampling is decided once per service and request, at the server span:
//! a span that is not sampled has no children (they could not be exported
//! anyway), but its ids are real, so `traceparent`, logs and problem bodies
//! still carry a trace id that joins the services' logs. Without an export
//! endpoint nothing is sampled: that costs two random ids per request.
//!
//! Export never holds a request: finished spans go to a bounded queue that
//! the SDK's own thread drains; past the bound they are dropped and counted
//! ([`ExportStats`]), and the exporter's time-out bounds each batch.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanRef, Status, TraceContextExt, TraceFlags, Tracer as _,
    TracerProvider as _,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Digest;

/// What callers need to describe spans, without a dependency of their own.
pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind;

/// The `tracing` section of every service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// Where finished spans go; nowhere unless `export.endpoint` is set.
    pub export: ExportSettings,
    /// The share of new traces that are recorded and exported, 0 to 1.
    pub sampling_ratio: f64,
    /// Follow the sampled flag of a continued `traceparent` (the caller's
    /// decision) instead of deciding by `sampling_ratio` again.
    pub parent_based: bool,
    /// What to do with a `traceparent` a client sends (the gateway's edge;
    /// the services behind it always continue the gateway's).
    pub incoming: IncomingTrace,
    /// Whether spans carry `user.id`, and how.
    pub user_id: UserIdInSpans,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            export: ExportSettings::default(),
            sampling_ratio: 1.0,
            parent_based: true,
            incoming: IncomingTrace::Continue,
            user_id: UserIdInSpans::Hashed,
        }
    }
}

/// What an incoming `traceparent` is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomingTrace {
    /// Continue it: the span is its child, its sampled flag counts.
    Continue,
    /// Continue it only from a trusted proxy (the gateway's
    /// `trusted_proxies`); from anyone else start a new trace that links to
    /// it.
    Trusted,
    /// Always start a new trace (linked to the incoming one).
    Restart,
}

/// `user.id` in spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserIdInSpans {
    /// The first 16 bytes of SHA-256 of the id, in hex: the same user's
    /// spans can be found, the id itself is not in the trace backend.
    Hashed,
    /// No `user.id` at all.
    Omit,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// `tracing.export`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// The collector: `http://collector:4318` (HTTP/protobuf; `/v1/traces`
    /// is added unless a path is given) or `http://collector:4317` (gRPC);
    /// `https://` verifies the collector's certificate against the public
    /// roots. Unset or empty: no export.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Extra headers (gRPC metadata) on every export, e.g. an API key.
    pub headers: BTreeMap<String, SecretString>,
    /// Time a batch may take before it is given up (and counted failed).
    pub timeout_ms: u64,
    /// Finished spans waiting for export; beyond it they are dropped.
    pub max_queue_spans: usize,
    /// Spans per export request.
    pub max_batch_spans: usize,
    /// How long a batch may wait to fill.
    pub batch_delay_ms: u64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            headers: BTreeMap::new(),
            timeout_ms: 5_000,
            max_queue_spans: 2_048,
            max_batch_spans: 512,
            batch_delay_ms: 1_000,
        }
    }
}

impl ExportSettings {
    fn endpoint(&self) -> Option<&str> {
        self.endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }
}

impl TracingSettings {
    /// Refuse what cannot work, at startup.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(format!(
                "tracing.sampling_ratio must be between 0 and 1, not {}",
                self.sampling_ratio
            ));
        }
        let e = &self.export;
        if let Some(endpoint) = e.endpoint() {
            let url = url::Url::parse(endpoint)
                .map_err(|err| format!("tracing.export.endpoint `{endpoint}`: {err}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "tracing.export.endpoint `{endpoint}`: http:// or https:// only"
                ));
            }
        }
        if e.timeout_ms == 0 || e.max_queue_spans == 0 || e.max_batch_spans == 0 {
            return Err(
                "tracing.export: timeout_ms, max_queue_spans and max_batch_spans must be above 0"
                    .into(),
            );
        }
        for name in e.headers.keys() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "tracing.export.headers: `{name}` is no header name"
                ));
            }
        }
        Ok(())
    }
}

/// What became of finished spans (the gateway's `/metrics`).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Sent, and the collector took them.
    pub exported: AtomicU64,
    /// Dropped because the queue was full (a slow or absent collector).
    pub dropped: AtomicU64,
    /// Sent and refused, or not sent in time.
    pub failed: AtomicU64,
    /// In the queue or being sent now.
    queued: AtomicUsize,
}

/// One service's tracer and policies. Cheap to clone.
#[derive(Clone)]
pub struct Tracing(Arc<Inner>);

struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    incoming: IncomingTrace,
    trusted: Vec<IpNet>,
    user_id: UserIdInSpans,
    stats: Arc<ExportStats>,
    exporting: bool,
    // Dropped after the provider (field order), which flushes through it.
    _grpc: Option<GrpcRuntime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.exporting {
            let _ = self.provider.shutdown();
        }
    }
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("exporting", &self.0.exporting)
            .field("incoming", &self.0.incoming)
            .finish()
    }
}

impl Tracing {
    /// Ids and propagation, no export (tests, tools).
    pub fn disabled(service: &'static str) -> Self {
        // Cannot fail: no exporter is built.
        Self::build(service, &TracingSettings::default(), Vec::new(), None)
    }

    /// The tracer of `service` as `settings` say; `trusted` are the proxies
    /// whose `traceparent` counts under [`IncomingTrace::Trusted`].
    pub fn new(
        service: &'static str,
        settings: &TracingSettings,
        trusted: Vec<IpNet>,
    ) -> anyhow::Result<Self> {
        settings.check().map_err(anyhow::Error::msg)?;
        let exporter = match settings.export.endpoint() {
            Some(endpoint) => Some(anyhow::Context::with_context(
                Exporter::build(endpoint, &settings.export),
                || format!("the OTLP exporter to {endpoint}"),
            )?),
            None => None,
        };
        Ok(Self::build(service, settings, trusted, exporter))
    }

    fn build(
        service: &'static str,
        settings: &TracingSettings,
        trusted: Vec<IpNet>,
        exporter: Option<Exporter>,
    ) -> Self {
        let stats = Arc::new(ExportStats::default());
        let exporting = exporter.is_some();
        let sampler = if !exporting {
            // Nothing would be exported: record nothing, whatever a
            // caller's flag says.
            Sampler::AlwaysOff
        } else if settings.parent_based {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            )))
        } else {
            Sampler::TraceIdRatioBased(settings.sampling_ratio)
        };
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(service)
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_resource(resource);
        let mut grpc = None;
        if let Some(exporter) = exporter {
            let e = &settings.export;
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(e.max_queue_spans)
                .with_max_export_batch_size(e.max_batch_spans.min(e.max_queue_spans))
                .with_scheduled_delay(Duration::from_millis(e.batch_delay_ms))
                .build();
            grpc = exporter.runtime;
            let counted = Counted {
                inner: exporter.otlp,
                stats: stats.clone(),
            };
            builder = builder.with_span_processor(Bounded {
                inner: BatchSpanProcessor::new(counted, config),
                stats: stats.clone(),
                cap: e.max_queue_spans,
            });
        }
        let provider = builder.build();
        let tracer = provider.tracer(service);
        Self(Arc::new(Inner {
            tracer,
            provider,
            incoming: settings.incoming,
            trusted,
            user_id: settings.user_id,
            stats,
            exporting,
            _grpc: grpc,
        }))
    }

    /// Whether spans leave the process.
    pub fn exporting(&self) -> bool {
        self.0.exporting
    }

    /// Counters of the export queue.
    pub fn stats(&self) -> &ExportStats {
        &self.0.stats
    }

    /// Send what is queued now (waits; for tests and shutdown, off the
    /// reactor).
    pub fn flush(&self) {
        let _ = self.0.provider.force_flush();
    }

    /// The parent of this service's span for a request with `headers` from
    /// `peer`, and the incoming context to link to when it is not trusted.
    fn parent(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> (Context, Option<SpanContext>) {
        if !headers.contains_key(TRACEPARENT) {
            return (Context::new(), None);
        }
        let incoming = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let sc = incoming.span().span_context().clone();
        if !sc.is_valid() {
            return (Context::new(), None);
        }
        let trusted = match self.0.incoming {
            IncomingTrace::Continue => true,
            IncomingTrace::Restart => false,
            IncomingTrace::Trusted => {
                peer.is_some_and(|ip| self.0.trusted.iter().any(|n| n.contains(&ip)))
            }
        };
        if trusted {
            (incoming, None)
        } else {
            (Context::new(), Some(sc))
        }
    }

    /// Start this service's server span for a request; the context to run
    /// the request in.
    /// `attributes` are only made when the span is recorded (the samplers
    /// here decide by trace id and flags alone).
    pub(crate) fn server_span(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        method: &str,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Context {
        let (parent, link) = self.parent(headers, peer);
        let mut builder = self
            .0
            .tracer
            .span_builder(span_name(method))
            .with_kind(SpanKind::Server);
        if let Some(sc) = link {
            builder = builder.with_links(vec![Link::with_context(sc)]);
        }
        let mut span = builder.start_with_context(&self.0.tracer, &parent);
        if !span.is_recording() {
            return parent.with_span(span);
        }
        span.set_attributes(attributes());
        parent.with_span(span).with_value(Active(self.clone()))
    }

    /// `user.id` as this service puts it in spans.
    fn user_attribute(&self, id: &str) -> Option<KeyValue> {
        match self.0.user_id {
            UserIdInSpans::Omit => None,
            UserIdInSpans::Hashed => {
                let digest = sha2::Sha256::digest(id.as_bytes());
                let mut hex = String::with_capacity(32);
                for b in &digest[..16] {
                    hex.push_str(&format!("{b:02x}"));
                }
                Some(KeyValue::new("user.id", hex))
            }
        }
    }
}

/// A server span's first name (the route is added once it is known),
/// without an allocation for the usual methods.
fn span_name(method: &str) -> std::borrow::Cow<'static, str> {
    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    match METHODS.iter().find(|m| **m == method) {
        Some(m) => std::borrow::Cow::Borrowed(m),
        None => std::borrow::Cow::Borrowed("HTTP"),
    }
}

/// The service's tracing in the request's context (only a recorded span's:
/// nothing reads it for another).
#[derive(Clone)]
struct Active(Tracing);

/// Whether `span` is recorded. The samplers here decide by trace id and
/// flags alone, so a recorded span is exactly a sampled one; reading the
/// flag skips the span's lock that `SpanRef::is_recording` takes (called
/// several times per request).
pub(crate) fn recorded(span: &SpanRef<'_>) -> bool {
    span.span_context().is_sampled()
}

/// The ids of the current span, in hex, when there is one.
pub fn current_ids() -> Option<(String, String)> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Set attributes on the current span (nothing when it is not recorded).
pub fn annotate(attributes: impl FnOnce() -> Vec<KeyValue>) {
    let cx = Context::current();
    let span = cx.span();
    if recorded(&span) {
        span.set_attributes(attributes());
    }
}

/// Name the current server span after the route that took the request
/// (`GET /api/orders`), with `http.route`.
pub fn name_route(method: &str, route: &str) {
    let cx = Context::current();
    let span = cx.span();
    if recorded(&span) {
        span.update_name(format!("{method} {route}"));
        span.set_attribute(KeyValue::new("http.route", route.to_owned()));
    }
}

/// Put `user.id` (as the service's policy says) on the current span.
pub fn record_user(id: impl std::fmt::Display) {
    let cx = Context::current();
    let span = cx.span();
    if recorded(&span)
        && let Some(active) = cx.get::<Active>()
        && let Some(kv) = active.0.user_attribute(&id.to_string())
    {
        span.set_attribute(kv);
    }
}

/// A span under the current one, open until [`Child::end`] (or dropped).
pub struct Child {
    cx: Option<Context>,
}

impl Child {
    /// The context to run the span's work in (the current one when no span
    /// was opened).
    pub fn context(&self) -> Context {
        self.cx.clone().unwrap_or_else(Context::current)
    }

    pub fn set(&self, kv: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(kv);
        }
    }

    /// Mark the span failed with `why` (an `error.type`).
    pub fn fail(&self, why: impl Into<String>) {
        if let Some(cx) = &self.cx {
            let why = why.into();
            cx.span()
                .set_attribute(KeyValue::new("error.type", why.clone()));
            cx.span().set_status(Status::error(why));
        }
    }

    pub fn end(self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Ending twice is a no-op; a span dropped early (a cancelled
        // request) still ends.
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// Open a span `name` under the current one when that is recorded
/// (`attributes` are only made then).
pub fn child(name: &str, kind: SpanKind, attributes: impl FnOnce() -> Vec<KeyValue>) -> Child {
    let cx = Context::current();
    if !recorded(&cx.span()) {
        return Child { cx: None };
    }
    let Some(active) = cx.get::<Active>() else {
        return Child { cx: None };
    };
    let tracer = &active.0.0.tracer;
    let span = tracer
        .span_builder(name.to_owned())
        .with_kind(kind)
        .with_attributes(attributes())
        .start_with_context(tracer, &cx);
    Child {
        cx: Some(cx.with_span(span)),
    }
}

/// Run `work` in an internal span `name` under the current one.
///
/// A plain function returning a combinator, not an `async fn`: an async
/// wrapper keeps its argument `work` beside the future it awaits, so every
/// such layer doubled the size of the request's future (the proxy's was
/// ~12 KiB, copied whole when actix boxed it; see bench/README.md).
pub fn in_child<F: Future>(name: &'static str, work: F) -> impl Future<Output = F::Output> {
    use futures_util::FutureExt as _;
    let span = child(name, SpanKind::Internal, Vec::new);
    let work = match &span.cx {
        Some(cx) => futures_util::future::Either::Left(work.with_context(cx.clone())),
        None => futures_util::future::Either::Right(work),
    };
    work.map(move |out| {
        span.end();
        out
    })
}

/// Run `work` in `cx` (a [`Child::context`]).
pub fn within<F: Future>(cx: Context, work: F) -> impl Future<Output = F::Output> {
    work.with_context(cx)
}

/// [`inject`] the current span.
pub fn inject_current(headers: &mut HeaderMap) {
    inject(&Context::current(), headers);
}

/// Write the `traceparent` (and `tracestate`) of `cx` into a call's
/// headers, replacing whatever was there (a client's).
///
/// The header is written here rather than by the SDK's propagator (which
/// formats it through `format!` and parses the name on every call: about
/// 4,000 instructions of a proxied request's 100,000); the test
/// `injected_headers_are_what_the_sdk_propagator_writes` holds the two to
/// the same bytes, and parsing stays the SDK's.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    headers.insert(TRACEPARENT, traceparent(sc));
    let state = sc.trace_state().header();
    if !state.is_empty()
        && let Ok(v) = HeaderValue::from_str(&state)
    {
        headers.insert(TRACESTATE, v);
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-<trace id>-<span id>-<flags>` (W3C Trace Context, version 00; only
/// the sampled flag is carried, as the SDK does).
fn traceparent(sc: &SpanContext) -> HeaderValue {
    fn hex(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
    }
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&mut out[3..35], &sc.trace_id().to_bytes());
    hex(&mut out[36..52], &sc.span_id().to_bytes());
    hex(
        &mut out[53..55],
        &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The database hook: a client span per query under the current span,
/// timed by sea-orm (`db.system.name`, `db.operation.name`, the statement
/// with its placeholders; never the values).
pub fn record_query(system: &'static str, info: &sea_orm::metric::Info<'_>) {
    let cx = Context::current();
    if !recorded(&cx.span()) {
        return;
    }
    let Some(active) = cx.get::<Active>() else {
        return;
    };
    let end = SystemTime::now();
    let start = end.checked_sub(info.elapsed).unwrap_or(end);
    let sql = info.statement.sql.as_str();
    let operation = sql
        .split_whitespace()
        .next()
        .unwrap_or("query")
        .to_ascii_uppercase();
    let mut text = sql.to_owned();
    if text.len() > 2_000 {
        let mut cut = 2_000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let tracer = &active.0.0.tracer;
    let mut span = tracer
        .span_builder(format!("{operation} {system}"))
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes(vec![
            KeyValue::new("db.system.name", system),
            // The name before semantic conventions 1.26, which many
            // backends still group by.
            KeyValue::new("db.system", system),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.query.text", text),
        ])
        .start_with_context(tracer, &cx);
    if info.failed {
        span.set_attribute(KeyValue::new("error.type", "query_failed"));
        span.set_status(Status::error("query failed"));
    }
    span.end_with_timestamp(end);
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all: Vec<&str> = self
            .0
            .get_all(key)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then_some(all)
    }
}

/// The OTLP exporter, and for gRPC the runtime tonic needs.
struct Exporter {
    otlp: opentelemetry_otlp::SpanExporter,
    runtime: Option<GrpcRuntime>,
}

impl Exporter {
    fn build(endpoint: &str, s: &ExportSettings) -> anyhow::Result<Self> {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
        crate::tls::install_crypto_provider();
        let timeout = Duration::from_millis(s.timeout_ms);
        match s.protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut url = url::Url::parse(endpoint)?;
                if url.path() == "/" || url.path().is_empty() {
                    url.set_path("/v1/traces");
                }
                let headers: HashMap<String, String> = s
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                    .collect();
                let otlp = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(url.as_str())
                    .with_timeout(timeout)
                    .with_headers(headers)
                    .build()?;
                Ok(Self {
                    otlp,
                    runtime: None,
                })
            }
            OtlpProtocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &s.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                        .map_err(|e| anyhow::anyhow!("metadata `{k}`: {e}"))?;
                    let value = v
                        .expose_secret()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("metadata `{k}`: {e}"))?;
                    metadata.insert(key, value);
                }
                let endpoint = endpoint.to_owned();
                let https = endpoint.starts_with("https://");
                let (otlp, runtime) = GrpcRuntime::start(move || {
                    let mut builder = opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .with_timeout(timeout)
                        .with_metadata(metadata);
                    if https {
                        builder = builder.with_tls_config(
                            tonic::transport::ClientTlsConfig::new().with_webpki_roots(),
                        );
                    }
                    Ok(builder.build()?)
                })?;
                Ok(Self {
                    otlp,
                    runtime: Some(runtime),
                })
            }
        }
    }
}

/// A thread running the Tokio runtime the gRPC exporter's connection lives
/// on (the SDK exports from a thread of its own, outside any runtime, and
/// actix's runtimes are per worker). Stops when dropped.
struct GrpcRuntime {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl GrpcRuntime {
    fn start<T: Send + 'static>(
        build: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<(T, Self)> {
        let (built_tx, built_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("otlp-grpc".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-grpc-io")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = built_tx.send(Err(anyhow::Error::from(e)));
                        return;
                    }
                };
                let built = {
                    let _in = rt.enter();
                    build()
                };
                let _ = built_tx.send(built);
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        // Startup only: the builder does not connect (the channel is lazy).
        let built = built_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the gRPC exporter's thread ended"))??;
        Ok((built, Self { stop: Some(stop) }))
    }
}

impl Drop for GrpcRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The exporter, counting what it sent and what failed, and freeing the
/// queue's places.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.stats.queued.fetch_sub(n, Ordering::AcqRel);
        let counter = if result.is_ok() {
            &self.stats.exported
        } else {
            &self.stats.failed
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a bound of our own, so a drop is counted: a
/// span past `cap` (waiting or being sent) is dropped at once.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    stats: Arc<ExportStats>,
    cap: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.queued.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    use opentelemetry::propagation::Injector;

    /// What the SDK's own propagator writes, for comparison.
    struct Written(Vec<(String, String)>);
    impl Injector for Written {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    #[test]
    fn injected_headers_are_what_the_sdk_propagator_writes() {
        use opentelemetry::trace::{SpanId, TraceId, TraceState};
        let state = TraceState::from_key_value([("vendor", "a1"), ("other", "b2")]).unwrap();
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::default()),
            (TraceFlags::default(), state.clone()),
            (TraceFlags::new(0xff), state),
        ] {
            let sc = SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                flags,
                true,
                state,
            );
            let cx = Context::new().with_remote_span_context(sc);
            let mut sdk = Written(Vec::new());
            TraceContextPropagator::new().inject_context(&cx, &mut sdk);
            let mut ours = headers(&[("traceparent", "client's"), ("tracestate", "client=1")]);
            inject(&cx, &mut ours);
            let ours: Vec<(String, String)> = ours
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            let mut sdk: Vec<(String, String)> =
                sdk.0.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            let mut sorted = ours.clone();
            sorted.sort();
            sdk.sort();
            assert_eq!(sorted, sdk);
            // And the SDK reads back the same context.
            let h: HashMap<String, String> = ours.into_iter().collect();
            let back = TraceContextPropagator::new().extract(&h);
            let back = back.span().span_context().clone();
            assert_eq!(back.trace_id(), cx.span().span_context().trace_id());
            assert_eq!(back.span_id(), cx.span().span_context().span_id());
            assert_eq!(back.is_sampled(), flags.is_sampled());
        }
        // No valid span: nothing is written, and the client's are gone.
        let mut h = headers(&[("traceparent", PARENT)]);
        inject(&Context::new(), &mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_a_broken_one_is_not() {
        let t = Tracing::disabled("test");
        let cx = t.server_span(&headers(&[("traceparent", PARENT)]), None, "GET", Vec::new);
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(sc.span_id().to_string(), "00f067aa0ba902b7");
        // Not exporting: not sampled, whatever the caller's flag.
        assert!(!sc.is_sampled());
        for broken in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let cx = t.server_span(&headers(&[("traceparent", broken)]), None, "GET", Vec::new);
            let sc = cx.span().span_context().clone();
            assert!(sc.is_valid());
            assert_ne!(
                sc.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{broken}"
            );
        }
    }

    #[test]
    fn an_untrusted_peer_starts_a_new_trace() {
        let settings = TracingSettings {
            incoming: IncomingTrace::Trusted,
            ..TracingSettings::default()
        };
        let t = Tracing::new("test", &settings, vec!["10.0.0.0/8".parse().unwrap()]).unwrap();
        let h = headers(&[("traceparent", PARENT)]);
        let from_proxy = t.server_span(&h, Some("10.1.2.3".parse().unwrap()), "GET", Vec::new);
        let from_client = t.server_span(&h, Some("192.0.2.1".parse().unwrap()), "GET", Vec::new);
        let id = |cx: &Context| cx.span().span_context().trace_id().to_string();
        assert_eq!(id(&from_proxy), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(id(&from_client), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn injection_replaces_what_the_client_sent() {
        let t = Tracing::disabled("test");
        let cx = t.server_span(&headers(&[]), None, "GET", Vec::new);
        let mut h = headers(&[("traceparent", PARENT), ("tracestate", "evil=1")]);
        inject(&cx, &mut h);
        let tp = h.get("traceparent").unwrap().to_str().unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            tp,
            format!("00-{}-{}-00", sc.trace_id(), sc.span_id()),
            "W3C version 00, this span, not sampled"
        );
        assert!(!h.contains_key("tracestate"));
    }

    #[test]
    fn settings_are_checked() {
        let mut s = TracingSettings {
            sampling_ratio: 1.5,
            ..TracingSettings::default()
        };
        assert!(s.check().is_err());
        s.sampling_ratio = 0.01;
        s.export.endpoint = Some("ftp://x".into());
        assert!(s.check().is_err());
        s.export.endpoint = Some("http://127.0.0.1:4318".into());
        assert!(s.check().is_ok());
        s.export.max_queue_spans = 0;
        assert!(s.check().is_err());
    }

    #[test]
    fn user_ids_are_hashed_or_left_out() {
        let t = Tracing::disabled("test");
        let kv = t
            .user_attribute("0b6c3c8e-8f0e-4d4a-9f00-000000000001")
            .unwrap();
        assert_eq!(kv.value.as_str().len(), 32);
        assert!(!kv.value.as_str().contains("0b6c3c8e"));
        let omit = TracingSettings {
            user_id: UserIdInSpans::Omit,
            ..TracingSettings::default()
        };
        let t = Tracing::new("test", &omit, vec![]).unwrap();
        assert!(t.user_attribute("x").is_none());
    }
}
