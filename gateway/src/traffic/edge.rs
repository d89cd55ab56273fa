//! The edge, as middleware over everything the gateway serves: with TLS
//! on, a request on the plain listener is redirected to HTTPS (308, same
//! host, path and query; `/healthz` is answered for probes), and HTTPS
//! answers carry `Strict-Transport-Security` when configured.
//!
//! It also sends every path that is not one of the gateway's own endpoints
//! ([`Own`]) straight to the proxy: actix-web's router would try each
//! registered resource in turn and box the handler's future before reaching
//! the proxy as its default service (about 3,400 instructions and one copy
//! of that future per proxied request, measured with callgrind). The
//! router still serves the own endpoints, and under `/admin/`,
//! `/api/clients` and `/docs` it still proxies what it does not know.
//!
//! With CORS off (the default), [`Shortcut`] takes proxied paths past the
//! whole App from the request context: the router, the scope and the
//! middleware of the gateway's own endpoints, each of which boxed the
//! request's future once more.
//!
//! [`observe`] is the metrics middleware (outside CORS, so preflights are
//! counted too): it observes the gateway's own paths; the proxy observes
//! every other path itself, and this phase the redirects it answers for
//! them, so a proxied request pays for no marker and no lookup.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};

use crate::mount::Own;

use crate::ops::metrics::{Metrics, Recorded, RouteLabel};

/// What the edge does, resolved at startup.
#[derive(Debug, Clone)]
pub struct Edge {
    /// TLS is on: plain requests are redirected.
    pub tls: bool,
    /// The port redirects name (443 is left out of the URL).
    pub https_port: u16,
    pub hsts: Option<HeaderValue>,
    /// The gateway's own paths; every other path is proxied.
    pub own: Own,
}

fn redirect_target(req: &ServiceRequest, port: u16) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // The host without its port (an IPv6 literal keeps its brackets).
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'/' || b == b'@')
    {
        return None;
    }
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let uri = req.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{name}{port}{path}"))
}

/// The way past the App for a proxied path (see
/// [`common::telemetry::Shortcut`]): what this phase would do with it,
/// without the layers in between. Taken only when nothing between would
/// act on it: CORS is off (the CORS middleware answers preflights and adds
/// its headers in the App), the path is not one of the gateway's own, and
/// no redirect to HTTPS is due.
pub struct Shortcut {
    pub edge: Arc<Edge>,
    /// CORS is on: nothing goes past the App.
    pub cors: bool,
}

impl common::telemetry::Shortcut for Shortcut {
    fn take(
        &self,
        req: ServiceRequest,
    ) -> Result<
        futures_util::future::LocalBoxFuture<
            'static,
            Result<ServiceResponse<BoxBody>, actix_web::Error>,
        >,
        ServiceRequest,
    > {
        let secure = req.app_config().secure();
        let edge = &self.edge;
        if self.cors || (edge.tls && !secure) || edge.own.contains(req.path()) {
            return Err(req);
        }
        let hsts = edge.hsts.clone().filter(|_| secure);
        Ok(Box::pin(async move {
            let mut res = proxied(req).await?;
            if let Some(v) = hsts {
                res.headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, v);
            }
            Ok(res)
        }))
    }
}

/// The middleware.
pub async fn phase(
    edge: Arc<Edge>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let secure = req.app_config().secure();
    if edge.tls && !secure && req.path() != "/healthz" {
        let res = match redirect_target(&req, edge.https_port) {
            Some(to) => HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, to))
                .finish(),
            None => {
                common::Problem::bad_request("the Host header does not name a host").to_response()
            }
        };
        if !edge.own.contains(req.path())
            && let Some(metrics) = req.app_data::<web::Data<Metrics>>()
        {
            metrics.record(
                "unmatched",
                req.method().as_str(),
                res.status().as_u16(),
                started,
            );
        }
        return Ok(req.into_response(res));
    }
    let mut res = if edge.own.contains(req.path()) {
        next.call(req).await?.map_into_boxed_body()
    } else {
        proxied(req).await?
    };
    if secure && let Some(v) = &edge.hsts {
        res.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    Ok(res)
}

/// A request for the proxy, handed to it as the router's default service
/// would.
async fn proxied(req: ServiceRequest) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::FromRequest as _;
    let tr = crate::live::room::<crate::traffic::Traffic>(req.request())?;
    let id = crate::live::room::<crate::identity::Identity>(req.request())?;
    let (http, mut payload) = req.into_parts();
    let body = actix_web::web::Payload::from_request(&http, &mut payload).await?;
    let res = crate::traffic::proxy::proxied(http.clone(), body, &tr, &id).await;
    Ok(ServiceResponse::new(http, res))
}

/// The metrics middleware: one observation per request of the gateway's
/// own paths (its endpoints, and what the router under its scopes hands to
/// the proxy, unless the proxy observed it: [`Recorded`]), at the response
/// head. Every other path is the proxy's to observe.
pub async fn observe(
    own: Own,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !own.contains(req.path()) {
        return next.call(req).await;
    }
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(metrics) = metrics
        && res.request().extensions().get::<Recorded>().is_none()
    {
        let request = res.request();
        let route = request
            .extensions()
            .get::<RouteLabel>()
            .map(|r| r.0.clone())
            .or_else(|| {
                request
                    .match_pattern()
                    .filter(|p| !p.contains('{') || p.starts_with("/admin/"))
            })
            .unwrap_or_else(|| "unmatched".to_owned());
        metrics.record(
            &route,
            request.method().as_str(),
            res.status().as_u16(),
            started,
        );
    }
    Ok(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    fn is_own(path: &str) -> bool {
        crate::startup::own("/login").contains(path)
    }

    #[test]
    fn scopes_match_as_actix_matches_them() {
        for own in [
            "/api/clients",
            "/api/clients/",
            "/api/clients/x/secrets",
            "/admin/reload",
            "/admin",
            "/docs",
            "/docs/index.html",
            "/healthz",
            "/login",
            "/login/mfa",
        ] {
            assert!(is_own(own), "{own}");
        }
        for proxied in [
            "/api/clientsx",
            "/administrator",
            "/docsy",
            "/healthz/",
            "/api/login/",
            "/loginx",
            "/api/orders",
            "/",
            "",
        ] {
            assert!(!is_own(proxied), "{proxied}");
        }
    }
}
