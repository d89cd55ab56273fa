//! The proxy: every path that is not one of the gateway's own endpoints,
//! as a sequence of named phases over one per-request context ([`Ctx`]),
//! the way Pingora's `ProxyHttp` shapes a proxy. Each phase is a plain
//! function in its own module whose doc says when it runs and what its
//! return means; an `Err` is the answer that ends the request.
//!
//! ```text
//! request_filter   path check, route (or composed route), method
//!   -> client_cert        the verified certificate's subject, the route's rule
//!   -> admission          token -> caller -> the route's rule
//!   -> rate_limit         the route's quota, by caller or address
//!   -> websocket          an upgrade: the upstream's handshake, then frames
//!                         both ways (leaves the sequence here)
//!   -> cache::lookup      a stored answer for this caller
//!   -> upstream_peer      the route's upstream
//!   -> upstream_request   path, body limit, headers with identity and proof
//!   -> account::reserve   a login attempt when the service may check a password
//!   -> upstream::client   target, attempts, retries (decided there only)
//!   -> account::settle    the service's verdict on that password
//!   -> account::end_sessions  an account change the users service reports
//!   -> response_filter    head, Location, limiter headers, x-cache
//!   -> cache::store       keep a storable answer, or stream it
//!   -> logging            metrics and the upstream's part, always
//! ```
//!
//! A composed route leaves the sequence after the request filter: it runs
//! the same admission and calls its parts through the same client
//! (`compose::answer`).

pub mod account;
pub mod cache;
pub mod client_cert;
pub mod context;
pub mod headers;
pub mod logging;
pub mod rate_limit;
pub mod request_filter;
pub mod response_filter;
pub mod upstream_request;
pub mod websocket;

use std::time::Instant;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use common::traces::{self, KeyValue, SpanKind};

use crate::identity::Identity;
use crate::identity::admission;
use crate::traffic::Traffic;
use crate::traffic::upstream::client::{self, UpstreamError};
use crate::traffic::upstream::pool::Upstream;
pub use context::Ctx;
use request_filter::Routed;

/// Who observes a request in the metrics.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Observer {
    /// The proxy, here: every path that is not one of the gateway's own.
    Proxy,
    /// `edge::observe`, for a path under one of the gateway's own scopes
    /// that the router handed over; the proxy marks what it observed.
    Middleware,
}

/// The router's default service, under the gateway's own scopes (`/admin`,
/// `/api/clients`, `/docs`): what they do not serve is proxied.
pub async fn handle(
    req: HttpRequest,
    body: web::Payload,
    tr: web::Data<Traffic>,
    id: web::Data<Identity>,
) -> HttpResponse {
    serve(req, body, &tr, &id, Observer::Middleware).await
}

/// Every other path, as `edge` hands it over (no router, no middleware
/// observation: the proxy observes it).
pub async fn proxied(
    req: HttpRequest,
    body: web::Payload,
    tr: &Traffic,
    id: &Identity,
) -> HttpResponse {
    serve(req, body, tr, id, Observer::Proxy).await
}

async fn serve(
    req: HttpRequest,
    body: web::Payload,
    tr: &Traffic,
    id: &Identity,
    observer: Observer,
) -> HttpResponse {
    let started = Instant::now();
    let live = tr.live.load_full();
    let (label, routed) = request_filter::phase(&req, &live);
    // A request that ends before the proxy's own phases: observed here,
    // or labelled for the middleware.
    let early = |res: HttpResponse| {
        match observer {
            Observer::Proxy => tr.metrics.record(
                label.unwrap_or("unmatched"),
                req.method().as_str(),
                res.status().as_u16(),
                started,
            ),
            Observer::Middleware => {
                if let Some(l) = label {
                    req.extensions_mut()
                        .insert(crate::ops::metrics::RouteLabel(l.to_owned()));
                }
            }
        }
        res
    };
    let (route, rule) = match routed {
        Ok(Routed::Route(route, rule)) => {
            traces::name_route(req.method().as_str(), &route.prefix);
            (route, rule)
        }
        Ok(Routed::Composed(composed)) => {
            traces::name_route(req.method().as_str(), &composed.path);
            return early(serve_composed(tr, id, &req, &live, composed, body).await);
        }
        Err(res) => return early(res),
    };
    let mut ctx = Ctx::new(&req, &live, route, rule);
    ctx.started = started;
    let res = proxy(tr, id, &mut ctx, body)
        .await
        .unwrap_or_else(|early| early);
    logging::phase(&tr.metrics, &ctx, &res);
    if observer == Observer::Middleware {
        req.extensions_mut().insert(crate::ops::metrics::Recorded);
    }
    res
}

/// What the client sends after the head.
enum Incoming {
    /// A body, streamed to the upstream.
    Http(web::Payload),
    /// WebSocket frames, once both handshakes are done.
    WebSocket(Box<websocket::Upgrade>),
}

/// A composed route, after the request filter: the same admission and rate
/// limit as a route's, then its parts (`compose::answer`).
async fn serve_composed(
    tr: &Traffic,
    id: &Identity,
    req: &HttpRequest,
    live: &crate::live::Live,
    composed: &crate::traffic::compose::table::Composed,
    body: web::Payload,
) -> HttpResponse {
    let admitted = traces::in_child(
        "admission",
        admission::admit_request(
            id,
            live,
            &composed.rule,
            admission::Asked {
                method: req.method(),
                headers: req.headers(),
                uri: req.uri(),
            },
        ),
    )
    .await;
    let caller = match admitted {
        Ok(c) => c,
        Err(refusal) => return refused(id, req, &composed.rule, &refusal),
    };
    record_caller(caller.as_ref());
    let client = crate::identity::caller::client_ip(req);
    if let Some(limit) = &composed.rate_limit
        && let Err(res) = Box::pin(rate_limit::check(
            &tr.limiter,
            &tr.metrics,
            &composed.path,
            limit,
            caller.as_ref(),
            client,
        ))
        .await
    {
        return res;
    }
    let who = caller.as_ref().map(|c| c.principal());
    crate::traffic::compose::answer::answer(tr, live, req, client, body, composed, who).await
}

/// The phases after the request filter, in order.
async fn proxy(
    tr: &Traffic,
    id: &Identity,
    ctx: &mut Ctx<'_>,
    body: web::Payload,
) -> Result<HttpResponse, HttpResponse> {
    let client_cert = client_cert::phase(ctx)?;
    let incoming = admitted(tr, id, ctx, body).await?;
    let body = match incoming {
        Incoming::WebSocket(upgrade) => {
            let claims = forwarded_claims(ctx, client_cert);
            let upstream = upstream_peer(ctx).map_err(|e| e.to_response())?;
            let headers = upstream_headers(tr, ctx, &claims).map_err(|e| e.to_response())?;
            return Box::pin(websocket::phase(ctx, *upgrade, upstream, headers)).await;
        }
        Incoming::Http(body) => body,
    };
    let cached = ctx.route.cache.is_some();
    if let Some(hit) = cache_lookup(tr, ctx, cached) {
        return Ok(hit);
    }
    let answer = forward(tr, id, ctx, body, client_cert).await?;
    Ok(respond(tr, ctx, answer, cached).await)
}

/// Admission and the rate limit, after the WebSocket handshake's check (a
/// browser's token may sit in its protocols or query). The phases a route
/// has run with their spans; the others cost nothing. What a route may not
/// have (a limit, an account to keep, a cache, a WebSocket) is boxed where
/// it runs: an awaited future is stored inline in its caller's, which actix
/// copies whole when it boxes the request's future, so a kilobyte here is
/// a kilobyte copied on every request.
async fn admitted(
    tr: &Traffic,
    id: &Identity,
    ctx: &mut Ctx<'_>,
    body: web::Payload,
) -> Result<Incoming, HttpResponse> {
    let incoming = if ctx.route.websocket && websocket::is_upgrade(ctx.req) {
        Incoming::WebSocket(Box::new(websocket::Upgrade::of(
            ctx.req,
            body,
            &ctx.live.websocket,
        )?))
    } else {
        Incoming::Http(body)
    };
    let admission_headers = match &incoming {
        Incoming::WebSocket(u) => u.admission_headers.as_ref(),
        Incoming::Http(_) => None,
    }
    .unwrap_or(ctx.req.headers());
    ctx.caller = traces::in_child(
        "admission",
        admission::admit_request(
            id,
            ctx.live,
            ctx.rule,
            admission::Asked {
                method: ctx.req.method(),
                headers: admission_headers,
                uri: ctx.req.uri(),
            },
        ),
    )
    .await
    .map_err(|r| refused(id, ctx.req, ctx.rule, &r))?;
    record_caller(ctx.caller.as_ref());
    if ctx.route.rate_limit.is_some() {
        Box::pin(traces::in_child(
            "rate_limit",
            rate_limit::phase(&tr.limiter, &tr.metrics, ctx),
        ))
        .await?;
    }
    Ok(incoming)
}

/// The answer to a refused request: the refusal's problem, except that a
/// browser's navigation without a session, on a rule that admits one, goes
/// to the login page and comes back to the path it asked for.
fn refused(
    id: &Identity,
    req: &HttpRequest,
    rule: &crate::traffic::routes::Rule,
    refusal: &crate::identity::caller::Refusal,
) -> HttpResponse {
    use crate::identity::cookie_admission as cookie;
    if *refusal == crate::identity::caller::Refusal::SignInRequired
        && rule.admits_session()
        && cookie::is_navigation(req.method(), req.headers())
    {
        let back = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
        return cookie::login_redirect(&cookie::login_url(id, "", &back));
    }
    refusal.to_response()
}

/// Phase: cache lookup, with its span on a route that caches.
fn cache_lookup(tr: &Traffic, ctx: &mut Ctx<'_>, cached: bool) -> Option<HttpResponse> {
    let lookup = cached.then(|| traces::child("cache lookup", SpanKind::Internal, Vec::new));
    let hit = cache::lookup(&tr.cache, &tr.metrics, ctx);
    if let Some(span) = lookup {
        let result = if hit.is_some() { "hit" } else { "miss" };
        span.set(KeyValue::new("gatehouse.cache.result", result));
        span.end();
    }
    hit
}

/// From the upstream's choice to its answer head: the request, the
/// account phases around a credential check, the call with its retries.
async fn forward(
    tr: &Traffic,
    id: &Identity,
    ctx: &mut Ctx<'_>,
    body: web::Payload,
    client_cert: Option<String>,
) -> Result<client::Answer, HttpResponse> {
    let upstream = upstream_peer(ctx).map_err(|e| e.to_response())?;
    let path = ctx
        .route
        .upstream_path(ctx.req.path(), ctx.req.query_string());
    let call = upstream_request::call(ctx, upstream, &path, body, &tr.metrics)
        .map_err(|e| e.to_response())?;
    let credential = if account::reserves(ctx) {
        Box::pin(account::reserve(id, ctx)).await
    } else {
        account::Credential::default()
    };
    let claims = forwarded_claims(ctx, client_cert);
    let headers = || {
        let mut h = upstream_headers(tr, ctx, &claims)?;
        credential.mark(&mut h);
        Ok(h)
    };
    let sent = client::send(call, &headers).await;
    if credential.is_reserved() {
        Box::pin(account::settle(
            id,
            credential,
            sent.as_ref().ok().map(|a| a.response.headers()),
        ))
        .await;
    }
    let answer = sent.map_err(|e| e.to_response())?;
    if let Some(revoke) = account::revoke_asked(id, ctx, answer.response.headers()) {
        Box::pin(account::end_sessions(id, ctx, revoke)).await?;
    }
    ctx.target = Some(answer.target.clone());
    ctx.attempts = answer.attempts;
    ctx.upstream_done = Some(Instant::now());
    Ok(answer)
}

/// The response filter on the answer's head, then its body streamed (or
/// kept, on a route that caches).
async fn respond(
    tr: &Traffic,
    ctx: &Ctx<'_>,
    answer: client::Answer,
    cached: bool,
) -> HttpResponse {
    let span = traces::child("response", SpanKind::Internal, Vec::new);
    let head = response_filter::head(ctx, answer.response.status(), answer.response.headers());
    let length = headers::content_length(answer.response.headers());
    let res = if cached {
        match Box::pin(traces::within(
            span.context(),
            cache::store(&tr.cache, ctx, answer, head, length),
        ))
        .await
        {
            Ok(stored) => stored,
            Err((answer, head)) => response_filter::stream(answer, head, length),
        }
    } else {
        response_filter::stream(answer, head, length)
    };
    span.end();
    res
}

/// The caller on the request's span: `user.id` (as the tracing policy
/// says) and whether it is a user or a machine client.
fn record_caller(caller: Option<&crate::identity::caller::Caller>) {
    let Some(caller) = caller else { return };
    let (id, kind) = match caller.principal() {
        common::identity::Principal::User { id, .. } => (id, "user"),
        common::identity::Principal::Client { id, .. } => (id, "client"),
        common::identity::Principal::Gateway => return,
    };
    traces::record_user(id);
    traces::annotate(|| vec![KeyValue::new("gatehouse.caller", kind)]);
}

/// The headers the upstream receives for this request, the caller's
/// identity and `claims` under the proof (see [`upstream_request::headers`]).
fn upstream_headers(
    tr: &Traffic,
    ctx: &Ctx<'_>,
    claims: &[(String, String)],
) -> Result<actix_web::http::header::HeaderMap, UpstreamError> {
    upstream_request::headers(
        upstream_request::Downstream {
            req: ctx.req,
            client: ctx.client,
            who: ctx.caller.as_ref().map(|c| c.principal()),
        },
        ctx.route,
        &tr.strip_headers,
        &ctx.live.claim_headers,
        claims,
        &tr.minter,
    )
}

/// The caller's claims the upstream receives as headers (global and the
/// route's `forward_claims`), and the client certificate's subject: all
/// under the proof, so none without a caller.
fn forwarded_claims(ctx: &Ctx<'_>, client_cert: Option<String>) -> Vec<(String, String)> {
    let Some(caller) = &ctx.caller else {
        return Vec::new();
    };
    let mut claims = if !ctx.live.forward_claims.is_empty() || !ctx.route.forward_claims.is_empty()
    {
        let forward: Vec<&(String, String)> = ctx
            .live
            .forward_claims
            .iter()
            .chain(ctx.route.forward_claims.iter())
            .collect();
        caller.forwarded(&forward)
    } else {
        Vec::new()
    };
    if let Some(subject) =
        client_cert.filter(|s| actix_web::http::header::HeaderValue::from_str(s).is_ok())
    {
        claims.push((
            common::identity::CLIENT_CERT_SUBJECT_HEADER.to_owned(),
            subject,
        ));
    }
    claims
}

/// Phase: upstream peer. The route's upstream in this snapshot; the target
/// itself is chosen per attempt by the client, by the upstream's balancing.
/// Routes are checked against the upstreams when the configuration loads,
/// so a missing one is a 503 only in theory.
fn upstream_peer<'a>(ctx: &Ctx<'a>) -> Result<&'a Upstream, UpstreamError> {
    ctx.live
        .upstreams
        .get(&ctx.route.upstream)
        .map(|u| u.as_ref())
        .ok_or_else(|| UpstreamError {
            source: client::Source::NoTarget,
            upstream: ctx.route.upstream.clone(),
            retry_safe: false,
            cause: "no such upstream in this configuration".into(),
        })
}
