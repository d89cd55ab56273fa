//! Logging setup and the per-request middleware.
//!
//! `LOG_FORMAT=json` switches to JSON lines; `RUST_LOG` sets the filter
//! (default `info`). Every request is logged exactly once, when it ends, with
//! method, path (never the query string: it may carry secrets), status,
//! latency and request id. Bodies and headers are never logged.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// Header carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// The request id, as stored in the request's extensions by [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

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
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(message) = client_fault(event) {
            tracing::warn!(target: "actix_http", reason = %message, "a client sent a broken request");
        }
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
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false)
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

/// Middleware: assigns the request id, runs the rest of the chain inside a
/// span and the id's task-local scope, echoes the id in the response, and logs
/// the request once.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %request_id);
    let result = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let _enter = span.enter();
    match result {
        Ok(mut res) => {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                res.headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
            }
            let status = res.status().as_u16();
            tracing::info!(%method, %path, status, latency_ms, "request");
            Ok(res)
        }
        Err(err) => {
            let status = err.as_response_error().status_code().as_u16();
            tracing::info!(%method, %path, status, latency_ms, "request");
            Err(err)
        }
    }
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
