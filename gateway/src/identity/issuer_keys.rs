//! A trusted provider's keys as the gateway holds them: which keys of a JWK
//! Set it loads and the algorithms each may verify (the key's own, never
//! what a token's header claims), one issuer's cached set, and how long a
//! fetched set is kept. Apart from `issuers` (configuration, fetching and
//! verification) so that the rules that make a key usable read in one place.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

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
pub(super) const SUPPORTED: &[(&str, Algorithm)] = &[
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

/// A usable key: how to verify, and with which algorithms.
pub(super) struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

/// One issuer's keys and their fetching; a reload that keeps its key source keeps this.
#[derive(Default)]
pub(super) struct KeyState {
    pub(super) keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// Bumped by every completed fetch, successful or not: a waiter that
    /// sees it move knows someone fetched while it waited.
    pub(super) generation: AtomicU64,
    /// The provider's discovery document, once fetched and checked (its
    /// `issuer` the configured one).
    pub(super) document: RwLock<Option<Arc<serde_json::Map<String, serde_json::Value>>>>,
    /// Held while fetching: one fetch at a time per issuer, across workers.
    pub(super) fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started (monotonic ms, 0: never).
    pub(super) last_attempt_ms: AtomicU64,
    /// When the set should be refreshed (monotonic ms).
    pub(super) refresh_at_ms: AtomicU64,
    /// Why the last fetch failed, when it did.
    pub(super) last_error: RwLock<Option<String>>,
    pub(super) fetches: AtomicU64,
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
pub(super) fn parse_key_set(
    body: &[u8],
    allowed: &[Algorithm],
) -> Result<HashMap<String, Arc<Key>>, String> {
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
pub(super) fn refresh_after(max_age: Option<u64>, k: &KeyRefresh) -> u64 {
    max_age
        .unwrap_or(k.max_refresh_secs)
        .clamp(k.min_refresh_secs, k.max_refresh_secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
