//! What a response's headers say about the site's security, and the score.
//!
//! Pure functions over the final response's headers, so every rule is unit
//! tested without a network.
//!
//! # Scoring
//!
//! A scan starts at 100 points and loses points for each finding; the score
//! never goes below 0. An unreachable target scores 0 (grade F).
//!
//! | check | missing | misconfigured |
//! |---|---|---|
//! | HTTPS (the final URL is `https`) | −10 | — |
//! | Strict-Transport-Security (over HTTPS only; `max-age` ≥ 15552000) | −15 | −8 |
//! | Content-Security-Policy (`unsafe-inline`, `unsafe-eval` or `*` in `script-src`/`default-src`, or neither directive) | −15 | −8 |
//! | framing: X-Frame-Options `DENY`/`SAMEORIGIN`, or CSP `frame-ancestors` | −10 | −5 |
//! | X-Content-Type-Options `nosniff` | −10 | −5 |
//! | Referrer-Policy (not `unsafe-url`/`no-referrer-when-downgrade`) | −5 | −3 |
//! | Permissions-Policy | −5 | −3 |
//! | each cookie with an issue (no `Secure`, no `HttpOnly`, `SameSite=None` without `Secure`, an unknown `SameSite`) | −5, at most −15 in all | |
//! | each leaked banner (`Server` with a version digit, `X-Powered-By`, `X-AspNet-Version`, `X-AspNetMvc-Version`) | −5, at most −10 in all | |
//!
//! Grades: **A** ≥ 90, **B** ≥ 80, **C** ≥ 70, **D** ≥ 60, **F** below 60.
//! Over plain HTTP, Strict-Transport-Security is `not_applicable` (browsers
//! ignore it there) and costs nothing beyond the HTTPS penalty, so a plain-HTTP
//! site scores at most 90.

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Grade;

/// `max-age` of at least 180 days, what HSTS preload lists and most
/// guidance ask for.
pub const HSTS_MIN_MAX_AGE: u64 = 15_552_000;
/// Longer header values are cut (the report stores what it shows).
const VALUE_MAX: usize = 1024;
/// At most this many cookies are reported (and scored).
const COOKIES_MAX: usize = 50;

/// Points lost per finding (see the module docs).
pub mod penalty {
    pub const NO_HTTPS: u32 = 10;
    pub const HSTS: (u32, u32) = (15, 8);
    pub const CSP: (u32, u32) = (15, 8);
    pub const FRAMING: (u32, u32) = (10, 5);
    pub const CONTENT_TYPE_OPTIONS: (u32, u32) = (10, 5);
    pub const REFERRER_POLICY: (u32, u32) = (5, 3);
    pub const PERMISSIONS_POLICY: (u32, u32) = (5, 3);
    pub const COOKIE: u32 = 5;
    pub const COOKIES_MAX: u32 = 15;
    pub const BANNER: u32 = 5;
    pub const BANNERS_MAX: u32 = 10;
}

/// The state of one security header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeaderState {
    /// Sent, with a value that does its job.
    Present,
    Missing,
    /// Sent, but with a value that weakens or defeats it (see `reason`).
    Misconfigured,
    /// Means nothing here (HSTS over plain HTTP).
    NotApplicable,
}

/// One security header's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeaderCheck {
    pub state: HeaderState,
    /// The value as sent (cut at 1024 characters); null when not sent.
    pub value: Option<String>,
    /// A short reason for the state.
    pub reason: String,
}

impl HeaderCheck {
    fn new(state: HeaderState, value: Option<String>, reason: impl Into<String>) -> Self {
        Self {
            state,
            value,
            reason: reason.into(),
        }
    }

    fn penalty(&self, (missing, misconfigured): (u32, u32)) -> u32 {
        match self.state {
            HeaderState::Present | HeaderState::NotApplicable => 0,
            HeaderState::Missing => missing,
            HeaderState::Misconfigured => misconfigured,
        }
    }
}

/// Every security header the scan checks, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeaderChecks {
    pub strict_transport_security: HeaderCheck,
    pub content_security_policy: HeaderCheck,
    /// Protection against framing (clickjacking): X-Frame-Options
    /// `DENY`/`SAMEORIGIN`, or a CSP `frame-ancestors` directive.
    pub framing: HeaderCheck,
    pub x_content_type_options: HeaderCheck,
    pub referrer_policy: HeaderCheck,
    pub permissions_policy: HeaderCheck,
}

/// One `Set-Cookie` of the final response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CookieCheck {
    pub name: String,
    pub secure: bool,
    pub http_only: bool,
    /// The `SameSite` value as sent; null when absent (browsers then use `Lax`).
    pub same_site: Option<String>,
    /// What is wrong with it; empty when nothing.
    pub issues: Vec<String>,
}

/// A header that tells an attacker what software (and version) runs the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Banner {
    pub header: String,
    pub value: String,
}

/// Everything the headers of the final response say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub headers: HeaderChecks,
    pub cookies: Vec<CookieCheck>,
    pub banners: Vec<Banner>,
}

/// Judge the final response's headers; `https` says whether it came over TLS.
pub fn analyse(headers: &HeaderMap, https: bool) -> Findings {
    let csp: Vec<String> = all(headers, "content-security-policy");
    let checks = HeaderChecks {
        strict_transport_security: hsts(first(headers, "strict-transport-security"), https),
        content_security_policy: content_security_policy(
            &csp,
            first(headers, "content-security-policy-report-only").is_some(),
        ),
        framing: framing(first(headers, "x-frame-options"), &csp),
        x_content_type_options: content_type_options(first(headers, "x-content-type-options")),
        referrer_policy: referrer_policy(first(headers, "referrer-policy")),
        permissions_policy: permissions_policy(first(headers, "permissions-policy")),
    };
    Findings {
        headers: checks,
        cookies: all(headers, "set-cookie")
            .iter()
            .take(COOKIES_MAX)
            .map(|c| cookie(c))
            .collect(),
        banners: banners(headers),
    }
}

/// The score (0-100) and grade of a reachable target (see the module docs).
pub fn score(f: &Findings, https: bool) -> (u8, Grade) {
    let h = &f.headers;
    let mut lost = if https { 0 } else { penalty::NO_HTTPS };
    lost += h.strict_transport_security.penalty(penalty::HSTS);
    lost += h.content_security_policy.penalty(penalty::CSP);
    lost += h.framing.penalty(penalty::FRAMING);
    lost += h
        .x_content_type_options
        .penalty(penalty::CONTENT_TYPE_OPTIONS);
    lost += h.referrer_policy.penalty(penalty::REFERRER_POLICY);
    lost += h.permissions_policy.penalty(penalty::PERMISSIONS_POLICY);
    let bad_cookies = f.cookies.iter().filter(|c| !c.issues.is_empty()).count() as u32;
    lost += (bad_cookies * penalty::COOKIE).min(penalty::COOKIES_MAX);
    lost += (f.banners.len() as u32 * penalty::BANNER).min(penalty::BANNERS_MAX);
    let score = 100u32.saturating_sub(lost) as u8;
    (score, Grade::of(score))
}

fn text(v: &reqwest::header::HeaderValue) -> String {
    let s = String::from_utf8_lossy(v.as_bytes());
    s.chars().take(VALUE_MAX).collect()
}

fn first(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(text)
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(text).collect()
}

fn hsts(value: Option<String>, https: bool) -> HeaderCheck {
    use HeaderState::*;
    if !https {
        let reason = if value.is_some() {
            "sent over plain HTTP, where browsers ignore it"
        } else {
            "only meaningful over HTTPS; the site was not reached over HTTPS"
        };
        return HeaderCheck::new(NotApplicable, value, reason);
    }
    let Some(v) = value else {
        return HeaderCheck::new(
            Missing,
            None,
            "not sent: browsers may still reach the site over plain HTTP",
        );
    };
    let max_age = v.split(';').find_map(|d| {
        let (name, val) = d.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| val.trim().trim_matches('"').parse::<u64>().ok())
    });
    match max_age {
        None => HeaderCheck::new(Misconfigured, Some(v), "no max-age directive"),
        Some(None) => HeaderCheck::new(Misconfigured, Some(v), "max-age is not a number"),
        Some(Some(age)) if age < HSTS_MIN_MAX_AGE => HeaderCheck::new(
            Misconfigured,
            Some(v),
            format!("max-age={age} is under {HSTS_MIN_MAX_AGE} (180 days)"),
        ),
        Some(Some(age)) => HeaderCheck::new(Present, Some(v), format!("max-age={age}")),
    }
}

/// A policy's directives: lower-cased name -> sources (as sent).
fn directives(policy: &str) -> Vec<(String, Vec<&str>)> {
    policy
        .split(';')
        .filter_map(|d| {
            let mut parts = d.split_ascii_whitespace();
            let name = parts.next()?.to_ascii_lowercase();
            Some((name, parts.collect()))
        })
        .collect()
}

fn directive<'a>(policy: &'a [(String, Vec<&'a str>)], name: &str) -> Option<&'a [&'a str]> {
    policy
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.as_slice())
}

/// Why one policy fails to restrict scripts, or `None` when it restricts them.
fn script_weakness(policy: &str) -> Option<String> {
    let d = directives(policy);
    let script = directive(&d, "script-src");
    let default = directive(&d, "default-src");
    if script.is_none() && default.is_none() {
        return Some("neither script-src nor default-src: scripts are unrestricted".into());
    }
    for (name, sources) in [("script-src", script), ("default-src", default)] {
        for s in sources.unwrap_or_default() {
            let s = s.to_ascii_lowercase();
            if matches!(s.as_str(), "'unsafe-inline'" | "'unsafe-eval'" | "*") {
                return Some(format!("{name} allows {s}"));
            }
        }
    }
    None
}

fn content_security_policy(policies: &[String], report_only: bool) -> HeaderCheck {
    use HeaderState::*;
    if policies.is_empty() {
        let reason = if report_only {
            "only Content-Security-Policy-Report-Only, which enforces nothing"
        } else {
            "not sent"
        };
        return HeaderCheck::new(Missing, None, reason);
    }
    let value = Some(policies.join(", "));
    // Every policy is enforced, so one that restricts scripts is enough.
    let weaknesses: Vec<Option<String>> = policies.iter().map(|p| script_weakness(p)).collect();
    match weaknesses.iter().all(Option::is_some) {
        false => HeaderCheck::new(Present, value, "restricts scripts"),
        true => HeaderCheck::new(
            Misconfigured,
            value,
            weaknesses.into_iter().flatten().next().unwrap_or_default(),
        ),
    }
}

fn framing(xfo: Option<String>, csp: &[String]) -> HeaderCheck {
    use HeaderState::*;
    let ancestors: Option<Vec<String>> = csp.iter().find_map(|p| {
        directive(&directives(p), "frame-ancestors")
            .map(|s| s.iter().map(|x| x.to_ascii_lowercase()).collect())
    });
    if let Some(sources) = &ancestors
        && !sources.iter().any(|s| s == "*")
    {
        let shown = if sources.is_empty() {
            "'none'".to_owned()
        } else {
            sources.join(" ")
        };
        return HeaderCheck::new(Present, xfo, format!("CSP frame-ancestors {shown}"));
    }
    let xfo_ok = xfo.as_deref().map(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("DENY") || v.eq_ignore_ascii_case("SAMEORIGIN")
    });
    match (xfo_ok, ancestors.is_some()) {
        (Some(true), _) => HeaderCheck::new(Present, xfo, "X-Frame-Options"),
        (_, true) => HeaderCheck::new(
            Misconfigured,
            xfo,
            "CSP frame-ancestors * lets any site frame the page",
        ),
        (Some(false), false) => HeaderCheck::new(
            Misconfigured,
            xfo,
            "X-Frame-Options must be DENY or SAMEORIGIN (ALLOW-FROM is obsolete)",
        ),
        (None, false) => HeaderCheck::new(
            Missing,
            None,
            "neither X-Frame-Options nor CSP frame-ancestors: any site may frame the page",
        ),
    }
}

fn content_type_options(value: Option<String>) -> HeaderCheck {
    use HeaderState::*;
    match value {
        None => HeaderCheck::new(Missing, None, "not sent: browsers may sniff content types"),
        Some(v) if v.trim().eq_ignore_ascii_case("nosniff") => {
            HeaderCheck::new(Present, Some(v), "nosniff")
        }
        Some(v) => HeaderCheck::new(Misconfigured, Some(v), "the only valid value is nosniff"),
    }
}

const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

fn referrer_policy(value: Option<String>) -> HeaderCheck {
    use HeaderState::*;
    let Some(v) = value else {
        return HeaderCheck::new(
            Missing,
            None,
            "not sent (browsers default to strict-origin-when-cross-origin)",
        );
    };
    // A list is allowed: the last value the browser knows wins.
    let effective = v
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .rfind(|p| REFERRER_POLICIES.contains(&p.as_str()));
    match effective.as_deref() {
        None => HeaderCheck::new(Misconfigured, Some(v), "no known policy"),
        Some(p @ ("unsafe-url" | "no-referrer-when-downgrade")) => HeaderCheck::new(
            Misconfigured,
            Some(v.clone()),
            format!("{p} leaks full URLs to other sites"),
        ),
        Some(p) => HeaderCheck::new(Present, Some(v.clone()), p.to_owned()),
    }
}

fn permissions_policy(value: Option<String>) -> HeaderCheck {
    use HeaderState::*;
    match value {
        None => HeaderCheck::new(
            Missing,
            None,
            "not sent: powerful features (camera, geolocation, ...) are not restricted",
        ),
        Some(v) if v.trim().is_empty() => HeaderCheck::new(Misconfigured, Some(v), "empty"),
        Some(v) => HeaderCheck::new(Present, Some(v), "restricts browser features"),
    }
}

fn cookie(set_cookie: &str) -> CookieCheck {
    let mut parts = set_cookie.split(';');
    let name = parts
        .next()
        .map(|nv| nv.split_once('=').map_or(nv, |(n, _)| n).trim().to_owned())
        .unwrap_or_default();
    let (mut secure, mut http_only, mut same_site) = (false, false, None);
    for attr in parts {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        match key.trim().to_ascii_lowercase().as_str() {
            "secure" => secure = true,
            "httponly" => http_only = true,
            "samesite" => same_site = Some(val.trim().to_owned()),
            _ => {}
        }
    }
    let mut issues = Vec::new();
    if !secure {
        issues.push("no Secure flag: it is also sent over plain HTTP".to_owned());
    }
    if !http_only {
        issues.push("no HttpOnly flag: scripts can read it".to_owned());
    }
    match same_site.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("strict" | "lax") => {}
        Some("none") if !secure => {
            issues.push("SameSite=None without Secure: browsers reject it".to_owned())
        }
        Some("none") => {}
        Some(other) => issues.push(format!("SameSite={other} is not Strict, Lax or None")),
    }
    CookieCheck {
        name,
        secure,
        http_only,
        same_site,
        issues,
    }
}

fn banners(headers: &HeaderMap) -> Vec<Banner> {
    let mut out = Vec::new();
    if let Some(server) = first(headers, "server")
        && server.chars().any(|c| c.is_ascii_digit())
    {
        out.push(Banner {
            header: "Server".into(),
            value: server,
        });
    }
    for name in ["X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version"] {
        for value in all(headers, name) {
            out.push(Banner {
                header: name.into(),
                value,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("permissions-policy", "geolocation=()"),
        ("set-cookie", "sid=abc; Secure; HttpOnly; SameSite=Lax"),
        ("server", "nginx"),
    ];

    #[test]
    fn all_good_headers_score_100_over_https_and_90_over_http() {
        let f = analyse(&map(GOOD), true);
        let h = &f.headers;
        for c in [
            &h.strict_transport_security,
            &h.content_security_policy,
            &h.framing,
            &h.x_content_type_options,
            &h.referrer_policy,
            &h.permissions_policy,
        ] {
            assert_eq!(c.state, HeaderState::Present, "{c:?}");
        }
        assert!(f.cookies[0].issues.is_empty());
        assert!(f.banners.is_empty());
        assert_eq!(score(&f, true), (100, Grade::A));
        let f = analyse(&map(GOOD), false);
        assert_eq!(
            f.headers.strict_transport_security.state,
            HeaderState::NotApplicable
        );
        assert_eq!(score(&f, false), (90, Grade::A));
    }

    #[test]
    fn nothing_sent_scores_low() {
        let f = analyse(&HeaderMap::new(), true);
        assert_eq!(score(&f, true), (40, Grade::F));
        let f = analyse(&HeaderMap::new(), false);
        assert_eq!(score(&f, false), (45, Grade::F));
    }

    #[test]
    fn hsts_rules() {
        let s = |v: &str| hsts(Some(v.into()), true).state;
        assert_eq!(s("max-age=15552000"), HeaderState::Present);
        assert_eq!(
            s("includeSubDomains; max-age=\"31536000\""),
            HeaderState::Present
        );
        assert_eq!(s("max-age=15551999"), HeaderState::Misconfigured);
        assert_eq!(s("max-age=0"), HeaderState::Misconfigured);
        assert_eq!(s("includeSubDomains"), HeaderState::Misconfigured);
        assert_eq!(s("max-age=abc"), HeaderState::Misconfigured);
        assert_eq!(hsts(None, true).state, HeaderState::Missing);
        assert_eq!(hsts(None, false).state, HeaderState::NotApplicable);
        assert!(
            hsts(Some("max-age=10".into()), true)
                .reason
                .contains("15552000")
        );
    }

    #[test]
    fn csp_rules() {
        let c = |p: &[&str]| {
            let v: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            content_security_policy(&v, false)
        };
        assert_eq!(c(&["default-src 'self'"]).state, HeaderState::Present);
        assert_eq!(
            c(&["script-src 'self' https://cdn.example"]).state,
            HeaderState::Present
        );
        for bad in [
            "default-src 'self' 'unsafe-inline'",
            "script-src 'UNSAFE-EVAL'",
            "default-src *",
            "script-src 'self'; default-src *",
            "img-src 'self'",
            "frame-ancestors 'none'",
        ] {
            let r = c(&[bad]);
            assert_eq!(r.state, HeaderState::Misconfigured, "{bad}");
        }
        assert!(
            c(&["script-src 'unsafe-inline'"])
                .reason
                .contains("'unsafe-inline'")
        );
        // Two policies: both are enforced, one that restricts scripts suffices.
        assert_eq!(
            c(&["default-src *", "script-src 'self'"]).state,
            HeaderState::Present
        );
        assert_eq!(
            content_security_policy(&[], true).state,
            HeaderState::Missing
        );
        assert!(
            content_security_policy(&[], true)
                .reason
                .contains("Report-Only")
        );
    }

    #[test]
    fn framing_rules() {
        let f = |xfo: Option<&str>, csp: &[&str]| {
            let csp: Vec<String> = csp.iter().map(|s| s.to_string()).collect();
            framing(xfo.map(Into::into), &csp).state
        };
        use HeaderState::*;
        assert_eq!(f(Some("DENY"), &[]), Present);
        assert_eq!(f(Some(" sameorigin "), &[]), Present);
        assert_eq!(f(Some("ALLOW-FROM https://x"), &[]), Misconfigured);
        assert_eq!(f(None, &["frame-ancestors 'self'"]), Present);
        assert_eq!(
            f(Some("ALLOW-FROM x"), &["frame-ancestors 'none'"]),
            Present
        );
        assert_eq!(f(None, &["frame-ancestors *"]), Misconfigured);
        assert_eq!(f(Some("DENY"), &["frame-ancestors *"]), Present);
        assert_eq!(f(None, &["default-src 'self'"]), Missing);
        assert_eq!(f(None, &[]), Missing);
    }

    #[test]
    fn simple_headers() {
        use HeaderState::*;
        assert_eq!(content_type_options(Some("nosniff".into())).state, Present);
        assert_eq!(
            content_type_options(Some("sniff".into())).state,
            Misconfigured
        );
        assert_eq!(content_type_options(None).state, Missing);
        let r = |v: &str| referrer_policy(Some(v.into())).state;
        assert_eq!(r("no-referrer"), Present);
        assert_eq!(r("unsafe-url"), Misconfigured);
        assert_eq!(r("No-Referrer-When-Downgrade"), Misconfigured);
        assert_eq!(r("unsafe-url, strict-origin"), Present);
        assert_eq!(r("strict-origin, unsafe-url"), Misconfigured);
        assert_eq!(r("strict-origin, made-up"), Present);
        assert_eq!(r("made-up"), Misconfigured);
        assert_eq!(referrer_policy(None).state, Missing);
        assert_eq!(permissions_policy(Some("camera=()".into())).state, Present);
        assert_eq!(permissions_policy(Some(" ".into())).state, Misconfigured);
        assert_eq!(permissions_policy(None).state, Missing);
    }

    #[test]
    fn cookie_flags() {
        let c = cookie("sid=abc; Path=/; Secure; HttpOnly; SameSite=Strict");
        assert_eq!(
            (c.name.as_str(), c.secure, c.http_only),
            ("sid", true, true)
        );
        assert_eq!(c.same_site.as_deref(), Some("Strict"));
        assert!(c.issues.is_empty());
        let c = cookie("track=1; SameSite=None");
        assert!(!c.secure && !c.http_only);
        assert_eq!(c.issues.len(), 3, "{:?}", c.issues);
        assert!(
            c.issues
                .iter()
                .any(|i| i.contains("SameSite=None without Secure"))
        );
        let c = cookie("x=1; secure; httponly; samesite=none");
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let c = cookie("x=1; Secure; HttpOnly; SameSite=Sometimes");
        assert_eq!(c.issues.len(), 1);
        assert_eq!(cookie("bare").name, "bare");
    }

    #[test]
    fn banners_and_their_cap() {
        let f = analyse(
            &map(&[
                ("server", "Apache/2.4.1 (Unix)"),
                ("x-powered-by", "PHP/8.1"),
                ("x-aspnet-version", "4.0.30319"),
                ("x-aspnetmvc-version", "5.2"),
            ]),
            true,
        );
        let names: Vec<&str> = f.banners.iter().map(|b| b.header.as_str()).collect();
        assert_eq!(
            names,
            [
                "Server",
                "X-Powered-By",
                "X-AspNet-Version",
                "X-AspNetMvc-Version"
            ]
        );
        assert!(
            analyse(&map(&[("server", "nginx")]), true)
                .banners
                .is_empty()
        );
        let mut good = map(GOOD);
        good.extend(map(&[
            ("server", "nginx/1.22"),
            ("x-powered-by", "a"),
            ("x-aspnet-version", "1"),
        ]));
        let f = analyse(&good, true);
        assert_eq!(score(&f, true).0, 90, "banners cost at most 10");
    }

    #[test]
    fn cookie_penalties_are_capped() {
        let mut h = map(GOOD);
        for i in 0..5 {
            h.append(
                "set-cookie",
                HeaderValue::from_str(&format!("c{i}=1")).unwrap(),
            );
        }
        let f = analyse(&h, true);
        assert_eq!(f.cookies.len(), 6);
        assert_eq!(score(&f, true), (85, Grade::B));
    }

    #[test]
    fn grades() {
        for (s, g) in [
            (100, Grade::A),
            (90, Grade::A),
            (89, Grade::B),
            (80, Grade::B),
            (79, Grade::C),
            (70, Grade::C),
            (69, Grade::D),
            (60, Grade::D),
            (59, Grade::F),
            (0, Grade::F),
        ] {
            assert_eq!(Grade::of(s), g, "{s}");
        }
    }
}
