//! Forwarding to upstreams, as a pipeline of small phases:
//! route -> authenticate -> authorize -> rate limit -> cache lookup ->
//! body limit -> choose target -> rewrite request -> forward (with one retry
//! elsewhere for an idempotent request whose connection failed) -> map
//! upstream errors -> edit and stream the answer (or keep it in the cache).
//! Each phase returns the problem that ends the request, if any.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use awc::error::SendRequestError;
use common::Problem;
use common::identity::Principal;
use common::telemetry::RequestId;
use futures_util::Stream;
use uuid::Uuid;

use crate::cache::{self, Cached};
use crate::metrics::RouteLabel;
use crate::ratelimit::{Decision, LimitBy};
use crate::routes::{Miss, Route, Rule};
use crate::state::{Gateway, Live};
use crate::tokens::AccessClaims;
use crate::upstreams::{Lease, Target, Upstream};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
/// What a client may not tell the upstream: the gateway's own forwarding
/// headers replace these, and its credentials stop here.
const CLIENT_FORWARDING: [&str; 8] = [
    "host",
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
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

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

/// One HTTP client per connect timeout, per worker thread (awc clients are
/// not `Send`; each keeps its own connection pool).
#[derive(Default)]
pub struct Clients(RefCell<HashMap<u64, awc::Client>>);

impl Clients {
    pub fn get(&self, connect_timeout_ms: u64) -> awc::Client {
        self.0
            .borrow_mut()
            .entry(connect_timeout_ms)
            .or_insert_with(|| {
                awc::Client::builder()
                    .no_default_headers()
                    .disable_redirects()
                    .connector(
                        awc::Connector::new()
                            .timeout(Duration::from_millis(connect_timeout_ms))
                            .limit(0),
                    )
                    .finish()
            })
            .clone()
    }
}

/// The host a request names: its `Host` header (or URI authority), never a
/// client-sent `Forwarded`/`X-Forwarded-Host`.
fn request_host(req: &HttpRequest) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    crate::routes::host_of(raw)
}

/// Phase: rewrite the request headers for the upstream. Drops hop-by-hop
/// headers, the client's credentials, any identity header it sent and any
/// forwarding header it made up; sets the forwarding headers from what the
/// gateway saw, the request id, the route's edits and, for an authenticated
/// caller, the identity with the gateway's proof. A public route carries no
/// identity at all, so it can never reach what needs one (internal endpoints
/// included).
fn upstream_headers(
    gw: &Gateway,
    req: &HttpRequest,
    route: &Route,
    who: Option<&Principal>,
) -> Result<HeaderMap, Problem> {
    // One pass: copy what the upstream may see. Hop-by-hop headers (and
    // those `Connection` names), the credentials, every forwarding and
    // identity header the client sent, and the configured strip list stay
    // behind; the gateway sets its own below.
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
            || gw.strip_headers.iter().any(|s| s == n)
            || connection_listed.iter().any(|c| c.eq_ignore_ascii_case(n));
        if !dropped {
            h.append(name.clone(), value.clone());
        }
    }
    route.request_headers.apply(&mut h);
    gateway_headers(gw, req, &mut h, &route.upstream, who)?;
    Ok(h)
}

/// The headers only the gateway sets: forwarding headers from what it saw,
/// the request id, and the identity with a proof for `audience`.
pub fn gateway_headers(
    gw: &Gateway,
    req: &HttpRequest,
    h: &mut HeaderMap,
    audience: &str,
    who: Option<&Principal>,
) -> Result<(), Problem> {
    if let Some(peer) = req
        .peer_addr()
        .and_then(|a| HeaderValue::from_str(&a.ip().to_string()).ok())
    {
        h.insert(X_FORWARDED_FOR, peer);
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
    if let Some(id) = req.extensions().get::<RequestId>()
        && let Ok(v) = HeaderValue::from_str(&id.0)
    {
        h.insert(X_REQUEST_ID, v);
    }
    if let Some(who) = who {
        for (name, value) in gw.minter.header_values(audience, who).map_err(|e| {
            tracing::error!(error = %e, "minting a gateway proof failed");
            Problem::internal()
        })? {
            h.insert(name, value);
        }
    }
    Ok(())
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
            bad_gateway()
        }
    }
}

fn bad_gateway() -> HttpResponse {
    Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
        .with_detail("the upstream could not be reached or sent a broken response")
        .to_response()
}

fn no_healthy_target(upstream: &str) -> HttpResponse {
    let mut res = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no-healthy-upstream",
        "Service unavailable",
    )
    .with_detail(format!("upstream `{upstream}` has no healthy target"))
    .to_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

fn too_large(limit: u64) -> HttpResponse {
    Problem::payload_too_large(format!("the request body exceeds {limit} bytes")).to_response()
}

/// The request body on its way upstream, cut off past the limit.
struct Limited {
    inner: web::Payload,
    seen: u64,
    limit: u64,
    over: Rc<Cell<bool>>,
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    self.over.set(true);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// The upstream's answer, streamed, holding its target lease until done (so
/// least-connections counts a long download as in flight).
struct Leased<S> {
    inner: S,
    _lease: Lease,
}

impl<S: Stream + Unpin> Stream for Leased<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

fn is_idempotent(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(m)
}

/// A request with no body at all (so it can be sent again).
fn is_bodyless(req: &HttpRequest) -> bool {
    let h = req.headers();
    !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == "0")
}

/// Phase: forward. Sends the request to a target of the upstream; when that
/// fails, tries another target (up to `retries` times) if the request has no
/// body and either is idempotent or never left (the connection was refused).
/// A request that may have reached the upstream is never sent twice unless
/// it is idempotent.
#[allow(clippy::too_many_arguments)]
async fn send(
    gw: &Gateway,
    clients: &Clients,
    req: &HttpRequest,
    body: web::Payload,
    route: &Route,
    upstream: &Upstream,
    who: Option<&Principal>,
    limit: u64,
) -> Result<(awc::ClientResponse, Lease), HttpResponse> {
    let client = clients.get(upstream.spec.connect_timeout_ms);
    let timeout = Duration::from_secs(upstream.spec.timeout_secs);
    let path = route.upstream_path(req.path(), req.query_string());
    let bodyless = is_bodyless(req);
    let retryable = bodyless && is_idempotent(req.method());
    let over = Rc::new(Cell::new(false));
    let mut body = Some(Limited {
        inner: body,
        seen: 0,
        limit,
        over: over.clone(),
    });
    let mut avoid: Option<Arc<Target>> = None;
    let mut attempt = 0;
    loop {
        let Some(lease) = upstream.pick(avoid.as_ref()) else {
            return Err(no_healthy_target(&upstream.name));
        };
        let mut up = client
            .request(
                req.method().clone(),
                format!("{}{path}", lease.target().url),
            )
            .timeout(timeout);
        // Built for each attempt: cheaper than keeping a copy for a retry
        // that almost never happens.
        *up.headers_mut() = upstream_headers(gw, req, route, who).map_err(|p| p.to_response())?;
        let result = match (bodyless, body.take()) {
            (false, Some(b)) => up.send_stream(b).await,
            _ => up.send().await,
        };
        match result {
            Ok(res) => {
                lease.target().record_success();
                gw.metrics.upstream_attempt(&upstream.name, "ok");
                return Ok((res, lease));
            }
            Err(_) if over.get() => return Err(too_large(limit)),
            Err(e) => {
                lease.target().record_failure(&upstream.spec.passive);
                // Idempotent: any failure but a timeout may be retried.
                // Otherwise only a refused connection: the request never left.
                let may_retry = match &e {
                    SendRequestError::Timeout => false,
                    SendRequestError::Connect(_) => bodyless,
                    _ => retryable,
                };
                if may_retry && attempt < upstream.spec.retries {
                    attempt += 1;
                    tracing::info!(error = %e, target_url = %lease.target().url, "retrying on another target");
                    gw.metrics.upstream_attempt(&upstream.name, "retried");
                    avoid = Some(lease.target().clone());
                    // Another target, or the same one if it is the only one left.
                    if upstream.pick(avoid.as_ref()).is_none() {
                        avoid = None;
                    }
                    continue;
                }
                gw.metrics.upstream_attempt(&upstream.name, "failed");
                return Err(upstream_error(&e));
            }
        }
    }
}

/// Copy an upstream answer's headers for the client, without hop-by-hop
/// headers and with the route's edits.
fn response_head(res: &awc::ClientResponse, route: &Route) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(res.headers().len() + 4);
    for (name, value) in res.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            h.append(name.clone(), value.clone());
        }
    }
    // A service names its resources by its own paths: say them as the
    // client reaches them (what nginx's `proxy_redirect` does).
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
    route.response_headers.apply(&mut h);
    h
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
}

fn from_cache(hit: &Cached, head_only: bool, extra: &[(HeaderName, HeaderValue)]) -> HttpResponse {
    let mut out = HttpResponse::build(StatusCode::from_u16(hit.status).unwrap_or(StatusCode::OK));
    for (name, value) in &hit.headers {
        out.append_header((name.clone(), value.clone()));
    }
    for (name, value) in extra {
        out.insert_header((name.clone(), value.clone()));
    }
    out.insert_header(("x-cache", "HIT"));
    out.insert_header((header::AGE, hit.stored.elapsed().as_secs().to_string()));
    if head_only {
        out.no_chunking(hit.body.len() as u64);
        out.finish()
    } else {
        out.body(hit.body.clone())
    }
}

/// Phase: rate limit. `Err` is the 429; `Ok` carries the headers to add.
async fn rate_limit(
    gw: &Gateway,
    req: &HttpRequest,
    route: &Route,
    claims: Option<&AccessClaims>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HttpResponse> {
    let Some((quota, by)) = &route.rate_limit else {
        return Ok(Vec::new());
    };
    let key = match (by, claims) {
        (LimitBy::User, Some(c)) => format!("{}|user:{}", route.prefix, c.sub),
        _ => format!(
            "{}|ip:{}",
            route.prefix,
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    };
    let decision = gw.limiter.check(&key, quota).await;
    let headers = decision.headers(quota, "route");
    match decision {
        Decision::Allow { .. } => Ok(headers),
        Decision::Deny { .. } => {
            gw.metrics.rate_limited(&route.prefix);
            let mut res = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .with_detail(format!(
                "this route allows {}; retry later",
                quota.describe()
            ))
            .to_response();
            for (n, v) in headers {
                res.headers_mut().insert(n, v);
            }
            Err(res)
        }
    }
}

/// The catch-all handler: every path that is not one of the gateway's own.
pub async fn handle(
    req: HttpRequest,
    body: web::Payload,
    gw: web::Data<Gateway>,
    clients: web::Data<Clients>,
) -> HttpResponse {
    if let Err(why) = crate::routes::check_path(req.path()) {
        return Problem::bad_request(why).to_response();
    }
    let live = gw.live.load_full();
    if let Some(composed) = live.composed.get(req.path()) {
        return composed_route(&gw, &live, &clients, &req, body, composed).await;
    }
    let route = match live
        .routes
        .find(&request_host(&req), req.method(), req.path())
    {
        Ok(r) => r,
        Err(Miss::Method) => return Problem::method_not_allowed().to_response(),
        Err(Miss::NoRoute) => return no_route(&live),
    };
    req.extensions_mut()
        .insert(RouteLabel(route.prefix.clone()));
    let Some(rule) = route.rule_for(req.method()) else {
        return Problem::method_not_allowed().to_response();
    };
    if req.method() == Method::CONNECT {
        return Problem::method_not_allowed().to_response();
    }
    let claims = if *rule == Rule::Public {
        None
    } else {
        let claims = match authenticate(&gw, req.headers()) {
            Ok(c) => c,
            Err(res) => return res,
        };
        if let Some(res) = authorize(rule, &claims) {
            return res;
        }
        Some(claims)
    };
    let who = match claims.as_ref().map(principal).transpose() {
        Ok(p) => p,
        Err(res) => return res,
    };
    let limit_headers = match rate_limit(&gw, &req, route, claims.as_ref()).await {
        Ok(h) => h,
        Err(res) => return res,
    };
    proxy(
        &gw,
        &live,
        &clients,
        &req,
        body,
        route,
        who.as_ref(),
        &limit_headers,
    )
    .await
}

/// A composed route: method, access, then the parts.
async fn composed_route(
    gw: &Gateway,
    live: &Live,
    clients: &Clients,
    req: &HttpRequest,
    body: web::Payload,
    composed: &crate::compose::Composed,
) -> HttpResponse {
    req.extensions_mut()
        .insert(RouteLabel(composed.path.clone()));
    if req.method() != composed.method {
        return Problem::method_not_allowed().to_response();
    }
    let who = if composed.rule == Rule::Public {
        None
    } else {
        let claims = match authenticate(gw, req.headers()) {
            Ok(c) => c,
            Err(res) => return res,
        };
        if let Some(res) = authorize(&composed.rule, &claims) {
            return res;
        }
        match principal(&claims) {
            Ok(p) => Some(p),
            Err(res) => return res,
        }
    };
    crate::compose::answer(gw, live, clients, req, body, composed, who.as_ref()).await
}

fn no_route(live: &Live) -> HttpResponse {
    let status = StatusCode::from_u16(live.no_route.status).unwrap_or(StatusCode::NOT_FOUND);
    Problem::new(
        status,
        "no-route",
        status.canonical_reason().unwrap_or("Not found"),
    )
    .with_detail(live.no_route.detail.clone())
    .to_response()
}

/// Cache lookup, body limit, forwarding and the answer. `live` is the
/// configuration snapshot the request was routed with.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    gw: &Gateway,
    live: &Live,
    clients: &Clients,
    req: &HttpRequest,
    body: web::Payload,
    route: &Route,
    who: Option<&Principal>,
    extra: &[(HeaderName, HeaderValue)],
) -> HttpResponse {
    let Some(upstream) = live.upstreams.get(&route.upstream) else {
        return no_healthy_target(&route.upstream);
    };
    let head_only = req.method() == Method::HEAD;
    let cache_key = match &route.cache {
        Some(_) if req.method() == Method::GET || head_only => {
            let path_and_query = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let key = cache::key(&route.prefix, path_and_query, req.headers(), who);
            if cache::request_bypasses(req.headers()) {
                gw.metrics.cache(&route.prefix, "bypass");
            } else if let Some(hit) = gw.cache.get(&key) {
                gw.metrics.cache(&route.prefix, "hit");
                return from_cache(&hit, head_only, extra);
            } else {
                gw.metrics.cache(&route.prefix, "miss");
            }
            // A HEAD is answered from a stored GET but never stores one.
            (!head_only).then_some(key)
        }
        _ => None,
    };
    let limit = route.max_body_bytes.unwrap_or(live.max_body_bytes);
    if content_length(req.headers()).is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    let (mut res, lease) = match send(gw, clients, req, body, route, upstream, who, limit).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let mut head = response_head(&res, route);
    let length = content_length(res.headers());
    let res_status = res.status();
    if let (Some(key), Some(cfg)) = (cache_key, &route.cache) {
        let ttl = cache::storable_for(res.status().as_u16(), &head, cfg.ttl);
        if let (Some(ttl), Some(len)) = (ttl, length)
            && len <= cfg.max_entry_bytes
        {
            let started = Instant::now();
            let body = match res.body().limit(cfg.max_entry_bytes as usize).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a cacheable answer failed");
                    return bad_gateway();
                }
            };
            drop(lease);
            let kept: Vec<(HeaderName, HeaderValue)> = head
                .iter()
                .filter(|(n, _)| *n != header::CONTENT_LENGTH)
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            gw.cache.put(
                key,
                Cached {
                    status: res.status().as_u16(),
                    headers: kept,
                    body: body.clone(),
                    stored: started,
                    ttl,
                },
            );
            head.remove(header::CONTENT_LENGTH);
            finish_head(&mut head, extra, true);
            let mut out = HttpResponse::with_body(res_status, body).map_into_boxed_body();
            *out.headers_mut() = head;
            return out;
        }
    }
    finish_head(&mut head, extra, route.cache.is_some());
    // A known length is sent as such (normalised), anything else chunked.
    match length {
        Some(len) => {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            head.remove(header::CONTENT_LENGTH);
        }
    }
    // The head is moved into the answer as it is, not copied header by
    // header; not `streaming()`, which would invent a Content-Type the
    // upstream did not send.
    let body = actix_web::body::BodyStream::new(Leased {
        inner: res,
        _lease: lease,
    });
    let mut out = HttpResponse::with_body(res_status, body).map_into_boxed_body();
    *out.headers_mut() = head;
    // With a length, the stream goes out as it is, delimited by the
    // Content-Length above (what the builder's `no_chunking` does).
    out.head_mut().no_chunking(length.is_some());
    out
}

/// The limiter's headers and, on a cached route, `x-cache: MISS`.
fn finish_head(head: &mut HeaderMap, extra: &[(HeaderName, HeaderValue)], cached_route: bool) {
    for (name, value) in extra {
        head.insert(name.clone(), value.clone());
    }
    if cached_route {
        head.insert(X_CACHE, HeaderValue::from_static("MISS"));
    }
}
