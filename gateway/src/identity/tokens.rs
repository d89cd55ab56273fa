//! Access tokens: JWTs the gateway issues at login and verifies on every
//! request.
//!
//! Signed with EdDSA (Ed25519) by default; RS256 when configured; HS256 only
//! when a key explicitly says so. The header carries `kid` and
//! `typ: at+jwt`. Verification pins both the key (by `kid`) and the
//! algorithm (the key's own, whatever the header claims), so `alg: none`, an
//! HS256 token "signed" with a public key, a gateway proof (`typ`
//! `gw-proof+jwt`) or an opaque refresh token are all refused.
//!
//! Several keys may be configured: one signs, the others still verify, so a
//! rotation cuts no valid token short. The public halves are published as a
//! JWKS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// JOSE `typ` of an access token (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// Unique id, the handle for revoking this token.
    pub jti: String,
    /// The session (refresh-token family) the token was issued in: the
    /// handle for revoking every token of a session at once. Empty in
    /// tokens issued before sessions were named.
    #[serde(default)]
    pub sid: String,
    /// Granted scopes, space-separated (RFC 9068 `scope`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Set when the token was issued to a machine client (RFC 9068
    /// `client_id`); `sub` is then the client's principal id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The application a user's token was issued to through the code flow
    /// (OIDC `azp`: its `client_id`); absent from `/api/login`'s tokens.
    /// The principal stays the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    pub roles: Vec<String>,
    pub username: String,
    /// How the user authenticated (RFC 8176 `amr`: `pwd`, then `otp` after
    /// a second factor); a trusted provider's token keeps its own. Absent
    /// from machine clients' tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The authentication context class (OIDC `acr`): [`ACR_PASSWORD`] or
    /// [`ACR_MFA`] in the gateway's own tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// When the login that started the session happened (OIDC
    /// `auth_time`, Unix seconds); refreshed tokens keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Claims of a trusted provider's token kept for forwarding (claim ->
    /// value as text); never part of a token the gateway signs.
    #[serde(skip)]
    pub extra: std::collections::BTreeMap<String, String>,
}

/// `acr` of a login by password alone.
pub const ACR_PASSWORD: &str = "urn:gatehouse:acr:password";
/// `acr` of a login with a second factor.
pub const ACR_MFA: &str = "urn:gatehouse:acr:mfa";

/// The RFC 8176 `amr` values that name a second factor: a one-time code,
/// "multiple factors", a hardware key (a passkey, a security key).
pub const SECOND_FACTOR_METHODS: [&str; 3] = ["otp", "mfa", "hwk"];

/// Whether RFC 8176 `amr` values name a second factor.
pub fn names_second_factor(amr: &[String]) -> bool {
    amr.iter()
        .any(|m| SECOND_FACTOR_METHODS.contains(&m.as_str()))
}

/// The `acr` of a sign-in that authenticated with `amr`: a password alone
/// ([`ACR_PASSWORD`]) or with a second factor ([`ACR_MFA`]).
pub fn acr_of(amr: &[String]) -> &'static str {
    if names_second_factor(amr) {
        ACR_MFA
    } else {
        ACR_PASSWORD
    }
}

impl AccessClaims {
    /// The login behind the token used a second factor.
    pub fn has_second_factor(&self) -> bool {
        names_second_factor(&self.amr)
    }

    /// A claim as the text a header would carry: one the gateway's own
    /// tokens have, or one kept from a provider's token.
    pub fn text(&self, name: &str) -> Option<String> {
        if let Some(v) = self.extra.get(name) {
            return Some(v.clone());
        }
        match name {
            "sub" => Some(self.sub.clone()),
            "iss" => Some(self.iss.clone()),
            "aud" => Some(self.aud.clone()),
            "jti" => Some(self.jti.clone()),
            "username" | "preferred_username" => Some(self.username.clone()),
            "scope" => self.scope.clone(),
            "client_id" => self.client_id.clone(),
            "roles" => Some(self.roles.join(",")),
            _ => None,
        }
    }
}

/// Signature algorithms a key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum KeyAlg {
    EdDSA,
    RS256,
    HS256,
}

impl KeyAlg {
    fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::EdDSA => Algorithm::EdDSA,
            KeyAlg::RS256 => Algorithm::RS256,
            KeyAlg::HS256 => Algorithm::HS256,
        }
    }
}

/// One configured key (`tokens.keys[]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub alg: KeyAlg,
    /// Required for HS256; derived from the public key otherwise.
    #[serde(default)]
    pub kid: Option<String>,
    /// PEM private key (EdDSA: PKCS#8; RS256: PKCS#1 or PKCS#8).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// PEM public key only: a retired key that still verifies.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// HS256 shared secret (at least 32 bytes).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The key that signs new tokens (exactly one).
    #[serde(default)]
    pub active: bool,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("private_key_file", &self.private_key_file)
            .field("public_key_file", &self.public_key_file)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Why a key set could not be built.
#[derive(Debug, thiserror::Error)]
#[error("tokens.keys[{index}]: {reason}")]
pub struct KeyConfigError {
    pub index: usize,
    pub reason: String,
}

/// Why a token was refused. All map to 401 `invalid_token`; the variants
/// exist for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("not an access token")]
    WrongType,
    #[error("a critical header parameter is not understood")]
    CriticalHeader,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer or audience")]
    WrongParty,
    #[error("invalid claims")]
    InvalidClaims,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A JSON Web Key Set (RFC 7517), as `/.well-known/jwks.json` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// One public key: `OKP`/`Ed25519` (`x`) or `RSA` (`n`, `e`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: String,
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    fn okp(raw: &[u8]) -> Self {
        Self {
            kty: "OKP".into(),
            kid: String::new(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            crv: Some("Ed25519".into()),
            x: Some(URL_SAFE_NO_PAD.encode(raw)),
            n: None,
            e: None,
        }
    }
}

struct KeyEntry {
    alg: KeyAlg,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    /// The public half as published (`kid` filled in); `None` for HS256.
    jwk: Option<Jwk>,
}

/// Issues and verifies access tokens with a set of keys.
pub struct TokenKeys {
    keys: HashMap<String, KeyEntry>,
    active: String,
    issuer: String,
    audience: String,
    leeway_secs: i64,
    /// Tokens whose signature and claims already checked out, by the whole
    /// token text (a changed byte is a different key): the signature check
    /// is the dearest step of a request. Time bounds are re-checked on every
    /// hit, revocation is checked by the caller, and a reload builds new
    /// `TokenKeys`, so a retired key's tokens never outlive it here.
    /// (Hashed with foldhash's quality hasher, randomly seeded: SipHash of a
    /// ~700-byte token cost ~1,500 instructions per request; only tokens
    /// whose signature checked out are ever inserted.)
    verified:
        moka::sync::Cache<String, std::sync::Arc<AccessClaims>, foldhash::quality::RandomState>,
}

/// Memory the verified-token cache may use, and how long an entry lives
/// before its signature is checked again.
const VERIFIED_CACHE_BYTES: u64 = 4 * 1024 * 1024;
const VERIFIED_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the token's JOSE header has `crit`: we understand no extension,
/// so a token that makes one critical must be refused (RFC 7515 section
/// 4.1.11). The JWT library ignores unknown header fields, hence this look.
fn names_critical_parameters(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
        .is_some_and(|h| h.contains_key("crit"))
}

fn kid_of(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(bytes)[..16])
}

fn read(path: &Path, index: usize) -> Result<Vec<u8>, KeyConfigError> {
    std::fs::read(path).map_err(|e| KeyConfigError {
        index,
        reason: format!("{}: {e}", path.display()),
    })
}

/// Public half and JWK of an RS256 key.
fn rsa_public(
    private_or_public_pem: &str,
    private: bool,
) -> Result<(String, Jwk, Vec<u8>), String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let public = if private {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_or_public_pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(private_or_public_pem))
            .map_err(|e| e.to_string())?;
        key.to_public_key()
    } else {
        rsa::RsaPublicKey::from_public_key_pem(private_or_public_pem).map_err(|e| e.to_string())?
    };
    let pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let n = public.n().to_bytes_be();
    let jwk = Jwk {
        kty: "RSA".into(),
        kid: String::new(),
        alg: "RS256".into(),
        use_: "sig".into(),
        crv: None,
        x: None,
        n: Some(URL_SAFE_NO_PAD.encode(&n)),
        e: Some(URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())),
    };
    Ok((pem, jwk, n))
}

/// The keys to load (with an inline private PEM): the configured ones, else the dev key.
fn key_sources(
    configs: &[KeyConfig],
    dev_key: Option<&str>,
) -> Result<Vec<(KeyConfig, Option<String>)>, KeyConfigError> {
    if !configs.is_empty() {
        return Ok(configs.iter().cloned().map(|c| (c, None)).collect());
    }
    let dev = dev_key.ok_or(KeyConfigError {
        index: 0,
        reason: "no key configured".into(),
    })?;
    Ok(vec![(
        KeyConfig {
            alg: KeyAlg::EdDSA,
            kid: None,
            private_key_file: None,
            public_key_file: None,
            secret_file: None,
            active: true,
        },
        Some(dev.to_owned()),
    )])
}

/// A PEM file's text (`index` names the key in the error).
fn read_pem(path: &Path, index: usize) -> Result<String, KeyConfigError> {
    String::from_utf8(read(path, index)?).map_err(|_| KeyConfigError {
        index,
        reason: "not UTF-8 PEM".into(),
    })
}

/// One key's halves, loaded, before it joins the set.
struct LoadedKey {
    kid: String,
    /// `None` for a key that only verifies.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// The public half to publish (its `kid` not yet filled in); `None` for HS256.
    jwk: Option<Jwk>,
}

/// Load key `index`: read its files and build its halves as its algorithm says.
fn load_key(
    index: usize,
    c: &KeyConfig,
    inline_private: Option<&str>,
) -> Result<LoadedKey, KeyConfigError> {
    let err = |reason: String| KeyConfigError { index, reason };
    let private_pem = match (inline_private, &c.private_key_file) {
        (Some(p), _) => Some(p.to_owned()),
        (None, Some(f)) => Some(read_pem(f, index)?),
        (None, None) => None,
    };
    let public_pem = match &c.public_key_file {
        Some(f) => Some(read_pem(f, index)?),
        None => None,
    };
    match c.alg {
        KeyAlg::EdDSA => load_eddsa(c, private_pem.as_deref(), public_pem.as_deref()).map_err(err),
        KeyAlg::RS256 => load_rs256(c, private_pem.as_deref(), public_pem.as_deref()).map_err(err),
        KeyAlg::HS256 => load_hs256(c, index),
    }
}

/// An Ed25519 key from its private or public PEM; kid: the public key's digest unless set.
fn load_eddsa(
    c: &KeyConfig,
    private_pem: Option<&str>,
    public_pem: Option<&str>,
) -> Result<LoadedKey, String> {
    let public = match (private_pem, public_pem) {
        (Some(p), _) => common::keys::public_pem_from_private(p, "access token key")
            .map_err(|e| e.to_string())?,
        (None, Some(p)) => p.to_owned(),
        (None, None) => return Err("needs private_key_file or public_key_file".into()),
    };
    let raw =
        common::keys::public_key_bytes(&public, "access token key").map_err(|e| e.to_string())?;
    let encoding = private_pem
        .map(|p| EncodingKey::from_ed_pem(p.as_bytes()))
        .transpose()
        .map_err(|e| e.to_string())?;
    let decoding = DecodingKey::from_ed_pem(public.as_bytes()).map_err(|e| e.to_string())?;
    Ok(LoadedKey {
        kid: c.kid.clone().unwrap_or_else(|| kid_of(&raw)),
        encoding,
        decoding,
        jwk: Some(Jwk::okp(&raw)),
    })
}

/// An RS256 key from its private or public PEM; kid: the modulus's digest unless set.
fn load_rs256(
    c: &KeyConfig,
    private_pem: Option<&str>,
    public_pem: Option<&str>,
) -> Result<LoadedKey, String> {
    let (public, jwk, n) = match (private_pem, public_pem) {
        (Some(p), _) => rsa_public(p, true),
        (None, Some(p)) => rsa_public(p, false),
        (None, None) => return Err("needs private_key_file or public_key_file".into()),
    }?;
    let encoding = private_pem
        .map(|p| EncodingKey::from_rsa_pem(p.as_bytes()))
        .transpose()
        .map_err(|e| e.to_string())?;
    let decoding = DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|e| e.to_string())?;
    Ok(LoadedKey {
        kid: c.kid.clone().unwrap_or_else(|| kid_of(&n)),
        encoding,
        decoding,
        jwk: Some(jwk),
    })
}

/// An HS256 key: an explicit kid and a `secret_file` of at least 32 bytes.
fn load_hs256(c: &KeyConfig, index: usize) -> Result<LoadedKey, KeyConfigError> {
    let err = |reason: String| KeyConfigError { index, reason };
    let kid = c
        .kid
        .clone()
        .ok_or_else(|| err("HS256 keys need an explicit kid".into()))?;
    let file = c
        .secret_file
        .as_ref()
        .ok_or_else(|| err("HS256 needs secret_file".into()))?;
    let secret = read(file, index)?;
    let secret = secret.trim_ascii();
    if secret.len() < 32 {
        return Err(err("an HS256 secret must be at least 32 bytes".into()));
    }
    // Never published: a shared secret has no public half.
    Ok(LoadedKey {
        kid,
        encoding: Some(EncodingKey::from_secret(secret)),
        decoding: DecodingKey::from_secret(secret),
        jwk: None,
    })
}

/// What a token signed with `alg` must meet: our issuer and audience, every time claim.
fn validation(alg: KeyAlg, issuer: &str, audience: &str, leeway_secs: u64) -> Validation {
    let mut validation = Validation::new(alg.jwt());
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = leeway_secs;
    validation
}

/// The verified-token cache (see `TokenKeys::verified`), bounded by its entries' bytes.
fn verified_cache()
-> moka::sync::Cache<String, std::sync::Arc<AccessClaims>, foldhash::quality::RandomState> {
    moka::sync::Cache::builder()
        .weigher(|token: &String, claims: &std::sync::Arc<AccessClaims>| {
            let roles: usize = claims.roles.iter().map(String::len).sum();
            u32::try_from(token.len() * 2 + roles + 256).unwrap_or(u32::MAX)
        })
        .max_capacity(VERIFIED_CACHE_BYTES)
        .time_to_live(VERIFIED_CACHE_TTL)
        .build_with_hasher(foldhash::quality::RandomState::default())
}

impl TokenKeys {
    /// Build from configuration. `dev_key` (a generated Ed25519 PKCS#8 PEM) is
    /// used when no key is configured.
    pub fn new(
        configs: &[KeyConfig],
        dev_key: Option<&str>,
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
    ) -> Result<Self, KeyConfigError> {
        let mut keys = HashMap::new();
        let mut active = None;
        for (index, (c, inline_private)) in key_sources(configs, dev_key)?.iter().enumerate() {
            let err = |reason: String| KeyConfigError { index, reason };
            let LoadedKey {
                kid,
                encoding,
                decoding,
                jwk,
            } = load_key(index, c, inline_private.as_deref())?;
            if c.active {
                if active.is_some() {
                    return Err(err("more than one key is marked active".into()));
                }
                if encoding.is_none() {
                    return Err(err("the active key needs its private half".into()));
                }
                active = Some(kid.clone());
            }
            if keys.contains_key(&kid) {
                return Err(err(format!("duplicate kid `{kid}`")));
            }
            let jwk = jwk.map(|j| Jwk {
                kid: kid.clone(),
                ..j
            });
            keys.insert(
                kid,
                KeyEntry {
                    alg: c.alg,
                    encoding,
                    decoding,
                    validation: validation(c.alg, issuer, audience, leeway_secs),
                    jwk,
                },
            );
        }
        let active = active.ok_or(KeyConfigError {
            index: 0,
            reason: "no key is marked active".into(),
        })?;
        Ok(Self {
            keys,
            active,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
            verified: verified_cache(),
        })
    }

    /// The kid of the signing key.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// The `iss` of the tokens signed here.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The algorithms of the published keys (JWA names), for metadata.
    pub fn published_algorithms(&self) -> Vec<String> {
        let mut algs: Vec<String> = self
            .keys
            .values()
            .filter_map(|e| e.jwk.as_ref().map(|j| j.alg.clone()))
            .collect();
        algs.sort();
        algs.dedup();
        algs
    }

    /// Sign claims with the active key. `iss` and `aud` are set here.
    pub fn sign(&self, mut claims: AccessClaims) -> Result<String, TokenError> {
        let entry = self.keys.get(&self.active).ok_or(TokenError::UnknownKey)?;
        let key = entry.encoding.as_ref().ok_or(TokenError::UnknownKey)?;
        claims.iss = self.issuer.clone();
        claims.aud = self.audience.clone();
        let mut header = Header::new(entry.alg.jwt());
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(self.active.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Whether verified claims are within their time bounds now (with the
    /// leeway).
    pub fn check_time(&self, claims: &AccessClaims) -> Result<(), TokenError> {
        let now = crate::clock::unix_secs();
        if now > claims.exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf.saturating_sub(self.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// The verified-token cache's answer for `token`, time bounds checked:
    /// `None` when it does not hold it.
    pub fn cached(&self, token: &str) -> Option<Result<std::sync::Arc<AccessClaims>, TokenError>> {
        let claims = self.verified.get(token)?;
        Some(match self.check_time(&claims) {
            Ok(()) => Ok(claims),
            Err(e) => {
                if e == TokenError::Expired {
                    self.verified.invalidate(token);
                }
                Err(e)
            }
        })
    }

    /// Put claims verified elsewhere (a trusted provider's token, mapped to
    /// its linked account) in the verified-token cache, so the next request
    /// with this token takes the fast path; time bounds are still checked
    /// on every hit.
    pub fn remember(&self, token: &str, claims: std::sync::Arc<AccessClaims>) {
        self.verified.insert(token.to_owned(), claims);
    }

    /// Verify an access token; the claims are shared with the cache.
    pub fn verify(&self, token: &str) -> Result<std::sync::Arc<AccessClaims>, TokenError> {
        match self.cached(token) {
            Some(hit) => hit,
            None => self.verify_missed(token),
        }
    }

    /// Verify a token the cache was just asked for and did not hold (so a
    /// miss costs one lookup, not two), and put it there.
    pub fn verify_missed(&self, token: &str) -> Result<std::sync::Arc<AccessClaims>, TokenError> {
        let claims = std::sync::Arc::new(self.verify_signed(token)?);
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if names_critical_parameters(token) {
            return Err(TokenError::CriticalHeader);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let entry = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != entry.alg.jwt() {
            return Err(TokenError::AlgorithmMismatch);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &entry.decoding, &entry.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenError::WrongParty,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
                ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_)
                | ErrorKind::Json(_) => TokenError::InvalidClaims,
                _ => TokenError::Malformed,
            })?;
        Ok(data.claims)
    }

    /// Sign an ID token (OpenID Connect Core section 2) with the active
    /// key: `typ: JWT` and `aud` the client, so it is never taken for an
    /// access token (`at+jwt`, the API's audience). `iss` is set here.
    pub fn sign_id_token(
        &self,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TokenError> {
        let entry = self.keys.get(&self.active).ok_or(TokenError::UnknownKey)?;
        let key = entry.encoding.as_ref().ok_or(TokenError::UnknownKey)?;
        claims.insert("iss".into(), serde_json::Value::String(self.issuer.clone()));
        let mut header = Header::new(entry.alg.jwt());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.active.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// `at_hash` of an access token for an ID token signed with the active
    /// key (OpenID Connect Core 3.1.3.6): the left half of its hash with
    /// the signature's hash function (SHA-512 for Ed25519, SHA-256 for
    /// RS256 and HS256), base64url.
    pub fn at_hash(&self, access_token: &str) -> String {
        let alg = self.keys.get(&self.active).map(|e| e.alg);
        let digest: Vec<u8> = match alg {
            Some(KeyAlg::EdDSA) => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
            _ => Sha256::digest(access_token.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }

    /// The claims of an ID token this gateway issued (an `id_token_hint`):
    /// its signature by one of the keys and its issuer; an expired one is
    /// still a hint (OpenID Connect RP-Initiated Logout section 2).
    pub fn id_token_hint(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        if names_critical_parameters(token) {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some("JWT") {
            return None;
        }
        let entry = self.keys.get(&header.kid?)?;
        if header.alg != entry.alg.jwt() {
            return None;
        }
        let mut v = Validation::new(entry.alg.jwt());
        v.set_issuer(&[&self.issuer]);
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_required_spec_claims(&["iss", "sub", "aud"]);
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &entry.decoding,
            &v,
        )
        .ok()
        .map(|d| d.claims)
    }

    /// The public keys as an RFC 7517 JWK Set, by kid (HS256 keys are
    /// never published).
    pub fn jwks(&self) -> JwkSet {
        let mut keys: Vec<Jwk> = self.keys.values().filter_map(|e| e.jwk.clone()).collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        JwkSet { keys }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};
    use serde_json::{Value, json};

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(iat: i64, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: String::new(),
            aud: String::new(),
            sub: uuid::Uuid::new_v4().to_string(),
            exp,
            iat,
            nbf: iat,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: uuid::Uuid::new_v4().to_string(),
            scope: None,
            client_id: None,
            roles: vec!["user".into()],
            username: "alice".into(),
            amr: Vec::new(),
            acr: None,
            auth_time: None,
            azp: None,
            extra: Default::default(),
        }
    }

    fn dev() -> (TokenKeys, common::keys::Ed25519Pem) {
        let pair = common::keys::generate_ed25519().unwrap();
        (
            TokenKeys::new(&[], Some(&pair.private_pem), "gatehouse", "api", 5).unwrap(),
            pair,
        )
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn round_trip() {
        let (k, _) = dev();
        let t = now();
        let token = k.sign(claims(t, t + 900)).unwrap();
        let c = k.verify(&token).unwrap();
        assert_eq!(
            (c.iss.as_str(), c.aud.as_str(), c.username.as_str()),
            ("gatehouse", "api", "alice")
        );
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(k.active_kid()));
        assert_eq!(header.alg, Algorithm::EdDSA);
    }

    #[test]
    fn verified_tokens_are_cached_but_time_and_bytes_still_count() {
        let (k, _) = dev();
        let t = now();
        let token = k.sign(claims(t, t + 900)).unwrap();
        let first = k.verify(&token).unwrap();
        assert_eq!(
            k.verified.get(token.as_str()).as_deref(),
            Some(first.as_ref())
        );
        assert_eq!(k.verify(&token).unwrap(), first);
        // A changed byte is another key: verified (and refused) afresh.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(k.verify(&tampered).is_err());
        // A cached token past its expiry (beyond the leeway) is refused.
        let short = k.sign(claims(t - 100, t - 2)).unwrap();
        let c = k.verify(&short).unwrap();
        let mut stale = c.as_ref().clone();
        stale.exp = t - 60;
        k.verified.insert(short.clone(), std::sync::Arc::new(stale));
        assert_eq!(k.verify(&short), Err(TokenError::Expired));
        assert!(k.verified.get(short.as_str()).is_none());
        // Other keys (a reload) start with nothing cached.
        let (other, _) = dev();
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn refusals() {
        let (k, pair) = dev();
        let t = now();
        let kid = k.active_kid().to_owned();
        // Expired, not yet valid (beyond the leeway).
        assert_eq!(
            k.verify(&k.sign(claims(t - 100, t - 50)).unwrap()),
            Err(TokenError::Expired)
        );
        let mut c = claims(t, t + 900);
        c.nbf = t + 120;
        assert_eq!(k.verify(&k.sign(c).unwrap()), Err(TokenError::NotYetValid));
        // Wrong issuer / audience: same key, other names.
        for (iss, aud) in [("someone", "api"), ("gatehouse", "other")] {
            let other = TokenKeys::new(&[], Some(&pair.private_pem), iss, aud, 5).unwrap();
            assert_eq!(
                k.verify(&other.sign(claims(t, t + 900)).unwrap()),
                Err(TokenError::WrongParty)
            );
        }
        // Unknown key.
        let (stranger, _) = dev();
        assert_eq!(
            k.verify(&stranger.sign(claims(t, t + 900)).unwrap()),
            Err(TokenError::UnknownKey)
        );
        // alg none.
        let h = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
        let body = serde_json::to_value(claims(t, t + 900)).unwrap();
        assert!(k.verify(&format!("{}.{}.", b64(&h), b64(&body))).is_err());
        // HS256 "signed" with the published public key.
        let forged = {
            let mut header = Header::new(Algorithm::HS256);
            header.typ = Some(ACCESS_TYP.into());
            header.kid = Some(kid.clone());
            let mut c = claims(t, t + 900);
            c.iss = "gatehouse".into();
            c.aud = "api".into();
            jsonwebtoken::encode(
                &header,
                &c,
                &EncodingKey::from_secret(pair.public_pem.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(k.verify(&forged), Err(TokenError::AlgorithmMismatch));
        // Tampered payload: roles raised to admin.
        let token = k.sign(claims(t, t + 900)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        body["roles"] = json!(["admin"]);
        assert_eq!(
            k.verify(&format!("{}.{}.{}", parts[0], b64(&body), parts[2])),
            Err(TokenError::BadSignature)
        );
        // A gateway identity proof is not an access token.
        let minter =
            common::identity::ProofMinter::from_pem(&pair.private_pem, "gatehouse", 60).unwrap();
        let proof = minter
            .mint("api", &common::identity::Principal::Gateway)
            .unwrap();
        assert_eq!(k.verify(&proof), Err(TokenError::WrongType));
        // An opaque refresh token is not one either.
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        assert_eq!(
            k.verify(&URL_SAFE_NO_PAD.encode(raw)),
            Err(TokenError::Malformed)
        );
        // A critical extension we do not understand (RFC 7515 §4.1.11), even
        // with a valid signature over it.
        let crit = {
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = Some(ACCESS_TYP.into());
            header.kid = Some(kid.clone());
            let mut h = serde_json::to_value(&header).unwrap();
            h["crit"] = json!(["exp"]);
            let mut c = claims(t, t + 900);
            c.iss = "gatehouse".into();
            c.aud = "api".into();
            let signing_input = format!("{}.{}", b64(&h), b64(&serde_json::to_value(&c).unwrap()));
            let key = EncodingKey::from_ed_pem(pair.private_pem.as_bytes()).unwrap();
            let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::EdDSA)
                .unwrap();
            format!("{signing_input}.{sig}")
        };
        assert_eq!(k.verify(&crit), Err(TokenError::CriticalHeader));
        // Missing typ.
        let h = json!({"alg": "EdDSA", "kid": kid});
        assert_eq!(
            k.verify(&format!("{}.{}.{}", b64(&h), parts[1], parts[2])),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_jwks_lists_both() {
        let dir = tempfile::tempdir().unwrap();
        let old = common::keys::ensure_ed25519(dir.path(), "old").unwrap();
        let new = common::keys::ensure_ed25519(dir.path(), "new").unwrap();
        let cfg = |name: &str, active: bool| KeyConfig {
            alg: KeyAlg::EdDSA,
            kid: None,
            private_key_file: Some(dir.path().join(format!("{name}.key.pem"))),
            public_key_file: None,
            secret_file: None,
            active,
        };
        let before = TokenKeys::new(&[cfg("old", true)], None, "gatehouse", "api", 5).unwrap();
        let t = now();
        let token = before.sign(claims(t, t + 900)).unwrap();
        let mut retired = cfg("old", false);
        retired.private_key_file = None;
        retired.public_key_file = Some(dir.path().join("old.pub.pem"));
        let after =
            TokenKeys::new(&[cfg("new", true), retired], None, "gatehouse", "api", 5).unwrap();
        assert!(
            after.verify(&token).is_ok(),
            "a token of the retired key still verifies"
        );
        let fresh = after.sign(claims(t, t + 900)).unwrap();
        assert!(
            before.verify(&fresh).is_err(),
            "the old set does not know the new key"
        );
        let jwks = serde_json::to_value(after.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert_eq!(
                (
                    k["kty"].as_str(),
                    k["crv"].as_str(),
                    k["alg"].as_str(),
                    k["use"].as_str()
                ),
                (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
            );
            assert_eq!(
                URL_SAFE_NO_PAD
                    .decode(k["x"].as_str().unwrap())
                    .unwrap()
                    .len(),
                32
            );
        }
        let _ = (old, new);
    }

    #[test]
    fn hs256_only_explicitly_and_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "x".repeat(40)).unwrap();
        let hs = KeyConfig {
            alg: KeyAlg::HS256,
            kid: Some("hs1".into()),
            private_key_file: None,
            public_key_file: None,
            secret_file: Some(secret.clone()),
            active: true,
        };
        let k = TokenKeys::new(std::slice::from_ref(&hs), None, "gatehouse", "api", 5).unwrap();
        let t = now();
        assert!(k.verify(&k.sign(claims(t, t + 60)).unwrap()).is_ok());
        assert_eq!(k.jwks().keys, []);
        // Errors name the key and the reason.
        let e = |cfgs: &[KeyConfig]| {
            TokenKeys::new(cfgs, None, "i", "a", 5)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            e(&[KeyConfig {
                kid: None,
                ..hs.clone()
            }])
            .contains("explicit kid")
        );
        std::fs::write(&secret, "short").unwrap();
        assert!(e(std::slice::from_ref(&hs)).contains("at least 32 bytes"));
        std::fs::write(&secret, "x".repeat(40)).unwrap();
        assert!(
            e(&[
                hs.clone(),
                KeyConfig {
                    kid: Some("hs2".into()),
                    ..hs.clone()
                }
            ])
            .contains("more than one key")
        );
        assert!(
            e(&[KeyConfig {
                active: false,
                ..hs.clone()
            }])
            .contains("no key is marked active")
        );
        assert!(e(&[]).contains("no key configured"));
    }

    #[test]
    fn rs256_signs_verifies_and_publishes_n_and_e() {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rsa.pem");
        std::fs::write(&file, key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let cfg = KeyConfig {
            alg: KeyAlg::RS256,
            kid: None,
            private_key_file: Some(file),
            public_key_file: None,
            secret_file: None,
            active: true,
        };
        let k = TokenKeys::new(&[cfg], None, "gatehouse", "api", 5).unwrap();
        let t = now();
        let token = k.sign(claims(t, t + 60)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::RS256
        );
        assert!(k.verify(&token).is_ok());
        let jwks = serde_json::to_value(k.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str(), jwk["e"].as_str()),
            (Some("RSA"), Some("RS256"), Some("AQAB"))
        );
        // A third party verifies with the published JWK alone.
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["api"]);
        let dk = DecodingKey::from_jwk(&parsed).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &dk, &v).is_ok());
        // HS256 "signed" with the RSA public PEM is refused.
        let public_pem = rsa_public(&key.to_pkcs8_pem(LineEnding::LF).unwrap(), true)
            .unwrap()
            .0;
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some(ACCESS_TYP.into());
        h.kid = Some(k.active_kid().into());
        let forged = jsonwebtoken::encode(
            &h,
            &claims(t, t + 60),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(k.verify(&forged), Err(TokenError::AlgorithmMismatch));
    }

    /// Random bytes and random JWT-shaped strings never panic and never verify.
    #[test]
    fn random_input_is_refused_without_panicking() {
        let (k, _) = dev();
        let mut rng = rand::rng();
        let alphabet =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff";
        for i in 0..3000 {
            let len = rng.random_range(0..300);
            let s: String = if i % 2 == 0 {
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                    .collect()
            } else {
                let seg = |rng: &mut rand::rngs::ThreadRng| {
                    let mut b = vec![0u8; rng.random_range(0..80)];
                    rng.fill_bytes(&mut b);
                    URL_SAFE_NO_PAD.encode(b)
                };
                let h = if i % 3 == 0 {
                    b64(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": k.active_kid()}))
                } else {
                    seg(&mut rng)
                };
                format!("{h}.{}.{}", seg(&mut rng), seg(&mut rng))
            };
            assert!(k.verify(&s).is_err());
        }
    }
}
