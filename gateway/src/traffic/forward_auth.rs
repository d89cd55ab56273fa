//! `/auth/verify`: decisions for another ingress (nginx `auth_request`,
//! Traefik `ForwardAuth`, Envoy `ext_authz` over HTTP). The ingress asks
//! about a request it received; gatehouse applies its route table and the
//! route's access rule to that request, as if it had received it (bearer
//! token or session cookie, the same-site check, the second factor, the
//! deny list), and answers:
//!
//! * 200 with the identity the upstream should receive (`request-user-id`,
//!   `request-user-roles`, the forwarded claims and `x-gateway-token`, the
//!   proof for the route's upstream), for the ingress to copy onto the
//!   request (empty values on a public route: the ingress then drops any
//!   the client sent), and `x-gatehouse-cookie`, the request's cookies
//!   without gatehouse's own, to send on as `Cookie`;
//! * 401 when the caller must sign in, with `Location` (the login page,
//!   coming back to the original URL) for a browser's navigation on a
//!   route that admits a session; with `?redirect=true` (Traefik, which
//!   passes the answer on as it is) that is a 303 instead;
//! * 403 when the caller may not, or no route serves the request (an
//!   ingress treats anything else as an error).
//!
//! The original request comes from the headers each ingress sends:
//! `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` (Traefik; nginx set up
//! as `deploy/` shows), `X-Original-Method` and `X-Original-URI` (nginx's
//! custom), or, for Envoy, the method, `Host` and the path after
//! `/auth/verify`. They are believed only from `trusted_proxies`: anyone
//! else gets 403 and no decision.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;

use super::Traffic;
use crate::identity::Identity;
use crate::identity::admission::{self, Asked};
use crate::identity::caller::{Refusal, TrustedProxies};
use crate::identity::cookie_admission as cookie;
use crate::traffic::proxy::request_filter::{Routed, find};

/// Where the ingress asks.
pub const PATH: &str = "/auth/verify";

/// The decision's copy of the request's cookies without gatehouse's own:
/// what the ingress sends the upstream as `Cookie`, so the session cookie
/// stays between the browser and gatehouse.
pub const COOKIE_HEADER: &str = "x-gatehouse-cookie";

/// The request the ingress asks about.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    pub scheme: String,
    /// With port, as the client named it.
    pub host: String,
    /// Path and query.
    pub uri: String,
}

fn text<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Read the original request from what the ingress sent. `tail` is the
/// path after `/auth/verify` (Envoy's `path_prefix` puts the original path
/// there) with the query of this request. `None` when it names no usable
/// request (no path, a method that is not one).
pub fn original(req_method: &Method, h: &HeaderMap, tail: &str, query: &str) -> Option<Original> {
    let method = match text(h, "x-forwarded-method").or_else(|| text(h, "x-original-method")) {
        Some(m) => Method::from_bytes(m.as_bytes()).ok()?,
        None => req_method.clone(),
    };
    let uri = match text(h, "x-forwarded-uri").or_else(|| text(h, "x-original-uri")) {
        Some(u) => u.to_owned(),
        None if !tail.is_empty() => {
            if query.is_empty() {
                tail.to_owned()
            } else {
                format!("{tail}?{query}")
            }
        }
        None => return None,
    };
    if !uri.starts_with('/') {
        return None;
    }
    let host = text(h, "x-forwarded-host")
        .or_else(|| text(h, header::HOST.as_str()))?
        .to_owned();
    let scheme = match text(h, "x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    }
    .to_owned();
    Some(Original {
        method,
        scheme,
        host,
        uri,
    })
}

fn refuse(detail: &str) -> HttpResponse {
    Problem::forbidden(detail.to_owned()).to_response()
}

/// `GET /auth/verify` (any method; `/auth/verify/{original path}` for Envoy).
#[utoipa::path(get, operation_id = "forward_auth_verify", path = "/auth/verify", summary = "Decide a request another ingress received (forward auth)", tag = "forward-auth",
    params(
        ("redirect" = Option<bool>, Query, description = "`true`: a browser that must sign in gets 303 to the login page instead of 401 (Traefik)"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original method (Traefik; or `X-Original-Method`; else this request's, as Envoy sends it)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original path and query (Traefik; or `X-Original-URI`, nginx; else the path after `/auth/verify`, Envoy)"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The original host (else `Host`)"),
        ("X-Forwarded-Proto" = Option<String>, Header, description = "`https` or `http`"),
    ),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Allowed: copy `request-user-id`, `request-user-roles`, any forwarded claim headers and `x-gateway-token` onto the request (empty on a public route: drop the client's)"),
        (status = 303, description = "With `redirect=true`: a browser's navigation that must sign in, sent to the login page"),
        (status = 401, description = "Sign in first (a browser's navigation gets the login page's URL in `Location`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed; no route serves the request; or the asker is not one of `trusted_proxies`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    req: HttpRequest,
    tr: web::Data<Traffic>,
    id: web::Data<Identity>,
) -> HttpResponse {
    let trusted = req
        .peer_addr()
        .zip(req.app_data::<web::Data<TrustedProxies>>())
        .is_some_and(|(peer, t)| t.trusts(peer.ip()));
    if !trusted {
        return refuse("only the proxies in `trusted_proxies` may ask for decisions");
    }
    let tail = req.path().strip_prefix(PATH).unwrap_or("");
    let query = form_query_without_redirect(req.query_string());
    let redirect = query.1;
    let Some(orig) = original(req.method(), req.headers(), tail, &query.0) else {
        return refuse(
            "the ingress did not say which request it asks about (X-Forwarded-Uri or X-Original-URI)",
        );
    };
    let Ok(uri) = orig.uri.parse::<Uri>() else {
        return refuse("the original URI is not one");
    };
    // The headers as the original request had them: the client's own,
    // with its host.
    let mut headers = req.headers().clone();
    match HeaderValue::from_str(&orig.host) {
        Ok(v) => headers.insert(header::HOST, v),
        Err(_) => return refuse("the original host is not one"),
    };
    let live = tr.live.load_full();
    let (route, rule) = match find(&live, &orig.method, uri.path(), &headers, &uri).1 {
        Ok(Routed::Route(route, rule)) => (route, rule),
        Ok(Routed::Composed(_)) => {
            return refuse(
                "a composed route is answered by gatehouse itself, never behind another ingress",
            );
        }
        Err(res) => {
            let why = match res.status() {
                StatusCode::METHOD_NOT_ALLOWED => "the route does not serve this method",
                StatusCode::BAD_REQUEST => "the original path is not a plain path",
                _ => "no route of gatehouse's serves this request",
            };
            return refuse(why);
        }
    };
    let asked = Asked {
        method: &orig.method,
        headers: &headers,
        uri: &uri,
    };
    let caller = match admission::admit_request(&id, &live, rule, asked).await {
        Ok(c) => c,
        Err(refusal) => return refused(&id, &orig, rule, &headers, &refusal, redirect),
    };
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    let mut out = HeaderMap::new();
    for name in common::identity::IDENTITY_HEADERS {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            out.insert(n, HeaderValue::from_static(""));
        }
    }
    // The request's cookies without gatehouse's own, for the ingress to
    // pass on as `Cookie` (an empty value: none left, drop the header).
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .filter_map(crate::traffic::proxy::headers::foreign_cookies)
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    out.insert(
        HeaderName::from_static(COOKIE_HEADER),
        HeaderValue::from_str(&cookies.join("; ")).unwrap_or(HeaderValue::from_static("")),
    );
    for name in &live.claim_headers {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            out.insert(n, HeaderValue::from_static(""));
        }
    }
    if let Some(caller) = &caller {
        let forward: Vec<&(String, String)> = live
            .forward_claims
            .iter()
            .chain(route.forward_claims.iter())
            .collect();
        let claims = caller.forwarded(&forward);
        match tr
            .minter
            .headers_with_claims(&route.upstream, caller.principal(), &claims)
        {
            Ok(proof) => proof.insert_into(&mut out),
            Err(e) => {
                tracing::error!(error = %e, "minting a proof for a forward-auth decision failed");
                return Problem::service_unavailable("the decision's proof could not be made")
                    .to_response();
            }
        }
    }
    let mut res = res.finish();
    for (name, value) in out {
        res.headers_mut().insert(name, value);
    }
    res
}

/// The query of `/auth/verify` without its own `redirect` parameter, and
/// whether that parameter asked for redirects.
fn form_query_without_redirect(query: &str) -> (String, bool) {
    let mut redirect = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| match p.split_once('=') {
            Some(("redirect", v)) => {
                redirect = v == "true" || v == "1";
                false
            }
            _ => *p != "redirect",
        })
        .collect();
    (kept.join("&"), redirect)
}

/// A refusal as an ingress reads it: 401 or 403 (anything else it would
/// take for an error of its own), with the login page for a browser.
fn refused(
    id: &Identity,
    orig: &Original,
    rule: &crate::traffic::routes::Rule,
    headers: &HeaderMap,
    refusal: &Refusal,
    redirect: bool,
) -> HttpResponse {
    let mut res = refusal.to_response();
    match res.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {}
        // The users service down, say: the ingress must refuse, not fail open.
        _ => {
            res = refuse("no decision can be made now; try again");
        }
    }
    if *refusal == Refusal::SignInRequired
        && rule.admits_session()
        && cookie::is_navigation(&orig.method, headers)
    {
        let back = format!("{}://{}{}", orig.scheme, orig.host, orig.uri);
        let login = cookie::login_url(id, &id.public_url, &back);
        if redirect {
            return cookie::login_redirect(&login);
        }
        if let Ok(v) = HeaderValue::from_str(&login) {
            res.headers_mut().insert(header::LOCATION, v);
        }
    }
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::headers;

    #[test]
    fn each_ingress_names_the_original_request_its_way() {
        let traefik = original(
            &Method::GET,
            &headers(&[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example"),
                ("x-forwarded-uri", "/orders?page=2"),
                ("host", "gatehouse:8080"),
            ]),
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            traefik,
            Original {
                method: Method::POST,
                scheme: "https".into(),
                host: "app.example".into(),
                uri: "/orders?page=2".into()
            }
        );
        let nginx = original(
            &Method::GET,
            &headers(&[
                ("x-original-method", "DELETE"),
                ("x-original-uri", "/a/b"),
                ("host", "app.example:8443"),
            ]),
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            (nginx.method, nginx.host.as_str(), nginx.uri.as_str()),
            (Method::DELETE, "app.example:8443", "/a/b")
        );
        let envoy = original(
            &Method::PATCH,
            &headers(&[("host", "app.example")]),
            "/items/7",
            "x=1",
        )
        .unwrap();
        assert_eq!(
            (envoy.method, envoy.uri.as_str(), envoy.scheme.as_str()),
            (Method::PATCH, "/items/7?x=1", "http")
        );
        assert_eq!(
            original(&Method::GET, &headers(&[("host", "a")]), "", ""),
            None
        );
        assert_eq!(
            original(
                &Method::GET,
                &headers(&[("host", "a"), ("x-original-uri", "http://evil/")]),
                "",
                ""
            ),
            None
        );
        assert_eq!(
            original(
                &Method::GET,
                &headers(&[
                    ("host", "a"),
                    ("x-forwarded-method", "G T"),
                    ("x-original-uri", "/")
                ]),
                "",
                ""
            ),
            None
        );
    }

    #[test]
    fn the_redirect_parameter_is_the_verifiers_own() {
        assert_eq!(form_query_without_redirect(""), (String::new(), false));
        assert_eq!(
            form_query_without_redirect("redirect=true"),
            (String::new(), true)
        );
        assert_eq!(
            form_query_without_redirect("a=1&redirect=1&b=2"),
            ("a=1&b=2".into(), true)
        );
        assert_eq!(
            form_query_without_redirect("a=1&redirect=no"),
            ("a=1".into(), false)
        );
    }
}
