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

use actix_web::error::PayloadError;
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use actix_web::web::{self, Bytes};
use awc::error::SendRequestError;
use common::traces::{self, KeyValue, SpanKind};
use futures_util::Stream;

use super::pool::{Lease, Target, Upstream};
use crate::ops::metrics::Metrics;

mod failure;
mod provider;
mod socket;

pub use failure::{ClientFault, Source, UpstreamError, unavailable};
pub use provider::{fetch_provider_document, post_provider_form};
pub use socket::{
    UpstreamSocket, WebSocketFailure, WebSocketOpened, WsCodec, WsFrame, WsIo, open_websocket,
};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
