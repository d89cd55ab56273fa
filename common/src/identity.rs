//! Trusted identity between the gateway and the services.
//!
//! Only the gateway verifies user tokens. For every request it forwards, it
//! sets `request-user-id` and `request-user-roles` and attaches a short-lived
//! *proof*: an EdDSA JWT it signs with `iss` = gateway, `aud` = the target
//! service, `sub` = the user id (or the gateway's own name for calls made on
//! its own behalf), `roles`, and a lifetime of at most 60 s, in
//! `x-gateway-token`. A service believes the identity headers only when the
//! proof verifies against the gateway's public key and matches them exactly.
//!
//! [`ProofMinter`] is the gateway side (with a cache so a proof is signed once
//! per user, roles and service while it has most of its lifetime left);
//! [`Caller`] and [`GatewayCall`] are the service-side actix extractors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{Ready, ready};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{self, KeyError};
use crate::problem::Problem;

/// The user id the gateway vouches for.
pub const USER_ID_HEADER: &str = "request-user-id";
/// The user's roles, comma-separated.
pub const USER_ROLES_HEADER: &str = "request-user-roles";
/// `client` when the caller is a machine client (then `request-user-id` is
/// the client's principal id); absent for an end user.
pub const PRINCIPAL_KIND_HEADER: &str = "request-principal-kind";
/// The gateway's signed proof.
pub const PROOF_HEADER: &str = "x-gateway-token";
/// JOSE `typ` of a proof, so no other JWT can stand in for one.
pub const PROOF_TYP: &str = "gw-proof+jwt";
/// Upper bound on a proof's lifetime.
pub const MAX_PROOF_TTL_SECS: i64 = 60;
/// Clock skew tolerated between gateway and service.
pub const LEEWAY_SECS: u64 = 5;
/// Sent by the users service on an answer that changed an account so that
/// its sessions must end (deactivation, deletion, a role taken away, a new
/// password): `<user id>`, or `<user id>; keep=current` to end all but the
/// session of the request's caller. Only the gateway reads it, only from the
/// users upstream, and it never reaches a client.
pub const REVOKE_SESSIONS_HEADER: &str = "x-gatehouse-revoke-sessions";
/// Sent by the users service when a request made it check the caller's
/// password: `passed` or `failed`. The gateway counts a failure toward the
/// same lockout as a failed login, and strips the header.
pub const CREDENTIAL_CHECK_HEADER: &str = "x-gatehouse-credential-check";
/// Set by the gateway on a request that may make the users service check
/// the caller's password while the caller's password budget is spent: the
/// seconds until it returns. The service then answers 429 instead of
/// checking. Clients cannot send it (the gateway strips it).
pub const CREDENTIAL_LOCKED_HEADER: &str = "x-gatehouse-credential-locked";
/// Headers the services send only to the gateway.
pub const GATEWAY_ONLY_RESPONSE_HEADERS: [&str; 2] =
    [REVOKE_SESSIONS_HEADER, CREDENTIAL_CHECK_HEADER];
/// The role that unlocks administration.
pub const ADMIN_ROLE: &str = "admin";

/// Claims of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// `client` for a machine client; absent for an end user or the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Forwarded token claims: header name -> the exact value the request
    /// carries under it (`forward_claims` at the gateway). A service trusts
    /// such a header only through this.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// On whose behalf a request is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An end user, authenticated by the gateway.
    User { id: Uuid, roles: Vec<String> },
    /// A machine client (OAuth 2.0 client credentials): its principal id and
    /// the roles its registration gives it.
    Client { id: Uuid, roles: Vec<String> },
    /// The gateway itself (e.g. the credential check at login).
    Gateway,
}

/// Why a proof was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("missing gateway proof")]
    Missing,
    #[error("invalid gateway proof: {0}")]
    Invalid(String),
    #[error("identity headers do not match the gateway proof")]
    Mismatch,
    #[error("signing failed: {0}")]
    Signing(String),
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A username as both the users service and the gateway compare it:
/// Unicode compatibility normalisation (NFKC, so a full-width `ａｄｍｉｎ` is
/// `admin`), surrounding whitespace dropped, lower case. The users service
/// stores and looks up this form; the gateway counts login failures under
/// it, so `Admin`, ` admin` and `admin` share one counter.
pub fn canonical_username(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let normalised: String = raw.nfkc().collect();
    normalised.trim().to_lowercase()
}

/// A role name is plain so it can travel in a comma-separated header.
pub fn is_valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------- minting

/// Audience, principal, forwarded claims (header, value).
type CacheKey = (String, Principal, Vec<(String, String)>);

/// Gateway side: signs proofs, reusing one per (service, principal) while it
/// has at least half its lifetime left.
pub struct ProofMinter {
    key: EncodingKey,
    kid: String,
    issuer: String,
    ttl: i64,
    cache: Mutex<HashMap<CacheKey, Minted, foldhash::fast::RandomState>>,
}

const MINT_CACHE_CAP: usize = 100_000;

impl ProofMinter {
    /// From a PKCS#8 Ed25519 private key; the lifetime is clamped to 1..=60 s.
    pub fn from_pem(private_pem: &str, issuer: &str, ttl_secs: i64) -> Result<Self, KeyError> {
        let public = keys::public_pem_from_private(private_pem, "gateway proof signing key")?;
        let kid = keys::key_id(&keys::public_key_bytes(&public, "gateway proof key")?);
        let key =
            EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|e| KeyError::Parse {
                what: "gateway proof signing key".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            key,
            kid,
            issuer: issuer.to_owned(),
            ttl: ttl_secs.clamp(1, MAX_PROOF_TTL_SECS),
            cache: Mutex::new(HashMap::default()),
        })
    }

    /// The issuer name proofs carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Sign arbitrary proof claims with the gateway key. The building block
    /// of [`ProofMinter::mint`]; tests use it to make expired or mis-addressed
    /// proofs exactly as the gateway would sign them.
    pub fn sign_claims(&self, claims: &ProofClaims) -> Result<String, ProofError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(PROOF_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| ProofError::Signing(e.to_string()))
    }

    /// A proof for `audience` on behalf of `principal`, from the cache when a
    /// fresh enough one exists.
    pub fn mint(&self, audience: &str, principal: &Principal) -> Result<Arc<str>, ProofError> {
        self.minted(audience, principal, &[]).map(|m| m.token)
    }

    /// The identity headers for a request to `audience` on behalf of
    /// `principal`: the proof, and for a user its id and roles. The one
    /// encoding of identity on the wire; values are built once per cached
    /// proof, so cloning them later is a reference count.
    pub fn headers(
        &self,
        audience: &str,
        principal: &Principal,
    ) -> Result<ProofHeaders, ProofError> {
        self.minted(audience, principal, &[]).map(|m| m.headers)
    }

    /// The same, with token claims forwarded as headers (lower-case name,
    /// value), each covered by the proof.
    pub fn headers_with_claims(
        &self,
        audience: &str,
        principal: &Principal,
        claims: &[(String, String)],
    ) -> Result<ProofHeaders, ProofError> {
        self.minted(audience, principal, claims).map(|m| m.headers)
    }

    fn minted(
        &self,
        audience: &str,
        principal: &Principal,
        forwarded: &[(String, String)],
    ) -> Result<Minted, ProofError> {
        let t = now();
        let key = (audience.to_owned(), principal.clone(), forwarded.to_vec());
        if let Ok(cache) = self.cache.lock()
            && let Some(m) = cache.get(&key)
            && m.exp - t >= self.ttl / 2
        {
            return Ok(m.clone());
        }
        let (sub, roles, kind) = match principal {
            Principal::User { id, roles } => (id.to_string(), roles.clone(), None),
            Principal::Client { id, roles } => {
                (id.to_string(), roles.clone(), Some(CLIENT_KIND.to_owned()))
            }
            Principal::Gateway => (self.issuer.clone(), Vec::new(), None),
        };
        let claims = ProofClaims {
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            sub,
            roles,
            iat: t,
            nbf: t,
            exp: t + self.ttl,
            kind,
            claims: forwarded.iter().cloned().collect(),
        };
        let signed = self.sign_claims(&claims)?;
        let bad =
            |e: actix_web::http::header::InvalidHeaderValue| ProofError::Signing(e.to_string());
        let user = match principal {
            Principal::User { id, roles } | Principal::Client { id, roles } => Some((
                HeaderValue::from_str(&id.to_string()).map_err(bad)?,
                HeaderValue::from_str(&roles.join(",")).map_err(bad)?,
            )),
            Principal::Gateway => None,
        };
        let mut claim_headers = Vec::with_capacity(forwarded.len());
        for (name, value) in forwarded {
            claim_headers.push((
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| ProofError::Signing(e.to_string()))?,
                HeaderValue::from_str(value).map_err(bad)?,
            ));
        }
        let minted = Minted {
            headers: ProofHeaders {
                proof: HeaderValue::from_str(&signed).map_err(bad)?,
                user,
                client: matches!(principal, Principal::Client { .. }),
                claims: claim_headers,
            },
            token: signed.into(),
            exp: claims.exp,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MINT_CACHE_CAP {
                cache.retain(|_, m| m.exp - t >= self.ttl / 2);
                if cache.len() >= MINT_CACHE_CAP {
                    cache.clear();
                }
            }
            cache.insert(key, minted.clone());
        }
        Ok(minted)
    }
}

/// A minted proof: as text, as headers, and its expiry.
#[derive(Clone)]
struct Minted {
    token: Arc<str>,
    headers: ProofHeaders,
    exp: i64,
}

/// The `kind` claim and header value of a machine client.
pub const CLIENT_KIND: &str = "client";

/// The subject of the client certificate the gateway verified (mTLS at
/// its listener), forwarded under the proof.
pub const CLIENT_CERT_SUBJECT_HEADER: &str = "request-client-cert-subject";

/// The headers that carry identity from the gateway to a service.
pub const IDENTITY_HEADERS: [&str; 5] = [
    USER_ID_HEADER,
    USER_ROLES_HEADER,
    PROOF_HEADER,
    PRINCIPAL_KIND_HEADER,
    CLIENT_CERT_SUBJECT_HEADER,
];

/// The identity headers of one request, ready to send: the proof and, for a
/// user, `request-user-id` and `request-user-roles`.
#[derive(Debug, Clone)]
pub struct ProofHeaders {
    proof: HeaderValue,
    user: Option<(HeaderValue, HeaderValue)>,
    /// The principal is a machine client (`request-principal-kind: client`).
    client: bool,
    /// Forwarded token claims, as the proof names them.
    claims: Vec<(HeaderName, HeaderValue)>,
}

impl ProofHeaders {
    /// Each header as a name and value.
    pub fn pairs(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        static CLIENT: HeaderValue = HeaderValue::from_static(CLIENT_KIND);
        std::iter::once((HeaderName::from_static(PROOF_HEADER), &self.proof))
            .chain(self.user.iter().flat_map(|(id, roles)| {
                [
                    (HeaderName::from_static(USER_ID_HEADER), id),
                    (HeaderName::from_static(USER_ROLES_HEADER), roles),
                ]
            }))
            .chain(
                self.client
                    .then(|| (HeaderName::from_static(PRINCIPAL_KIND_HEADER), &CLIENT)),
            )
            .chain(self.claims.iter().map(|(n, v)| (n.clone(), v)))
    }

    /// Set them in `headers`, replacing whatever was there under these
    /// names (a gateway principal leaves no user headers behind).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if self.user.is_none() {
            headers.remove(USER_ID_HEADER);
            headers.remove(USER_ROLES_HEADER);
        }
        if !self.client {
            headers.remove(PRINCIPAL_KIND_HEADER);
        }
        for (name, value) in self.pairs() {
            headers.insert(name, value.clone());
        }
    }
}

// ------------------------------------------------------------ verification

/// Service side settings (`gateway_proof` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSettings {
    /// Expected `iss`.
    pub issuer: String,
    /// This service's name, the expected `aud`.
    pub audience: String,
    /// Public key files; empty means `<data_dir>/keys/gateway-proof.pub.pem`.
    /// List several to accept proofs from a rotated key.
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    /// A public key as PEM text (e.g. from the environment); added to the files.
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

/// File name stem of the gateway's proof key pair under `<data_dir>/keys`.
pub const PROOF_KEY_NAME: &str = "gateway-proof";

impl ProofSettings {
    /// Build the verifier, reading the key files.
    pub fn verifier(&self, data_dir: &Path) -> Result<ProofVerifier, KeyError> {
        let mut pems = Vec::new();
        let files = if self.public_key_files.is_empty() && self.public_key_pem.is_none() {
            vec![
                data_dir
                    .join("keys")
                    .join(format!("{PROOF_KEY_NAME}.pub.pem")),
            ]
        } else {
            self.public_key_files.clone()
        };
        for f in &files {
            pems.push(keys::read_pem(f)?);
        }
        if let Some(p) = &self.public_key_pem {
            pems.push(p.clone());
        }
        ProofVerifier::new(&pems, &self.issuer, &self.audience)
    }
}

/// Verifies proofs addressed to one service.
pub struct ProofVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
}

impl ProofVerifier {
    pub fn new(public_pems: &[String], issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let mut keys_by_id = HashMap::new();
        for (i, pem) in public_pems.iter().enumerate() {
            let what = format!("gateway proof public key #{}", i + 1);
            let kid = keys::key_id(&keys::public_key_bytes(pem, &what)?);
            let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| KeyError::Parse {
                what,
                reason: e.to_string(),
            })?;
            keys_by_id.insert(kid, key);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            keys: keys_by_id,
            validation,
            issuer: issuer.to_owned(),
        })
    }

    /// Verify one proof token.
    pub fn verify(&self, token: &str) -> Result<ProofClaims, ProofError> {
        let invalid = |m: &str| ProofError::Invalid(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(PROOF_TYP) {
            return Err(invalid("wrong algorithm or type"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.keys.get(&kid).ok_or_else(|| invalid("unknown key"))?;
        let data = jsonwebtoken::decode::<ProofClaims>(token, key, &self.validation)
            .map_err(|e| ProofError::Invalid(e.to_string()))?;
        let c = data.claims;
        let leeway = LEEWAY_SECS as i64;
        if c.exp - c.iat > MAX_PROOF_TTL_SECS || c.iat > now() + leeway {
            return Err(invalid("lifetime out of bounds"));
        }
        Ok(c)
    }

    /// Verify the proof of a request and check it matches the identity headers.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, ProofError> {
        self.identity(headers).map(|(p, _)| p)
    }

    /// The same, with the forwarded token claims the proof covers (header
    /// name -> value), each checked against its header.
    pub fn identity(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Principal, BTreeMap<String, String>), ProofError> {
        let mut proofs = headers.get_all(PROOF_HEADER);
        let token = proofs.next().ok_or(ProofError::Missing)?;
        if proofs.next().is_some() {
            return Err(ProofError::Invalid("several proofs".into()));
        }
        let token = token
            .to_str()
            .map_err(|_| ProofError::Invalid("not text".into()))?;
        let claims = self.verify(token)?;
        let single = |name: &str| -> Result<Option<String>, ProofError> {
            let mut values = headers.get_all(name);
            let first = values.next();
            if values.next().is_some() {
                return Err(ProofError::Mismatch);
            }
            first
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| ProofError::Mismatch)
                })
                .transpose()
        };
        let user_header = single(USER_ID_HEADER)?;
        let roles_header = single(USER_ROLES_HEADER)?;
        let kind_header = single(PRINCIPAL_KIND_HEADER)?;
        if kind_header != claims.kind {
            return Err(ProofError::Mismatch);
        }
        for (name, value) in &claims.claims {
            if single(name)?.as_deref() != Some(value.as_str()) {
                return Err(ProofError::Mismatch);
            }
        }
        if claims.sub == self.issuer {
            if user_header.is_some()
                || roles_header.is_some()
                || claims.kind.is_some()
                || !claims.claims.is_empty()
            {
                return Err(ProofError::Mismatch);
            }
            return Ok((Principal::Gateway, BTreeMap::new()));
        }
        let id = Uuid::parse_str(&claims.sub).map_err(|_| ProofError::Invalid("subject".into()))?;
        if user_header.as_deref() != Some(claims.sub.as_str())
            || roles_header.as_deref() != Some(claims.roles.join(",").as_str())
        {
            return Err(ProofError::Mismatch);
        }
        let principal = match claims.kind.as_deref() {
            None => Principal::User {
                id,
                roles: claims.roles,
            },
            Some(CLIENT_KIND) => Principal::Client {
                id,
                roles: claims.roles,
            },
            Some(_) => return Err(ProofError::Invalid("unknown principal kind".into())),
        };
        Ok((principal, claims.claims))
    }
}

fn principal_of(req: &HttpRequest) -> Result<(Principal, BTreeMap<String, String>), Problem> {
    let verifier = req.app_data::<web::Data<ProofVerifier>>().ok_or_else(|| {
        tracing::error!("ProofVerifier missing from app data");
        Problem::internal()
    })?;
    verifier.identity(req.headers()).map_err(|e| {
        tracing::debug!(reason = %e, "gateway proof refused");
        Problem::unauthorized(format!(
            "{e}: this service is reachable only through the gateway"
        ))
    })
}

/// The caller on whose behalf the gateway forwarded the request: an end
/// user, or a machine client (`client`), each with its id and roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Uuid,
    pub roles: Vec<String>,
    /// A machine client rather than a person.
    pub client: bool,
    /// Token claims the gateway forwarded (`forward_claims`), by header
    /// name, as the proof covers them: the only way a service should read
    /// such a header.
    pub claims: BTreeMap<String, String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }

    /// A forwarded claim by its header name (`x-user-email`), when the
    /// gateway's proof covers it.
    pub fn claim(&self, header: &str) -> Option<&str> {
        self.claims.get(header).map(String::as_str)
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Problem::forbidden("this operation needs the admin role"))
        }
    }
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(principal_of(req).and_then(|(p, claims)| match p {
            Principal::User { id, roles } => Ok(Caller {
                id,
                roles,
                client: false,
                claims,
            }),
            Principal::Client { id, roles } => Ok(Caller {
                id,
                roles,
                client: true,
                claims,
            }),
            Principal::Gateway => Err(Problem::unauthorized("this operation needs an end user")),
        }))
    }
}

/// An end user holding the admin role; anyone else gets 403 before the
/// handler (and its body extraction) runs.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequest for Admin {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = match Caller::from_request(req, payload).into_inner() {
            Ok(c) => c,
            Err(e) => return ready(Err(e)),
        };
        ready(caller.require_admin().map(|()| Admin(caller)))
    }
}

/// A call the gateway makes on its own behalf (internal endpoints).
#[derive(Debug, Clone, Copy)]
pub struct GatewayCall;

impl FromRequest for GatewayCall {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(principal_of(req).and_then(|(p, _)| match p {
            Principal::Gateway => Ok(GatewayCall),
            Principal::User { .. } | Principal::Client { .. } => {
                Err(Problem::forbidden("internal endpoint"))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (ProofMinter, ProofVerifier) {
        let k = keys::generate_ed25519().unwrap_or_else(|e| panic!("{e}"));
        let m =
            ProofMinter::from_pem(&k.private_pem, "gateway", 60).unwrap_or_else(|e| panic!("{e}"));
        let v = ProofVerifier::new(&[k.public_pem], "gateway", "users")
            .unwrap_or_else(|e| panic!("{e}"));
        (m, v)
    }

    fn user() -> Principal {
        Principal::User {
            id: Uuid::new_v4(),
            roles: vec!["user".into(), "admin".into()],
        }
    }

    #[test]
    fn usernames_compare_as_the_users_service_stores_them() {
        for raw in [
            "admin",
            "Admin",
            " admin",
            "ADMIN\t",
            "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
        ] {
            assert_eq!(canonical_username(raw), "admin", "{raw:?}");
        }
        assert_ne!(canonical_username("ad min"), "admin");
    }

    #[test]
    fn round_trip_and_cache() {
        let (m, v) = pair();
        let p = user();
        let mut h = HeaderMap::new();
        m.headers("users", &p)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        assert_eq!(v.principal(&h).ok(), Some(p.clone()));
        let a = m.mint("users", &p).ok();
        let b = m.mint("users", &p).ok();
        assert_eq!(a, b, "a fresh proof is reused");
        let names: Vec<String> = m
            .headers("users", &p)
            .unwrap_or_else(|e| panic!("{e}"))
            .pairs()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, [PROOF_HEADER, USER_ID_HEADER, USER_ROLES_HEADER]);
        let mut g = HeaderMap::new();
        m.headers("users", &Principal::Gateway)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut g);
        assert_eq!(v.principal(&g).ok(), Some(Principal::Gateway));
    }

    #[test]
    fn a_machine_client_is_told_apart_from_a_user() {
        let (m, v) = pair();
        let id = Uuid::new_v4();
        let client = Principal::Client {
            id,
            roles: vec!["user".into()],
        };
        let mut h = HeaderMap::new();
        m.headers("users", &client)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        assert_eq!(
            h.get(PRINCIPAL_KIND_HEADER).map(|v| v.as_bytes()),
            Some(&b"client"[..])
        );
        assert_eq!(v.principal(&h).ok(), Some(client.clone()));
        // The same proof without the kind header (or a user's with one) is refused.
        let mut stripped = h.clone();
        stripped.remove(PRINCIPAL_KIND_HEADER);
        assert!(matches!(v.principal(&stripped), Err(ProofError::Mismatch)));
        let user = Principal::User {
            id,
            roles: vec!["user".into()],
        };
        let mut u = HeaderMap::new();
        m.headers("users", &user)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut u);
        assert!(u.get(PRINCIPAL_KIND_HEADER).is_none());
        u.insert(
            HeaderName::from_static(PRINCIPAL_KIND_HEADER),
            HeaderValue::from_static("client"),
        );
        assert!(matches!(v.principal(&u), Err(ProofError::Mismatch)));
        // Inserting a user's headers over a client's leaves no kind behind.
        m.headers("users", &user)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        assert_eq!(v.principal(&h).ok(), Some(user));
    }

    #[test]
    fn forwarded_claims_are_covered_by_the_proof() {
        let (m, v) = pair();
        let user = user();
        let claims = vec![("x-user-email".to_owned(), "a@idp.test".to_owned())];
        let mut h = HeaderMap::new();
        m.headers_with_claims("users", &user, &claims)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        assert_eq!(
            h.get("x-user-email").map(|v| v.as_bytes()),
            Some(&b"a@idp.test"[..])
        );
        let (p, got) = v.identity(&h).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, user);
        assert_eq!(
            got.get("x-user-email").map(String::as_str),
            Some("a@idp.test")
        );
        // Changed, doubled or dropped: refused.
        let mut changed = h.clone();
        changed.insert(
            HeaderName::from_static("x-user-email"),
            HeaderValue::from_static("admin@corp.test"),
        );
        assert!(matches!(v.identity(&changed), Err(ProofError::Mismatch)));
        let mut doubled = h.clone();
        doubled.append(
            HeaderName::from_static("x-user-email"),
            HeaderValue::from_static("a@idp.test"),
        );
        assert!(matches!(v.identity(&doubled), Err(ProofError::Mismatch)));
        let mut dropped = h.clone();
        dropped.remove("x-user-email");
        assert!(matches!(v.identity(&dropped), Err(ProofError::Mismatch)));
        // Without claims, the cached proof of the same user names none.
        let mut plain = HeaderMap::new();
        m.headers("users", &user)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut plain);
        let (_, none) = v.identity(&plain).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty());
    }

    #[test]
    fn refusals() {
        let (m, v) = pair();
        let p = user();
        // wrong audience
        let mut h = HeaderMap::new();
        m.headers("orders", &p)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        assert!(matches!(v.principal(&h), Err(ProofError::Invalid(_))));
        // swapped user id
        let mut h = HeaderMap::new();
        m.headers("users", &p)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        h.insert(
            HeaderName::from_static(USER_ID_HEADER),
            HeaderValue::from_static("00000000-0000-0000-0000-000000000001"),
        );
        assert!(matches!(v.principal(&h), Err(ProofError::Mismatch)));
        // added role
        let mut h = HeaderMap::new();
        m.headers(
            "users",
            &Principal::User {
                id: Uuid::new_v4(),
                roles: vec!["user".into()],
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .insert_into(&mut h);
        h.insert(
            HeaderName::from_static(USER_ROLES_HEADER),
            HeaderValue::from_static("user,admin"),
        );
        assert!(matches!(v.principal(&h), Err(ProofError::Mismatch)));
        // missing
        assert!(matches!(
            v.principal(&HeaderMap::new()),
            Err(ProofError::Missing)
        ));
        // expired, and too long-lived
        let t = now();
        for (iat, exp) in [(t - 200, t - 100), (t, t + 3600)] {
            let c = ProofClaims {
                iss: "gateway".into(),
                aud: "users".into(),
                sub: Uuid::new_v4().to_string(),
                roles: vec![],
                iat,
                nbf: iat,
                exp,
                kind: None,
                claims: BTreeMap::new(),
            };
            let tok = m.sign_claims(&c).unwrap_or_default();
            assert!(v.verify(&tok).is_err());
        }
        // another key
        let (other, _) = pair();
        let tok = other
            .mint("users", &Principal::Gateway)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.verify(&tok).is_err());
        // the gateway principal cannot carry a user header
        let mut h = HeaderMap::new();
        m.headers("users", &Principal::Gateway)
            .unwrap_or_else(|e| panic!("{e}"))
            .insert_into(&mut h);
        h.insert(
            HeaderName::from_static(USER_ID_HEADER),
            HeaderValue::from_static("00000000-0000-0000-0000-000000000001"),
        );
        assert!(v.principal(&h).is_err());
    }
}
