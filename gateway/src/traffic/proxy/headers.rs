//! Header facts the request and the response phases share.

use actix_web::http::header::{self, HeaderMap};

/// Headers that describe one connection, never forwarded either way
/// (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The length a message declares, when it declares a valid one.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
}

/// The gateway's own cookies (the browser session's, the login pages'
/// anti-CSRF token and a provider sign-in's state, with or without a
/// `__Host-`/`__Secure-` prefix): an upstream never receives them, nor
/// sets them.
pub fn is_gatehouse_cookie(name: &str) -> bool {
    let n = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    matches!(
        n,
        "gatehouse-session" | "gatehouse-csrf" | "gatehouse-signin"
    )
}

/// A `Cookie` header's value without the gateway's own cookies; `None`
/// when nothing is left. Untouched (borrowed) when it has none of them,
/// which is nearly always.
pub fn foreign_cookies(
    value: &header::HeaderValue,
) -> Option<std::borrow::Cow<'_, header::HeaderValue>> {
    use std::borrow::Cow;
    let Ok(text) = value.to_str() else {
        return Some(Cow::Borrowed(value));
    };
    if !text.contains("gatehouse-") {
        return Some(Cow::Borrowed(value));
    }
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k).trim();
            !pair.is_empty() && !is_gatehouse_cookie(name)
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    header::HeaderValue::from_str(&kept.join("; "))
        .ok()
        .map(Cow::Owned)
}

/// A `Set-Cookie` of an upstream's that would set one of the gateway's
/// own cookies (a session fixed by the upstream, or its token replaced).
pub fn sets_gatehouse_cookie(value: &header::HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        let name = v.split(['=', ';']).next().unwrap_or("").trim();
        is_gatehouse_cookie(name)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn the_gateways_cookies_never_pass() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        let kept = |s: &str| foreign_cookies(&v(s)).map(|c| c.to_str().unwrap().to_owned());
        assert_eq!(kept("a=1; b=2").as_deref(), Some("a=1; b=2"));
        assert_eq!(
            kept("a=1; gatehouse-session=xyz; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(kept("__Host-gatehouse-session=x").as_deref(), None);
        assert_eq!(
            kept("__Host-gatehouse-signin=s; a=1").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            kept("__Secure-gatehouse-session=x;__Host-gatehouse-csrf=y;app=gatehouse-fan")
                .as_deref(),
            Some("app=gatehouse-fan")
        );
        assert_eq!(
            kept("my-gatehouse-session=1").as_deref(),
            Some("my-gatehouse-session=1")
        );
        assert!(sets_gatehouse_cookie(&v("gatehouse-session=abc; Path=/")));
        assert!(sets_gatehouse_cookie(&v("__Host-gatehouse-csrf=abc")));
        assert!(!sets_gatehouse_cookie(&v("app=gatehouse-session")));
    }
}
