//! The one way the gateway calls an upstream: proxied requests, composed
//! parts, its own calls to the users service, health probes and the OpenAPI
//! fetch all go through [`send`].
//!
//! A [`Call`] says what to send and where ([`Peer`]: a target chosen by the
//! upstream's balancing, or a fixed one), its time budget and its
//! [`RetryPolicy`]. `send` picks the target, builds the headers for each
//! attempt, sends, keeps the passive health and the attempt metrics, and
//! either answers or fails with an [`UpstreamError`] that knows where it
//! came from ([`Source`]) and whether sending again was safe. That error is
//! turned into problem+json in one place ([`UpstreamError::to_response`]).
//!
//! Retries are decided here and nowhere else: see [`RetryPolicy::allows`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes};
use awc::error::SendRequestError;
use common::Problem;
use common::traces::{self, KeyValue, SpanKind};
use futures_util::Stream;

use super::pool::{Lease, Target, Upstream};
use crate::ops::metrics::Metrics;

/// Where a failed call went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's own request body: over the limit, or cut short. The
    /// upstream did nothing wrong.
    Client(ClientFault),
    /// No target of the upstream is in rotation; nothing was sent.
    NoTarget,
    /// The target had no room (`max_connections` requests in flight) for
    /// the whole budget; nothing was sent.
    Saturated,
    /// The connection could not be opened (refused, connect timeout, name
    /// not resolved): the request never left.
    Connect,
    /// No answer head within the call's budget; the request may have
    /// reached the upstream and be running there.
    Timeout,
    /// The connection broke or the answer was not HTTP; the request may
    /// have reached the upstream.
    BrokenAnswer,
    /// The gateway's own failure (a proof could not be minted).
    Internal,
}

impl Source {
    /// The `error.type` of an attempt that ended so.
    pub fn name(self) -> &'static str {
        match self {
            Source::Client(_) => "client_body",
            Source::NoTarget => "no_target",
            Source::Saturated => "saturated",
            Source::Connect => "connect",
            Source::Timeout => "timeout",
            Source::BrokenAnswer => "broken_answer",
            Source::Internal => "internal",
        }
    }
}

/// What was wrong with the client's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// More than this many bytes.
    TooLarge(u64),
    /// The client stopped sending before the body was complete.
    BodyBroken,
}

/// Why a call gave no answer.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub source: Source,
    /// The upstream's name.
    pub upstream: String,
    /// Whether the policy would have allowed one more attempt (there was
    /// none left): the request is known not to have run, or running it
    /// again is harmless.
    pub retry_safe: bool,
    /// For the log; never sent to clients.
    pub cause: String,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.upstream, self.source, self.cause)
    }
}

impl UpstreamError {
    pub fn internal(upstream: &str, cause: impl Into<String>) -> Self {
        Self {
            source: Source::Internal,
            upstream: upstream.to_owned(),
            retry_safe: false,
            cause: cause.into(),
        }
    }

    /// The answer's body broke off after its head arrived.
    pub fn broken_answer(upstream: &str, cause: impl Into<String>) -> Self {
        Self {
            source: Source::BrokenAnswer,
            upstream: upstream.to_owned(),
            retry_safe: false,
            cause: cause.into(),
        }
    }

    /// The status a client gets for this failure of a proxied call.
    pub fn status(&self) -> StatusCode {
        match self.source {
            Source::Client(ClientFault::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Source::Client(ClientFault::BodyBroken) => StatusCode::BAD_REQUEST,
            Source::NoTarget | Source::Saturated => StatusCode::SERVICE_UNAVAILABLE,
            Source::Connect | Source::BrokenAnswer => StatusCode::BAD_GATEWAY,
            Source::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Source::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A sentence for the client (no addresses, no causes).
    pub fn detail(&self) -> String {
        match self.source {
            Source::Client(ClientFault::TooLarge(limit)) => {
                format!("the request body exceeds {limit} bytes")
            }
            Source::Client(ClientFault::BodyBroken) => "the request body was cut short".into(),
            Source::NoTarget => format!("upstream `{}` has no healthy target", self.upstream),
            Source::Saturated => format!(
                "upstream `{}` is at its connection limit; retry shortly",
                self.upstream
            ),
            Source::Connect | Source::BrokenAnswer => {
                "the upstream could not be reached or sent a broken response".into()
            }
            Source::Timeout => "the upstream did not answer in time".into(),
            Source::Internal => "internal error".into(),
        }
    }

    /// The problem+json answer for a proxied request that got no answer:
    /// 413/400 for the client's body, 503 (with `Retry-After`) when no
    /// target is in rotation, 502 for a failed connection or a broken
    /// answer, 504 for a timeout, an opaque 500 for our own failure.
    pub fn to_response(&self) -> HttpResponse {
        match self.source {
            Source::Client(ClientFault::TooLarge(_)) => {
                return Problem::payload_too_large(self.detail()).to_response();
            }
            Source::Client(ClientFault::BodyBroken) => {
                return Problem::bad_request(self.detail()).to_response();
            }
            Source::Internal => {
                tracing::error!(error = %self, "calling an upstream failed");
                return Problem::internal().to_response();
            }
            Source::Connect | Source::BrokenAnswer | Source::Timeout | Source::Saturated => {
                tracing::warn!(error = %self, "upstream request failed");
            }
            Source::NoTarget => {}
        }
        let (slug, title) = match self.source {
            Source::NoTarget => ("no-healthy-upstream", "Service unavailable"),
            Source::Saturated => ("upstream-saturated", "Service unavailable"),
            Source::Timeout => ("upstream-timeout", "Gateway timeout"),
            _ => ("bad-gateway", "Bad gateway"),
        };
        let mut res = Problem::new(self.status(), slug, title)
            .with_detail(self.detail())
            .to_response();
        match self.source {
            Source::NoTarget => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Source::Saturated => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }

    /// The answer when a call the gateway makes on its own behalf (the
    /// credential check, the user re-read) fails: the service it depends on
    /// is unavailable, 503 with `Retry-After`, whatever the cause.
    pub fn dependency_unavailable(&self) -> HttpResponse {
        if self.source == Source::Internal {
            return self.to_response();
        }
        tracing::warn!(error = %self, "a service the gateway depends on is unavailable");
        unavailable(&self.upstream)
    }
}

/// 503 with `Retry-After` for a service the gateway's own endpoints need.
pub fn unavailable(service: &str) -> HttpResponse {
    let mut res = Problem::service_unavailable(format!(
        "the {service} service is unavailable; retry shortly"
    ))
    .to_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// When a failed attempt may be sent again, on another target if there is
/// one. Whatever the policy, a request is sent again only if its body can be
/// sent again (none, or held in memory: never a stream already consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub max_retries: u32,
    /// Running the request twice does no harm (an idempotent method, or a
    /// call that only reads).
    pub idempotent: bool,
    /// A timed-out attempt may be repeated: only for calls that read, since
    /// the first one may still be running.
    pub after_timeout: bool,
}

impl RetryPolicy {
    /// One attempt only.
    pub const fn never() -> Self {
        Self {
            max_retries: 0,
            idempotent: false,
            after_timeout: false,
        }
    }

    /// A client's request: idempotent by its method (RFC 9110 section 9.2.2);
    /// never repeated after a timeout (the first may still be running).
    pub fn for_method(method: &Method, max_retries: u32) -> Self {
        let idempotent = [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ]
        .contains(method);
        Self {
            max_retries,
            idempotent,
            after_timeout: false,
        }
    }

    /// A call that only reads (the gateway's credential check and user
    /// re-read): any failure may be tried again.
    pub const fn reads(max_retries: u32) -> Self {
        Self {
            max_retries,
            idempotent: true,
            after_timeout: true,
        }
    }

    /// Whether an attempt that failed at `source` may be sent again.
    /// - a refused connection or a target without room: the request never
    ///   left, so yes;
    /// - a broken answer: the request may have run, so only if idempotent;
    /// - a timeout: it may still be running, so only if `after_timeout`;
    /// - the client's body, no target, our own failure: never.
    pub fn allows(&self, source: Source, replayable: bool) -> bool {
        replayable
            && match source {
                Source::Connect | Source::Saturated => true,
                Source::BrokenAnswer => self.idempotent,
                Source::Timeout => self.idempotent && self.after_timeout,
                Source::Client(_) | Source::NoTarget | Source::Internal => false,
            }
    }
}

/// Which target a call goes to.
pub enum Peer {
    /// Chosen by the upstream's balancing among the targets in rotation;
    /// a retry prefers another one.
    Balanced,
    /// This one, whatever its health (fan-out parts, probes, fetches).
    Fixed(Arc<Target>),
}

/// What a call's attempts count toward.
#[derive(Clone, Copy)]
pub enum Accounting<'a> {
    /// Traffic: passive health (ejection after failures), in-flight leases
    /// and `gatehouse_upstream_attempts_total`.
    Traffic(&'a Metrics),
    /// Probes and document fetches: nothing (the health check keeps its
    /// own verdicts).
    Untracked,
}

/// A request body.
pub enum Body {
    Empty,
    /// Held in memory: can be sent again.
    Bytes(Bytes),
    /// The client's body, streamed through once: never sent twice.
    Stream(Limited),
}

impl Body {
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }
}

/// One call to an upstream.
pub struct Call<'a> {
    pub upstream: &'a Upstream,
    pub peer: Peer,
    pub method: Method,
    /// Path and query at the target (appended to its base URL).
    pub path: &'a str,
    /// Budget for the answer head, per attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub accounting: Accounting<'a>,
    pub body: Body,
}

impl<'a> Call<'a> {
    /// A balanced traffic call with the upstream's own timeout and no retry.
    pub fn new(
        upstream: &'a Upstream,
        method: Method,
        path: &'a str,
        metrics: &'a Metrics,
    ) -> Self {
        Self {
            upstream,
            peer: Peer::Balanced,
            method,
            path,
            timeout: Duration::from_secs(upstream.spec.timeout_secs),
            retry: RetryPolicy::never(),
            accounting: Accounting::Traffic(metrics),
            body: Body::Empty,
        }
    }
}

/// An upstream's answer head (its body streams from `response`).
pub struct Answer {
    pub response: awc::ClientResponse,
    /// Counts the request in flight on its target until dropped (hold it
    /// while the body streams); `None` for untracked calls.
    pub lease: Option<Lease>,
    pub target: Arc<Target>,
    /// Attempts made, this one included.
    pub attempts: u32,
}

thread_local! {
    /// awc clients are not `Send`: one per connect timeout and TLS
    /// configuration on each worker thread, each with its own connection
    /// pool.
    static CLIENTS: RefCell<HashMap<(u64, u64), awc::Client>> = RefCell::new(HashMap::new());
    /// The same for WebSockets (HTTP/1.1 only over TLS).
    static WS_CLIENTS: RefCell<HashMap<(u64, u64), awc::Client>> = RefCell::new(HashMap::new());
}

/// The TLS settings of an `https://` upstream that configures none: the
/// public roots, no client certificate.
fn default_tls() -> Result<Arc<super::tls::ClientTls>, String> {
    static DEFAULT: std::sync::OnceLock<Result<Arc<super::tls::ClientTls>, String>> =
        std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| super::tls::UpstreamTls::default().build().map(Arc::new))
        .clone()
}

/// The WebSocket client for an upstream's targets, on this thread: its TLS
/// settings (or the public roots) offering HTTP/1.1 only.
pub fn websocket_client_for(upstream: &Upstream) -> Result<awc::Client, String> {
    let ms = upstream.spec.connect_timeout_ms;
    let tls = match &upstream.tls {
        Some(t) => t.clone(),
        None => default_tls()?,
    };
    Ok(WS_CLIENTS.with(|c| {
        c.borrow_mut()
            .entry((ms, tls.id))
            .or_insert_with(|| {
                let connector = awc::Connector::new()
                    .timeout(Duration::from_millis(ms))
                    .limit(0)
                    .rustls_0_23(tls.websocket.clone());
                // The handshake's budget is the upstream's, kept by the caller.
                awc::Client::builder()
                    .no_default_headers()
                    .disable_redirects()
                    .disable_timeout()
                    .connector(connector)
                    .finish()
            })
            .clone()
    }))
}

/// The HTTP client for an upstream's targets, on this thread.
pub fn client_for(upstream: &Upstream) -> awc::Client {
    let ms = upstream.spec.connect_timeout_ms;
    let tls = upstream.tls.as_ref();
    CLIENTS.with(|c| {
        c.borrow_mut()
            .entry((ms, tls.map_or(0, |t| t.id)))
            .or_insert_with(|| {
                let mut connector = awc::Connector::new()
                    .timeout(Duration::from_millis(ms))
                    .limit(0);
                if let Some(t) = tls {
                    connector = connector.rustls_0_23(t.config.clone());
                }
                awc::Client::builder()
                    .no_default_headers()
                    .disable_redirects()
                    .connector(connector)
                    .finish()
            })
            .clone()
    })
}

fn source_of(e: &SendRequestError) -> Source {
    match e {
        SendRequestError::Timeout => Source::Timeout,
        SendRequestError::Connect(_) => Source::Connect,
        _ => Source::BrokenAnswer,
    }
}

/// Send `call`, with `headers` built afresh for each attempt (cheaper than
/// a copy kept for a retry that almost never happens). See the module doc.
pub async fn send(
    call: Call<'_>,
    headers: &dyn Fn() -> Result<HeaderMap, UpstreamError>,
) -> Result<Answer, UpstreamError> {
    let mut sending = Sending::new(call);
    let mut avoid: Option<Arc<Target>> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match sending.attempt(attempt, avoid.take(), headers).await {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        if failure.again && attempt <= sending.retry.max_retries {
            if failure.error.source != Source::Saturated {
                tracing::info!(error = %failure.error.cause, attempt, "retrying on another target");
            }
            sending.count("retried");
            avoid = failure.target;
            continue;
        }
        if let Some(outcome) = failure.outcome {
            sending.count(outcome);
        }
        return Err(failure.error);
    }
}

/// How one attempt failed, for [`send`]'s loop to decide on.
struct Failure {
    error: UpstreamError,
    /// The target it was on: a next attempt goes elsewhere if it can.
    target: Option<Arc<Target>>,
    /// The policy allows another attempt (and, for a saturated target,
    /// there is another target to try).
    again: bool,
    /// The attempt metric when this failure is the call's last; `None`
    /// when it is not counted (no target, the client's own body, the
    /// gateway's own failure).
    outcome: Option<&'static str>,
}

impl Failure {
    /// A failure that ends the call at once, uncounted.
    fn end(error: UpstreamError) -> Self {
        Self {
            error,
            target: None,
            again: false,
            outcome: None,
        }
    }
}

/// A call being sent: what stays the same across its attempts.
struct Sending<'a> {
    upstream: &'a Upstream,
    peer: Peer,
    method: Method,
    path: &'a str,
    timeout: Duration,
    retry: RetryPolicy,
    /// The traffic metrics and passive health, for tracked calls.
    metrics: Option<&'a Metrics>,
    client: awc::Client,
    /// `None` once a streamed body has been sent (it cannot be again).
    body: Option<Body>,
    replayable: bool,
    faults: Option<Rc<Cell<Option<ClientFault>>>>,
}

impl<'a> Sending<'a> {
    fn new(call: Call<'a>) -> Self {
        let Call {
            upstream,
            peer,
            method,
            path,
            timeout,
            retry,
            accounting,
            body,
        } = call;
        Self {
            client: client_for(upstream),
            replayable: body.replayable(),
            faults: match &body {
                Body::Stream(s) => Some(s.fault.clone()),
                _ => None,
            },
            body: Some(body),
            metrics: match accounting {
                Accounting::Traffic(m) => Some(m),
                Accounting::Untracked => None,
            },
            upstream,
            peer,
            method,
            path,
            timeout,
            retry,
        }
    }

    fn count(&self, outcome: &'static str) {
        if let Some(m) = self.metrics {
            m.upstream_attempt(&self.upstream.name, outcome);
        }
    }

    fn error(&self, source: Source, retry_safe: bool, cause: String) -> UpstreamError {
        UpstreamError {
            source,
            upstream: self.upstream.name.clone(),
            retry_safe,
            cause,
        }
    }

    /// The target of this attempt, with its lease for tracked calls: a
    /// balanced call avoids the previous attempt's target, unless it is
    /// the only one left.
    fn target(&self, avoid: Option<&Arc<Target>>) -> Result<(Arc<Target>, Option<Lease>), Failure> {
        let tracked = self.metrics.is_some();
        match &self.peer {
            Peer::Fixed(t) => Ok((t.clone(), tracked.then(|| Lease::on(t.clone())))),
            Peer::Balanced => {
                let lease = self
                    .upstream
                    .pick(avoid)
                    .or_else(|| avoid.and_then(|_| self.upstream.pick(None)))
                    .ok_or_else(|| {
                        Failure::end(self.error(
                            Source::NoTarget,
                            false,
                            "no target in rotation".into(),
                        ))
                    })?;
                Ok((lease.target().clone(), tracked.then_some(lease)))
            }
        }
    }

    /// One attempt: a target, room on it within the budget, the request
    /// with this attempt's headers, and the answer head or why not.
    async fn attempt(
        &mut self,
        attempt: u32,
        avoid: Option<Arc<Target>>,
        headers: &dyn Fn() -> Result<HeaderMap, UpstreamError>,
    ) -> Result<Answer, Failure> {
        let (target, mut lease) = self.target(avoid.as_ref())?;
        let span = attempt_span(&self.method, self.upstream, &target, self.path, attempt);
        let mut budget = self.timeout;
        if let Some(lease) = lease.as_mut() {
            budget = lease.admit(self.timeout).await.unwrap_or(Duration::ZERO);
            if budget.is_zero() {
                span.fail(Source::Saturated.name());
                span.end();
                return Err(self.saturated(target));
            }
        }
        let mut url = String::with_capacity(target.url.len() + self.path.len());
        url.push_str(&target.url);
        url.push_str(self.path);
        let mut req = self
            .client
            .request(self.method.clone(), url)
            .timeout(budget);
        *req.headers_mut() = headers().map_err(Failure::end)?;
        traces::inject(&span.context(), req.headers_mut());
        let sent = match self.body.take() {
            Some(Body::Stream(s)) => req.send_stream(s).await,
            Some(Body::Bytes(b)) => {
                self.body = Some(Body::Bytes(b.clone()));
                req.send_body(b).await
            }
            Some(Body::Empty) => {
                self.body = Some(Body::Empty);
                req.send().await
            }
            None => req.send().await,
        };
        match sent {
            Ok(response) => {
                let status = response.status();
                span.set(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                if status.is_server_error() {
                    span.fail(status.as_str());
                }
                span.end();
                if self.metrics.is_some() {
                    target.record_success();
                }
                self.count("ok");
                Ok(Answer {
                    response,
                    lease,
                    target,
                    attempts: attempt,
                })
            }
            Err(e) => {
                span.fail(source_of(&e).name());
                span.end();
                Err(self.failed(target, &e))
            }
        }
    }

    /// No room on the target for the whole budget. The body is untouched
    /// (nothing was sent); another attempt only on another target (waiting
    /// on this one again would double the wait).
    fn saturated(&self, target: Arc<Target>) -> Failure {
        let safe = self.retry.allows(Source::Saturated, true);
        let elsewhere =
            matches!(self.peer, Peer::Balanced) && self.upstream.has_other_than(&target);
        Failure {
            error: self.error(
                Source::Saturated,
                safe,
                format!("no room on target {} in {:?}", target.url, self.timeout),
            ),
            target: Some(target),
            again: safe && elsewhere,
            outcome: Some("saturated"),
        }
    }

    /// The request failed: the client's body (no retry, the upstream did
    /// nothing wrong), or the target (passive health; another attempt as
    /// the policy allows).
    fn failed(&self, target: Arc<Target>, e: &SendRequestError) -> Failure {
        if let Some(fault) = self.faults.as_ref().and_then(|f| f.get()) {
            return Failure::end(self.error(Source::Client(fault), false, e.to_string()));
        }
        let source = source_of(e);
        if self.metrics.is_some() {
            target.record_failure(&self.upstream.spec.passive);
        }
        let safe = self.retry.allows(source, self.replayable);
        Failure {
            error: self.error(source, safe, format!("{e} (target {})", target.url)),
            target: Some(target),
            again: safe,
            outcome: Some("failed"),
        }
    }
}

/// The client span of one attempt (HTTP semantic conventions, with the
/// upstream, the target and the attempt's number; `url.full` without the
/// query, which may carry secrets).
fn attempt_span(
    method: &Method,
    upstream: &Upstream,
    target: &Target,
    path: &str,
    attempt: u32,
) -> traces::Child {
    traces::child(method.as_str(), SpanKind::Client, || {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("gatehouse.upstream", upstream.name.clone()),
            KeyValue::new("gatehouse.target", target.url.clone()),
            KeyValue::new("gatehouse.attempt", i64::from(attempt)),
            KeyValue::new(
                "url.full",
                format!("{}{}", target.url, path.split('?').next().unwrap_or("")),
            ),
        ];
        if attempt > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt - 1),
            ));
        }
        if let Ok(uri) = target.url.parse::<actix_web::http::Uri>() {
            if let Some(host) = uri.host() {
                attributes.push(KeyValue::new("server.address", host.to_owned()));
            }
            let port = uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            });
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        attributes
    })
}

/// An open WebSocket to a target, from the gateway's side.
pub type UpstreamSocket = actix_codec::Framed<WsIo, WsCodec>;

/// The connection under an upstream's WebSocket.
pub use awc::BoxedSocket as WsIo;
/// The codec of the upstream's side of a WebSocket (client mode).
pub use awc::ws::Codec as WsCodec;
/// A frame as the upstream sent it.
pub use awc::ws::Frame as WsFrame;

/// A WebSocket the gateway opened to a target: the head of its `101`, the
/// socket, and the lease that counts the connection on the target for as
/// long as it is held.
pub struct WebSocketOpened {
    pub head: awc::ClientResponse,
    pub socket: UpstreamSocket,
    pub lease: Lease,
}

/// Why no WebSocket was opened.
pub enum WebSocketFailure {
    /// The target answered the handshake with this 4xx: it does not take
    /// this client (an answer, not a failure of the target).
    Refused(StatusCode),
    /// Nothing usable came back (see [`UpstreamError`]).
    Failed(UpstreamError),
}

/// Open a WebSocket to a target of `upstream` at `path` (path and query),
/// with `headers` (without the client's `Sec-WebSocket-*`) and the
/// client's `protocols`; frames up to `max_frame` bytes. The handshake has
/// the upstream's timeout. Like [`send`] for a request that never left: a
/// refused connection is tried on another target as the upstream's retries
/// allow; a time-out or a broken handshake is not retried (the target may
/// have acted on the request). Passive health and the attempt metrics are
/// kept as for traffic.
pub async fn open_websocket(
    upstream: &Upstream,
    path: &str,
    headers: &HeaderMap,
    protocols: &[String],
    max_frame: usize,
    metrics: &Metrics,
) -> Result<WebSocketOpened, WebSocketFailure> {
    use awc::error::WsClientError;
    let fail = |source: Source, cause: String| {
        WebSocketFailure::Failed(UpstreamError {
            source,
            upstream: upstream.name.clone(),
            retry_safe: false,
            cause,
        })
    };
    let client = websocket_client_for(upstream)
        .map_err(|e| fail(Source::Internal, format!("TLS for WebSocket: {e}")))?;
    let budget = Duration::from_secs(upstream.spec.timeout_secs);
    let mut avoid: Option<Arc<Target>> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(lease) = upstream
            .pick(avoid.as_ref())
            .or_else(|| avoid.as_ref().and_then(|_| upstream.pick(None)))
        else {
            return Err(fail(Source::NoTarget, "no target in rotation".into()));
        };
        let target = lease.target().clone();
        let mut req = client
            .ws(format!("{}{path}", target.url))
            .max_frame_size(max_frame);
        for (name, value) in headers {
            req = req.header(name.clone(), value.clone());
        }
        // The request's span (a handshake is no attempt span of its own).
        let mut trace = HeaderMap::new();
        traces::inject_current(&mut trace);
        for (name, value) in trace {
            req = req.header(name, value);
        }
        if !protocols.is_empty() {
            req = req.protocols(protocols);
        }
        let e = match tokio::time::timeout(budget, req.connect()).await {
            Ok(Ok((head, socket))) => {
                target.record_success();
                metrics.upstream_attempt(&upstream.name, "ok");
                return Ok(WebSocketOpened {
                    head,
                    socket,
                    lease,
                });
            }
            Ok(Err(e)) => e,
            Err(_) => WsClientError::SendRequest(SendRequestError::Timeout),
        };
        let source = match &e {
            WsClientError::InvalidResponseStatus(s) if s.is_client_error() => {
                target.record_success();
                metrics.upstream_attempt(&upstream.name, "ok");
                return Err(WebSocketFailure::Refused(*s));
            }
            WsClientError::SendRequest(e) => source_of(e),
            _ => Source::BrokenAnswer,
        };
        target.record_failure(&upstream.spec.passive);
        if source == Source::Connect && attempt <= upstream.spec.retries {
            tracing::info!(error = %e, target_url = %target.url, attempt, "retrying a WebSocket on another target");
            metrics.upstream_attempt(&upstream.name, "retried");
            avoid = Some(target);
            continue;
        }
        metrics.upstream_attempt(&upstream.name, "failed");
        return Err(fail(source, format!("{e} (target {})", target.url)));
    }
}

/// The client's request body on its way upstream, cut off past the limit;
/// what went wrong is kept for [`send`] to tell the client's fault from the
/// upstream's.
pub struct Limited {
    inner: web::Payload,
    seen: u64,
    limit: u64,
    fault: Rc<Cell<Option<ClientFault>>>,
}

impl Limited {
    pub fn new(inner: web::Payload, limit: u64) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            fault: Rc::new(Cell::new(None)),
        }
    }
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    self.fault.set(Some(ClientFault::TooLarge(self.limit)));
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.fault.set(Some(ClientFault::BodyBroken));
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

thread_local! {
    /// The client for identity providers' documents, on this thread.
    static PROVIDER_CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .connector(awc::Connector::new().timeout(Duration::from_secs(5)))
        .finish();
}

/// Largest discovery document or key set read.
const PROVIDER_DOCUMENT_LIMIT: usize = 1024 * 1024;

/// The `max-age` of a `Cache-Control` header (RFC 9111 section 5.2.2.1);
/// `no-store`/`no-cache` count as 0.
fn max_age(headers: &awc::http::header::HeaderMap) -> Option<u64> {
    let mut out = None;
    for v in headers.get_all(header::CACHE_CONTROL) {
        for d in v.to_str().ok()?.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return Some(0);
            }
            if let Some((k, n)) = d.split_once('=')
                && k.trim().eq_ignore_ascii_case("max-age")
            {
                out = n.trim().trim_matches('"').parse().ok();
            }
        }
    }
    out
}

/// `GET url` for an identity provider (discovery document, key set):
/// no redirects followed, the whole answer within `timeout`, at most 1 MiB.
/// The [`crate::identity::issuers::Fetch`] the gateway hands its issuers.
pub fn fetch_provider_document(
    url: String,
    timeout: Duration,
) -> futures_util::future::LocalBoxFuture<'static, Result<crate::identity::issuers::Fetched, String>>
{
    Box::pin(async move {
        let client = PROVIDER_CLIENT.with(Clone::clone);
        let work = async {
            let mut res = client
                .get(&url)
                .timeout(timeout)
                .insert_header((header::ACCEPT, "application/json"))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !res.status().is_success() {
                return Err(format!("{url}: status {}", res.status()));
            }
            let max_age = max_age(res.headers());
            let body = res
                .body()
                .limit(PROVIDER_DOCUMENT_LIMIT)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok(crate::identity::issuers::Fetched {
                body: body.to_vec(),
                max_age,
            })
        };
        actix_web::rt::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{url}: no answer within {} ms",
                    timeout.as_millis()
                ))
            })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_off_cache_control() {
        let h = |v: &[&str]| {
            let mut m = awc::http::header::HeaderMap::new();
            for x in v {
                m.append(header::CACHE_CONTROL, HeaderValue::from_str(x).unwrap());
            }
            m
        };
        assert_eq!(max_age(&h(&["public, max-age=300"])), Some(300));
        assert_eq!(max_age(&h(&["public", "Max-Age=\"60\""])), Some(60));
        assert_eq!(max_age(&h(&["max-age=300, no-cache"])), Some(0));
        assert_eq!(max_age(&h(&["no-store"])), Some(0));
        assert_eq!(max_age(&h(&["private"])), None);
        assert_eq!(max_age(&h(&[])), None);
    }

    #[test]
    fn retries_follow_what_may_have_reached_the_upstream() {
        let get = RetryPolicy::for_method(&Method::GET, 1);
        let post = RetryPolicy::for_method(&Method::POST, 1);
        let reads = RetryPolicy::reads(1);
        // Never left: any replayable request, whatever its method.
        assert!(get.allows(Source::Connect, true));
        assert!(post.allows(Source::Connect, true));
        // A streamed body cannot be sent twice.
        assert!(!get.allows(Source::Connect, false));
        assert!(!post.allows(Source::Connect, false));
        // May have run: only idempotent requests.
        assert!(get.allows(Source::BrokenAnswer, true));
        assert!(!post.allows(Source::BrokenAnswer, true));
        // May still be running: only calls that read.
        assert!(!get.allows(Source::Timeout, true));
        assert!(reads.allows(Source::Timeout, true));
        // Not the upstream's failure, or nothing to retry.
        for s in [
            Source::Client(ClientFault::TooLarge(1)),
            Source::Client(ClientFault::BodyBroken),
            Source::NoTarget,
            Source::Internal,
        ] {
            assert!(!reads.allows(s, true), "{s:?}");
        }
        assert_eq!(RetryPolicy::never().max_retries, 0);
        assert!(RetryPolicy::for_method(&Method::DELETE, 0).idempotent);
        assert!(!RetryPolicy::for_method(&Method::PATCH, 0).idempotent);
    }

    #[test]
    fn errors_map_to_their_status_once() {
        let e = |source| UpstreamError {
            source,
            upstream: "users".into(),
            retry_safe: false,
            cause: "SECRET-CAUSE".into(),
        };
        let cases = [
            (Source::Client(ClientFault::TooLarge(10)), 413),
            (Source::Client(ClientFault::BodyBroken), 400),
            (Source::NoTarget, 503),
            (Source::Connect, 502),
            (Source::BrokenAnswer, 502),
            (Source::Timeout, 504),
            (Source::Internal, 500),
        ];
        for (source, status) in cases {
            let err = e(source);
            assert_eq!(err.status().as_u16(), status, "{source:?}");
            let res = err.to_response();
            assert_eq!(res.status().as_u16(), status, "{source:?}");
            assert_eq!(
                res.headers().contains_key(header::RETRY_AFTER),
                source == Source::NoTarget,
                "{source:?}"
            );
            assert!(
                !err.detail().contains("SECRET"),
                "no cause reaches the client"
            );
        }
        let dep = e(Source::Connect).dependency_unavailable();
        assert_eq!(dep.status().as_u16(), 503);
        assert_eq!(dep.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            e(Source::Internal)
                .dependency_unavailable()
                .status()
                .as_u16(),
            500
        );
    }
}
