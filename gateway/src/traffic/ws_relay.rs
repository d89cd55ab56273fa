//! The WebSocket relay: two open sockets, the client's (actix-ws) and the
//! upstream's (from `upstream::client`), joined until one side closes or a
//! limit ends the connection; and the `websocket:` settings those limits
//! come from. The proxy's WebSocket phase (`proxy::websocket`) does the
//! handshakes and hands both sockets over.
//!
//! Each direction runs on its own and sends one frame at a time, awaiting
//! the reader: a slow reader slows only the side that writes to it
//! (back-pressure), never the other direction, and nothing queues without
//! bound. Frames pass as they are (text, binary, fragments, ping, pong,
//! close); the relay counts message sizes across fragments (1009 past the
//! limit), watches idleness (1001), the deadline (the token's expiry: 1008,
//! or the lifetime cap: 1001) and the token's revocation (1008, checked
//! every second). A close from one side is passed on and the other side's
//! answer passed back; a side that is gone gets nothing, the other a close
//! saying why ([`End::closes`]).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, Item, Message};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::Instant;

use crate::identity::sessions::Sessions;
use crate::identity::tokens::AccessClaims;
use crate::ops::metrics::WebSocketCounters;
use crate::traffic::upstream::client::WsFrame as Frame;
use crate::traffic::ws_frames::{FrameLimits, GuardedSocket, is_overflow};

/// How long the other side gets to answer a close before the connection is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How often an open socket's token is checked against the deny list.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

/// `websocket:` in the settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Accept the access token as the protocol pair `bearer, <token>`.
    pub token_in_protocol: bool,
    /// Accept the access token as `?access_token=<token>` (RFC 6750
    /// section 2.3; other proxies may log it, hence off by default).
    pub token_in_query: bool,
    /// Largest frame payload either side may send.
    pub max_frame_bytes: usize,
    /// Largest message (a frame, or fragments together) either side may send.
    pub max_message_bytes: u64,
    /// No frame either way for this long closes the connection (1001).
    pub idle_timeout_secs: u64,
    /// No connection lives longer (1001).
    pub max_lifetime_secs: u64,
    /// Let a connection outlive the access token it was opened with (up to
    /// `max_lifetime_secs`); by default it closes when the token expires.
    pub outlive_token: bool,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            token_in_protocol: true,
            token_in_query: false,
            max_frame_bytes: 4 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 300,
            max_lifetime_secs: 86_400,
            outlive_token: false,
        }
    }
}

impl WebSocketSettings {
    /// The limits every frame and message is held to, either way.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_frame: self.max_frame_bytes as u64,
            max_message: self.max_message_bytes,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.max_frame_bytes == 0 || self.max_message_bytes == 0 {
            return Err("websocket: max_frame_bytes and max_message_bytes must be positive".into());
        }
        if self.idle_timeout_secs == 0 || self.max_lifetime_secs == 0 {
            return Err(
                "websocket: idle_timeout_secs and max_lifetime_secs must be positive".into(),
            );
        }
        Ok(())
    }
}

/// The bounds of one connection.
pub struct Limits {
    pub max_message: u64,
    pub idle: Duration,
    pub deadline: Instant,
    /// The deadline is the token's expiry.
    pub ends_with_token: bool,
}

/// What a connection's token is checked against while it is open.
pub struct Guard {
    pub sessions: Arc<Sessions>,
    /// `None` on a public route.
    pub token: Option<Arc<AccessClaims>>,
}

impl Guard {
    fn revoked(&self) -> bool {
        self.token.as_ref().is_some_and(|t| {
            self.sessions
                .deny_list()
                .refuses(&t.jti, &t.sid, &t.sub, t.iat)
        })
    }
}

/// How a direction or the watchdog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// That side sent a close, which was passed on.
    ClientClosed,
    UpstreamClosed,
    /// That side's connection ended without a close.
    ClientLost,
    UpstreamLost,
    /// That side broke the protocol, or sent more than the limits allow.
    ClientProtocol,
    UpstreamProtocol,
    TooBig,
    Idle,
    Lifetime,
    TokenExpired,
    Revoked,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::UpstreamClosed => "upstream_closed",
            End::ClientLost => "client_lost",
            End::UpstreamLost => "upstream_lost",
            End::ClientProtocol => "client_protocol_error",
            End::UpstreamProtocol => "upstream_protocol_error",
            End::TooBig => "message_too_big",
            End::Idle => "idle_timeout",
            End::Lifetime => "max_lifetime",
            End::TokenExpired => "token_expired",
            End::Revoked => "token_revoked",
        }
    }

    /// The close the gateway sends the client and the upstream for this
    /// end (when that side has not closed already).
    fn closes(self) -> (CloseReason, CloseReason) {
        let r = |code: CloseCode, text: &str| CloseReason {
            code,
            description: Some(text.to_owned()),
        };
        let away = |text: &str| r(CloseCode::Away, text);
        match self {
            End::ClientClosed | End::ClientLost => (away("closing"), away("the client left")),
            End::UpstreamClosed => (away("the service closed"), away("closing")),
            End::UpstreamLost => (
                r(CloseCode::Other(1014), "the service connection was lost"),
                away("closing"),
            ),
            End::ClientProtocol => (
                r(CloseCode::Protocol, "protocol error"),
                away("the client broke the protocol"),
            ),
            End::UpstreamProtocol => (
                r(CloseCode::Other(1014), "the service broke the protocol"),
                r(CloseCode::Protocol, "protocol error"),
            ),
            End::TooBig => (
                r(CloseCode::Size, "message too big"),
                r(CloseCode::Size, "message too big"),
            ),
            End::Idle => (away("idle timeout"), away("idle timeout")),
            End::Lifetime => (
                away("maximum connection lifetime reached"),
                away("maximum connection lifetime reached"),
            ),
            End::TokenExpired => (
                r(CloseCode::Policy, "the access token expired"),
                away("the access token expired"),
            ),
            End::Revoked => (
                r(CloseCode::Policy, "the access token was revoked"),
                away("the access token was revoked"),
            ),
        }
    }
}

type UpstreamSink = futures_util::stream::SplitSink<GuardedSocket, Message>;
type UpstreamStream = futures_util::stream::SplitStream<GuardedSocket>;

/// What both directions share: when a frame last went either way, and
/// which side has been sent a close.
#[derive(Default)]
struct Shared {
    active: Cell<Option<Instant>>,
    client_closed: Cell<bool>,
    upstream_closed: Cell<bool>,
}

impl Shared {
    fn touch(&self) {
        self.active.set(Some(Instant::now()));
    }
}

/// The size of the message a frame belongs to, kept across fragments.
struct MessageSize {
    max: u64,
    current: u64,
}

impl MessageSize {
    /// Count a data frame's payload; `false` past the limit.
    fn admit(&mut self, len: usize, continues: bool) -> bool {
        let len = len as u64;
        self.current = if continues {
            self.current.saturating_add(len)
        } else {
            len
        };
        self.current <= self.max
    }
}

/// Relay until the connection ends; the reason, for the metrics.
pub async fn relay(
    session: actix_ws::Session,
    mut client_in: actix_ws::MessageStream,
    upstream: GuardedSocket,
    limits: Limits,
    guard: Guard,
    counters: &WebSocketCounters,
) -> &'static str {
    let (mut upstream_out, mut upstream_in) = upstream.split();
    let shared = Rc::new(Shared::default());
    shared.touch();
    let end = {
        let up = client_to_upstream(
            &mut client_in,
            &mut upstream_out,
            &shared,
            limits.max_message,
            counters,
        );
        let down = upstream_to_client(
            &mut upstream_in,
            session.clone(),
            &shared,
            limits.max_message,
            counters,
        );
        let watch = watchdog(&shared, &limits, &guard);
        tokio::pin!(up, down, watch);
        let first = tokio::select! {
            e = &mut up => e,
            e = &mut down => e,
            e = &mut watch => e,
        };
        // A close passed on: the other side's answer is passed back.
        let answered = match first {
            End::ClientClosed => tokio::time::timeout(CLOSE_GRACE, &mut down).await.ok(),
            End::UpstreamClosed => tokio::time::timeout(CLOSE_GRACE, &mut up).await.ok(),
            _ => None,
        };
        tracing::debug!(end = first.label(), answered = ?answered, "websocket relay ended");
        first
    };
    let (to_client, to_upstream) = end.closes();
    if !shared.client_closed.get() {
        let _ = session.close(Some(to_client)).await;
    }
    if !shared.upstream_closed.get() {
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            upstream_out.send(Message::Close(Some(to_upstream))),
        )
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, upstream_out.close()).await;
    end.label()
}

/// The client's frames to the upstream, one at a time.
async fn client_to_upstream(
    client_in: &mut actix_ws::MessageStream,
    upstream_out: &mut UpstreamSink,
    shared: &Shared,
    max_message: u64,
    counters: &WebSocketCounters,
) -> End {
    let mut size = MessageSize {
        max: max_message,
        current: 0,
    };
    loop {
        let msg = match client_in.recv().await {
            None => return End::ClientLost,
            Some(Err(e)) if is_overflow(&e) => return End::TooBig,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket client broke the protocol");
                return End::ClientProtocol;
            }
            Some(Ok(m)) => m,
        };
        shared.touch();
        let (len, ok) = match &msg {
            Message::Text(t) => (t.len(), size.admit(t.len(), false)),
            Message::Binary(b) => (b.len(), size.admit(b.len(), false)),
            Message::Continuation(Item::FirstText(b) | Item::FirstBinary(b)) => {
                (b.len(), size.admit(b.len(), false))
            }
            Message::Continuation(Item::Continue(b) | Item::Last(b)) => {
                (b.len(), size.admit(b.len(), true))
            }
            Message::Ping(b) | Message::Pong(b) => (b.len(), true),
            Message::Close(_) | Message::Nop => (0, true),
        };
        if !ok {
            return End::TooBig;
        }
        if matches!(msg, Message::Nop) {
            continue;
        }
        counters.from_client.0.inc();
        counters.from_client.1.inc_by(len as u64);
        let close = matches!(msg, Message::Close(_));
        if upstream_out.send(msg).await.is_err() {
            return End::UpstreamLost;
        }
        if close {
            shared.upstream_closed.set(true);
            return End::ClientClosed;
        }
    }
}

/// The upstream's frames to the client, one at a time.
async fn upstream_to_client(
    upstream_in: &mut UpstreamStream,
    mut session: actix_ws::Session,
    shared: &Shared,
    max_message: u64,
    counters: &WebSocketCounters,
) -> End {
    let mut size = MessageSize {
        max: max_message,
        current: 0,
    };
    loop {
        let frame = match upstream_in.next().await {
            None => return End::UpstreamLost,
            Some(Err(actix_ws::ProtocolError::Overflow)) => return End::TooBig,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket upstream broke the protocol");
                return End::UpstreamProtocol;
            }
            Some(Ok(f)) => f,
        };
        shared.touch();
        let len = match &frame {
            Frame::Text(b) | Frame::Binary(b) | Frame::Ping(b) | Frame::Pong(b) => b.len(),
            Frame::Continuation(
                Item::FirstText(b) | Item::FirstBinary(b) | Item::Continue(b) | Item::Last(b),
            ) => b.len(),
            Frame::Close(_) => 0,
        };
        let fits = match &frame {
            Frame::Text(_) | Frame::Binary(_) => size.admit(len, false),
            Frame::Continuation(Item::FirstText(_) | Item::FirstBinary(_)) => {
                size.admit(len, false)
            }
            Frame::Continuation(_) => size.admit(len, true),
            _ => true,
        };
        if !fits {
            return End::TooBig;
        }
        counters.from_upstream.0.inc();
        counters.from_upstream.1.inc_by(len as u64);
        let sent = match frame {
            Frame::Text(b) => match bytestring::ByteString::try_from(b) {
                Ok(text) => session.text(text).await,
                Err(_) => return End::UpstreamProtocol,
            },
            Frame::Binary(b) => session.binary(b).await,
            Frame::Continuation(item) => session.continuation(item).await,
            Frame::Ping(b) => session.ping(&b).await,
            Frame::Pong(b) => session.pong(&b).await,
            Frame::Close(reason) => {
                shared.client_closed.set(true);
                let _ = session.close(reason).await;
                return End::UpstreamClosed;
            }
        };
        if sent.is_err() {
            return End::ClientLost;
        }
    }
}

/// Ends the connection when it has been idle too long, reached its
/// deadline, or its token was revoked.
async fn watchdog(shared: &Shared, limits: &Limits, guard: &Guard) -> End {
    loop {
        let now = Instant::now();
        if now >= limits.deadline {
            return if limits.ends_with_token {
                End::TokenExpired
            } else {
                End::Lifetime
            };
        }
        let idle_at = shared.active.get().unwrap_or(now) + limits.idle;
        if now >= idle_at {
            return End::Idle;
        }
        if guard.revoked() {
            return End::Revoked;
        }
        let mut next = limits.deadline.min(idle_at);
        if guard.token.is_some() {
            next = next.min(now + REVOCATION_CHECK);
        }
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_size_counts_fragments_together() {
        let mut s = MessageSize {
            max: 10,
            current: 0,
        };
        assert!(s.admit(10, false));
        assert!(s.admit(6, false), "a new message starts again");
        assert!(s.admit(4, true));
        assert!(!s.admit(1, true), "the fragments together are over");
        assert!(s.admit(3, false));
    }

    #[test]
    fn settings_need_positive_limits() {
        assert!(WebSocketSettings::default().check().is_ok());
        let zero = WebSocketSettings {
            idle_timeout_secs: 0,
            ..Default::default()
        };
        assert!(zero.check().is_err());
    }
}
