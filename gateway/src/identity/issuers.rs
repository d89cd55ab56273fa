//! Trusted external identity providers (`trusted_issuers`): their keys,
//! fetched and cached, and the verification of their access tokens, as
//! strict as for the gateway's own.
//!
//! * Keys come from the configured `jwks_uri`, or from the one the
//!   provider's discovery document names (its `issuer` must be the
//!   configured one, character for character). Never from a URL inside a
//!   token: `jku`, `x5u` and `jwk` headers are ignored.
//! * A key set is refreshed when its `Cache-Control: max-age` runs out,
//!   bounded by `keys.min_refresh_secs` and `keys.max_refresh_secs`, and
//!   kept when a refresh fails: the last good set serves while the provider
//!   is down.
//! * A token naming a kid the set lacks triggers one refetch, single-flight:
//!   whoever waits while another request fetches looks again afterwards
//!   instead of fetching, and no refetch starts within
//!   `keys.unknown_kid_cooldown_secs` of the previous one. A kid still
//!   unknown is a refusal, never a wait beyond the fetch timeout.
//! * The algorithm is the key's: an RSA key verifies the RSA algorithms the
//!   issuer allows (only its own `alg` when the JWK names one), a P-256 key
//!   ES256, a P-384 key ES384, an Ed25519 key EdDSA. Symmetric (`oct`) keys
//!   and RSA keys under 2048 bits are never loaded.
//!
//! The engine does not speak HTTP itself: it is handed a [`Fetch`]
//! function (the upstream client's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::issuer_keys::{Key, KeyRefresh, KeyState, SUPPORTED, parse_key_set, refresh_after};
use crate::clock::mono_ms;

/// One trusted identity provider (`trusted_issuers[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The provider's `iss`, exactly as its tokens carry it.
    pub issuer: String,
    /// Find `jwks_uri` in `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// The provider's key set, when discovery is off.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values: a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (JWA names).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim that identifies the person (or machine) at the provider.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim a new linked account's username is made from (the subject
    /// when the token lacks it).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim holding an e-mail address for a new linked account.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default)]
    pub roles: RoleMapping,
    /// The claim holding the granted scopes: a space-separated string
    /// (`scope`) or a list (`scp`).
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// Claims every token must carry (dotted paths for nested ones).
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub keys: KeyRefresh,
    /// Also a way to sign in on the login page ("Sign in with ..."): the
    /// gateway as this provider's client (see
    /// [`crate::identity::provider_login`]).
    #[serde(default)]
    pub login: Option<crate::identity::provider_login::ProviderLogin>,
}

/// How the provider's roles or groups become local roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// Where the provider puts them: a dotted path to a list or a
    /// space-separated string (`realm_access.roles`, `groups`, `roles`).
    #[serde(default)]
    pub claim: Option<String>,
    /// Provider role -> local role; provider roles not named are ignored.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Local roles every linked account has.
    #[serde(default = "default_roles")]
    pub default: Vec<String>,
}

impl Default for RoleMapping {
    fn default() -> Self {
        Self {
            claim: None,
            map: BTreeMap::new(),
            default: default_roles(),
        }
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_scopes_claim() -> String {
    "scope".into()
}
fn default_roles() -> Vec<String> {
    vec!["user".into()]
}
fn http_url(field: &str, url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{field}: `{url}` is not an http(s) URL"))
    }
}

impl IssuerConfig {
    /// Check one entry (`at` names it in messages).
    pub fn check(&self, at: &str) -> Result<(), String> {
        http_url(&format!("{at}.issuer"), &self.issuer)?;
        match (self.discovery, &self.jwks_uri) {
            (true, None) => {}
            (false, Some(u)) => http_url(&format!("{at}.jwks_uri"), u)?,
            _ => {
                return Err(format!(
                    "{at}: set exactly one of `discovery: true` and `jwks_uri`"
                ));
            }
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(format!("{at}.audiences: name at least one audience"));
        }
        if self.algorithms.is_empty() {
            return Err(format!("{at}.algorithms: name at least one algorithm"));
        }
        for a in &self.algorithms {
            if !SUPPORTED.iter().any(|(n, _)| n == a) {
                return Err(format!(
                    "{at}.algorithms: `{a}` is not one of {}",
                    SUPPORTED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (external, local) in &self.roles.map {
            if !common::identity::is_valid_role(local) {
                return Err(format!(
                    "{at}.roles.map.{external}: `{local}` is not a role name"
                ));
            }
        }
        for r in &self.roles.default {
            if !common::identity::is_valid_role(r) {
                return Err(format!("{at}.roles.default: `{r}` is not a role name"));
            }
        }
        if self.subject_claim.is_empty() {
            return Err(format!("{at}.subject_claim: must not be empty"));
        }
        if let Some(login) = &self.login {
            if !self.discovery {
                return Err(format!(
                    "{at}.login: needs `discovery: true` (the sign-in's endpoints come from the provider's discovery document)"
                ));
            }
            login.check(&format!("{at}.login"))?;
        }
        let k = &self.keys;
        if k.min_refresh_secs == 0
            || k.max_refresh_secs < k.min_refresh_secs
            || k.fetch_timeout_ms == 0
        {
            return Err(format!(
                "{at}.keys: min_refresh_secs must be positive and at most max_refresh_secs, fetch_timeout_ms positive"
            ));
        }
        Ok(())
    }

    fn allowed(&self) -> Vec<Algorithm> {
        SUPPORTED
            .iter()
            .filter(|(n, _)| self.algorithms.iter().any(|a| a == n))
            .map(|(_, a)| *a)
            .collect()
    }

    /// What the cached keys depend on: an entry whose source is unchanged
    /// keeps its keys across a reload.
    fn key_source(&self) -> (bool, Option<&str>, &str) {
        (self.discovery, self.jwks_uri.as_deref(), &self.issuer)
    }
}

/// A fetched document: its body and its `Cache-Control: max-age`.
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<u64>,
}

/// `GET url` within `timeout`, at most 1 MiB; an error says what failed.
pub type Fetch = fn(String, Duration) -> LocalBoxFuture<'static, Result<Fetched, String>>;

/// Why an external token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    #[error("malformed token")]
    Malformed,
    #[error("the token makes a header parameter critical")]
    CriticalHeader,
    #[error("the token's type is not an access token")]
    WrongType,
    #[error("algorithm not accepted for this key or issuer")]
    Algorithm,
    #[error("no key with this kid")]
    UnknownKey,
    #[error("no key with this kid, and the provider's keys cannot be fetched: {0}")]
    KeysUnavailable(String),
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing or invalid claim `{0}`")]
    Claim(String),
}

/// What a verified external token says, in the gateway's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    /// Local roles from the mapping (sorted, de-duplicated).
    pub roles: Vec<String>,
    /// Granted scopes, space-separated.
    pub scope: Option<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// The token's `jti`, or a digest of the token when it has none: the
    /// handle for revoking it.
    pub jti: String,
    /// Every claim of the token, for claim forwarding.
    pub all: Map<String, Value>,
}

/// One trusted provider with its keys.
pub struct Issuer {
    pub config: IssuerConfig,
    allowed: Vec<Algorithm>,
    state: Arc<KeyState>,
}

/// The trusted providers, by `iss`.
pub struct Issuers {
    by_issuer: HashMap<String, Issuer>,
    fetch: Fetch,
    leeway_secs: u64,
}

/// A claim by dotted path (`realm_access.roles`); a key that itself holds
/// dots (`https://example.com/roles`) is found as a whole first.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A claim as a list of words: a list of strings, or a space-separated
/// string.
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `iss` a token claims, read without verifying anything (to pick the
/// verifier; nothing else is believed before the signature checks out).
pub fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload) = (parts.next()?, parts.next()?);
    b64_json(payload)?.get("iss")?.as_str().map(str::to_owned)
}

impl Issuer {
    fn key(&self, kid: &str) -> Option<Arc<Key>> {
        self.state.keys.read().ok()?.get(kid).cloned()
    }

    /// Keys loaded now.
    pub fn key_count(&self) -> usize {
        self.state.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// Key fetches so far (discovery included in the one it belongs to).
    pub fn fetches(&self) -> u64 {
        self.state.fetches.load(Ordering::Relaxed)
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.state.last_error.read().ok()?.clone()
    }

    /// The provider's discovery document
    /// (`<issuer>/.well-known/openid-configuration`), fetched once and kept
    /// until a key fetch fails (the provider may have moved). Its `issuer`
    /// must be the configured one, character for character.
    pub async fn document(&self, fetch: Fetch) -> Result<Arc<Map<String, Value>>, String> {
        if let Some(d) = self.state.document.read().ok().and_then(|d| d.clone()) {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let timeout = Duration::from_millis(self.config.keys.fetch_timeout_ms);
        let doc = fetch(url.clone(), timeout).await?;
        let doc: Map<String, Value> = serde_json::from_slice(&doc.body)
            .map_err(|e| format!("{url}: not a JSON object: {e}"))?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if issuer != self.config.issuer {
            return Err(format!(
                "{url}: the document's issuer `{issuer}` is not the configured `{}`",
                self.config.issuer
            ));
        }
        let doc = Arc::new(doc);
        if let Ok(mut w) = self.state.document.write() {
            *w = Some(doc.clone());
        }
        Ok(doc)
    }

    async fn jwks_uri(&self, fetch: Fetch) -> Result<String, String> {
        if let Some(u) = &self.config.jwks_uri {
            return Ok(u.clone());
        }
        let doc = self.document(fetch).await?;
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: no jwks_uri", self.config.issuer))?;
        http_url("jwks_uri", jwks).map_err(|e| format!("{}: {e}", self.config.issuer))?;
        Ok(jwks.to_owned())
    }

    /// Fetch the key set now (the caller holds `fetching`).
    async fn fetch_keys(&self, fetch: Fetch) -> Result<usize, String> {
        let s = &self.state;
        s.last_attempt_ms.store(mono_ms().max(1), Ordering::Relaxed);
        s.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = async {
            let uri = self.jwks_uri(fetch).await?;
            let timeout = Duration::from_millis(self.config.keys.fetch_timeout_ms);
            let got = fetch(uri.clone(), timeout).await?;
            let keys =
                parse_key_set(&got.body, &self.allowed).map_err(|e| format!("{uri}: {e}"))?;
            if keys.is_empty() {
                return Err(format!("{uri}: no usable signing key"));
            }
            Ok((keys, got.max_age))
        }
        .await;
        s.generation.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok((keys, max_age)) => {
                let n = keys.len();
                let after = refresh_after(max_age, &self.config.keys);
                s.refresh_at_ms
                    .store(mono_ms() + after * 1000, Ordering::Relaxed);
                if let Ok(mut k) = s.keys.write() {
                    *k = Arc::new(keys);
                }
                if let Ok(mut e) = s.last_error.write() {
                    *e = None;
                }
                tracing::info!(issuer = %self.config.issuer, keys = n, refresh_secs = after, "identity provider keys fetched");
                Ok(n)
            }
            Err(e) => {
                // Try again soon, not hammering: the lower bound.
                s.refresh_at_ms.store(
                    mono_ms() + self.config.keys.min_refresh_secs * 1000,
                    Ordering::Relaxed,
                );
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot fetch the identity provider's keys; keeping the last good set");
                if self.config.discovery
                    && let Ok(mut d) = s.document.write()
                {
                    // Discover again next time: the provider may have moved it.
                    *d = None;
                }
                if let Ok(mut w) = s.last_error.write() {
                    *w = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// The key for `kid`, refetching once (single-flight, within the
    /// cooldown) when the set lacks it.
    async fn key_or_refetch(&self, kid: &str, fetch: Fetch) -> Result<Arc<Key>, ExternalError> {
        if let Some(k) = self.key(kid) {
            return Ok(k);
        }
        let seen = self.state.generation.load(Ordering::Acquire);
        let _turn = self.state.fetching.lock().await;
        if let Some(k) = self.key(kid) {
            return Ok(k);
        }
        if self.state.generation.load(Ordering::Acquire) != seen {
            // Someone fetched while this request waited: that was the
            // refetch; the kid is not there.
            return Err(self.unknown());
        }
        let last = self.state.last_attempt_ms.load(Ordering::Relaxed);
        let cooldown = self.config.keys.unknown_kid_cooldown_secs * 1000;
        if last != 0 && mono_ms().saturating_sub(last) < cooldown {
            return Err(self.unknown());
        }
        match self.fetch_keys(fetch).await {
            Ok(_) => self.key(kid).ok_or(ExternalError::UnknownKey),
            Err(e) => Err(ExternalError::KeysUnavailable(e)),
        }
    }

    fn unknown(&self) -> ExternalError {
        match self.last_error() {
            Some(e) => ExternalError::KeysUnavailable(e),
            None => ExternalError::UnknownKey,
        }
    }

    /// The claims of a verified token in the gateway's terms; its `aud`
    /// must name one of `audiences`.
    fn map_claims(
        &self,
        token: &str,
        claims: Map<String, Value>,
        audiences: &[String],
    ) -> Result<ExternalClaims, ExternalError> {
        let c = &self.config;
        // `sub` is a string (RFC 7519 section 4.1.2, OpenID Connect Core
        // section 2): a token holding anything else there is not one, whatever
        // claim the subject is read from. A number is not read as its digits
        // (`1` and `"1"` would be one account).
        if claims.get("sub").is_some_and(|v| !v.is_string()) {
            return Err(ExternalError::Claim("sub".into()));
        }
        for r in &c.required_claims {
            if claim_at(&claims, r).is_none_or(Value::is_null) {
                return Err(ExternalError::Claim(r.clone()));
            }
        }
        let text = |path: &str| -> Option<String> {
            match claim_at(&claims, path)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let subject = text(&c.subject_claim)
            .filter(|s| s.len() <= 255)
            .ok_or_else(|| ExternalError::Claim(c.subject_claim.clone()))?;
        let username = text(&c.username_claim).unwrap_or_else(|| subject.clone());
        let email = text(&c.email_claim);
        let mut roles: BTreeSet<String> = c.roles.default.iter().cloned().collect();
        if let Some(path) = &c.roles.claim
            && let Some(v) = claim_at(&claims, path)
        {
            for external in words(v) {
                if let Some(local) = c.roles.map.get(&external) {
                    roles.insert(local.clone());
                }
            }
        }
        let scope = claim_at(&claims, &c.scopes_claim)
            .map(words)
            .filter(|w| !w.is_empty())
            .map(|w| w.join(" "));
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => Some(a.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .find(|a| audiences.iter().any(|x| x == a))
                .map(str::to_owned),
            _ => None,
        }
        .ok_or(ExternalError::WrongAudience)?;
        let int = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = int("exp").ok_or_else(|| ExternalError::Claim("exp".into()))?;
        let iat = int("iat").or(int("nbf")).unwrap_or(0);
        let nbf = int("nbf").unwrap_or(iat);
        let jti = match claims.get("jti").and_then(Value::as_str) {
            Some(j) if !j.is_empty() && j.len() <= 128 => format!("ext:{j}"),
            _ => format!(
                "ext:{}",
                URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..16])
            ),
        };
        Ok(ExternalClaims {
            issuer: c.issuer.clone(),
            audience,
            subject,
            username,
            email,
            roles: roles.into_iter().collect(),
            scope,
            exp,
            iat,
            nbf,
            jti,
            all: claims,
        })
    }
}

/// The token's JOSE header, decoded.
fn header_of(token: &str) -> Option<Map<String, Value>> {
    b64_json(token.split('.').next()?)
}

impl Issuers {
    /// From configuration; an entry whose key source is the same as in
    /// `previous` keeps its cached keys.
    pub fn new(
        configs: &[IssuerConfig],
        previous: Option<&Issuers>,
        fetch: Fetch,
        leeway_secs: u64,
    ) -> Self {
        let by_issuer = configs
            .iter()
            .map(|c| {
                let state = previous
                    .and_then(|p| p.by_issuer.get(&c.issuer))
                    .filter(|old| old.config.key_source() == c.key_source())
                    .map(|old| old.state.clone())
                    .unwrap_or_default();
                (
                    c.issuer.clone(),
                    Issuer {
                        allowed: c.allowed(),
                        config: c.clone(),
                        state,
                    },
                )
            })
            .collect();
        Self {
            by_issuer,
            fetch,
            leeway_secs,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    pub fn get(&self, issuer: &str) -> Option<&Issuer> {
        self.by_issuer.get(issuer)
    }

    pub fn all(&self) -> impl Iterator<Item = &Issuer> {
        self.by_issuer.values()
    }

    /// Fetch the keys of every issuer whose refresh time has come (all of
    /// them at first). Runs off the request path.
    pub async fn refresh_due(&self) {
        let now = mono_ms();
        for issuer in self.by_issuer.values() {
            let s = &issuer.state;
            let due = s.refresh_at_ms.load(Ordering::Relaxed);
            if due != 0 && due > now {
                continue;
            }
            let Ok(_turn) = s.fetching.try_lock() else {
                continue;
            };
            let _ = issuer.fetch_keys(self.fetch).await;
        }
    }

    /// Verify an access token `issuer` signed. The caller has read `iss`
    /// unverified to choose the issuer; here it is checked for real.
    pub async fn verify(
        &self,
        issuer: &Issuer,
        token: &str,
    ) -> Result<ExternalClaims, ExternalError> {
        let audiences = &issuer.config.audiences;
        let claims = self
            .decode(issuer, token, TokenUse::Access, audiences)
            .await?;
        issuer.map_claims(token, claims, audiences)
    }

    /// Verify an ID token `issuer` sent this gateway as its client
    /// `client_id` in answer to a sign-in that sent `nonce` (OpenID Connect
    /// Core section 3.1.3.7): its signature by the provider's keys, `iss`,
    /// `aud` naming the client (and `azp` the client when present or when
    /// there are several audiences), `exp`, `iat`, and the nonce.
    pub async fn verify_id_token(
        &self,
        issuer: &Issuer,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<ExternalClaims, ExternalError> {
        let audiences = [client_id.to_owned()];
        let claims = self.decode(issuer, token, TokenUse::Id, &audiences).await?;
        let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if azp == client_id => {}
            None if !several => {}
            _ => return Err(ExternalError::Claim("azp".into())),
        }
        let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if nonce.is_empty() || !crate::identity::opaque::same(sent, nonce) {
            return Err(ExternalError::Claim("nonce".into()));
        }
        if !claims.get("iat").is_some_and(Value::is_i64) {
            return Err(ExternalError::Claim("iat".into()));
        }
        issuer.map_claims(token, claims, &audiences)
    }

    /// The claims of a token signed by one of `issuer`'s keys with an
    /// algorithm both allow, issued by it, for one of `audiences`, within
    /// its time bounds, and typed for `kind` (an access token is never taken
    /// for an ID token, nor the other way round).
    async fn decode(
        &self,
        issuer: &Issuer,
        token: &str,
        kind: TokenUse,
        audiences: &[String],
    ) -> Result<Map<String, Value>, ExternalError> {
        let header = header_of(token).ok_or(ExternalError::Malformed)?;
        if header.contains_key("crit") {
            return Err(ExternalError::CriticalHeader);
        }
        // Our own proofs and anything else typed as not this kind of token.
        if let Some(typ) = header.get("typ").and_then(Value::as_str) {
            let t = typ.to_ascii_lowercase();
            let fits = match kind {
                TokenUse::Access => matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt"),
                TokenUse::Id => matches!(t.as_str(), "jwt" | "application/jwt"),
            };
            if !fits {
                return Err(ExternalError::WrongType);
            }
        }
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(ExternalError::Malformed)?;
        let alg = SUPPORTED
            .iter()
            .find(|(n, _)| *n == alg_name)
            .map(|(_, a)| *a)
            .filter(|a| issuer.allowed.contains(a))
            .ok_or(ExternalError::Algorithm)?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = issuer.key_or_refetch(&kid, self.fetch).await?;
        if !key.algorithms.contains(&alg) {
            return Err(ExternalError::Algorithm);
        }
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_secs;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.config.issuer]);
        v.set_audience(audiences);
        v.set_required_spec_claims(match kind {
            TokenUse::Access => &["exp", "iss", "aud"][..],
            TokenUse::Id => &["exp", "iss", "aud", "sub"][..],
        });
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => ExternalError::Expired,
                    ErrorKind::ImmatureSignature => ExternalError::NotYetValid,
                    ErrorKind::InvalidAudience => ExternalError::WrongAudience,
                    ErrorKind::InvalidIssuer => ExternalError::Claim("iss".into()),
                    ErrorKind::InvalidSignature => ExternalError::BadSignature,
                    ErrorKind::InvalidAlgorithm => ExternalError::Algorithm,
                    ErrorKind::MissingRequiredClaim(c) => ExternalError::Claim(c.clone()),
                    _ => ExternalError::Malformed,
                }
            })?;
        Ok(data.claims)
    }

    /// The fetch function the issuers use (for a provider's documents).
    pub fn fetcher(&self) -> Fetch {
        self.fetch
    }
}

/// What a provider's token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenUse {
    /// An access token presented as a bearer token.
    Access,
    /// An ID token from a sign-in through the provider.
    Id,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aud() -> Vec<String> {
        vec!["gatehouse".into()]
    }

    fn config() -> IssuerConfig {
        serde_json::from_value(json!({
            "issuer": "https://idp.example",
            "discovery": true,
            "audiences": ["gatehouse"],
            "roles": {"claim": "realm_access.roles", "map": {"gh-admin": "admin"}},
        }))
        .unwrap()
    }

    #[test]
    fn configuration_is_checked() {
        assert!(config().check("trusted_issuers[0]").is_ok());
        let mut c = config();
        c.jwks_uri = Some("https://idp.example/keys".into());
        assert!(c.check("t").unwrap_err().contains("exactly one"));
        c.discovery = false;
        assert!(c.check("t").is_ok());
        c.algorithms = vec!["HS256".into()];
        assert!(c.check("t").unwrap_err().contains("HS256"));
        let mut c = config();
        c.audiences.clear();
        assert!(c.check("t").is_err());
        let mut c = config();
        c.roles.map.insert("x".into(), "Not A Role".into());
        assert!(c.check("t").is_err());
    }

    #[test]
    fn claims_map_to_local_terms() {
        let issuer = Issuer {
            allowed: vec![Algorithm::RS256],
            config: config(),
            state: Arc::default(),
        };
        let claims = json!({
            "iss": "https://idp.example", "aud": ["account", "gatehouse"], "sub": "u-1",
            "exp": 2_000_000_000, "iat": 1_900_000_000, "preferred_username": "Alice",
            "realm_access": {"roles": ["gh-admin", "offline_access"]}, "scope": "openid orders:read",
        });
        let m = issuer
            .map_claims("t", claims.as_object().unwrap().clone(), &aud())
            .unwrap();
        assert_eq!(m.subject, "u-1");
        assert_eq!(m.username, "Alice");
        assert_eq!(m.audience, "gatehouse");
        assert_eq!(m.roles, vec!["admin".to_owned(), "user".to_owned()]);
        assert_eq!(m.scope.as_deref(), Some("openid orders:read"));
        assert!(m.jti.starts_with("ext:"));
        // A required claim missing, or no subject.
        let mut c = config();
        c.required_claims = vec!["realm_access.roles".into(), "email".into()];
        let strict = Issuer {
            allowed: vec![Algorithm::RS256],
            config: c,
            state: Arc::default(),
        };
        assert_eq!(
            strict
                .map_claims("t", claims.as_object().unwrap().clone(), &aud())
                .unwrap_err(),
            ExternalError::Claim("email".into())
        );
        let mut no_sub = claims.as_object().unwrap().clone();
        no_sub.remove("sub");
        assert!(issuer.map_claims("t", no_sub, &aud()).is_err());
        // `sub` is a string: a number, or anything else, makes the token
        // invalid; the same digits as a string are a subject.
        for sub in [
            json!(12345),
            json!(1.5),
            json!(true),
            json!(["u-1"]),
            Value::Null,
        ] {
            let mut odd = claims.as_object().unwrap().clone();
            odd.insert("sub".into(), sub.clone());
            assert_eq!(
                issuer.map_claims("t", odd, &aud()).unwrap_err(),
                ExternalError::Claim("sub".into()),
                "{sub}"
            );
        }
        let mut digits = claims.as_object().unwrap().clone();
        digits.insert("sub".into(), json!("12345"));
        assert_eq!(
            issuer.map_claims("t", digits, &aud()).unwrap().subject,
            "12345"
        );
    }

    #[test]
    fn claims_by_dotted_path() {
        let c = json!({"a": {"b": ["x"]}, "https://x.example/roles": ["r"]});
        let c = c.as_object().unwrap();
        assert_eq!(claim_at(c, "a.b"), Some(&json!(["x"])));
        assert_eq!(claim_at(c, "https://x.example/roles"), Some(&json!(["r"])));
        assert_eq!(claim_at(c, "a.c"), None);
        assert_eq!(
            unverified_issuer("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcCJ9."),
            Some("https://idp".into())
        );
    }

    /// The test's own provider key (Ed25519) and its key set.
    fn test_keys() -> &'static (String, String) {
        static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let pem = common::keys::generate_ed25519().unwrap();
            let raw = common::keys::public_key_bytes(&pem.public_pem, "test").unwrap();
            let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
                                        "x": URL_SAFE_NO_PAD.encode(raw)}]});
            (pem.private_pem.clone(), jwks.to_string())
        })
    }

    fn serve_test_keys(_: String, _: Duration) -> LocalBoxFuture<'static, Result<Fetched, String>> {
        Box::pin(async {
            Ok(Fetched {
                body: test_keys().1.clone().into_bytes(),
                max_age: None,
            })
        })
    }

    /// A token signed by the test's key, typed `typ`, with `claims` over
    /// the usual `iss`, `sub`, `aud`, `exp`, `iat` and `nonce`.
    fn id_token(typ: Option<&str>, claims: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut all = json!({"iss": "https://idp.example", "sub": "u-1", "aud": "gh-client",
                             "exp": now + 300, "iat": now, "nonce": "n-1",
                             "preferred_username": "alice", "amr": ["pwd", "otp"]});
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        h.typ = typ.map(str::to_owned);
        let key = jsonwebtoken::EncodingKey::from_ed_pem(test_keys().0.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, &all, &key).unwrap()
    }

    #[actix_web::test]
    async fn id_tokens_are_for_this_client_and_this_sign_in_only() {
        let mut c = config();
        c.discovery = false;
        c.jwks_uri = Some("https://idp.example/keys".into());
        c.algorithms = vec!["EdDSA".into()];
        let issuers = Issuers::new(&[c], None, serve_test_keys, 0);
        let issuer = issuers.get("https://idp.example").unwrap();
        let check = |typ: Option<&'static str>, claims: Value| {
            let token = id_token(typ, claims);
            let issuers = &issuers;
            async move {
                issuers
                    .verify_id_token(issuer, &token, "gh-client", "n-1")
                    .await
            }
        };
        let ok = check(Some("JWT"), json!({})).await.unwrap();
        assert_eq!(ok.subject, "u-1");
        assert_eq!(ok.username, "alice");
        assert!(
            check(
                None,
                json!({"aud": ["gh-client", "other"], "azp": "gh-client"})
            )
            .await
            .is_ok()
        );
        for (typ, claims, why) in [
            (
                None,
                json!({"nonce": "n-2"}),
                ExternalError::Claim("nonce".into()),
            ),
            (
                None,
                json!({"nonce": null}),
                ExternalError::Claim("nonce".into()),
            ),
            (
                None,
                json!({"aud": "gatehouse"}),
                ExternalError::WrongAudience,
            ),
            (
                None,
                json!({"aud": ["gh-client", "other"]}),
                ExternalError::Claim("azp".into()),
            ),
            (
                None,
                json!({"azp": "other"}),
                ExternalError::Claim("azp".into()),
            ),
            (
                None,
                json!({"iat": null}),
                ExternalError::Claim("iat".into()),
            ),
            (
                None,
                json!({"sub": null}),
                ExternalError::Claim("sub".into()),
            ),
            (
                None,
                json!({"iss": "https://evil.example"}),
                ExternalError::Claim("iss".into()),
            ),
            (None, json!({"exp": 1}), ExternalError::Expired),
            // An access token of the same provider is not an ID token.
            (Some("at+jwt"), json!({}), ExternalError::WrongType),
        ] {
            assert_eq!(
                check(typ, claims.clone()).await.unwrap_err(),
                why,
                "{claims}"
            );
        }
        // Nor is an ID token (for the client, not the API) an access token.
        let token = id_token(Some("JWT"), json!({}));
        assert_eq!(
            issuers.verify(issuer, &token).await.unwrap_err(),
            ExternalError::WrongAudience
        );
    }
}
