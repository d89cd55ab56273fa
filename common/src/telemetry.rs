//! Logging setup and the per-request middleware.
//!
//! `LOG_FORMAT=json` switches to JSON lines; `RUST_LOG` sets the filter
//! (default `info`). Every request is logged exactly once, when it ends, with
//! method, path (never the query string: it may carry secrets), status,
//! latency and request id. Bodies and headers are never logged. A JSON line
//! written while a request is handled carries its `request_id`, and the
//! `trace_id` and `span_id` of the span it was written in (see
//! [`crate::traces`]).

use std::time::Instant;

use actix_web::Error;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use futures_util::TryFutureExt as _;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// Header carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

tokio::task_local! {
    /// The request's id as a header value: cloning it is a reference
    /// count, and it is written as is into the response and into every
    /// call made for the request.
    static REQUEST_ID: HeaderValue;
}

/// The request id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().map(str::to_owned).ok())
        .ok()
        .flatten()
}

/// The request id of the request being handled, as a header value.
pub fn request_id_header() -> Option<HeaderValue> {
    REQUEST_ID.try_with(HeaderValue::clone).ok()
}

/// The request's id: the client's `x-request-id` when it is sane (see
/// [`sane_request_id`]), else a new UUID v4 (written without the
/// formatting machinery).
fn request_id_of(headers: &actix_web::http::header::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(REQUEST_ID_NAME)
        && v.to_str().is_ok_and(sane_request_id)
    {
        return v.clone();
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

/// What actix-http logs at ERROR when a *client* sent something broken (a
/// request it cannot parse, a head too large, a body that ends wrong): the
/// client got its 400; this is no server error, so it is logged at WARN.
const CLIENT_FAULTS: [&str; 4] = [
    "stream error: request parse error",
    "MAX_BUFFER_SIZE unprocessed data reached",
    "Internal server error: unexpected eof",
    "Internal server error: unexpected payload chunk",
];

/// Whether an event reports a client's broken request.
pub fn is_client_fault(target: &str, level: &tracing::Level, message: &str) -> bool {
    *level == tracing::Level::ERROR
        && target.starts_with("actix_http")
        && CLIENT_FAULTS.iter().any(|m| message.starts_with(m))
}

/// The `message` field of an event.
#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}

fn client_fault(event: &tracing::Event<'_>) -> Option<String> {
    let meta = event.metadata();
    if *meta.level() != tracing::Level::ERROR || !meta.target().starts_with("actix_http") {
        return None;
    }
    let mut m = Message::default();
    event.record(&mut m);
    is_client_fault(meta.target(), meta.level(), &m.0).then_some(m.0)
}

/// Keeps actix's client-fault errors out of the output...
struct WithoutClientFaults;

impl<S> tracing_subscriber::layer::Filter<S> for WithoutClientFaults {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        client_fault(event).is_none()
    }
}

/// ... and says them again at WARN.
struct ClientFaultsAsWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientFaultsAsWarnings {
    /// This layer widens nothing: it only sees what the global filter lets
    /// through. Without a hint of its own, a layer over per-layer filters
    /// makes the whole subscriber's hint "unknown", so every `trace!` in
    /// actix-http and awc (about twenty per proxied request) would be
    /// checked against the filter at run time instead of being skipped by
    /// the level comparison.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::OFF)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(message) = client_fault(event) {
            tracing::warn!(target: "actix_http", reason = %message, "a client sent a broken request");
        }
    }
}

/// One JSON object per event: `timestamp`, `level`, the event's `fields`,
/// the innermost span's (`span`, with its `name`), and, inside a request,
/// `request_id`, `trace_id` and `span_id` at the top, where log pipelines
/// look for them to join logs and traces.
struct JsonLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::{Map, Value};
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        let mut fields = JsonVisitor(Map::new());
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.0));
        if let Some(span) = ctx.lookup_current() {
            let mut object = span
                .extensions()
                .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                .unwrap_or_default();
            object.insert("name".into(), span.name().into());
            line.insert("span".into(), Value::Object(object));
        }
        if let Some(id) = current_request_id() {
            line.insert("request_id".into(), id.into());
        }
        if let Some((trace_id, span_id)) = crate::traces::current_ids() {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// Install the global subscriber. Safe to call more than once (tests).
pub fn init() {
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    // The warning layer comes last: it says the fault again only once the
    // output has dropped the original (a nested event in between would
    // upset the per-layer filtering of the one being written).
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(JsonLine)
                    .with_filter(WithoutClientFaults),
            )
            .with(ClientFaultsAsWarnings)
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_filter(WithoutClientFaults),
            )
            .with(ClientFaultsAsWarnings)
            .try_init()
    };
    // A second init (several apps in one test process) is not an error.
    let _ = result;
}

/// A client-sent request id is kept only when it is short and plain, so it
/// cannot inject anything into logs or headers.
pub fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A way past the App for some requests, taken inside the request context
/// (request id, server span, log line) and before everything else. The
/// gateway sends its proxied paths this way: each layer it skips (error
/// handlers, the router, a scope, middleware of its own endpoints) boxed
/// the request's future once more. A service without one passes `None`.
pub trait Shortcut: Send + Sync {
    /// The future of the request's answer, or the request back for the App.
    #[allow(clippy::type_complexity)]
    fn take(
        &self,
        req: ServiceRequest,
    ) -> Result<
        futures_util::future::LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, Error>>,
        ServiceRequest,
    >;
}

/// Middleware: assigns the request id, starts the service's server span
/// (continuing the caller's trace as the policy allows), runs the rest of
/// the chain inside it, the id's task-local scope and a log span, echoes
/// the id in the response, and logs the request once.
pub async fn request_context<B: MessageBody + 'static>(
    tracing: crate::traces::Tracing,
    shortcut: Option<std::sync::Arc<dyn Shortcut>>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, BoxBody>>, Error> {
    use opentelemetry::KeyValue;
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::TraceContextExt as _;
    let start = Instant::now();
    let request_id = request_id_of(req.headers());
    // Sane ids and UUIDs are ASCII.
    let id_text = request_id.to_str().unwrap_or_default();
    let method = req.method().clone();
    // For the request's log line, when it is written at all.
    let path = tracing::enabled!(tracing::Level::INFO).then(|| req.path().to_owned());
    let peer = req.peer_addr().map(|a| a.ip());
    let cx = tracing.server_span(req.headers(), peer, method.as_str(), || {
        let mut attributes = server_attributes(&req);
        attributes.push(KeyValue::new("gatehouse.request_id", id_text.to_owned()));
        attributes
    });
    let span = tracing::info_span!("request", request_id = %id_text);
    // The shortcut's answer, or the App's.
    let taken = match shortcut {
        Some(shortcut) => shortcut.take(req),
        None => Err(req),
    };
    let answer = match taken {
        Ok(answer) => {
            futures_util::future::Either::Left(answer.map_ok(ServiceResponse::map_into_right_body))
        }
        Err(req) => futures_util::future::Either::Right(
            next.call(req).map_ok(ServiceResponse::map_into_left_body),
        ),
    };
    let result = REQUEST_ID
        .scope(
            request_id.clone(),
            answer.instrument(span.clone()).with_context(cx.clone()),
        )
        .await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let _enter = span.enter();
    let _cx = cx.clone().attach();
    let otel = cx.span();
    let (status, res) = match result {
        Ok(mut res) => {
            res.headers_mut()
                .insert(REQUEST_ID_NAME, request_id.clone());
            if crate::traces::recorded(&otel)
                && let Some(pattern) = res.request().match_pattern()
            {
                crate::traces::name_route(method.as_str(), &pattern);
            }
            (res.status(), Ok(res))
        }
        Err(err) => (err.as_response_error().status_code(), Err(err)),
    };
    let code = status.as_u16();
    tracing::info!(%method, path = %path.as_deref().unwrap_or_default(), status = code, latency_ms, "request");
    if crate::traces::recorded(&otel) {
        otel.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
        if status.is_server_error() {
            otel.set_attribute(KeyValue::new("error.type", code.to_string()));
            otel.set_status(opentelemetry::trace::Status::error(code.to_string()));
        }
    }
    otel.end();
    res
}

/// The server span's attributes known before the request runs (the HTTP
/// semantic conventions; never the query string, headers or body).
fn server_attributes(req: &ServiceRequest) -> Vec<opentelemetry::KeyValue> {
    use opentelemetry::KeyValue;
    let info = req.connection_info();
    let mut attributes = vec![
        KeyValue::new("http.request.method", req.method().as_str().to_owned()),
        KeyValue::new("url.path", req.path().to_owned()),
        KeyValue::new("url.scheme", info.scheme().to_owned()),
        KeyValue::new(
            "network.protocol.version",
            match req.version() {
                actix_web::http::Version::HTTP_2 => "2",
                actix_web::http::Version::HTTP_10 => "1.0",
                _ => "1.1",
            },
        ),
    ];
    let host = info.host();
    let (address, port) = match host.rsplit_once(':') {
        Some((a, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (a, p.parse::<i64>().ok()),
        _ => (host, None),
    };
    attributes.push(KeyValue::new("server.address", address.to_owned()));
    if let Some(port) = port {
        attributes.push(KeyValue::new("server.port", port));
    }
    if let Some(peer) = req.peer_addr() {
        attributes.push(KeyValue::new("network.peer.address", peer.ip().to_string()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_broken_request_is_no_server_error() {
        let e = &tracing::Level::ERROR;
        assert!(is_client_fault(
            "actix_http::h1::dispatcher",
            e,
            "stream error: request parse error: invalid Header provided"
        ));
        assert!(!is_client_fault(
            "actix_http::h1::dispatcher",
            e,
            "Response payload stream error: connection reset"
        ));
        assert!(!is_client_fault(
            "users",
            e,
            "stream error: request parse error"
        ));
        assert!(!is_client_fault(
            "actix_http::h1::dispatcher",
            &tracing::Level::WARN,
            "stream error: request parse error"
        ));
    }

    #[test]
    fn request_ids_are_filtered() {
        assert!(sane_request_id("abc-123_x.y:z"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("a\r\nb"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }
}

#[cfg(test)]
mod layer_tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_request_and_trace_ids() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(super::JsonLine)
                .with_writer(move || writer.clone()),
        );
        let tracing = crate::traces::Tracing::disabled("test");
        let mut headers = actix_web::http::header::HeaderMap::new();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("traceparent"),
            actix_web::http::header::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = tracing.server_span(&headers, None, "GET", Vec::new);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(outside = true, "before any request");
            let _attached = cx.attach();
            super::REQUEST_ID.sync_scope(
                actix_web::http::header::HeaderValue::from_static("req-1"),
                || {
                    let span = tracing::info_span!("request", request_id = "req-1");
                    let _in = span.enter();
                    tracing::info!(status = 200u64, latency_ms = 1.5, "request");
                },
            );
        });
        let out = String::from_utf8(buf.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].get("trace_id").is_none(), "{out}");
        assert_eq!(lines[0]["fields"]["message"], "before any request");
        let line = &lines[1];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let span_id = line["span_id"].as_str().unwrap_or_default();
        assert_eq!(span_id.len(), 16);
        assert_ne!(
            span_id, "00f067aa0ba902b7",
            "this service's span, not the caller's"
        );
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["fields"]["latency_ms"], 1.5);
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["request_id"], "req-1");
        assert!(
            line["timestamp"]
                .as_str()
                .unwrap_or_default()
                .ends_with('Z')
        );
    }

    #[test]
    fn client_faults_leave_the_output_and_come_back_as_warnings() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("warn"))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(move || writer.clone())
                    .with_filter(super::WithoutClientFaults),
            )
            .with(super::ClientFaultsAsWarnings);
        // The global filter's level bounds the whole subscriber, so events
        // above it are skipped by a level comparison, not a filter call.
        assert_eq!(
            tracing::Subscriber::max_level_hint(&subscriber),
            Some(tracing::level_filters::LevelFilter::WARN)
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: request parse error: {}", "bad header");
            tracing::error!(target: "actix_http::h1::dispatcher", "Response payload stream error: {}", "reset");
        });
        let out = String::from_utf8(buf.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert!(!out.contains("request parse error"), "{out}");
        assert!(
            out.contains("Response payload stream error"),
            "real errors stay: {out}"
        );
    }
}
