//! Forwarding to upstreams, as a pipeline of small phases:
//! route -> authenticate -> authorize -> choose target -> rewrite request ->
//! forward -> map upstream errors. Each phase returns the problem that ends
//! the request, if any.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use awc::error::SendRequestError;
use common::Problem;
use common::identity::{Principal, strip_identity_headers};
use common::telemetry::RequestId;
use uuid::Uuid;

use crate::routes::{Route, Rule};
use crate::state::{Gateway, Live};
use crate::tokens::AccessClaims;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// 401 with the RFC 6750 challenge.
pub fn invalid_token(detail: &str) -> HttpResponse {
    let mut res = Problem::unauthorized(detail).to_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
    );
    res
}

/// Phase: authenticate. The bearer token's claims, or the 401 to send.
pub fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<AccessClaims, HttpResponse> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = value
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_token("a bearer access token is required"))?;
    let claims = gw.live.load().tokens.verify(token).map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        invalid_token("the access token is invalid or expired")
    })?;
    if gw.sessions.is_revoked(&claims.jti) {
        return Err(invalid_token("the access token has been revoked"));
    }
    Ok(claims)
}

/// The principal a verified token stands for.
pub fn principal(claims: &AccessClaims) -> Result<Principal, HttpResponse> {
    let id = Uuid::parse_str(&claims.sub)
        .map_err(|_| invalid_token("the access token has no valid subject"))?;
    Ok(Principal::User {
        id,
        roles: claims.roles.clone(),
    })
}

/// Phase: authorize. `None` when the rule admits the caller.
fn authorize(rule: &Rule, claims: &AccessClaims) -> Option<HttpResponse> {
    match rule {
        Rule::AnyRole(roles) if !roles.iter().any(|r| claims.roles.contains(r)) => Some(
            Problem::forbidden(format!(
                "this route needs one of the roles: {}",
                roles.join(", ")
            ))
            .to_response(),
        ),
        _ => None,
    }
}

static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// Phase: choose a target of the upstream (round-robin).
fn choose_target<'a>(live: &'a Live, route: &Route) -> Option<&'a str> {
    let targets = live.upstreams.get(&route.upstream)?;
    let i = ROUND_ROBIN.fetch_add(1, Ordering::Relaxed);
    targets.get(i % targets.len().max(1)).map(String::as_str)
}

/// Phase: rewrite the request headers for the upstream. Drops hop-by-hop
/// headers, the client's credentials and any identity header it sent; sets the
/// forwarding headers, the request id and, for an authenticated caller, the
/// identity with the gateway's proof. A public route carries no identity at
/// all, so it can never reach what needs one (internal endpoints included).
fn upstream_headers(
    gw: &Gateway,
    req: &HttpRequest,
    audience: &str,
    who: Option<&Principal>,
) -> Result<HeaderMap, Problem> {
    let mut h = HeaderMap::new();
    for (name, value) in req.headers() {
        h.append(name.clone(), value.clone());
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    // Connection-listed headers are hop-by-hop too.
    if let Some(conn) = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
    {
        for name in conn.split(',') {
            h.remove(name.trim());
        }
    }
    h.remove(header::HOST);
    h.remove(header::AUTHORIZATION);
    strip_identity_headers(&mut h);
    for name in &gw.strip_headers {
        h.remove(name.as_str());
    }
    let info = req.connection_info();
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut h, "x-forwarded-for", &peer);
    set(&mut h, "x-forwarded-proto", info.scheme());
    set(&mut h, "x-forwarded-host", info.host());
    if let Some(id) = req.extensions().get::<RequestId>() {
        set(&mut h, "x-request-id", &id.0);
    }
    if let Some(who) = who {
        for (name, value) in gw.minter.header_pairs(audience, who).map_err(|e| {
            tracing::error!(error = %e, "minting a gateway proof failed");
            Problem::internal()
        })? {
            set(&mut h, name, &value);
        }
    }
    Ok(h)
}

fn upstream_error(e: &SendRequestError) -> HttpResponse {
    match e {
        SendRequestError::Timeout => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            "Gateway timeout",
        )
        .with_detail("the upstream did not answer in time")
        .to_response(),
        other => {
            tracing::warn!(error = %other, "upstream request failed");
            Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                .with_detail("the upstream could not be reached or sent a broken response")
                .to_response()
        }
    }
}

/// Forward a request on behalf of `who` and stream the answer back.
/// `live` is the configuration snapshot the request was routed with.
pub async fn forward(
    gw: &Gateway,
    live: &Live,
    client: &awc::Client,
    req: &HttpRequest,
    body: web::Payload,
    route: &Route,
    who: Option<&Principal>,
) -> HttpResponse {
    let Some(target) = choose_target(live, route) else {
        return Problem::service_unavailable(format!(
            "upstream `{}` has no target",
            route.upstream
        ))
        .to_response();
    };
    let headers = match upstream_headers(gw, req, &route.upstream, who) {
        Ok(h) => h,
        Err(p) => return p.to_response(),
    };
    let url = format!(
        "{}{}",
        target.trim_end_matches('/'),
        route.upstream_path(req.path(), req.query_string())
    );
    let mut up = client.request(req.method().clone(), url);
    *up.headers_mut() = headers;
    let res = match up.send_stream(body).await {
        Ok(r) => r,
        Err(e) => return upstream_error(&e),
    };
    let mut out = HttpResponse::build(res.status());
    for (name, value) in res.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(len) = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        out.no_chunking(len);
    }
    out.streaming(res)
}

/// The catch-all handler: every path that is not one of the gateway's own.
pub async fn handle(
    req: HttpRequest,
    body: web::Payload,
    gw: web::Data<Gateway>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let live = gw.live.load_full();
    let Some(route) = live.routes.find(req.path()).cloned() else {
        let status = StatusCode::from_u16(live.no_route.status).unwrap_or(StatusCode::NOT_FOUND);
        return Problem::new(
            status,
            "no-route",
            status.canonical_reason().unwrap_or("Not found"),
        )
        .with_detail(live.no_route.detail.clone())
        .to_response();
    };
    let Some(rule) = route.rule_for(req.method()).cloned() else {
        return Problem::method_not_allowed().to_response();
    };
    let who = if rule == Rule::Public {
        None
    } else {
        let claims = match authenticate(&gw, req.headers()) {
            Ok(c) => c,
            Err(res) => return res,
        };
        if let Some(res) = authorize(&rule, &claims) {
            return res;
        }
        match principal(&claims) {
            Ok(p) => Some(p),
            Err(res) => return res,
        }
    };
    if req.method() == Method::CONNECT {
        return Problem::method_not_allowed().to_response();
    }
    forward(&gw, &live, &client, &req, body, &route, who.as_ref()).await
}
