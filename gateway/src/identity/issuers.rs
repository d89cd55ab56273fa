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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

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

/// Key-set caching.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRefresh {
    /// Refresh no sooner than this, whatever `max-age` says.
    #[serde(default = "default_min_refresh")]
    pub min_refresh_secs: u64,
    /// Refresh at least this often (also when the answer has no `max-age`).
    #[serde(default = "default_max_refresh")]
    pub max_refresh_secs: u64,
    /// At most one refetch for an unknown kid per this many seconds.
    #[serde(default = "default_cooldown")]
    pub unknown_kid_cooldown_secs: u64,
    /// Budget of one fetch (discovery and key set each).
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_ms: u64,
}

impl Default for KeyRefresh {
    fn default() -> Self {
        Self {
            min_refresh_secs: default_min_refresh(),
            max_refresh_secs: default_max_refresh(),
            unknown_kid_cooldown_secs: default_cooldown(),
            fetch_timeout_ms: default_fetch_timeout(),
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
fn default_min_refresh() -> u64 {
    60
}
fn default_max_refresh() -> u64 {
    3600
}
fn default_cooldown() -> u64 {
    30
}
fn default_fetch_timeout() -> u64 {
    3000
}

/// The algorithms an external key may verify.
const SUPPORTED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

fn is_rsa(a: Algorithm) -> bool {
    matches!(
        a,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
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

/// A usable key: how to verify, and with which algorithms.
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct KeyState {
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// Bumped by every completed fetch, successful or not: a waiter that
    /// sees it move knows someone fetched while it waited.
    generation: AtomicU64,
    /// The discovered `jwks_uri`.
    jwks_uri: RwLock<Option<String>>,
    /// Held while fetching: one fetch at a time per issuer, across workers.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started (monotonic ms, 0: never).
    last_attempt_ms: AtomicU64,
    /// When the set should be refreshed (monotonic ms).
    refresh_at_ms: AtomicU64,
    /// Why the last fetch failed, when it did.
    last_error: RwLock<Option<String>>,
    fetches: AtomicU64,
}

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

/// The size of an RSA modulus (`n`, base64url) in bits, leading zero bytes not counted.
fn rsa_bits(n: &str) -> usize {
    URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .map(|n| n.iter().skip_while(|b| **b == 0).count() * 8)
        .unwrap_or(0)
}

/// The algorithms of `allowed` a key of this type may verify; `None`: it is never loaded.
fn key_family(jwk: &Jwk, allowed: &[Algorithm], index: usize) -> Option<Vec<Algorithm>> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let bits = rsa_bits(&p.n);
            if bits < 2048 {
                tracing::warn!(index, bits, "ignoring an RSA key under 2048 bits");
                return None;
            }
            Some(allowed.iter().copied().filter(|a| is_rsa(*a)).collect())
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(vec![Algorithm::ES256]),
            EllipticCurve::P384 => Some(vec![Algorithm::ES384]),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(vec![Algorithm::EdDSA])
        }
        // Symmetric keys never verify anything from outside.
        _ => None,
    }
}

/// The supported algorithm a JWK's `alg` names, if it names one.
fn named_algorithm(k: Option<KeyAlgorithm>) -> Option<Algorithm> {
    k.and_then(|k| {
        let name = match k {
            KeyAlgorithm::RS256 => "RS256",
            KeyAlgorithm::RS384 => "RS384",
            KeyAlgorithm::RS512 => "RS512",
            KeyAlgorithm::PS256 => "PS256",
            KeyAlgorithm::PS384 => "PS384",
            KeyAlgorithm::PS512 => "PS512",
            KeyAlgorithm::ES256 => "ES256",
            KeyAlgorithm::ES384 => "ES384",
            KeyAlgorithm::EdDSA => "EdDSA",
            _ => "",
        };
        SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    })
}

/// Key `index` of a set as a usable key for `allowed`, with its kid; `None`: left out.
fn usable_key(index: usize, v: Value, allowed: &[Algorithm]) -> Option<(String, Arc<Key>)> {
    let jwk: Jwk = match serde_json::from_value(v) {
        Ok(j) => j,
        Err(e) => {
            tracing::debug!(index, error = %e, "skipping a JWK this gateway cannot read");
            return None;
        }
    };
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family = key_family(&jwk, allowed, index)?;
    let named = named_algorithm(jwk.common.key_algorithm);
    let algorithms: Vec<Algorithm> = family
        .into_iter()
        .filter(|a| allowed.contains(a))
        .filter(|a| named.is_none_or(|n| n == *a))
        .collect();
    if algorithms.is_empty() {
        return None;
    }
    let decoding = match DecodingKey::from_jwk(&jwk) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(index, error = %e, "ignoring a JWK that does not parse");
            return None;
        }
    };
    let kid = jwk.common.key_id.clone().unwrap_or_default();
    Some((
        kid,
        Arc::new(Key {
            decoding,
            algorithms,
        }),
    ))
}

/// The keys of a JWK Set that may verify tokens for `allowed`, by kid.
/// Keys that are not for signatures, symmetric, too small, of another
/// curve or unparseable are left out (each with a warning).
fn parse_key_set(body: &[u8], allowed: &[Algorithm]) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWK Set: {e}"))?;
    // A later key with the same kid replaces an earlier one.
    Ok(raw
        .keys
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| usable_key(i, v, allowed))
        .collect())
}

/// The refresh interval `max_age` asks for, within the bounds.
fn refresh_after(max_age: Option<u64>, k: &KeyRefresh) -> u64 {
    max_age
        .unwrap_or(k.max_refresh_secs)
        .clamp(k.min_refresh_secs, k.max_refresh_secs)
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

    async fn jwks_uri(&self, fetch: Fetch) -> Result<String, String> {
        if let Some(u) = &self.config.jwks_uri {
            return Ok(u.clone());
        }
        if let Some(u) = self.state.jwks_uri.read().ok().and_then(|u| u.clone()) {
            return Ok(u);
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
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}: no jwks_uri"))?;
        http_url("jwks_uri", jwks).map_err(|e| format!("{url}: {e}"))?;
        if let Ok(mut w) = self.state.jwks_uri.write() {
            *w = Some(jwks.to_owned());
        }
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
                    && let Ok(mut u) = s.jwks_uri.write()
                {
                    // Discover again next time: the provider may have moved it.
                    *u = None;
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

    fn map_claims(
        &self,
        token: &str,
        claims: Map<String, Value>,
    ) -> Result<ExternalClaims, ExternalError> {
        let c = &self.config;
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
                .find(|a| c.audiences.iter().any(|x| x == a))
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

    /// Verify a token `issuer` signed. The caller has read `iss` unverified
    /// to choose the issuer; here it is checked for real.
    pub async fn verify(
        &self,
        issuer: &Issuer,
        token: &str,
    ) -> Result<ExternalClaims, ExternalError> {
        let header = header_of(token).ok_or(ExternalError::Malformed)?;
        if header.contains_key("crit") {
            return Err(ExternalError::CriticalHeader);
        }
        // Our own proofs and anything else typed as not an access token.
        if let Some(typ) = header.get("typ").and_then(Value::as_str) {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
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
        v.set_audience(&issuer.config.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
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
        issuer.map_claims(token, data.claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

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
            .map_claims("t", claims.as_object().unwrap().clone())
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
                .map_claims("t", claims.as_object().unwrap().clone())
                .unwrap_err(),
            ExternalError::Claim("email".into())
        );
        let mut no_sub = claims.as_object().unwrap().clone();
        no_sub.remove("sub");
        assert!(issuer.map_claims("t", no_sub).is_err());
    }

    #[test]
    fn key_sets_keep_only_usable_signing_keys() {
        let big_n = URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let small_n = URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let set = json!({"keys": [
            {"kty": "RSA", "kid": "good", "n": big_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": big_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": big_n, "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "x"},
        ]});
        let keys = parse_key_set(
            &serde_json::to_vec(&set).unwrap(),
            &[Algorithm::RS256, Algorithm::ES256],
        )
        .unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        // `ps` names PS256, which this issuer does not accept.
        assert_eq!(kids, vec!["good"]);
        assert_eq!(keys["good"].algorithms, vec![Algorithm::RS256]);
        assert!(parse_key_set(b"[]", &[Algorithm::RS256]).is_err());
    }

    #[test]
    fn refresh_honours_max_age_within_bounds() {
        let k = KeyRefresh::default();
        assert_eq!(refresh_after(Some(5), &k), 60);
        assert_eq!(refresh_after(Some(600), &k), 600);
        assert_eq!(refresh_after(Some(999_999), &k), 3600);
        assert_eq!(refresh_after(None, &k), 3600);
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
}
