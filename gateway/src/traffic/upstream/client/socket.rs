//! WebSockets to upstreams: the handshake through the upstream's client
//! (a target by its balancing, a connect failure tried on another), and
//! the socket the relay then reads and writes.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use awc::error::SendRequestError;
use common::traces::{self};

use crate::ops::metrics::Metrics;
use crate::traffic::upstream::pool::{Lease, Target, Upstream};

use super::*;

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
