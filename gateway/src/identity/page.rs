//! What every hosted page shares: the layout (server-rendered HTML with
//! maud, escaped by construction), the headers that keep it to itself (a
//! CSP with nothing from another origin and no inline script or style,
//! `frame-ancestors 'none'`, no caching, no referrer), the cookies (the
//! browser session's and the anti-CSRF token's: `__Host-` and `Secure`
//! on HTTPS, HttpOnly, SameSite), and the check every form post passes.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::identity::browser::LoginSettings;
use crate::identity::strings::Strings;

/// The stylesheet every page links (vendored, served under the login path).
const STYLE: &str = include_str!("../../assets/login.css");

/// The pages' look and cookies, fixed at startup.
#[derive(Debug, Clone)]
pub struct Pages {
    pub product: String,
    pub strings: &'static Strings,
    /// HTTPS: `Secure` cookies with the `__Host-` prefix.
    pub secure: bool,
    /// Where the login pages live (`login.path`).
    pub login_path: String,
    /// The session cookie's `Domain` (`login.cookie_domain`).
    pub cookie_domain: Option<String>,
    /// The hosts an absolute `return_to` may name: the gateway's own
    /// (`tokens.public_url`) and `login.return_hosts` (with the route
    /// table's, see [`Pages::may_return_to`]).
    pub return_hosts: Vec<String>,
}

/// The content security policy of every page: its own stylesheet and
/// nothing else, no script at all, never framed.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

impl Pages {
    pub fn new(settings: &LoginSettings, public_url: &str) -> Self {
        let secure = public_url.starts_with("https://");
        if !secure {
            tracing::warn!(
                public_url,
                "the login page is served over plain HTTP: its cookies are not `Secure` and have no `__Host-` prefix (set tokens.public_url to an https URL in production)"
            );
        }
        Self {
            product: settings.product_name.clone(),
            strings: &crate::identity::strings::EN,
            secure,
            login_path: settings.path.clone(),
            cookie_domain: settings.cookie_domain.clone(),
            return_hosts: url::Url::parse(public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .into_iter()
                .chain(settings.return_hosts.iter().cloned())
                .collect(),
        }
    }

    /// Whether the login page may send the browser on to `return_to`: a
    /// path on this host, or an http(s) URL without credentials on one of
    /// [`Pages::return_hosts`] or a host the route table serves (`routes`);
    /// ports are not compared, as cookies do not compare them. Anything
    /// else would be an open redirect.
    pub fn may_return_to(&self, return_to: &str, routes: impl Fn(&str) -> bool) -> bool {
        if is_local_path(return_to) {
            return true;
        }
        if return_to.len() > 4096 || !return_to.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return false;
        }
        let Ok(u) = url::Url::parse(return_to) else {
            return false;
        };
        let Some(host) = u.host_str() else {
            return false;
        };
        matches!(u.scheme(), "http" | "https")
            && u.username().is_empty()
            && u.password().is_none()
            && (self
                .return_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
                || routes(host))
    }

    /// A string with `{product}` filled in.
    pub fn t(&self, s: &str) -> String {
        s.replace("{product}", &self.product)
    }

    /// `__Host-` on HTTPS (the gateway host's alone); `__Secure-` when
    /// `login.cookie_domain` shares it with the domain's other hosts.
    pub fn session_cookie_name(&self) -> &'static str {
        match (self.secure, self.cookie_domain.is_some()) {
            (true, false) => "__Host-gatehouse-session",
            (true, true) => "__Secure-gatehouse-session",
            (false, _) => "gatehouse-session",
        }
    }

    /// The session cookie's value in request headers, if there is one
    /// (every `Cookie` header, as HTTP/2 may split them).
    pub fn session_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.session_cookie_name();
        headers
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v.trim_matches('"'))
            })
            .filter(|v| !v.is_empty())
    }

    /// The cookie that binds a sign-in through a provider to this browser
    /// (it holds the sign-in's `state`).
    pub fn flow_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-gatehouse-signin"
        } else {
            "gatehouse-signin"
        }
    }

    /// The sign-in's cookie: `Lax`, so the provider's redirect back (a
    /// top-level `GET` from its site) brings it; gone with the sign-in.
    pub fn flow_cookie(&self, state: String) -> Cookie<'static> {
        let mut c = self.cookie(self.flow_cookie_name(), state, SameSite::Lax);
        c.set_max_age(time::Duration::seconds(
            crate::identity::provider_login::FLOW_TTL_SECS,
        ));
        c
    }

    /// The cookie that removes the sign-in's.
    pub fn flow_removal(&self) -> Cookie<'static> {
        let mut c = self.cookie(self.flow_cookie_name(), String::new(), SameSite::Lax);
        c.make_removal();
        c
    }

    fn csrf_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-gatehouse-csrf"
        } else {
            "gatehouse-csrf"
        }
    }

    fn cookie<'a>(&self, name: &'a str, value: String, same_site: SameSite) -> Cookie<'a> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .finish()
    }

    /// The session cookie for a new sign-in (it lasts as long as the
    /// session may).
    pub fn session_cookie(&self, value: String, max_age_secs: i64) -> Cookie<'static> {
        let mut c = self.cookie(self.session_cookie_name(), value, SameSite::Lax);
        c.set_max_age(time::Duration::seconds(max_age_secs));
        if let Some(d) = &self.cookie_domain {
            c.set_domain(d.clone());
        }
        c
    }

    /// The cookie that removes the session cookie.
    pub fn session_removal(&self) -> Cookie<'static> {
        let mut c = self.cookie(self.session_cookie_name(), String::new(), SameSite::Lax);
        if let Some(d) = &self.cookie_domain {
            c.set_domain(d.clone());
        }
        c.make_removal();
        c
    }

    /// The session cookie's value, if the request has one.
    pub fn session_value(&self, req: &HttpRequest) -> Option<String> {
        self.session_in(req.headers()).map(str::to_owned)
    }

    /// The anti-CSRF token of this browser: the cookie's, or a new one
    /// (`true`: set the cookie with the page).
    pub fn csrf_token(&self, req: &HttpRequest) -> (String, bool) {
        match req.cookie(self.csrf_cookie_name()) {
            Some(c) if c.value().len() == 43 => (c.value().to_owned(), false),
            _ => (crate::identity::opaque::new_value(), true),
        }
    }

    /// Whether a form post comes from one of these pages: the browser says
    /// it is not cross-site (`Sec-Fetch-Site`, `Origin` the gateway's own
    /// host), and the form's token is the cookie's (a double-submit token
    /// another site can neither read nor set).
    pub fn form_is_ours(&self, req: &HttpRequest, posted: Option<&str>) -> bool {
        let host = req.connection_info().host().to_owned();
        let site_ok = not_cross_site(req.headers(), &host) != Some(false);
        let token_ok = match (req.cookie(self.csrf_cookie_name()), posted) {
            (Some(c), Some(p)) => {
                c.value().len() == 43 && crate::identity::opaque::same(c.value(), p)
            }
            _ => false,
        };
        site_ok && token_ok
    }

    /// A page: the layout around `body`, with the headers every page has.
    pub fn render(
        &self,
        req: &HttpRequest,
        status: StatusCode,
        title: &str,
        body: impl FnOnce(&str) -> Markup,
    ) -> HttpResponse {
        let (csrf, new) = self.csrf_token(req);
        let s = self.strings;
        let markup = html! {
            (DOCTYPE)
            html lang=(s.lang) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (self.product) }
                    link rel="stylesheet" href=(format!("{}/style.css", self.login_path));
                }
                body {
                    main {
                        p.product { (self.product) }
                        h1 { (title) }
                        (body(&csrf))
                        @if !self.secure {
                            p.note { (s.insecure_note) }
                        }
                    }
                }
            }
        };
        let mut res = HttpResponse::build(status);
        page_headers(&mut res);
        if new {
            res.cookie(self.cookie(self.csrf_cookie_name(), csrf, SameSite::Strict));
        }
        res.content_type("text/html; charset=utf-8")
            .body(markup.into_string())
    }

    /// An error page (a request that cannot go back to an application).
    pub fn error(&self, req: &HttpRequest, status: StatusCode, detail: &str) -> HttpResponse {
        let s = self.strings;
        self.render(req, status, s.error_title, |_| {
            html! {
                p { (self.t(s.error_intro)) }
                p.error role="alert" { (detail) }
            }
        })
    }
}

/// The headers of every page and every redirect a page answers with.
pub fn page_headers(res: &mut HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // `same-origin`, not `no-referrer`: with the latter a browser sends
        // `Origin: null` on the pages' own form posts, which the CSRF check
        // must then refuse; nothing goes to another origin either way.
        .insert_header((header::REFERRER_POLICY, "same-origin"));
}

/// A `303 See Other` to `location`, with the page headers.
pub fn see_other(location: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::SeeOther();
    page_headers(&mut res);
    if let Ok(v) = HeaderValue::from_str(location) {
        res.insert_header((header::LOCATION, v));
    }
    res
}

/// The stylesheet.
pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}

/// The live browser session the request's cookie names, if any (a store
/// error counts as none: the browser is asked to sign in).
pub async fn browser_session(
    gw: &super::Identity,
    req: &HttpRequest,
) -> Option<crate::identity::browser::BrowserSession> {
    let value = gw.pages.session_value(req)?;
    gw.browser.find(&value).await.ok().flatten()
}

/// Forms the pages cannot read (not a form, too large, a field of the
/// wrong shape) are an error page, not a plain-text 400.
pub fn form_config() -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default()
        .limit(16 * 1024)
        .error_handler(|err, req| {
            let res = match req.app_data::<actix_web::web::Data<super::Identity>>() {
                Some(gw) => {
                    gw.pages
                        .error(req, StatusCode::BAD_REQUEST, "the form could not be read")
                }
                None => HttpResponse::BadRequest().finish(),
            };
            actix_web::error::InternalError::from_response(err, res).into()
        })
}

/// What the browser says of a request's origin: `Some(false)` when it
/// comes from another site or origin (`Sec-Fetch-Site` other than
/// `same-origin` or `none`, or an `Origin` whose authority is not `host`,
/// `null` included), `Some(true)` when it says it is this origin's, `None`
/// when it says neither (no such header: not a browser, or a very old one).
pub fn not_cross_site(headers: &HeaderMap, host: &str) -> Option<bool> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().is_ok_and(|v| v == "same-origin" || v == "none"));
    let origin = headers.get(header::ORIGIN).map(|v| {
        v.to_str().is_ok_and(|o| {
            o.split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        })
    });
    match (fetch_site, origin) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (None, None) => None,
        _ => Some(true),
    }
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(name) value=(value); }
}

/// Nothing (an empty fragment).
pub fn nothing() -> Markup {
    PreEscaped(String::new())
}

/// Whether `return_to` may be where a sign-in sends the browser next: a
/// path on this gateway (no scheme, no host, no `//` or `\` that a browser
/// would read as another host), at most 4 KiB, printable ASCII.
pub fn is_local_path(return_to: &str) -> bool {
    return_to.len() <= 4096
        && return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && return_to.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert!(is_local_path("/oauth/authorize?client_id=a&x=%20"));
        assert!(is_local_path("/login"));
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "/a b",
            "/a\n",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn absolute_return_urls_only_to_known_hosts() {
        let settings = LoginSettings {
            return_hosts: vec!["app.example".into()],
            ..LoginSettings::default()
        };
        let pages = Pages::new(&settings, "https://auth.example");
        let routed = |h: &str| h == "shop.example";
        let ok = |u: &str| pages.may_return_to(u, routed);
        assert!(ok("/app?x=1"));
        assert!(ok("https://auth.example/x"));
        assert!(ok("https://app.example:8443/dashboard?tab=2"));
        assert!(ok("http://shop.example/cart"));
        for bad in [
            "https://evil.example/",
            "https://app.example.evil.example/",
            "https://app.example@evil.example/",
            "https://user:pw@app.example/",
            "javascript:alert(1)",
            "ftp://app.example/",
            "//evil.example/",
            "https://app.example/\n",
            "https://app.example/a b",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_loads_nothing_from_elsewhere() {
        assert!(!CSP.contains("unsafe-inline"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(CSP.contains("default-src 'none'"));
        assert!(crate::identity::opaque::same("abc", "abc"));
        assert!(!crate::identity::opaque::same("abc", "abd"));
        assert!(!crate::identity::opaque::same("abc", "ab"));
    }
}
