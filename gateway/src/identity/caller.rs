//! The caller and the decision: `bearer token -> Caller -> decision`, as
//! pure functions of the token keys, the deny list and the route's rule
//! (the phase and the extractors that run them with the identity room's
//! state are in the sibling `admission`).
//!
//! A refusal is a 401 with the RFC 6750 challenge when the token is missing,
//! invalid, expired or revoked, and a 403 when a valid caller lacks the role.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use common::Problem;
use common::identity::Principal;
use uuid::Uuid;

use crate::identity::sessions::DenyList;
use crate::identity::tokens::{AccessClaims, TokenKeys};
use crate::traffic::routes::Rule;

/// A caller holding a valid access token: what the token says, and the
/// principal the services are told about.
#[derive(Debug, Clone)]
pub struct Caller {
    claims: Arc<AccessClaims>,
    principal: Principal,
    id: Uuid,
}

impl Caller {
    /// The principal id (the token's subject): a user's, or a machine
    /// client's.
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn roles(&self) -> &[String] {
        &self.claims.roles
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.claims.roles.iter().any(|r| r == role)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|g| g == scope))
    }

    /// Who the services are told the request is for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The token's id (`jti`), the handle for revoking it.
    pub fn token_id(&self) -> &str {
        &self.claims.jti
    }

    /// The session the token belongs to (empty for tokens from before
    /// sessions were named).
    pub fn session_id(&self) -> &str {
        &self.claims.sid
    }

    /// The username the token was issued to.
    pub fn username(&self) -> &str {
        &self.claims.username
    }

    /// When the token expires (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.claims.exp
    }

    /// Everything the token says.
    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The headers `forward` (claim, header) asks for, with this caller's
    /// values: a claim the token lacks, or whose text cannot be a header
    /// value (control characters, over 1 KiB), is left out.
    pub fn forwarded(&self, forward: &[&(String, String)]) -> Vec<(String, String)> {
        forward
            .iter()
            .filter_map(|(claim, header)| {
                let v = self.claims.text(claim)?;
                let ok = v.len() <= 1024 && HeaderValue::from_str(&v).is_ok();
                if !ok {
                    tracing::debug!(%claim, "claim not forwarded: not a header value");
                }
                ok.then(|| (header.clone(), v))
            })
            .collect()
    }
}

/// Why a request is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or not a usable one: 401.
    MissingToken,
    /// The token does not verify (signature, type, issuer, audience, time): 401.
    InvalidToken,
    /// The token verified but was revoked (logout): 401.
    Revoked,
    /// The token has no user id as its subject: 401.
    BadSubject,
    /// A valid caller without any of these roles: 403.
    MissingRole(Vec<String>),
    /// A valid caller whose token lacks these scopes: 403 with the RFC 6750
    /// `insufficient_scope` challenge naming them.
    MissingScope(Vec<String>),
    /// A valid caller who is not an admin, on the admin API: 403.
    NotAdmin,
    /// A trusted provider's token whose key is unknown while the provider's
    /// keys cannot be fetched: 401, saying so.
    KeysUnavailable,
    /// A trusted provider's token for a deactivated linked account: 401.
    AccountInactive,
    /// A trusted provider's token whose account cannot be looked up now
    /// (the users service is down): 503.
    LinkUnavailable,
    /// A valid caller whose login had no second factor, where one is
    /// needed: 403 with RFC 9470's `insufficient_user_authentication`.
    /// `enrol`: the account has none to log in with, and is told to enrol.
    SecondFactor { enrol: bool },
    /// A route that admits a browser session, asked with neither a bearer
    /// token nor a live session: 401 (a browser's navigation is sent to
    /// the login page instead).
    SignInRequired,
    /// An unsafe method on a route that admits a browser session, sent
    /// from another site or origin, or with no proof it was not: 403.
    CrossSite,
    /// The account behind a browser session cannot be looked up now (the
    /// users service is down): 503.
    AccountUnavailable,
}

impl Refusal {
    pub fn to_response(&self) -> HttpResponse {
        let detail = match self {
            Refusal::MissingToken => "a bearer access token is required",
            Refusal::InvalidToken => "the access token is invalid or expired",
            Refusal::Revoked => "the access token has been revoked",
            Refusal::BadSubject => "the access token has no valid subject",
            Refusal::KeysUnavailable => {
                "the access token's signing key is unknown and its identity provider's keys cannot be fetched now"
            }
            Refusal::AccountInactive => "the account is deactivated",
            Refusal::SignInRequired => {
                let mut res = Problem::unauthorized(
                    "sign in first: this route needs a bearer access token or a browser session",
                )
                .to_response();
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gatehouse\""),
                );
                return res;
            }
            Refusal::CrossSite => {
                return Problem::forbidden(
                    "a browser session's unsafe request must come from this site: the browser's \
                     `Sec-Fetch-Site: same-origin` or a same-origin `Origin`, or, from a client that \
                     sends neither, the header `X-Gatehouse-CSRF: 1`",
                )
                .to_response();
            }
            Refusal::AccountUnavailable => {
                let mut res =
                    Problem::service_unavailable("the session's account cannot be looked up now")
                        .to_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return res;
            }
            Refusal::LinkUnavailable => {
                let mut res = Problem::service_unavailable(
                    "the account of this identity provider's user cannot be looked up now",
                )
                .to_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return res;
            }
            Refusal::MissingRole(roles) => {
                return Problem::forbidden(format!(
                    "this route needs one of the roles: {}",
                    roles.join(", ")
                ))
                .to_response();
            }
            Refusal::NotAdmin => {
                return Problem::forbidden("the admin API needs the admin role").to_response();
            }
            Refusal::SecondFactor { enrol } => {
                let (slug, detail) = if *enrol {
                    (
                        "mfa-enrolment-required",
                        "this route needs a login with a second factor, and the account has none: \
                         enrol one (POST /api/me/mfa/totp, then /api/me/mfa/totp/confirm), then log in again",
                    )
                } else {
                    (
                        "insufficient-user-authentication",
                        "this route needs a login with a second factor: log in again with a code \
                         from the authenticator app",
                    )
                };
                let mut res =
                    Problem::new(actix_web::http::StatusCode::FORBIDDEN, slug, "Forbidden")
                        .with_detail(detail)
                        .to_response();
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(SECOND_FACTOR_CHALLENGE),
                );
                return res;
            }
            Refusal::MissingScope(scopes) => {
                let scope = scopes.join(" ");
                let mut res = Problem::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "insufficient-scope",
                    "Forbidden",
                )
                .with_detail(format!("this route needs the scopes: {scope}"))
                .to_response();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"{scope}\""
                )) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return res;
            }
        };
        let mut res = Problem::unauthorized(detail).to_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
        );
        res
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            Refusal::MissingRole(_)
            | Refusal::MissingScope(_)
            | Refusal::NotAdmin
            | Refusal::CrossSite
            | Refusal::SecondFactor { .. } => actix_web::http::StatusCode::FORBIDDEN,
            Refusal::LinkUnavailable | Refusal::AccountUnavailable => {
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => actix_web::http::StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// The bearer token of a request, if it sent one.
/// (The bytes are read as UTF-8, which checks ASCII a word at a time, not
/// through `HeaderValue::to_str`, which looks at a JWT's ~700 bytes one by
/// one; a token with a tab or a byte that is not base64url, non-ASCII text
/// included, fails verification.)
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = std::str::from_utf8(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()?;
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// Verify the request's bearer token and check the deny list.
pub fn authenticate(
    tokens: &TokenKeys,
    deny: &DenyList,
    headers: &HeaderMap,
) -> Result<Caller, Refusal> {
    let token = bearer_token(headers).ok_or(Refusal::MissingToken)?;
    own_token(tokens.verify(token), deny)
}

/// The caller of a token the gateway verified itself (or refused).
pub(crate) fn own_token(
    verified: Result<Arc<AccessClaims>, crate::identity::tokens::TokenError>,
    deny: &DenyList,
) -> Result<Caller, Refusal> {
    let claims = verified.map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        Refusal::InvalidToken
    })?;
    caller_of(claims, deny)
}

/// The caller a verified token names, unless the deny list refuses it.
pub(crate) fn caller_of(claims: Arc<AccessClaims>, deny: &DenyList) -> Result<Caller, Refusal> {
    if deny.refuses(&claims.jti, &claims.sid, &claims.sub, claims.iat) {
        return Err(Refusal::Revoked);
    }
    let id = Uuid::parse_str(&claims.sub).map_err(|_| Refusal::BadSubject)?;
    let roles = claims.roles.clone();
    let principal = if claims.client_id.is_some() {
        Principal::Client { id, roles }
    } else {
        Principal::User { id, roles }
    };
    Ok(Caller {
        principal,
        claims,
        id,
    })
}

/// The RFC 9470 step-up challenge: a login with a second factor is what
/// the route needs (`acr_values` names the context class that has one).
pub const SECOND_FACTOR_CHALLENGE: &str = "Bearer realm=\"gatehouse\", error=\"insufficient_user_authentication\", error_description=\"A login with a second factor is required\", acr_values=\"urn:gatehouse:acr:mfa\"";

/// Whether `rule` admits `caller`: its roles and scopes, then a second
/// factor where one is needed (see [`needs_second_factor`]).
pub fn authorize(rule: &Rule, caller: &Caller, mfa_roles: &[String]) -> Result<(), Refusal> {
    grants(rule, caller)?;
    if needs_second_factor(rule, caller, mfa_roles) && !caller.claims.has_second_factor() {
        return Err(Refusal::SecondFactor { enrol: false });
    }
    Ok(())
}

/// A route marked `mfa: true` needs a second factor from everyone; and a
/// role of `mfa.required_for_roles` is exercised only with one: when every
/// role by which the rule admits the caller is such a role, so is this
/// request (an admin and user on a route for users and admins is admitted
/// as a user).
pub fn needs_second_factor(rule: &Rule, caller: &Caller, mfa_roles: &[String]) -> bool {
    if let Rule::Grant { mfa: true, .. } = rule {
        return true;
    }
    if mfa_roles.is_empty() {
        return false;
    }
    let mut admitting = rule
        .roles()
        .iter()
        .filter(|r| caller.has_role(r))
        .peekable();
    admitting.peek().is_some() && admitting.all(|r| mfa_roles.contains(r))
}

/// Roles and scopes.
fn grants(rule: &Rule, caller: &Caller) -> Result<(), Refusal> {
    match rule {
        Rule::AnyRole(roles) if !roles.iter().any(|r| caller.has_role(r)) => {
            Err(Refusal::MissingRole(roles.clone()))
        }
        Rule::Grant { roles, scopes, .. } => {
            let missing: Vec<String> = scopes
                .iter()
                .filter(|s| !caller.has_scope(s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(Refusal::MissingScope(scopes.clone()));
            }
            if !roles.is_empty() && !roles.iter().any(|r| caller.has_role(r)) {
                return Err(Refusal::MissingRole(roles.clone()));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Phase: admission. A public rule admits anyone and looks at no token
/// (`None`: the request goes on with no identity at all); any other rule
/// needs a valid, unrevoked token whose roles it accepts.
pub fn admit(
    rule: &Rule,
    tokens: &TokenKeys,
    deny: &DenyList,
    headers: &HeaderMap,
) -> Result<Option<Caller>, Refusal> {
    if *rule == Rule::Public {
        return Ok(None);
    }
    let caller = authenticate(tokens, deny, headers)?;
    authorize(rule, &caller, &[])?;
    Ok(Some(caller))
}

/// The proxies in front of the gateway whose forwarding headers it
/// believes (`trusted_proxies`, CIDRs). Empty: the peer is the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<ipnet::IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer`: the peer itself unless
    /// it is a trusted proxy; then, walking the forwarding chain from the
    /// right (nearest hop first), the first address that is not a trusted
    /// proxy. `Forwarded` (RFC 7239) is read when present, else
    /// `X-Forwarded-For`. An entry that is not an address (`unknown`, an
    /// obfuscated name, garbage) ends the walk at the hop that reported it.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all(header::FORWARDED)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                })
            })
            .collect();
        let chain: Vec<&str> = if forwarded.is_empty() {
            headers
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect()
        } else {
            forwarded
        };
        let mut client = peer;
        for entry in chain.iter().rev() {
            match node_address(entry) {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        client
    }
}

/// The address in a forwarding entry: `192.0.2.1`, `192.0.2.1:80`,
/// `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim().trim_matches('"');
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    e.parse::<IpAddr>().ok().or_else(|| {
        let (host, port) = e.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    })
}

/// The client's address: the peer the connection came from, or, behind a
/// trusted proxy, the address that proxy reports (see [`TrustedProxies`]).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(match req.app_data::<web::Data<TrustedProxies>>() {
        Some(t) => t.client(peer, req.headers()),
        None => peer,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn keys() -> TokenKeys {
        let pair = common::keys::generate_ed25519().unwrap();
        TokenKeys::new(&[], Some(&pair.private_pem), "gatehouse", "api", 5).unwrap()
    }

    fn token(k: &TokenKeys, sub: &str, roles: &[&str]) -> (String, String) {
        let now = crate::clock::unix_secs();
        let jti = Uuid::new_v4().to_string();
        let t = k
            .sign(AccessClaims {
                iss: String::new(),
                aud: String::new(),
                sub: sub.into(),
                exp: now + 60,
                iat: now,
                nbf: now,
                jti: jti.clone(),
                sid: String::new(),
                scope: None,
                client_id: None,
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                username: "alice".into(),
                amr: Vec::new(),
                acr: None,
                auth_time: None,
                azp: None,
                extra: Default::default(),
            })
            .unwrap();
        (t, jti)
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn a_token_becomes_a_caller_and_rules_decide() {
        let k = keys();
        let deny = DenyList::default();
        let id = Uuid::new_v4();
        let (t, jti) = token(&k, &id.to_string(), &["user"]);
        let h = with_auth(&format!("Bearer {t}"));
        let admins = Rule::AnyRole(vec!["admin".into()]);
        let users = Rule::AnyRole(vec!["admin".into(), "user".into()]);

        // Public: no token looked at, no identity.
        assert!(admit(&Rule::Public, &k, &deny, &h).unwrap().is_none());
        assert!(
            admit(&Rule::Public, &k, &deny, &with_auth("Bearer junk"))
                .unwrap()
                .is_none()
        );
        // Authenticated and a matching role: the caller, as the services see it.
        let c = admit(&users, &k, &deny, &h).unwrap().unwrap();
        assert_eq!(c.id(), id);
        assert_eq!(c.token_id(), jti);
        assert_eq!(
            c.principal(),
            &Principal::User {
                id,
                roles: vec!["user".into()]
            }
        );
        assert!(
            admit(&Rule::Authenticated, &k, &deny, &h)
                .unwrap()
                .is_some()
        );
        // A missing role is 403, not 401.
        let refused = admit(&admins, &k, &deny, &h).unwrap_err();
        assert_eq!(refused, Refusal::MissingRole(vec!["admin".into()]));
        assert_eq!(refused.to_response().status().as_u16(), 403);
        // Revoked: 401 with the challenge.
        deny.insert(&jti, crate::clock::unix_secs() + 60);
        let refused = admit(&users, &k, &deny, &h).unwrap_err();
        assert_eq!(refused, Refusal::Revoked);
        let res = refused.to_response();
        assert_eq!(res.status().as_u16(), 401);
        let www = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(www.contains("error=\"invalid_token\""), "{www}");
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let t = TrustedProxies::new(vec![
            common::config::parse_cidr("10.0.0.0/8").unwrap(),
            common::config::parse_cidr("192.0.2.1").unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (n, v) in pairs {
                m.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let xff = h(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        // From an untrusted peer, nothing it says is believed.
        assert_eq!(t.client(ip("198.51.100.2"), &xff), ip("198.51.100.2"));
        // From a trusted one: the rightmost address not in the list.
        assert_eq!(t.client(ip("10.0.0.5"), &xff), ip("203.0.113.7"));
        assert_eq!(t.client(ip("::ffff:10.0.0.5"), &xff), ip("203.0.113.7"));
        // Several header lines are one list, in order.
        let two = h(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.2.2.2"),
        ]);
        assert_eq!(t.client(ip("192.0.2.1"), &two), ip("203.0.113.9"));
        // Forwarded wins over X-Forwarded-For, with its quoting and ports.
        let fwd = h(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.3.3.3:80",
            ),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(t.client(ip("10.0.0.5"), &fwd), ip("2001:db8::7"));
        // Garbage stops the walk at the proxy that reported it.
        let junk = h(&[("x-forwarded-for", "6.6.6.6, unknown, 10.4.4.4")]);
        assert_eq!(t.client(ip("10.0.0.5"), &junk), ip("10.4.4.4"));
        // Only proxies in the chain: the leftmost one.
        let all = h(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(t.client(ip("10.0.0.5"), &all), ip("10.9.9.9"));
        // No header from a trusted peer: the peer.
        assert_eq!(t.client(ip("10.0.0.5"), &HeaderMap::new()), ip("10.0.0.5"));
    }

    #[test]
    fn scoped_rules_need_every_scope_and_a_role_when_named() {
        let k = keys();
        let deny = DenyList::default();
        let now = crate::clock::unix_secs();
        let caller = |scope: Option<&str>, roles: &[&str]| {
            let t = k
                .sign(AccessClaims {
                    iss: String::new(),
                    aud: String::new(),
                    sub: Uuid::new_v4().to_string(),
                    exp: now + 60,
                    iat: now,
                    nbf: now,
                    jti: Uuid::new_v4().to_string(),
                    sid: String::new(),
                    scope: scope.map(str::to_owned),
                    client_id: None,
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    username: "svc".into(),
                    amr: Vec::new(),
                    acr: None,
                    auth_time: None,
                    azp: None,
                    extra: Default::default(),
                })
                .unwrap();
            authenticate(&k, &deny, &with_auth(&format!("Bearer {t}"))).unwrap()
        };
        let rule = Rule::Grant {
            roles: vec![],
            scopes: vec!["a:read".into(), "a:write".into()],
            mfa: false,
            session: false,
        };
        assert!(authorize(&rule, &caller(Some("a:write a:read"), &[]), &[]).is_ok());
        assert_eq!(
            authorize(&rule, &caller(Some("a:read"), &[]), &[]),
            Err(Refusal::MissingScope(vec![
                "a:read".into(),
                "a:write".into()
            ]))
        );
        assert!(authorize(&rule, &caller(Some("a:read a:writer"), &[]), &[]).is_err());
        assert!(authorize(&rule, &caller(None, &["admin"]), &[]).is_err());
        let with_role = Rule::Grant {
            roles: vec!["admin".into()],
            scopes: vec!["a:read".into()],
            mfa: false,
            session: false,
        };
        assert_eq!(
            authorize(&with_role, &caller(Some("a:read"), &["user"]), &[]),
            Err(Refusal::MissingRole(vec!["admin".into()]))
        );
        assert!(authorize(&with_role, &caller(Some("a:read"), &["admin"]), &[]).is_ok());
        let res = Refusal::MissingScope(vec!["a:read".into(), "b".into()]).to_response();
        assert_eq!(res.status().as_u16(), 403);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"a:read b\""
        );
    }

    #[test]
    fn what_is_not_a_bearer_token_is_refused() {
        let k = keys();
        let deny = DenyList::default();
        let (t, _) = token(&k, &Uuid::new_v4().to_string(), &["user"]);
        for (h, why) in [
            (HeaderMap::new(), Refusal::MissingToken),
            (with_auth(&format!("Basic {t}")), Refusal::MissingToken),
            (with_auth("Bearer "), Refusal::MissingToken),
            (with_auth("Bearer not.a.jwt"), Refusal::InvalidToken),
        ] {
            assert_eq!(admit(&Rule::Authenticated, &k, &deny, &h).unwrap_err(), why);
        }
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        assert!(
            admit(
                &Rule::Authenticated,
                &k,
                &deny,
                &with_auth(&format!("bearer {t}"))
            )
            .is_ok()
        );
        // A subject that is not a user id.
        let (t, _) = token(&k, "gateway", &["admin"]);
        assert_eq!(
            admit(
                &Rule::Authenticated,
                &k,
                &deny,
                &with_auth(&format!("Bearer {t}"))
            )
            .unwrap_err(),
            Refusal::BadSubject
        );
        // Another issuer's keys.
        let (t, _) = token(&keys(), &Uuid::new_v4().to_string(), &["admin"]);
        assert_eq!(
            authenticate(&k, &deny, &with_auth(&format!("Bearer {t}"))).unwrap_err(),
            Refusal::InvalidToken
        );
    }
}
