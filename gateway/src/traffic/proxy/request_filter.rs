//! Phase: request filter. Runs first, before anything is read or decided:
//! the path is checked (no dot segments, no encoded slashes), then the route
//! table (or the composed routes) picks what serves the path, host and
//! method. Its `Err` is the answer (400, 404 or the configured `no_route`,
//! 405); nothing else has run.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::{HttpRequest, HttpResponse};
use common::Problem;

use crate::live::Live;
use crate::traffic::compose::table::Composed;
use crate::traffic::routes::{Miss, Route, Rule};

/// What serves the request.
pub enum Routed<'a> {
    Route(&'a Route, &'a Rule),
    Composed(&'a Composed),
}

/// The host a request names: its `Host` header (or URI authority), never a
/// client-sent `Forwarded`/`X-Forwarded-Host`.
fn request_host(headers: &HeaderMap, uri: &Uri) -> String {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    crate::traffic::routes::host_of(raw)
}

/// Find what serves `method path` on `host`; the route's rule for the
/// method comes with it. Either way, the label of the route the path
/// belongs to, when it belongs to one (a wrong method is still that route's).
pub fn find<'a>(
    live: &'a Live,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> (Option<&'a str>, Result<Routed<'a>, HttpResponse>) {
    if let Err(why) = crate::traffic::routes::check_path(path) {
        return (None, Err(Problem::bad_request(why).to_response()));
    }
    if let Some(composed) = live.composed.get(path) {
        let label = Some(composed.path.as_str());
        if *method != composed.method {
            return (label, Err(Problem::method_not_allowed().to_response()));
        }
        return (label, Ok(Routed::Composed(composed)));
    }
    let route = match live
        .routes
        .find(|| request_host(headers, uri), method, path)
    {
        Ok(r) => r,
        Err(Miss::Method) => return (None, Err(Problem::method_not_allowed().to_response())),
        Err(Miss::NoRoute) => return (None, Err(no_route(live))),
    };
    let label = Some(route.prefix.as_str());
    // CONNECT asks for a tunnel, which the gateway never opens.
    match route.rule_for(method) {
        Some(rule) if *method != Method::CONNECT => (label, Ok(Routed::Route(route, rule))),
        _ => (label, Err(Problem::method_not_allowed().to_response())),
    }
}

/// Phase: request filter, on a request: what serves it, and the label of
/// the route it belongs to (for metrics, even when a later phase refuses
/// it).
pub fn phase<'a>(
    req: &HttpRequest,
    live: &'a Live,
) -> (Option<&'a str>, Result<Routed<'a>, HttpResponse>) {
    find(live, req.method(), req.path(), req.headers(), req.uri())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::live_with;
    use serde_json::json;

    fn status((_, r): (Option<&str>, Result<Routed<'_>, HttpResponse>)) -> u16 {
        match r {
            Ok(_) => 200,
            Err(res) => res.status().as_u16(),
        }
    }

    #[test]
    fn paths_routes_and_methods_decide_before_anything_else() {
        let live = live_with(
            json!([
                {"prefix": "/api/users", "upstream": "users", "access": ["admin"], "methods": ["GET", "POST"]},
                {"prefix": "/api/users", "host": "admin.example", "upstream": "users", "access": "public"},
                {"prefix": "/open", "upstream": "users", "access": {"GET": "public"}},
            ]),
            json!([{"path": "/api/scan", "method": "POST", "access": "authenticated",
                    "parts": {"a": {"upstream": "users", "path": "/x"}}}]),
        );
        let h = HeaderMap::new();
        let uri = Uri::from_static("/");
        let find = |m: Method, p: &str| find(&live, &m, p, &h, &uri);
        assert_eq!(status(find(Method::GET, "/api/users/1")), 200);
        assert_eq!(status(find(Method::DELETE, "/api/users/1")), 405);
        assert_eq!(status(find(Method::GET, "/nowhere")), 404);
        assert_eq!(status(find(Method::GET, "/api/users/../admin")), 400);
        assert_eq!(status(find(Method::GET, "/api/users%2f1")), 400);
        assert_eq!(status(find(Method::POST, "/open")), 405, "no rule for POST");
        assert_eq!(status(find(Method::CONNECT, "/open")), 405);
        assert!(matches!(
            find(Method::POST, "/api/scan"),
            (Some("/api/scan"), Ok(Routed::Composed(_)))
        ));
        assert_eq!(status(find(Method::GET, "/api/scan")), 405);
        assert_eq!(find(Method::GET, "/api/scan").0, Some("/api/scan"));
        assert_eq!(find(Method::POST, "/open").0, Some("/open"));
        assert_eq!(find(Method::GET, "/nowhere").0, None);
        // The rule comes with the route.
        let (_, Ok(Routed::Route(r, rule))) = find(Method::GET, "/api/users") else {
            panic!("routed")
        };
        assert_eq!(r.prefix, "/api/users");
        assert_eq!(*rule, Rule::AnyRole(vec!["admin".into()]));
        // A host-bound route wins for its host.
        let mut hosted = HeaderMap::new();
        hosted.insert(header::HOST, "Admin.Example:8000".parse().unwrap());
        let (_, Ok(Routed::Route(_, rule))) =
            super::find(&live, &Method::GET, "/api/users", &hosted, &uri)
        else {
            panic!("routed")
        };
        assert_eq!(*rule, Rule::Public);
    }
}
