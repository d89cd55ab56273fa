//! The HTTPS edge, as middleware over everything the gateway serves: with
//! TLS on, a request on the plain listener is redirected to HTTPS (308,
//! same host, path and query; `/healthz` is answered for probes), and
//! HTTPS answers carry `Strict-Transport-Security` when configured.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

/// What the edge does, resolved at startup.
#[derive(Debug, Clone)]
pub struct Edge {
    /// TLS is on: plain requests are redirected.
    pub tls: bool,
    /// The port redirects name (443 is left out of the URL).
    pub https_port: u16,
    pub hsts: Option<HeaderValue>,
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

/// The middleware.
pub async fn phase(
    edge: Arc<Edge>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
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
        return Ok(req.into_response(res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    if secure && let Some(v) = &edge.hsts {
        res.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    Ok(res)
}
