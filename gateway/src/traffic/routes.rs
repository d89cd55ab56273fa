//! The route table: every path the gateway serves for an upstream is declared
//! in config with the access it needs. Default deny: a route that does not say
//! `public` needs a valid token.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::HeaderName;
use serde::Deserialize;

use crate::traffic::cert_subjects::{ClientCertConfig, ClientCertRule};
use crate::traffic::header_edits::{HeaderEdits, HeaderRules};
use crate::traffic::ratelimit::{LimitBy, Quota, RateLimitConfig};

/// One `routes[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on segment boundaries; longest wins.
    pub prefix: String,
    /// Only requests for this host (the `Host` header, port ignored) match.
    #[serde(default)]
    pub host: Option<String>,
    /// Only these methods match (default: all); another route may serve the rest.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Upstream name (a key of `upstreams`); also the audience of the proof.
    pub upstream: String,
    /// Replaces the prefix in the upstream path (default: kept as is).
    #[serde(default)]
    pub rewrite: Option<String>,
    /// `public`, `authenticated`, a list of roles (any of them), or a map of
    /// method (or `*`) to one of those.
    pub access: AccessConfig,
    /// Headers added to / removed from the request sent upstream.
    #[serde(default)]
    pub request_headers: HeaderRules,
    /// Headers added to / removed from the response sent to the client.
    #[serde(default)]
    pub response_headers: HeaderRules,
    /// Largest request body accepted (default: the gateway's `max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Requests per caller (token subject) or per client IP.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Cache GET/HEAD answers, per caller identity.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Requests here may make the service check the caller's password (a
    /// new e-mail or password needs the current one): each is reserved as a
    /// login attempt for the caller's username, and a wrong password the
    /// service reports counts toward the same lockout as a failed login.
    #[serde(default)]
    pub credential_check: bool,
    /// Token claims sent to the upstream as headers (claim -> header name),
    /// besides the global `identity.forward_claims`; covered by the proof.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Only requests over a connection whose client certificate the
    /// listener verified (`tls.client_auth`): `true` for any such
    /// certificate, or `{subjects: [...]}` for one of these subjects
    /// (RFC 4514, `CN=billing,O=Acme`); 403 otherwise.
    #[serde(default)]
    pub client_cert: ClientCertConfig,
    /// `Upgrade: websocket` requests are relayed as WebSockets (default);
    /// `false`: the upgrade is ignored and the request goes as a plain GET.
    #[serde(default = "yes")]
    pub websocket: bool,
}

fn yes() -> bool {
    true
}

/// Resolve a `forward_claims` map (claim -> header name): each header a
/// valid lower-case name that is not one the gateway or HTTP owns.
pub fn forward_claims(
    map: &BTreeMap<String, String>,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(map.len());
    for (claim, header) in map {
        let lower = header.to_ascii_lowercase();
        let owned = common::identity::IDENTITY_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-forwarded-")
            || lower.starts_with("x-gatehouse-")
            || lower.starts_with("content-")
            || matches!(
                lower.as_str(),
                "authorization"
                    | "host"
                    | "cookie"
                    | "connection"
                    | "forwarded"
                    | "x-request-id"
                    | "transfer-encoding"
                    | "te"
                    | "upgrade"
                    | "keep-alive"
                    | "trailer"
            );
        if owned || claim.is_empty() || HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!(
                "{what}.{claim}: `{header}` cannot carry a claim (not a header name, or one the gateway or HTTP owns)"
            ));
        }
        out.push((claim.clone(), lower));
    }
    Ok(out)
}

/// `cache:` on a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Longest an answer is kept (an upstream `max-age` may shorten it).
    pub ttl_secs: u64,
    /// Larger answers are streamed and not kept.
    #[serde(default = "default_cache_entry")]
    pub max_entry_bytes: u64,
}

fn default_cache_entry() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AccessConfig {
    Rule(RuleConfig),
    PerMethod(BTreeMap<String, RuleConfig>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RuleConfig {
    Keyword(Keyword),
    Roles(Vec<String>),
    /// `{scopes: [orders:write], roles: [user]}`: every scope, and one of
    /// the roles when roles are given; `mfa: true` adds a second factor
    /// (`{roles: [admin], mfa: true}`).
    Grant(GrantConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The caller's login had a second factor (`amr` with `otp`).
    #[serde(default)]
    pub mfa: bool,
    /// A browser session (the login page's cookie) is admitted as well as
    /// a bearer token: `{roles: [user], session: true}`.
    #[serde(default)]
    pub session: bool,
}

/// An OAuth scope token (RFC 6749 section 3.3): printable ASCII without
/// space, `"` and `\\`.
pub fn is_valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    Public,
    Authenticated,
}

/// What a request needs to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Public,
    Authenticated,
    /// Any one of these roles.
    AnyRole(Vec<String>),
    /// Every one of these scopes, any one of the roles (none: no role
    /// needed), and a second factor when `mfa` is set; `session`: a
    /// browser session is admitted as well as a bearer token.
    Grant {
        roles: Vec<String>,
        scopes: Vec<String>,
        mfa: bool,
        session: bool,
    },
}

impl Rule {
    pub(crate) fn from_config(c: &RuleConfig) -> Result<Self, String> {
        match c {
            RuleConfig::Keyword(Keyword::Public) => Ok(Rule::Public),
            RuleConfig::Keyword(Keyword::Authenticated) => Ok(Rule::Authenticated),
            RuleConfig::Roles(r) if r.is_empty() => {
                Err("an empty role list would admit nobody".into())
            }
            RuleConfig::Roles(r) => match r.iter().find(|x| !common::identity::is_valid_role(x)) {
                Some(bad) => Err(format!("`{bad}` is not a valid role name")),
                None => Ok(Rule::AnyRole(r.clone())),
            },
            RuleConfig::Grant(g) => {
                if g.scopes.is_empty() && !g.mfa && !g.session {
                    return Err(
                        "name at least one of `scopes`, `mfa: true` or `session: true` (or use a role list)"
                            .into(),
                    );
                }
                if g.session && !g.scopes.is_empty() {
                    return Err(
                        "`session: true` admits a browser, which holds no scopes: a rule with `scopes` is for tokens only"
                            .into(),
                    );
                }
                if let Some(bad) = g.scopes.iter().find(|s| !is_valid_scope(s)) {
                    return Err(format!("`{bad}` is not a valid scope"));
                }
                if let Some(bad) = g.roles.iter().find(|x| !common::identity::is_valid_role(x)) {
                    return Err(format!("`{bad}` is not a valid role name"));
                }
                Ok(Rule::Grant {
                    roles: g.roles.clone(),
                    scopes: g.scopes.clone(),
                    mfa: g.mfa,
                    session: g.session,
                })
            }
        }
    }

    /// The scopes the rule needs (none for the other rules).
    pub fn scopes(&self) -> &[String] {
        match self {
            Rule::Grant { scopes, .. } => scopes,
            _ => &[],
        }
    }

    /// A browser session is admitted as well as a bearer token.
    pub fn admits_session(&self) -> bool {
        matches!(self, Rule::Grant { session: true, .. })
    }

    /// The roles the rule accepts, when it names any.
    pub fn roles(&self) -> &[String] {
        match self {
            Rule::AnyRole(roles) | Rule::Grant { roles, .. } => roles,
            _ => &[],
        }
    }
}

/// A resolved route.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    /// Lower-case host without port, when the route is host-bound.
    pub host: Option<String>,
    /// The methods the route matches (`None`: all).
    pub methods: Option<Vec<Method>>,
    pub upstream: String,
    pub rewrite: Option<String>,
    default_rule: Option<Rule>,
    per_method: Vec<(Method, Rule)>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub max_body_bytes: Option<u64>,
    pub rate_limit: Option<(Quota, LimitBy)>,
    pub cache: Option<RouteCache>,
    pub credential_check: bool,
    /// This route's claim forwarding (claim, header), over the global one.
    pub forward_claims: Vec<(String, String)>,
    /// A verified client certificate is required (of these subjects).
    pub client_cert: Option<ClientCertRule>,
    /// Upgrade requests are relayed as WebSockets.
    pub websocket: bool,
    /// The route's meters, resolved by its first request (see
    /// [`crate::ops::metrics::RouteMeters`]); a reload's new route finds the
    /// same label's meters again.
    pub meters: std::sync::OnceLock<std::sync::Arc<crate::ops::metrics::RouteMeters>>,
}

/// A route's cache policy, resolved.
#[derive(Debug, Clone)]
pub struct RouteCache {
    pub ttl: Duration,
    pub max_entry_bytes: u64,
}

impl Route {
    /// The rule for a method; `None` when the route does not serve it.
    pub fn rule_for(&self, method: &Method) -> Option<&Rule> {
        self.per_method
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, r)| r)
            .or(self.default_rule.as_ref())
    }

    /// Every scope the route's rules name.
    pub fn scopes(&self) -> impl Iterator<Item = &String> {
        self.default_rule
            .iter()
            .chain(self.per_method.iter().map(|(_, r)| r))
            .flat_map(Rule::scopes)
    }

    fn serves(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.contains(method))
    }

    /// The upstream path (with query) for a request path.
    pub fn upstream_path(&self, path: &str, query: &str) -> String {
        let rest = if self.prefix == "/" {
            path
        } else {
            &path[self.prefix.len().min(path.len())..]
        };
        let base = self.rewrite.as_deref().unwrap_or(&self.prefix);
        let mut p = String::with_capacity(base.len() + rest.len() + query.len() + 2);
        if rest.is_empty() {
            p.push_str(base);
        } else {
            p.push_str(base.trim_end_matches('/'));
            p.push('/');
            p.push_str(rest.trim_start_matches('/'));
        }
        if p.is_empty() {
            p.push('/');
        }
        if !query.is_empty() {
            p.push('?');
            p.push_str(query);
        }
        p
    }

    /// The public path at which this route serves an upstream path (the
    /// inverse of [`Route::upstream_path`]), if it does: for `Location`
    /// headers and the published API description.
    pub fn public_path(&self, upstream_path: &str) -> Option<String> {
        let base = self.rewrite.as_deref().unwrap_or(&self.prefix);
        let rest = if upstream_path == base {
            ""
        } else if base == "/" {
            upstream_path.strip_prefix('/')?
        } else {
            upstream_path
                .strip_prefix(base.trim_end_matches('/'))?
                .strip_prefix('/')?
        };
        let public = if rest.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{rest}", self.prefix.trim_end_matches('/'))
        };
        (self.upstream_path(&public, "") == upstream_path).then_some(public)
    }

    /// The access rules as configured, for the admin API.
    pub fn access_summary(&self) -> BTreeMap<String, String> {
        let show = |r: &Rule| match r {
            Rule::Public => "public".to_owned(),
            Rule::Authenticated => "authenticated".to_owned(),
            Rule::AnyRole(roles) => format!("any of: {}", roles.join(", ")),
            Rule::Grant {
                roles,
                scopes,
                mfa,
                session,
            } => {
                let mut parts = Vec::new();
                if !scopes.is_empty() {
                    parts.push(format!("scopes: {}", scopes.join(" ")));
                }
                if !roles.is_empty() {
                    parts.push(format!("any of: {}", roles.join(", ")));
                }
                if *mfa {
                    parts.push("a second factor".to_owned());
                }
                if *session {
                    parts.push("a browser session or a token".to_owned());
                }
                parts.join("; ")
            }
        };
        let mut out: BTreeMap<String, String> = self
            .per_method
            .iter()
            .map(|(m, r)| (m.to_string(), show(r)))
            .collect();
        if let Some(r) = &self.default_rule {
            out.insert("*".into(), show(r));
        }
        out
    }
}

/// Why no route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No route matches the path (and host).
    NoRoute,
    /// Routes match the path but none serves this method.
    Method,
}

/// Routes indexed by prefix: a lookup costs one hash probe per path segment,
/// whatever the number of routes.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Prefix (no trailing slash, except `/`) -> its routes, host-bound first.
    /// (foldhash: the keys come from the configuration, and a lookup is
    /// a few hashes of path prefixes on every request.)
    by_prefix: ByPrefix,
    /// Every route, longest prefix first (for listing).
    ordered: Vec<Route>,
    /// Some route is bound to a host (else the request's host is not read).
    hosts: bool,
}

impl RouteTable {
    /// Whether some route is bound to `host` (a name, any case).
    pub fn serves_host(&self, host: &str) -> bool {
        self.hosts
            && self.ordered.iter().any(|r| {
                r.host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
    }
}

fn normalize_prefix(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// The host a request names (`Host` header or URI authority), lower-case,
/// without port.
pub fn host_of(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    h.to_ascii_lowercase()
}

/// The routes sharing a prefix, by prefix (foldhash: see [`RouteTable::by_prefix`]).
type ByPrefix = HashMap<String, Vec<Route>, foldhash::fast::RandomState>;

/// A route's prefix, rewrite and upstream checked (the prefix must be a plain path).
fn check_target(c: &RouteConfig, upstreams: &impl Fn(&str) -> bool) -> Result<(), String> {
    if !c.prefix.starts_with('/') {
        return Err("prefix must start with `/`".into());
    }
    if c.prefix.contains(['?', '#', '%', '\\']) || c.prefix.contains("//") {
        return Err("prefix must be a plain path".into());
    }
    if !upstreams(&c.upstream) {
        return Err(format!("unknown upstream `{}`", c.upstream));
    }
    if c.rewrite.as_deref().is_some_and(|r| !r.starts_with('/')) {
        return Err("rewrite must start with `/`".into());
    }
    Ok(())
}

/// A route's rules: the default (`*`, or the one rule) and the per-method ones.
type AccessRules = (Option<Rule>, Vec<(Method, Rule)>);

/// The access rules, resolved.
fn access_rules(access: &AccessConfig) -> Result<AccessRules, String> {
    match access {
        AccessConfig::Rule(r) => Ok((Some(Rule::from_config(r)?), Vec::new())),
        AccessConfig::PerMethod(map) => {
            let mut default = None;
            let mut per = Vec::new();
            for (m, r) in map {
                let rule = Rule::from_config(r)?;
                if m == "*" {
                    default = Some(rule);
                } else {
                    per.push((parse_method(m)?, rule));
                }
            }
            Ok((default, per))
        }
    }
}

/// The methods a route matches (`None`: all); an empty list would match nothing.
fn route_methods(methods: Option<&[String]>) -> Result<Option<Vec<Method>>, String> {
    match methods {
        None => Ok(None),
        Some([]) => Err("an empty method list would match nothing".into()),
        Some(ms) => ms
            .iter()
            .map(|m| parse_method(m))
            .collect::<Result<_, _>>()
            .map(Some),
    }
}

/// A route's cache policy, resolved; both bounds must be positive.
fn route_cache(cache: Option<&CacheConfig>) -> Result<Option<RouteCache>, String> {
    match cache {
        Some(cc) if cc.ttl_secs == 0 || cc.max_entry_bytes == 0 => {
            Err("cache: ttl_secs and max_entry_bytes must be positive".into())
        }
        Some(cc) => Ok(Some(RouteCache {
            ttl: Duration::from_secs(cc.ttl_secs),
            max_entry_bytes: cc.max_entry_bytes,
        })),
        None => Ok(None),
    }
}

impl Route {
    /// Resolve one `routes[]` entry; the error does not name the entry (the table does).
    fn from_config(c: &RouteConfig, upstreams: &impl Fn(&str) -> bool) -> Result<Self, String> {
        check_target(c, upstreams)?;
        let (default_rule, per_method) = access_rules(&c.access)?;
        let methods = route_methods(c.methods.as_deref())?;
        let rate_limit = match &c.rate_limit {
            Some(rl) => Some((
                Quota::from_config(rl).map_err(|e| format!("rate_limit: {e}"))?,
                rl.by,
            )),
            None => None,
        };
        let cache = route_cache(c.cache.as_ref())?;
        if c.max_body_bytes == Some(0) {
            return Err("max_body_bytes must be positive".into());
        }
        Ok(Route {
            prefix: normalize_prefix(&c.prefix),
            host: c.host.as_deref().map(host_of),
            methods,
            upstream: c.upstream.clone(),
            rewrite: c.rewrite.clone(),
            default_rule,
            per_method,
            request_headers: HeaderEdits::from_config(&c.request_headers, "request_headers")?,
            response_headers: HeaderEdits::from_config(&c.response_headers, "response_headers")?,
            max_body_bytes: c.max_body_bytes,
            rate_limit,
            cache,
            credential_check: c.credential_check,
            forward_claims: forward_claims(&c.forward_claims, "forward_claims")?,
            client_cert: ClientCertRule::from_config(&c.client_cert)?,
            websocket: c.websocket,
            meters: std::sync::OnceLock::new(),
        })
    }
}

/// The routes by prefix, host-bound ones first; `Err`: a prefix declared twice for the same methods.
fn index_by_prefix(routes: &[Route]) -> Result<ByPrefix, String> {
    let mut by_prefix: ByPrefix = HashMap::default();
    for r in routes {
        let same = by_prefix.entry(r.prefix.clone()).or_default();
        let clash = same.iter().any(|o| {
            o.host == r.host
                && match (&o.methods, &r.methods) {
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                    _ => true,
                }
        });
        if clash {
            return Err(format!(
                "routes: prefix `{}`{} is declared twice for the same methods",
                r.prefix,
                r.host
                    .as_deref()
                    .map(|h| format!(" (host {h})"))
                    .unwrap_or_default()
            ));
        }
        same.push(r.clone());
    }
    for same in by_prefix.values_mut() {
        // Host-bound routes before host-less ones; otherwise as declared.
        same.sort_by_key(|r| r.host.is_none());
    }
    Ok(by_prefix)
}

impl RouteTable {
    /// Resolve and check the configured routes against the known upstreams.
    pub fn new<'a>(
        configs: &[RouteConfig],
        upstreams: impl Fn(&str) -> bool + 'a,
    ) -> Result<Self, String> {
        let mut routes = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |m: String| format!("routes[{i}] ({}): {m}", c.prefix);
            routes.push(Route::from_config(c, &upstreams).map_err(at)?);
        }
        let by_prefix = index_by_prefix(&routes)?;
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        Ok(Self {
            by_prefix,
            hosts: routes.iter().any(|r| r.host.is_some()),
            ordered: routes,
        })
    }

    /// The route for a request: the longest prefix matching `path` on a
    /// segment boundary, a host-bound route before a host-less one, and one
    /// that serves `method`.
    /// `host` is asked for only when some route is bound to one.
    pub fn find(
        &self,
        host: impl FnOnce() -> String,
        method: &Method,
        path: &str,
    ) -> Result<&Route, Miss> {
        let host = if self.hosts { host() } else { String::new() };
        let host = host.as_str();
        let mut miss = Miss::NoRoute;
        let mut candidate = path.trim_end_matches('/');
        loop {
            let key = if candidate.is_empty() { "/" } else { candidate };
            if let Some(same) = self.by_prefix.get(key) {
                for r in same {
                    if r.host.as_deref().is_some_and(|h| h != host) {
                        continue;
                    }
                    if r.serves(method) {
                        return Ok(r);
                    }
                    miss = Miss::Method;
                }
            }
            if candidate.is_empty() {
                return Err(miss);
            }
            candidate = match candidate.rfind('/') {
                Some(i) => &candidate[..i],
                None => "",
            };
        }
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.ordered
    }
}

fn parse_method(m: &str) -> Result<Method, String> {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{m}` is not an HTTP method"))
}

/// Refuse request paths an upstream could resolve differently from the
/// gateway: dot segments, encoded slashes, backslashes or dots, NUL. The
/// gateway routes on the path as sent, so `/public/../admin` must never
/// reach an upstream that would normalise it into a route it did not check.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the path must start with `/`");
    }
    for seg in path.split('/') {
        if seg == "." || seg == ".." {
            return Err("the path must not contain `.` or `..` segments");
        }
    }
    // One pass, no copy: `\\`, and `%2f` `%5c` `%2e` `%00` in either case.
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let encoded = b == b'%'
            && bytes.get(i + 1..i + 3).is_some_and(|pair| {
                matches!(
                    [pair[0], pair[1].to_ascii_lowercase()],
                    [b'2', b'f' | b'e'] | [b'5', b'c'] | [b'0', b'0']
                )
            });
        if b == b'\\' || encoded {
            return Err("the path must not contain encoded slashes or dots, backslashes or NUL");
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Result<RouteTable, String> {
        use figment::providers::Format;
        let cfg: Vec<RouteConfig> = figment::Figment::from(figment::providers::Yaml::string(yaml))
            .extract_inner("routes")
            .map_err(|e| e.to_string())?;
        RouteTable::new(&cfg, |u| u == "users" || u == "orders")
    }

    #[test]
    fn scope_rules_parse_and_bad_ones_are_named() {
        let rule = |v: serde_json::Value| {
            let c: RuleConfig = serde_json::from_value(v).unwrap();
            Rule::from_config(&c)
        };
        assert_eq!(
            rule(serde_json::json!({"scopes": ["orders:write"]})).unwrap(),
            Rule::Grant {
                roles: vec![],
                scopes: vec!["orders:write".into()],
                mfa: false,
                session: false,
            }
        );
        assert_eq!(
            rule(serde_json::json!({"scopes": ["a"], "roles": ["admin"]}))
                .unwrap()
                .roles(),
            ["admin"]
        );
        for bad in [
            serde_json::json!({"scopes": []}),
            serde_json::json!({"scopes": ["has space"]}),
            serde_json::json!({"scopes": ["quo\"te"]}),
            serde_json::json!({"scopes": ["ok"], "roles": ["Bad Role"]}),
            serde_json::json!({"scopes": ["ok"], "session": true}),
            serde_json::json!({"roles": ["user"]}),
        ] {
            assert!(rule(bad.clone()).is_err(), "{bad}");
        }
        let session = rule(serde_json::json!({"roles": ["user"], "session": true})).unwrap();
        assert!(session.admits_session());
        assert_eq!(session.roles(), ["user"]);
        assert!(
            rule(serde_json::json!({"session": true}))
                .unwrap()
                .admits_session()
        );
        assert!(
            !rule(serde_json::json!({"mfa": true}))
                .unwrap()
                .admits_session()
        );
        assert!(serde_json::from_value::<RuleConfig>(serde_json::json!({"scope": ["x"]})).is_err());
        assert!(is_valid_scope("orders:write") && !is_valid_scope("a\\b") && !is_valid_scope(""));
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_and_rules() {
        let t = table(
            "routes:\n  - {prefix: /api, upstream: users, access: public}\n  - {prefix: /api/users, upstream: users, rewrite: /users, access: [admin]}\n  - prefix: /api/orders\n    upstream: orders\n    access: {GET: [user, admin], DELETE: [admin], '*': authenticated}\n",
        )
        .unwrap_or_default();
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/api/users/1")
                .map(|r| r.prefix.as_str())
                .ok(),
            Some("/api/users")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/api/users")
                .map(|r| r.prefix.as_str())
                .ok(),
            Some("/api/users")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/api/usersx")
                .map(|r| r.prefix.as_str())
                .ok(),
            Some("/api")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/other").err(),
            Some(Miss::NoRoute)
        );
        let users = t
            .find(|| "h".to_owned(), &Method::GET, "/api/users/7")
            .ok()
            .cloned();
        assert_eq!(
            users
                .as_ref()
                .map(|r| r.upstream_path("/api/users/7", "a=1")),
            Some("/users/7?a=1".into())
        );
        assert_eq!(
            users.as_ref().map(|r| r.upstream_path("/api/users", "")),
            Some("/users".into())
        );
        assert_eq!(
            users
                .as_ref()
                .and_then(|r| r.rule_for(&Method::GET).cloned()),
            Some(Rule::AnyRole(vec!["admin".into()]))
        );
        let orders = t
            .find(|| "h".to_owned(), &Method::GET, "/api/orders")
            .ok()
            .cloned();
        assert_eq!(
            orders
                .as_ref()
                .and_then(|r| r.rule_for(&Method::DELETE).cloned()),
            Some(Rule::AnyRole(vec!["admin".into()]))
        );
        assert_eq!(
            orders
                .as_ref()
                .and_then(|r| r.rule_for(&Method::POST).cloned()),
            Some(Rule::Authenticated)
        );
        assert_eq!(
            orders
                .as_ref()
                .map(|r| r.upstream_path("/api/orders/1", "")),
            Some("/api/orders/1".into())
        );
    }

    #[test]
    fn config_errors_name_the_route() {
        for (yaml, needle) in [
            (
                "routes:\n  - {prefix: /a, upstream: nope, access: public}\n",
                "unknown upstream",
            ),
            (
                "routes:\n  - {prefix: a, upstream: users, access: public}\n",
                "must start",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: []}\n",
                "empty role list",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: {'GE T': public}}\n",
                "not an HTTP method",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: public}\n  - {prefix: /a, upstream: users, access: public}\n",
                "twice",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: public}\n  - {prefix: /b, upstream: users, access: public}\n  - {prefix: /a, upstream: users, access: public}\n",
                "twice",
            ),
        ] {
            let e = table(yaml).err().unwrap_or_default();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn hosts_methods_root_and_many_routes() {
        let t = table(
            "routes:\n  - {prefix: /, upstream: users, access: public}\n  - {prefix: /api/, upstream: orders, host: api.example.com, access: public}\n  - {prefix: /api, upstream: users, methods: [GET], access: public}\n  - {prefix: /w, upstream: users, methods: [POST], access: public}\n",
        )
        .unwrap();
        let up = |host: &str, m: Method, p: &str| {
            t.find(|| host.to_owned(), &m, p)
                .map(|r| r.upstream.clone())
        };
        assert_eq!(
            up("api.example.com", Method::POST, "/api/x"),
            Ok("orders".into())
        );
        assert_eq!(up("other", Method::GET, "/api/x"), Ok("users".into()));
        // /api serves GET only elsewhere; the root route takes the POST.
        assert_eq!(
            up("other", Method::POST, "/api/x").ok().as_deref(),
            Some("users")
        );
        assert_eq!(
            t.find(|| "other".to_owned(), &Method::POST, "/api/x")
                .map(|r| r.prefix.as_str()),
            Ok("/")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/")
                .map(|r| r.prefix.as_str()),
            Ok("/")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/anything/deep")
                .map(|r| r.prefix.as_str()),
            Ok("/")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::POST, "/w/1")
                .map(|r| r.prefix.as_str()),
            Ok("/w")
        );
        assert_eq!(
            t.find(|| "h".to_owned(), &Method::GET, "/api/")
                .map(|r| r.upstream_path("/api/", "")),
            Ok("/api/".into())
        );
        let root = t.find(|| "h".to_owned(), &Method::GET, "/x/y").unwrap();
        assert_eq!(root.upstream_path("/x/y", "q=1"), "/x/y?q=1");

        let no_root =
            table("routes:\n  - {prefix: /w, upstream: users, methods: [POST], access: public}\n")
                .unwrap();
        assert_eq!(
            no_root.find(|| "h".to_owned(), &Method::GET, "/w/1").err(),
            Some(Miss::Method)
        );
        assert_eq!(
            no_root.find(|| "h".to_owned(), &Method::GET, "/v").err(),
            Some(Miss::NoRoute)
        );

        let mut yaml = String::from("routes:\n");
        for i in 0..1000 {
            yaml.push_str(&format!(
                "  - {{prefix: /svc{i}/items, upstream: users, access: public}}\n"
            ));
        }
        let big = table(&yaml).unwrap();
        assert_eq!(big.routes().len(), 1000);
        assert_eq!(
            big.find(|| "h".to_owned(), &Method::GET, "/svc999/items/5")
                .map(|r| r.prefix.as_str()),
            Ok("/svc999/items")
        );
        assert_eq!(
            big.find(|| "h".to_owned(), &Method::GET, "/svc1000/items")
                .err(),
            Some(Miss::NoRoute)
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "/a/../b",
            "/a/./b",
            "/..",
            "/a%2fb",
            "/a%2E%2E/b",
            "/a\\b",
            "/a%00",
            "/a%2F",
            "/a%5c",
            "/a%5C",
            "/a%2e",
            "x",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/a/b",
            "/a..b/c",
            "/a/.well-known",
            "/a%20b",
            "/a%2",
            "/a%",
            "/a%3f",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }
}
