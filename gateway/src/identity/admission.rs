//! Admission: who is calling, and whether the rule lets them in.
//!
//! `bearer token -> Caller -> decision` (see [`crate::identity::caller`]),
//! the same for every path: proxied routes and composed routes run
//! [`admit_request`] as a phase, and the gateway's own endpoints take the
//! caller as an extractor ([`Bearer`], or [`AdminBearer`] for the admin
//! API), the way the services take `Caller` and `Admin`, so no handler
//! calls a guard by hand.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpRequest};
use common::identity::{ADMIN_ROLE, Principal};
use futures_util::future::LocalBoxFuture;

use super::Identity;
use crate::identity::tokens::AccessClaims;
use crate::live::Live;
use crate::traffic::routes::Rule;

use crate::identity::caller::*;
/// The refusal for a caller without a second factor: told to enrol when
/// the account (a local one) has none to log in with. Asks the users
/// service, on this refusal only; when it cannot tell, the plain one.
pub async fn second_factor_refusal(gw: &Identity, caller: &Caller) -> Refusal {
    let Principal::User { id, .. } = caller.principal() else {
        return Refusal::SecondFactor { enrol: false };
    };
    if !caller.claims().iss.is_empty() && caller.claims().iss != gw.live.load().tokens.issuer() {
        // A provider's user: the provider's second factor applies.
        return Refusal::SecondFactor { enrol: false };
    }
    let path = format!("/internal/users/{id}");
    let enrolled =
        match crate::identity::users_api::users_call(gw, actix_web::http::Method::GET, &path, None)
            .await
        {
            Ok((actix_web::http::StatusCode::OK, v)) => v
                .get("mfa_enabled")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
            _ => true,
        };
    Refusal::SecondFactor { enrol: !enrolled }
}

/// Who is calling: the bearer token verified, whether the gateway issued it
/// or a trusted identity provider did, and checked against the deny list.
///
/// A provider's token (told apart by its unverified `iss`, then verified
/// for real by that provider's keys) is mapped to its linked account, which
/// the users service creates on first use and gives the mapped roles; the
/// result goes to the same verified-token cache as the gateway's own
/// tokens, so later requests with it cost what theirs do. Concurrent first
/// requests with one token make one verification and one users call.
pub async fn identify(gw: &Identity, live: &Live, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let token = bearer_token(headers).ok_or(Refusal::MissingToken)?;
    let deny = gw.sessions.deny_list();
    let cached = live.tokens.cached(token);
    gw.metrics.token_verification(cached.is_some());
    if let Some(hit) = cached {
        return caller_of(hit.map_err(|_| Refusal::InvalidToken)?, deny);
    }
    if live.issuers.is_empty() {
        return own_token(live.tokens.verify_missed(token), deny);
    }
    let issuer = match crate::identity::issuers::unverified_issuer(token) {
        Some(iss) if iss != live.tokens.issuer() => match live.issuers.get(&iss) {
            Some(i) => i,
            None => {
                tracing::debug!(issuer = %iss, "access token from an issuer that is not trusted");
                return Err(Refusal::InvalidToken);
            }
        },
        _ => return own_token(live.tokens.verify_missed(token), deny),
    };
    // Boxed: this path's future (the single flight, the provider's key
    // fetch, the users call) is kilobytes, and every request's admission
    // future would otherwise be as large.
    let claims = Box::pin(
        gw.linking
            .try_get_with(token.to_owned(), external(gw, live, issuer, token)),
    )
    .await
    .map_err(|e| (*e).clone())?;
    // The single-flight map may hand out a result a little older than the
    // verified-token cache would: the time bounds are checked again.
    live.tokens
        .check_time(&claims)
        .map_err(|_| Refusal::InvalidToken)?;
    caller_of(claims, deny)
}

/// Verify a provider's token, link its account, remember the result.
async fn external(
    gw: &Identity,
    live: &Live,
    issuer: &crate::identity::issuers::Issuer,
    token: &str,
) -> Result<Arc<AccessClaims>, Refusal> {
    use crate::identity::issuers::ExternalError;
    use crate::identity::users_api::LinkError;
    let ext = live.issuers.verify(issuer, token).await.map_err(|e| {
        tracing::debug!(issuer = %issuer.config.issuer, reason = %e, "identity provider's token refused");
        match e {
            ExternalError::KeysUnavailable(_) => Refusal::KeysUnavailable,
            _ => Refusal::InvalidToken,
        }
    })?;
    let identity = linked_account(gw, &ext).await.map_err(|e| match e {
        LinkError::Inactive => Refusal::AccountInactive,
        LinkError::Unavailable(why) => {
            tracing::warn!(issuer = %ext.issuer, reason = %why, "cannot link an identity provider's user");
            Refusal::LinkUnavailable
        }
    })?;
    let claims = Arc::new(AccessClaims {
        iss: ext.issuer,
        aud: ext.audience,
        sub: identity.id.to_string(),
        exp: ext.exp,
        iat: ext.iat,
        nbf: ext.nbf,
        jti: ext.jti,
        sid: String::new(),
        scope: ext.scope,
        client_id: None,
        azp: None,
        roles: identity.roles,
        username: identity.username,
        // The provider's own methods (RFC 8176), so a route that needs a
        // second factor accepts a login that had one there.
        amr: match ext.all.get("amr") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
        acr: ext
            .all
            .get("acr")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        auth_time: None,
        extra: live
            .claim_names
            .iter()
            .filter_map(|name| {
                let text = match crate::identity::issuers::claim_at(&ext.all, name)? {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) => a
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((name.clone(), text))
            })
            .collect(),
    });
    live.tokens.remember(token, claims.clone());
    Ok(claims)
}

/// A provider's user's local account as the users service last linked it
/// for these claims (username, e-mail, mapped roles), and when it was asked.
pub struct Link {
    claims: (String, Option<String>, Vec<String>),
    account: crate::identity::users_api::Account,
    asked_at_ms: i64,
}

/// Linked accounts by issuer and subject.
pub type Links = moka::future::Cache<(String, String), Arc<Link>>;

/// How far apart two replicas' clocks may be when one compares its link's
/// time with another's account change.
const CLOCK_SKEW_MS: i64 = 5_000;

/// The store of linked accounts: an entry lives no longer than a user's
/// cutoff is remembered, so an account change is always seen (below).
pub fn links() -> Links {
    let ttl = crate::identity::sessions::USER_CUTOFF_MIN_SECS.unsigned_abs();
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(std::time::Duration::from_secs(ttl))
        .build()
}

/// The local account of a provider's user, remembered per issuer and
/// subject: a known user's new token makes no users call while it says
/// the same (username, e-mail, mapped roles) and no account change here has
/// cut the user's tokens off since the link was asked for (a deactivation,
/// roles an admin changed: on every replica, through the deny list, which
/// keeps a cutoff longer than a link lives). Otherwise the users service
/// links again, which also sets roles the provider changed, at once.
async fn linked_account(
    gw: &Identity,
    ext: &crate::identity::issuers::ExternalClaims,
) -> Result<crate::identity::users_api::Account, crate::identity::users_api::LinkError> {
    let key = (ext.issuer.clone(), ext.subject.clone());
    let claims = (ext.username.clone(), ext.email.clone(), ext.roles.clone());
    if let Some(hit) = gw.links.get(&key).await {
        let changed = gw
            .sessions
            .deny_list()
            .cut_since(&hit.account.id.to_string(), hit.asked_at_ms - CLOCK_SKEW_MS);
        if hit.claims == claims && !changed {
            return Ok(hit.account.clone());
        }
        gw.links.invalidate(&key).await;
    }
    let asked_at_ms = chrono::Utc::now().timestamp_millis();
    let account = crate::identity::users_api::link(gw, ext).await?;
    let link = Link {
        claims,
        account: account.clone(),
        asked_at_ms,
    };
    gw.links.insert(key, Arc::new(link)).await;
    Ok(account)
}

/// The request admission looks at: its method, headers and URI (a
/// forward-auth check's are the original request's, as the ingress says).
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a actix_web::http::Method,
    pub headers: &'a HeaderMap,
    pub uri: &'a actix_web::http::Uri,
}

impl Asked<'_> {
    /// The host (with port) the client asked for: `Host`, else the URI's
    /// authority (HTTP/2).
    pub fn authority(&self) -> &str {
        self.headers
            .get(actix_web::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| self.uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
    }
}

/// Phase: admission, for the proxy and composed routes: [`identify`] the
/// caller unless the rule is public, then [`authorize`]. On a rule that
/// admits a browser session, a request without a bearer token is
/// identified by its session cookie instead
/// ([`crate::identity::cookie_admission`]).
pub async fn admit_request(
    gw: &Identity,
    live: &Live,
    rule: &Rule,
    asked: Asked<'_>,
) -> Result<Option<Caller>, Refusal> {
    if *rule == Rule::Public {
        return Ok(None);
    }
    let caller =
        if rule.admits_session() && !crate::identity::cookie_admission::has_bearer(asked.headers) {
            Box::pin(crate::identity::cookie_admission::admit(
                gw,
                live,
                asked.method,
                asked.headers,
                asked.authority(),
            ))
            .await?
        } else {
            identify(gw, live, asked.headers).await?
        };
    match authorize(rule, &caller, &gw.mfa_roles) {
        Err(Refusal::SecondFactor { .. }) => Err(second_factor_refusal(gw, &caller).await),
        Err(other) => Err(other),
        Ok(()) => Ok(Some(caller)),
    }
}

async fn from_gateway(req: HttpRequest) -> Result<Caller, actix_web::Error> {
    let gw = crate::live::room::<Identity>(&req)?;
    let live = gw.live.load_full();
    Ok(identify(&gw, &live, req.headers()).await?)
}

/// Extractor: a caller with a valid access token (else 401).
#[derive(Debug, Clone)]
pub struct Bearer(pub Caller);

impl FromRequest for Bearer {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { from_gateway(req).await.map(Bearer) })
    }
}

/// Extractor: a caller with a valid access token, or, without one, a live
/// browser session (an unsafe method only from this site, see
/// [`crate::identity::cookie_admission::same_site`]); else 401 or 403. For
/// the endpoints a user's own pages call (`/api/me/sessions`).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Caller);

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let gw = crate::live::room::<Identity>(&req)?;
            let live = gw.live.load_full();
            let headers = req.headers();
            let caller = if crate::identity::cookie_admission::has_bearer(headers) {
                identify(&gw, &live, headers).await?
            } else {
                let asked = Asked {
                    method: req.method(),
                    headers,
                    uri: req.uri(),
                };
                crate::identity::cookie_admission::admit(
                    &gw,
                    &live,
                    asked.method,
                    headers,
                    asked.authority(),
                )
                .await?
            };
            Ok(SignedIn(caller))
        })
    }
}

/// Extractor: a caller with a valid access token and the admin role (else
/// 401 or 403, before the handler and its body extraction run).
#[derive(Debug, Clone)]
pub struct AdminBearer(pub Caller);

impl FromRequest for AdminBearer {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let gw = crate::live::room::<Identity>(&req)?;
            let live = gw.live.load_full();
            let c = identify(&gw, &live, req.headers()).await?;
            if !c.has_role(ADMIN_ROLE) {
                return Err(Refusal::NotAdmin.into());
            }
            if gw.mfa_roles.iter().any(|r| r == ADMIN_ROLE) && !c.claims().has_second_factor() {
                return Err(second_factor_refusal(&gw, &c).await.into());
            }
            Ok(AdminBearer(c))
        })
    }
}
