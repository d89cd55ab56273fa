//! WebSockets through the gateway: the upgrade is admitted like any
//! request (401/403 before the service hears of it), the service's
//! handshake carries the identity under the proof and never the client's
//! made-up one, frames go both ways unchanged (text, binary, 1 MiB, ping,
//! close codes), and the gateway ends a socket with the right close code
//! when it idles, outgrows its limits, outlives its token or its token is
//! revoked. The client is awc's WebSocket client, the service an
//! actix-ws echo.

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::helpers::*;

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

fn ws_routes() -> Value {
    base_routes(json!([
        {"prefix": "/api/live", "upstream": "echo", "rewrite": "/ws", "access": ["user", "admin"]},
        {"prefix": "/api/live-admin", "upstream": "echo", "rewrite": "/ws", "access": ["admin"]},
        {"prefix": "/public-denied", "upstream": "echo", "rewrite": "/status/403", "access": "public"},
        {"prefix": "/api/plain", "upstream": "echo", "rewrite": "/ws", "access": "authenticated",
         "websocket": false},
        {"prefix": "/api/huge", "upstream": "echo", "rewrite": "/ws-huge", "access": "authenticated"},
    ]))
}

fn ws_url(s: &Stack, path: &str) -> String {
    s.url(path).replacen("http://", "ws://", 1)
}

fn ws_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

async fn open(
    s: &Stack,
    path: &str,
    token: Option<&str>,
) -> Result<(awc::ClientResponse, Socket), awc::error::WsClientError> {
    let mut req = ws_client()
        .ws(ws_url(s, path))
        .max_frame_size(4 * 1024 * 1024);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.connect().await
}

/// The status a refused upgrade was answered with; `what` names the
/// attempt when it upgraded or failed otherwise.
fn refused(
    result: Result<(awc::ClientResponse, Socket), awc::error::WsClientError>,
    what: &str,
) -> u16 {
    match result {
        Err(awc::error::WsClientError::InvalidResponseStatus(st)) => st.as_u16(),
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what}: upgraded"),
    }
}

/// The next frame that is not a pong we did not ask about, within 10 s.
async fn next(sock: &mut Socket) -> Frame {
    actix_web::rt::time::timeout(Duration::from_secs(10), sock.next())
        .await
        .expect("a frame in time")
        .expect("the socket is open")
        .expect("a valid frame")
}

async fn hits(s: &Stack) -> u64 {
    let r = read(
        s.client
            .get(format!("http://127.0.0.1:{}/ws/hits", s.echo_port)),
    )
    .await;
    r.body.as_u64().unwrap()
}

/// Send `headers` and read back what the service's handshake carried.
async fn handshake_seen(sock: &mut Socket) -> Value {
    sock.send(Message::Text("headers".into())).await.unwrap();
    match next(sock).await {
        Frame::Text(t) => serde_json::from_slice(&t).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn close_code(frame: Frame) -> (u16, String) {
    match frame {
        Frame::Close(Some(CloseReason { code, description })) => {
            (u16::from(code), description.unwrap_or_default())
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[actix_web::test]
async fn frames_go_both_ways_with_the_identity_under_the_proof() {
    let s = spawn_stack_with(|l| l.set("routes", ws_routes())).await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    let mut req = ws_client()
        .ws(ws_url(&s, "/api/live?room=7"))
        .max_frame_size(4 * 1024 * 1024)
        .bearer_auth(&token)
        // Made up by the client: replaced, never forwarded.
        .header("request-user-id", "00000000-0000-0000-0000-000000000000")
        .header("request-user-roles", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
    req = req.protocols(["chat"]);
    let (res, mut sock) = req.connect().await.unwrap();
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers().get("sec-websocket-protocol").unwrap(), "chat");

    let seen = handshake_seen(&mut sock).await;
    assert_eq!(seen["?query"], "room=7");
    assert_eq!(seen["request-user-id"], alice.as_str());
    assert_eq!(seen["request-user-roles"], "user");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert_eq!(seen["sec-websocket-protocol"], "chat");
    // The gateway's trace context (by default a client's starts a new trace).
    let tp = seen["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("{seen}"));
    assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
    assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");
    let pub_pem =
        std::fs::read_to_string(s.env.data_dir().join("keys/gateway-proof.pub.pem")).unwrap();
    let v = common::identity::ProofVerifier::new(&[pub_pem], "gateway", "echo").unwrap();
    let mut h = actix_web::http::header::HeaderMap::new();
    for (k, val) in seen.as_object().unwrap() {
        if let (Ok(k), Some(val)) = (
            actix_web::http::header::HeaderName::from_bytes(k.as_bytes()),
            val.as_str(),
        ) {
            h.insert(
                k,
                actix_web::http::header::HeaderValue::from_str(val).unwrap(),
            );
        }
    }
    let who = v.principal(&h).unwrap();
    assert_eq!(
        who,
        common::identity::Principal::User {
            id: alice.parse().unwrap(),
            roles: vec!["user".into()]
        }
    );

    sock.send(Message::Text("héllo".into())).await.unwrap();
    assert_eq!(next(&mut sock).await, Frame::Text(Bytes::from("héllo")));
    sock.send(Message::Binary(Bytes::from_static(&[0, 1, 2, 255])))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sock).await,
        Frame::Binary(Bytes::from_static(&[0, 1, 2, 255]))
    );
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    sock.send(Message::Binary(Bytes::from(big.clone())))
        .await
        .unwrap();
    assert_eq!(next(&mut sock).await, Frame::Binary(Bytes::from(big)));
    sock.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sock).await,
        Frame::Pong(Bytes::from_static(b"are you there"))
    );
    // A close code chosen by the client comes back from the service.
    sock.send(Message::Close(Some(CloseReason {
        code: CloseCode::Other(4000),
        description: Some("bye".into()),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(next(&mut sock).await), (4000, "bye".into()));

    // And one the service chooses reaches the client.
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    sock.send(Message::Text("close 4321".into())).await.unwrap();
    assert_eq!(close_code(next(&mut sock).await), (4321, "asked".into()));

    // Counted: the upgrades as 1xx answers, the frames by side, the
    // connections open now, the ends by reason.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = testkit::http::scrape(s.client.get(s.url("/metrics"))).await;
        let has = |line: &str| m.lines().any(|l| l == line);
        if has("gatehouse_websocket_connections{route=\"/api/live\"} 0")
            && has(
                "gatehouse_websocket_closed_total{reason=\"client_closed\",route=\"/api/live\"} 1",
            )
            && has(
                "gatehouse_websocket_closed_total{reason=\"upstream_closed\",route=\"/api/live\"} 1",
            )
        {
            assert!(
                m.contains(
                    "gatehouse_requests_total{method=\"GET\",route=\"/api/live\",status=\"1xx\"} 2"
                ),
                "{m}"
            );
            let frames = m
                .lines()
                .find(|l| {
                    l.starts_with(
                        "gatehouse_websocket_frames_total{from=\"client\",route=\"/api/live\"}",
                    )
                })
                .unwrap();
            assert!(frames.ends_with(" 7"), "{frames}");
            assert!(m.contains(
                "gatehouse_websocket_payload_bytes_total{from=\"upstream\",route=\"/api/live\"}"
            ));
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn refused_upgrades_never_reach_the_service() {
    let s = spawn_stack_with(|l| l.set("routes", ws_routes())).await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "bob", &["user"]).await;
    let (bob, _) = s.tokens("bob", "bob-password-1").await;
    for (path, token, status) in [
        ("/api/live", None, 401),
        ("/api/live", Some("not-a-token"), 401),
        ("/api/live-admin", Some(bob.as_str()), 403),
    ] {
        assert_eq!(refused(open(&s, path, token).await, path), status, "{path}");
    }
    // The refusal is problem+json with the RFC 6750 challenge.
    let r = read(
        s.client
            .get(s.url("/api/live"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    .await;
    r.problem(401);
    assert!(r.headers.contains_key("www-authenticate"));
    // A broken handshake is the client's fault.
    let r = read(
        s.client
            .get(s.url("/api/live"))
            .bearer_auth(&bob)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "8")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    .await;
    r.problem(400);
    assert_eq!(hits(&s).await, 0, "the service saw a refused upgrade");
    // An admin may.
    let (_, mut sock) = open(&s, "/api/live-admin", Some(&admin)).await.unwrap();
    sock.send(Message::Text("x".into())).await.unwrap();
    assert_eq!(next(&mut sock).await, Frame::Text(Bytes::from("x")));
    assert_eq!(hits(&s).await, 1);
    // A route with `websocket: false` forwards a plain GET: the echo, no
    // longer asked to upgrade, refuses (it only speaks WebSocket there),
    // and so does the gateway's client.
    let plain = open(&s, "/api/plain", Some(&admin)).await;
    assert_eq!(refused(plain, "a websocket: false route"), 400);
    // A service that refuses the upgrade: its status, as problem+json.
    let r = read(
        s.client
            .get(s.url("/public-denied"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    .await;
    assert_eq!(
        r.problem(403)["type"],
        "urn:gatehouse:problem:upgrade-refused"
    );
}

#[actix_web::test]
async fn browsers_send_the_token_as_a_protocol_or_in_the_query() {
    let s = spawn_stack_with(|l| {
        l.set("routes", ws_routes())
            .set("websocket.token_in_query", true)
    })
    .await;
    let admin = admin_token(&s).await;
    // `new WebSocket(url, ["bearer", token, "chat"])`: the service sees
    // only `chat` and chooses it.
    let (res, mut sock) = ws_client()
        .ws(ws_url(&s, "/api/live"))
        .protocols(["bearer", admin.as_str(), "chat"])
        .connect()
        .await
        .unwrap();
    assert_eq!(res.headers().get("sec-websocket-protocol").unwrap(), "chat");
    let seen = handshake_seen(&mut sock).await;
    assert_eq!(seen["sec-websocket-protocol"], "chat");
    assert!(
        !seen.to_string().contains(&admin),
        "the token reached the service"
    );
    // `["bearer", token]` alone: the answer names `bearer`, which a browser
    // requires (it offered protocols), and the service hears none.
    let (res, mut sock) = ws_client()
        .ws(ws_url(&s, "/api/live"))
        .protocols(["bearer", admin.as_str()])
        .connect()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("sec-websocket-protocol").unwrap(),
        "bearer"
    );
    let seen = handshake_seen(&mut sock).await;
    assert!(seen.get("sec-websocket-protocol").is_none(), "{seen}");
    // `?access_token=`: taken out of the query the service gets.
    let (_, mut sock) = open(&s, &format!("/api/live?a=1&access_token={admin}&b=2"), None)
        .await
        .unwrap();
    let seen = handshake_seen(&mut sock).await;
    assert_eq!(seen["?query"], "a=1&b=2");
    assert!(!seen.to_string().contains(&admin));
    // Two tokens: which one counts is not guessed.
    let two = ws_client()
        .ws(ws_url(&s, "/api/live"))
        .bearer_auth(&admin)
        .protocols(["bearer", admin.as_str()])
        .connect()
        .await;
    assert_eq!(refused(two, "two tokens"), 400);
    // A token that is not valid in the protocol list is still refused.
    let forged = ws_client()
        .ws(ws_url(&s, "/api/live"))
        .protocols(["bearer", "forged"])
        .connect()
        .await;
    assert_eq!(refused(forged, "a forged token"), 401);
}

#[actix_web::test]
async fn a_socket_lives_no_longer_than_its_token() {
    let s = spawn_stack_with(|l| {
        l.set("routes", ws_routes())
            .set("tokens.access_ttl_secs", 2)
            .set("tokens.leeway_secs", 0)
    })
    .await;
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let opened = Instant::now();
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    // Busy all along: it is the token, not idleness, that ends it.
    let end = loop {
        sock.send(Message::Text("tick".into())).await.unwrap();
        match next(&mut sock).await {
            Frame::Text(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
            other => break other,
        }
    };
    let lived = opened.elapsed();
    let (code, why) = close_code(end);
    assert_eq!(code, 1008, "{why}");
    assert!(why.contains("expired"), "{why}");
    assert!(lived < Duration::from_secs(4), "{lived:?}");
}

#[actix_web::test]
async fn idle_oversized_and_revoked_sockets_are_closed_with_their_codes() {
    let s = spawn_stack_with(|l| {
        l.set("routes", ws_routes())
            .set("websocket.idle_timeout_secs", 1)
            .set("websocket.max_frame_bytes", 2048)
            .set("websocket.max_message_bytes", 4096)
    })
    .await;
    let (token, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;

    // Idle: no frame either way for a second.
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    let (code, why) = close_code(next(&mut sock).await);
    assert_eq!((code, why.as_str()), (1001, "idle timeout"));

    // A frame over the limit.
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    sock.send(Message::Binary(Bytes::from(vec![7u8; 2049])))
        .await
        .unwrap();
    assert_eq!(close_code(next(&mut sock).await).0, 1009);

    // Fragments that together are over the message limit.
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    use actix_ws::Item;
    sock.send(Message::Continuation(Item::FirstBinary(Bytes::from(
        vec![1u8; 2000],
    ))))
    .await
    .unwrap();
    sock.send(Message::Continuation(Item::Continue(Bytes::from(vec![
        2u8;
        2000
    ]))))
    .await
    .unwrap();
    sock.send(Message::Continuation(Item::Last(Bytes::from(vec![
        3u8;
        2000
    ]))))
    .await
    .unwrap();
    let end = loop {
        match next(&mut sock).await {
            Frame::Continuation(_) => continue,
            other => break other,
        }
    };
    assert_eq!(close_code(end).0, 1009);

    // Logging out ends the open socket at once (within the second the
    // gateway takes to look).
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    let out = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&token)
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    let t = Instant::now();
    // Busy, so that it is not idleness that ends it.
    let end = loop {
        sock.send(Message::Text("tick".into())).await.unwrap();
        match next(&mut sock).await {
            Frame::Text(_) => actix_web::rt::time::sleep(Duration::from_millis(100)).await,
            other => break other,
        }
    };
    let (code, why) = close_code(end);
    assert_eq!((code, why.as_str()), (1008, "the access token was revoked"));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

/// A frame's declared length is held to the limit as its header arrives,
/// in both directions: a peer declaring 2^40 bytes (or one byte over
/// `max_frame_bytes`) and then streaming payload is closed with 1009 at
/// once, without the gateway buffering what it sends.
#[actix_web::test]
async fn declared_frame_lengths_are_refused_before_the_payload() {
    use tokio::io::AsyncWriteExt;
    let s = spawn_stack_with(|l| {
        l.set("routes", ws_routes())
            .set("websocket.max_frame_bytes", 65_536)
            .set("websocket.max_message_bytes", 131_072)
    })
    .await;
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    // The client's frames: a header only, then payload the gateway must not
    // wait for (1 MiB sent of the 2^40 declared; of 65,537 nothing).
    for (declared, sent) in [(1u64 << 40, 1usize << 20), (65_537, 0)] {
        let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
        let mut head = vec![0x82u8, 0x80 | 127];
        head.extend_from_slice(&declared.to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        sock.io_mut().write_all(&head).await.unwrap();
        let chunk = vec![0u8; 16 * 1024];
        for _ in 0..sent / chunk.len() {
            // The gateway may have closed already: a failed write is fine.
            if sock.io_mut().write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = sock.io_mut().flush().await;
        let (code, why) = close_code(next(&mut sock).await);
        assert_eq!(
            (code, why.as_str()),
            (1009, "message too big"),
            "{declared}"
        );
    }
    // The upstream's: it declares 2^40 bytes and streams; the client is
    // told 1009 without the gateway taking it all in first.
    let (_, mut sock) = open(&s, "/api/huge", Some(&token)).await.unwrap();
    let t = Instant::now();
    let (code, _) = close_code(next(&mut sock).await);
    assert_eq!(code, 1009);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[actix_web::test]
async fn a_lost_service_closes_the_socket_with_1014() {
    let backend = Backend::start("lost").await;
    let url = backend.url();
    let s = spawn_stack_with(move |l| {
        l.set("routes", ws_routes())
            .set("upstreams.echo", json!([url.clone()]))
    })
    .await;
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let (_, mut sock) = open(&s, "/api/live", Some(&token)).await.unwrap();
    sock.send(Message::Text("x".into())).await.unwrap();
    assert_eq!(next(&mut sock).await, Frame::Text(Bytes::from("x")));
    backend.kill().await;
    let (code, why) = close_code(next(&mut sock).await);
    assert_eq!(code, 1014, "{why}");
    // Nothing listens now: a 502 (or 503 once the target is ejected), and
    // no upgrade.
    let st = refused(
        open(&s, "/api/live", Some(&token)).await,
        "without a service",
    );
    assert!([502, 503].contains(&st), "{st}");
}
