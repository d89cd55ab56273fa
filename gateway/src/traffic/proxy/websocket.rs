//! Phase: WebSocket, for an upgrade request (`GET` with `Upgrade:
//! websocket`) on a route that carries WebSocket traffic (every route that
//! serves GET unless it says `websocket: false`). It takes the place of the
//! phases after the rate limit: the handshake is checked before anything
//! else ([`Upgrade::of`]), admission and the rate limit run on it like on
//! any request (so a refused upgrade never reaches the upstream), then
//! [`phase`] has the upstream client open the gateway's own WebSocket to a
//! target of the route's upstream, with the identity and its proof in that
//! handshake, answers the client's `101` only once the upstream has
//! answered its own, and hands both sockets to the relay
//! (`crate::traffic::ws_relay`), bounded by the caller's token.
//!
//! Browsers cannot send `Authorization` on a WebSocket; they can send the
//! token as the protocol pair `bearer, <token>` in `Sec-WebSocket-Protocol`
//! (`websocket.token_in_protocol`, on by default) or, when configured, as
//! `?access_token=` (`websocket.token_in_query`). Either is removed before
//! the upstream's handshake; two tokens at once are refused.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use tokio::time::Instant;

use super::context::Ctx;
use super::headers::HOP_BY_HOP;
use crate::identity::tokens::AccessClaims;
use crate::traffic::upstream::client::{self, WebSocketFailure};
use crate::traffic::upstream::pool::Upstream;
use crate::traffic::ws_frames::Guarded;
use crate::traffic::ws_relay::{Guard, Limits, WebSocketSettings};

/// The `Sec-WebSocket-Protocol` entry that says the next entry is the
/// access token (`new WebSocket(url, ["bearer", token])`).
pub const TOKEN_PROTOCOL: &str = "bearer";

/// Whether a request asks for a WebSocket (RFC 6455 section 4.1: a GET
/// with `Upgrade: websocket` and `Connection: upgrade`).
pub fn is_upgrade(req: &HttpRequest) -> bool {
    let lists = |name: HeaderName, token: &str| {
        req.headers().get_all(name).any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.method() == actix_web::http::Method::GET
        && lists(header::UPGRADE, "websocket")
        && lists(header::CONNECTION, "upgrade")
}

/// A checked upgrade request, its token taken out of where a browser put it.
pub struct Upgrade {
    /// The client's end, ready once the upstream has answered.
    response: HttpResponse,
    session: actix_ws::Session,
    stream: actix_ws::MessageStream,
    /// The protocols the client offered, without the token pair.
    protocols: Vec<String>,
    /// The client sent its token as the protocol pair.
    token_protocol: bool,
    /// The query without `access_token`.
    pub query: String,
    /// The headers admission reads: the request's, with the token from the
    /// protocol or the query as `Authorization` (`None`: the request's own).
    pub admission_headers: Option<HeaderMap>,
}

impl Upgrade {
    /// Check the handshake and take the token out of the protocol list or
    /// the query, as the settings allow. `Err`: 400 with the reason.
    pub fn of(
        req: &HttpRequest,
        body: web::Payload,
        settings: &WebSocketSettings,
    ) -> Result<Self, HttpResponse> {
        let body = guarded(req, body, settings)?;
        let (response, session, stream) = actix_ws::handle(req, body).map_err(|e| {
            Problem::bad_request(format!("not a valid WebSocket handshake: {e}")).to_response()
        })?;
        let stream = stream.max_frame_size(settings.max_frame_bytes);
        let mut offered = offered_protocols(req);
        let mut tokens: Vec<String> = Vec::new();
        let token_protocol = settings.token_in_protocol
            && take_protocol_token(&mut offered, &mut tokens).map_err(|e| e.to_response())?;
        let query = if settings.token_in_query {
            take_query_token(req.query_string(), &mut tokens)
        } else {
            req.query_string().to_owned()
        };
        let bearer = crate::identity::caller::bearer_token(req.headers()).is_some();
        if tokens.len() + usize::from(bearer) > 1 {
            return Err(Problem::bad_request(
                "send one access token: in Authorization, the protocol list or the query, not several",
            )
            .to_response());
        }
        let admission_headers = match tokens.pop() {
            Some(t) => {
                let value = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    Problem::bad_request("the access token is not a valid header value")
                        .to_response()
                })?;
                let mut h = req.headers().clone();
                h.insert(header::AUTHORIZATION, value);
                Some(h)
            }
            None => None,
        };
        Ok(Self {
            response,
            session,
            stream,
            protocols: offered,
            token_protocol,
            query,
            admission_headers,
        })
    }
}

/// The client's body with its frames held to the limits as their headers
/// arrive, before actix-ws buffers them (see `ws_frames`).
fn guarded(
    req: &HttpRequest,
    body: web::Payload,
    settings: &WebSocketSettings,
) -> Result<web::Payload, HttpResponse> {
    type Frames = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>,
    >;
    let mut payload = actix_web::dev::Payload::from(Box::pin(Guarded::new(
        body,
        settings.frame_limits(),
    )) as Frames);
    <web::Payload as actix_web::FromRequest>::from_request(req, &mut payload)
        .into_inner()
        .map_err(|e| e.error_response())
}

/// The protocols the client's handshake offers, in its order.
fn offered_protocols(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The token a browser sent as the protocol pair `bearer, <token>`, taken
/// out of the offer; whether there was one.
fn take_protocol_token(
    offered: &mut Vec<String>,
    tokens: &mut Vec<String>,
) -> Result<bool, Problem> {
    let Some(i) = offered
        .iter()
        .position(|p| p.eq_ignore_ascii_case(TOKEN_PROTOCOL))
    else {
        return Ok(false);
    };
    if i + 1 >= offered.len() {
        return Err(Problem::bad_request(
            "the `bearer` protocol entry must be followed by the access token",
        ));
    }
    tokens.push(offered.remove(i + 1));
    offered.remove(i);
    Ok(true)
}

/// The query without its `access_token`, which goes to `tokens`.
fn take_query_token(query: &str, tokens: &mut Vec<String>) -> String {
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut removed = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "access_token" {
            tokens.push(v.into_owned());
            removed = true;
        } else {
            kept.append_pair(&k, &v);
        }
    }
    if removed {
        kept.finish()
    } else {
        query.to_owned()
    }
}

/// Headers of the client's handshake that describe its own WebSocket: the
/// gateway's handshake with the upstream sets its own.
const HANDSHAKE_HEADERS: [&str; 5] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

/// The client's answer when the upstream refused the upgrade with a 4xx.
fn refused_upgrade(status: StatusCode) -> HttpResponse {
    Problem::new(
        status,
        "upgrade-refused",
        status.canonical_reason().unwrap_or("Refused"),
    )
    .with_detail(format!(
        "the service refused the WebSocket upgrade ({})",
        status.as_u16()
    ))
    .to_response()
}

/// The protocol to answer: the upstream's choice among the client's, else `bearer` if it sent one.
fn chosen_protocol(
    upstream: &HeaderMap,
    protocols: &[String],
    token_protocol: bool,
) -> Option<String> {
    // `bearer` for a browser that sent its token as a protocol: a browser
    // fails a handshake whose answer names none it offered.
    upstream
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| protocols.iter().any(|o| o == p))
        .map(str::to_owned)
        .or_else(|| token_protocol.then(|| TOKEN_PROTOCOL.to_owned()))
}

/// The client's `101` headers: the upstream's (but what the gateway owns), route edits, limits.
fn answer_headers(
    ctx: &Ctx<'_>,
    h: &mut HeaderMap,
    upstream: &HeaderMap,
    protocols: &[String],
    token_protocol: bool,
) {
    for (name, value) in upstream {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n)
            && !HANDSHAKE_HEADERS.contains(&n)
            && !common::identity::GATEWAY_ONLY_RESPONSE_HEADERS.contains(&n)
        {
            h.append(name.clone(), value.clone());
        }
    }
    ctx.route.response_headers.apply(h);
    for (name, value) in &ctx.limit_headers {
        h.insert(name.clone(), value.clone());
    }
    let chosen = chosen_protocol(upstream, protocols, token_protocol);
    if let Some(p) = chosen.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
}

/// The connection's limits: its life ends with the caller's token unless `outlive_token`.
fn connection_limits(settings: &WebSocketSettings, token: Option<&AccessClaims>) -> Limits {
    let now = crate::clock::unix_secs();
    let mut life = Duration::from_secs(settings.max_lifetime_secs);
    let mut ends_with_token = false;
    if let Some(t) = token
        && !settings.outlive_token
    {
        let left = Duration::from_secs(u64::try_from(t.exp - now).unwrap_or(0));
        if left < life {
            life = left;
            ends_with_token = true;
        }
    }
    Limits {
        max_message: settings.max_message_bytes,
        idle: Duration::from_secs(settings.idle_timeout_secs),
        deadline: Instant::now() + life,
        ends_with_token,
    }
}

/// Phase: WebSocket. Connect to the upstream with `headers`, answer the
/// client's handshake, and start relaying. The caller's token (when the
/// route needs one) bounds the connection's life.
pub async fn phase(
    ctx: &Ctx<'_>,
    upgrade: Upgrade,
    upstream: &Upstream,
    mut headers: HeaderMap,
) -> Result<HttpResponse, HttpResponse> {
    let (Some(tr), Some(id)) = (
        ctx.req.app_data::<web::Data<crate::traffic::Traffic>>(),
        ctx.req.app_data::<web::Data<crate::identity::Identity>>(),
    ) else {
        return Err(Problem::internal().to_response());
    };
    let settings = &ctx.live.websocket;
    let path = ctx.route.upstream_path(ctx.req.path(), &upgrade.query);
    for name in HANDSHAKE_HEADERS {
        headers.remove(name);
    }
    let opened = client::open_websocket(
        upstream,
        &path,
        &headers,
        &upgrade.protocols,
        settings.max_frame_bytes,
        &tr.metrics,
    )
    .await
    .map_err(|e| match e {
        WebSocketFailure::Refused(status) => refused_upgrade(status),
        WebSocketFailure::Failed(e) => e.to_response(),
    })?;
    let Upgrade {
        mut response,
        session,
        stream,
        protocols,
        token_protocol,
        ..
    } = upgrade;
    answer_headers(
        ctx,
        response.headers_mut(),
        opened.head.headers(),
        &protocols,
        token_protocol,
    );
    let token = ctx.caller.as_ref().map(|c| Arc::new(c.claims().clone()));
    let limits = connection_limits(settings, token.as_deref());
    let counters = tr.metrics.websocket(&ctx.route.prefix);
    let guard = Guard {
        sessions: id.sessions.clone(),
        token,
    };
    let lease = opened.lease;
    // The upstream's frames are held to the limits as their headers arrive
    // (see `ws_frames`).
    let upstream_socket = crate::traffic::ws_frames::guard(opened.socket, settings.frame_limits());
    actix_web::rt::spawn(async move {
        let reason = crate::traffic::ws_relay::relay(
            session,
            stream,
            upstream_socket,
            limits,
            guard,
            &counters,
        )
        .await;
        counters.closed(reason);
        drop(lease);
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_a_get_with_both_headers() {
        let req = |m: actix_web::http::Method, h: &[(&str, &str)]| {
            let mut r = actix_web::test::TestRequest::default().method(m);
            for (k, v) in h {
                r = r.insert_header((*k, *v));
            }
            r.to_http_request()
        };
        let get = actix_web::http::Method::GET;
        assert!(is_upgrade(&req(
            get.clone(),
            &[
                ("upgrade", "WebSocket"),
                ("connection", "keep-alive, Upgrade")
            ]
        )));
        assert!(!is_upgrade(&req(get.clone(), &[("upgrade", "websocket")])));
        assert!(!is_upgrade(&req(
            get,
            &[("upgrade", "h2c"), ("connection", "upgrade")]
        )));
        assert!(!is_upgrade(&req(
            actix_web::http::Method::POST,
            &[("upgrade", "websocket"), ("connection", "upgrade")]
        )));
    }
}
