//! Phase: upstream request. What the upstream receives: the request line
//! (the route's rewrite of the path), the body (within the route's limit)
//! and the headers, built for each attempt. Runs after the upstream is
//! known and before anything is sent.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web;
use common::identity::{Principal, ProofMinter};

use super::context::Ctx;
use super::headers::{HOP_BY_HOP, content_length};
use crate::traffic::routes::Route;
use crate::traffic::upstream::client::{
    Body, Call, ClientFault, Limited, RetryPolicy, Source, UpstreamError,
};
use crate::traffic::upstream::pool::Upstream;

/// What a client may not tell the upstream: the gateway's own forwarding
/// headers replace these, and its credentials stop here.
const CLIENT_FORWARDING: [&str; 10] = [
    "host",
    // The trace context is the gateway's to send (see `gateway_headers`).
    "traceparent",
    "tracestate",
    "authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request with no body at all (so it can be sent again).
fn is_bodyless(h: &HeaderMap) -> bool {
    !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == "0")
}

/// Phase: upstream request, the call. A declared length over the route's
/// limit is refused before anything is sent (413); a chunked body is cut
/// off at the limit as it streams. A client's request is retried only as
/// [`RetryPolicy::for_method`] allows.
pub fn call<'a>(
    ctx: &Ctx<'_>,
    upstream: &'a Upstream,
    path: &'a str,
    payload: web::Payload,
    metrics: &'a crate::ops::metrics::Metrics,
) -> Result<Call<'a>, UpstreamError> {
    let limit = ctx.route.max_body_bytes.unwrap_or(ctx.live.max_body_bytes);
    if content_length(ctx.req.headers()).is_some_and(|n| n > limit) {
        return Err(UpstreamError {
            source: Source::Client(ClientFault::TooLarge(limit)),
            upstream: upstream.name.clone(),
            retry_safe: false,
            cause: "declared length over the limit".into(),
        });
    }
    let mut call = Call::new(upstream, ctx.req.method().clone(), path, metrics);
    call.retry = RetryPolicy::for_method(ctx.req.method(), upstream.spec.retries);
    call.body = if is_bodyless(ctx.req.headers()) {
        Body::Empty
    } else {
        Body::Stream(Limited::new(payload, limit))
    };
    Ok(call)
}

/// Phase: upstream request, the headers. Drops hop-by-hop headers (and
/// those `Connection` names), the client's credentials, any identity header
/// it sent, any forwarding header it made up, the configured strip list and
/// every header a claim is forwarded in (`claim_headers`); applies the
/// route's edits; then sets what only the gateway sets (see
/// [`gateway_headers`]), with the caller's `claims` (header, value) under
/// the proof. A public route carries no identity at all, so it can never
/// reach what needs one (internal endpoints included).
pub fn headers(
    down: Downstream<'_>,
    route: &Route,
    strip: &[String],
    claim_headers: &[String],
    claims: &[(String, String)],
    minter: &ProofMinter,
) -> Result<HeaderMap, UpstreamError> {
    let req = down.req;
    let connection_listed: Vec<&str> = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut h = HeaderMap::with_capacity(req.headers().len() + 8);
    for (name, value) in req.headers() {
        let n = name.as_str();
        let dropped = HOP_BY_HOP.contains(&n)
            || CLIENT_FORWARDING.contains(&n)
            || common::identity::IDENTITY_HEADERS.contains(&n)
            || n == common::identity::CREDENTIAL_LOCKED_HEADER
            || strip.iter().any(|s| s == n)
            || claim_headers.iter().any(|s| s == n)
            || connection_listed.iter().any(|c| c.eq_ignore_ascii_case(n));
        if dropped {
            continue;
        }
        if name == header::COOKIE {
            if let Some(v) = super::headers::foreign_cookies(value) {
                h.append(name.clone(), v.into_owned());
            }
        } else {
            h.append(name.clone(), value.clone());
        }
    }
    route.request_headers.apply(&mut h);
    gateway_headers(down, &mut h, &route.upstream, claims, minter)?;
    Ok(h)
}

/// The request the gateway calls an upstream for: the client's request,
/// the client's address (computed once per request) and the caller.
#[derive(Clone, Copy)]
pub struct Downstream<'a> {
    pub req: &'a HttpRequest,
    pub client: Option<std::net::IpAddr>,
    pub who: Option<&'a Principal>,
}

/// The headers only the gateway sets, on every call it makes for a client
/// (proxied requests and composed parts): `X-Forwarded-*` from what it saw,
/// the request id, and the identity with a proof for `audience`. The
/// trace context is written by the client, per attempt.
pub fn gateway_headers(
    down: Downstream<'_>,
    h: &mut HeaderMap,
    audience: &str,
    claims: &[(String, String)],
    minter: &ProofMinter,
) -> Result<(), UpstreamError> {
    let req = down.req;
    if let Some(peer) = down.client {
        h.insert(X_FORWARDED_FOR, ip_value(peer));
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if req.app_config().secure() {
            "https"
        } else {
            "http"
        }),
    );
    if let Some(host) = req.headers().get(header::HOST) {
        h.insert(X_FORWARDED_HOST, host.clone());
    }
    if let Some(id) = common::telemetry::request_id_header() {
        h.insert(X_REQUEST_ID, id);
    }
    if let Some(who) = down.who {
        minter
            .headers_with_claims(audience, who, claims)
            .map_err(|e| UpstreamError::internal(audience, format!("minting a proof: {e}")))?
            .insert_into(h);
    }
    Ok(())
}

/// An address as a header value. IPv4 (nearly every peer) is written
/// digit by digit: `Display` goes through the formatting machinery, a
/// thousand instructions on every proxied request.
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    let mut out = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            out[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            out[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        out[n] = b'0' + octet % 10;
        n += 1;
    }
    HeaderValue::from_bytes(&out[..n]).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.0.2.9",
            "255.255.255.255",
            "100.9.99.199",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    use super::*;
    use crate::tests_support::live_with;
    use actix_web::http::Method;
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn the_upstream_hears_the_gateway_and_never_the_client_about_identity() {
        let live = live_with(
            json!([{"prefix": "/api/me", "rewrite": "/me", "upstream": "users",
                    "access": "authenticated",
                    "request_headers": {"add": {"x-api-version": "2"}, "remove": ["x-debug"]}}]),
            json!([]),
        );
        let route = &live.routes.routes()[0];
        let pair = common::keys::generate_ed25519().unwrap();
        let minter = ProofMinter::from_pem(&pair.private_pem, "gateway", 60).unwrap();
        let verifier =
            common::identity::ProofVerifier::new(&[pair.public_pem], "gateway", "users").unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/api/me")
            .peer_addr("192.0.2.9:5000".parse().unwrap())
            .insert_header(("host", "api.example"))
            .insert_header(("authorization", "Bearer secret"))
            .insert_header(("request-user-id", Uuid::nil().to_string()))
            .insert_header(("request-user-roles", "admin"))
            .insert_header(("x-gateway-token", "forged"))
            .insert_header(("x-forwarded-for", "6.6.6.6"))
            .insert_header(("forwarded", "for=6.6.6.6"))
            .insert_header(("connection", "keep-alive, x-hop"))
            .insert_header(("x-hop", "1"))
            .insert_header(("x-debug", "1"))
            .insert_header(("x-internal", "1"))
            .insert_header(("accept", "application/json"))
            .to_http_request();
        let alice = Principal::User {
            id: Uuid::new_v4(),
            roles: vec!["user".into()],
        };
        let strip = vec!["x-internal".to_owned()];
        let down = |who| Downstream {
            req: &req,
            client: crate::identity::caller::client_ip(&req),
            who,
        };
        let h = headers(down(Some(&alice)), route, &strip, &[], &[], &minter).unwrap();
        for gone in [
            "authorization",
            "forwarded",
            "connection",
            "x-hop",
            "x-debug",
            "x-internal",
            "host",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.9");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "api.example");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-api-version").unwrap(), "2");
        assert_eq!(h.get("accept").unwrap(), "application/json");
        assert_eq!(h.get_all("request-user-id").count(), 1);
        assert_eq!(verifier.principal(&h).unwrap(), alice);
        // A public route: whatever identity the client claimed is gone, and
        // none is added.
        let h = headers(down(None), route, &strip, &[], &[], &minter).unwrap();
        for gone in common::identity::IDENTITY_HEADERS {
            assert!(!h.contains_key(gone), "{gone} on a public call");
        }
    }

    #[test]
    fn only_bodyless_requests_may_be_replayed() {
        let mut h = HeaderMap::new();
        assert!(is_bodyless(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(is_bodyless(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert!(!is_bodyless(&h));
        let mut chunked = HeaderMap::new();
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(!is_bodyless(&chunked));
        assert!(RetryPolicy::for_method(&Method::GET, 1).idempotent);
    }
}
