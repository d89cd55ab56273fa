//! Phase: response filter. Runs on the upstream's answer head, before its
//! body: what the client may see of the upstream's headers, said the way the
//! client reaches the service.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use futures_util::Stream;

use super::cache::mark_miss;
use super::context::Ctx;
use super::headers::HOP_BY_HOP;
use crate::traffic::routes::Route;
use crate::traffic::upstream::client::Answer;
use crate::traffic::upstream::pool::Lease;

/// The client's copy of an upstream head: without hop-by-hop headers and
/// the services' words to the gateway (`x-gatehouse-*`), with
/// `Location` said as the client reaches it, the route's edits, then the
/// rate-limit headers and, on a cached route, `x-cache: MISS`.
pub fn head(ctx: &Ctx<'_>, status: StatusCode, upstream: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(upstream.len() + 4);
    for (name, value) in upstream {
        let n = name.as_str();
        let dropped = HOP_BY_HOP.contains(&n)
            || common::identity::GATEWAY_ONLY_RESPONSE_HEADERS.contains(&n)
            || (name == header::SET_COOKIE && super::headers::sets_gatehouse_cookie(value));
        if !dropped {
            h.append(name.clone(), value.clone());
        }
    }
    rewrite_location(ctx.route, &mut h);
    ctx.route.response_headers.apply(&mut h);
    for (name, value) in &ctx.limit_headers {
        h.insert(name.clone(), value.clone());
    }
    mark_miss(ctx, &mut h);
    // Every 429 and 503 the gateway sends says when to come back, an
    // upstream's that does not included.
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && !h.contains_key(header::RETRY_AFTER)
    {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    h
}

/// A service names its resources by its own paths: say them as the client
/// reaches them (what nginx's `proxy_redirect` does). Absolute URLs and
/// paths the route does not serve are left alone.
fn rewrite_location(route: &Route, h: &mut HeaderMap) {
    if let Some(public) = h
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.starts_with('/') && !l.starts_with("//"))
        .and_then(|l| {
            let (path, query) = l.split_once('?').map_or((l, None), |(p, q)| (p, Some(q)));
            let public = route.public_path(path)?;
            Some(match query {
                Some(q) => format!("{public}?{q}"),
                None => public,
            })
        })
        .and_then(|p| HeaderValue::from_str(&p).ok())
    {
        h.insert(header::LOCATION, public);
    }
}

/// The answer with the upstream's body streaming through. A known length is
/// sent as such (normalised), anything else chunked. The head is moved into
/// the answer as it is, not copied header by header; not `streaming()`,
/// which would invent a Content-Type the upstream did not send.
pub fn stream(answer: Answer, mut head: HeaderMap, length: Option<u64>) -> HttpResponse {
    match length {
        Some(len) => {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            head.remove(header::CONTENT_LENGTH);
        }
    }
    let status = answer.response.status();
    let body = actix_web::body::BodyStream::new(Leased {
        inner: answer.response,
        _lease: answer.lease,
    });
    let mut out = HttpResponse::with_body(status, body).map_into_boxed_body();
    *out.headers_mut() = head;
    // With a length, the stream goes out as it is, delimited by the
    // Content-Length above (what the builder's `no_chunking` does).
    out.head_mut().no_chunking(length.is_some());
    out
}

/// The upstream's answer, streamed, holding its target lease until done (so
/// least-connections counts a long download as in flight).
struct Leased<S> {
    inner: S,
    _lease: Option<Lease>,
}

impl<S: Stream + Unpin> Stream for Leased<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::live_with;
    use actix_web::http::Method;
    use actix_web::http::header::HeaderName;
    use serde_json::json;

    #[test]
    fn the_client_sees_public_paths_and_no_connection_headers() {
        let live = live_with(
            json!([{"prefix": "/api/orders", "rewrite": "/orders", "upstream": "users",
                    "access": "public", "cache": {"ttl_secs": 5},
                    "response_headers": {"add": {"x-served-by": "gatehouse"}, "remove": ["server"]}}]),
            json!([]),
        );
        let route = &live.routes.routes()[0];
        let rule = route.rule_for(&Method::GET).unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/api/orders")
            .to_http_request();
        let mut ctx = Ctx::new(&req, &live, route, rule);
        ctx.limit_headers = vec![(
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_static("\"route\";r=1;t=1"),
        )];
        let mut up = HeaderMap::new();
        for (n, v) in [
            ("location", "/orders/42?x=1"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("server", "orders/1.0"),
            ("content-length", "12"),
            ("set-cookie", "a=1"),
        ] {
            up.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let h = head(&ctx, StatusCode::OK, &up);
        assert_eq!(h.get("location").unwrap(), "/api/orders/42?x=1");
        assert!(!h.contains_key("connection") && !h.contains_key("transfer-encoding"));
        assert!(!h.contains_key("server"));
        assert_eq!(h.get("x-served-by").unwrap(), "gatehouse");
        assert_eq!(h.get("ratelimit").unwrap(), "\"route\";r=1;t=1");
        assert_eq!(h.get("x-cache").unwrap(), "MISS");
        assert_eq!(h.get("set-cookie").unwrap(), "a=1");
        assert!(!h.contains_key("retry-after"));
        let mut up = HeaderMap::new();
        up.insert(
            HeaderName::from_static("x-gatehouse-revoke-sessions"),
            HeaderValue::from_static("x"),
        );
        let busy = head(&ctx, StatusCode::SERVICE_UNAVAILABLE, &up);
        assert_eq!(busy.get("retry-after").unwrap(), "1");
        assert!(!busy.contains_key("x-gatehouse-revoke-sessions"));
        assert_eq!(super::super::headers::content_length(&h), Some(12));
        // A path the route does not serve, or another origin, stays as sent.
        for l in [
            "/elsewhere/1",
            "https://example.com/orders/1",
            "//evil/orders",
        ] {
            let mut up = HeaderMap::new();
            up.insert(header::LOCATION, HeaderValue::from_static(l));
            assert_eq!(head(&ctx, StatusCode::OK, &up).get("location").unwrap(), l);
        }
    }
}
