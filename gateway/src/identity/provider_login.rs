//! Signing in through a trusted identity provider: the gateway as that
//! provider's OpenID Connect client (a relying party), with the
//! authorization code flow and every defence the current advice (RFC 9700)
//! asks for:
//!
//! * PKCE with S256 (RFC 7636), a `state` bound to the browser that started
//!   the sign-in (a cookie holds it; the callback must bring both), and a
//!   `nonce` the ID token must carry back;
//! * the issuer checked on the way back (RFC 9207 `iss`, required when the
//!   provider says it sends it), so an answer from one provider is never
//!   taken for another's (mix-up);
//! * the ID token verified with the provider's keys, as strictly as its
//!   access tokens (the issuers' `verify_id_token`), for this client.
//!
//! What is pending between the redirect and the callback lives in the
//! gateway's database (any replica may see the callback), single use and
//! for ten minutes at most; the state and verifier never leave it but to
//! the provider.

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::identity::opaque;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provider_logins")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        pub issuer: String,
        pub nonce: String,
        pub code_verifier: String,
        pub return_to: Option<String>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `trusted_issuers[].login`: the gateway's registration at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderLogin {
    /// The client id the provider gave the gateway.
    pub client_id: String,
    /// A file holding the client secret (read at each sign-in, so a
    /// rotated secret needs no restart).
    pub client_secret_file: std::path::PathBuf,
    /// The scopes asked for; `openid` is one of them.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The button says "Sign in with <display_name>".
    pub display_name: String,
    /// How long the provider's token endpoint may take to answer.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn default_timeout() -> u64 {
    5000
}

impl ProviderLogin {
    /// Check the entry (`at` names it in messages).
    pub fn check(&self, at: &str) -> Result<(), String> {
        let printable = |s: &str| s.chars().all(|c| !c.is_control());
        if self.client_id.is_empty() || self.client_id.len() > 255 || !printable(&self.client_id) {
            return Err(format!("{at}.client_id: 1 to 255 printable characters"));
        }
        if self.client_secret_file.as_os_str().is_empty() {
            return Err(format!("{at}.client_secret_file: name the file"));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!("{at}.scopes: `openid` must be one of them"));
        }
        // RFC 6749 section 3.3: NQCHAR, no spaces inside one.
        let nqchar = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        };
        if let Some(bad) = self.scopes.iter().find(|s| !nqchar(s)) {
            return Err(format!("{at}.scopes: `{bad}` is not a scope"));
        }
        let name = self.display_name.trim();
        if name.is_empty() || name.chars().count() > 64 || !printable(name) {
            return Err(format!("{at}.display_name: 1 to 64 printable characters"));
        }
        if self.timeout_ms == 0 {
            return Err(format!("{at}.timeout_ms: must be positive"));
        }
        Ok(())
    }
}

/// What the sign-in needs of the provider's discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    /// `authorization_response_iss_parameter_supported`: the callback must
    /// then carry `iss` (RFC 9207 section 2.4).
    pub sends_iss: bool,
}

impl Endpoints {
    /// From a discovery document (its issuer already checked).
    pub fn of(doc: &Map<String, Value>) -> Result<Self, String> {
        let url = |name: &str| -> Result<String, String> {
            let u = doc
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the discovery document has no `{name}`"))?;
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "https" | "http") && p.fragment().is_none() => {
                    Ok(u.to_owned())
                }
                _ => Err(format!("`{name}` is not an http(s) URL")),
            }
        };
        if let Some(methods) = doc
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
            && !methods.iter().any(|m| m == "S256")
        {
            return Err("the provider does not support PKCE with S256".into());
        }
        Ok(Self {
            authorization: url("authorization_endpoint")?,
            token: url("token_endpoint")?,
            sends_iss: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The authorization request (OpenID Connect Core section 3.1.2.1) the
/// browser is sent to.
pub fn authorization_url(
    endpoints: &Endpoints,
    login: &ProviderLogin,
    redirect_uri: &str,
    state: &str,
    flow: &Flow,
) -> Result<String, String> {
    let mut u = url::Url::parse(&endpoints.authorization).map_err(|e| e.to_string())?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &login.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &login.scopes.join(" "))
        .append_pair("state", state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge(&flow.verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(u.into())
}

/// The PKCE S256 challenge of a verifier (RFC 7636 section 4.2).
pub fn challenge(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// The token request's body (RFC 6749 section 4.1.3, RFC 7636 section 4.5).
pub fn token_request(code: &str, redirect_uri: &str, verifier: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_verifier", verifier)
        .finish()
}

/// `client_secret_basic` (RFC 6749 section 2.3.1): id and secret each
/// form-encoded, then Basic.
pub fn basic_credentials(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Why the token endpoint gave no ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// The provider refused (its OAuth `error` code).
    Refused(String),
    /// Not an answer the protocol allows.
    Unusable(String),
}

/// The ID token of a token response (RFC 6749 section 5.1 or 5.2).
pub fn id_token_of(status: u16, body: &[u8]) -> Result<String, TokenAnswer> {
    let v: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| TokenAnswer::Unusable(format!("status {status}, not a JSON object")))?;
    if status != 200 {
        let code = v.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(if code.is_empty() {
            TokenAnswer::Unusable(format!("status {status} without an OAuth error"))
        } else {
            TokenAnswer::Refused(code.chars().take(64).collect())
        });
    }
    let bearer = v
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
    match v.get("id_token").and_then(Value::as_str) {
        Some(t) if bearer && !t.is_empty() => Ok(t.to_owned()),
        _ => Err(TokenAnswer::Unusable(
            "no ID token of a Bearer answer".into(),
        )),
    }
}

/// The provider's `amr` (RFC 8176), kept as the browser session's methods:
/// words of at most 32 characters, at most 64 in all.
pub fn methods_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut len = 0;
    for m in claims
        .get("amr")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let word = !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_graphic());
        if word && !out.iter().any(|x| x == m) && len + m.len() + usize::from(len > 0) <= 64 {
            len += m.len() + usize::from(len > 0);
            out.push(m.to_owned());
        }
    }
    out
}

/// A sign-in waiting for the provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub issuer: String,
    pub nonce: String,
    pub verifier: String,
    pub return_to: Option<String>,
}

/// The pending sign-ins, in the gateway's database.
pub struct Flows {
    db: DatabaseConnection,
}

/// How long a sign-in may take at the provider.
pub const FLOW_TTL_SECS: i64 = 600;

impl Flows {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// A new sign-in through `issuer`: its state (for the URL and the
    /// browser's cookie) and what the callback will need.
    pub async fn start(
        &self,
        issuer: &str,
        return_to: Option<&str>,
    ) -> Result<(String, Flow), DbErr> {
        let now = Utc::now();
        // Housekeeping: sign-ins abandoned at the provider.
        entity::Entity::delete_many()
            .filter(entity::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let state = opaque::new_value();
        let flow = Flow {
            issuer: issuer.to_owned(),
            nonce: opaque::new_value(),
            verifier: opaque::new_value(),
            return_to: return_to.map(str::to_owned),
        };
        entity::Entity::insert(entity::ActiveModel {
            state_hash: Set(opaque::digest(&state)),
            issuer: Set(flow.issuer.clone()),
            nonce: Set(flow.nonce.clone()),
            code_verifier: Set(flow.verifier.clone()),
            return_to: Set(flow.return_to.clone()),
            created_at: Set(now),
            expires_at: Set(now + Duration::seconds(FLOW_TTL_SECS)),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok((state, flow))
    }

    /// The sign-in `state` names, taken: a second callback with it finds
    /// nothing, whichever replica it reaches.
    pub async fn take(&self, state: &str) -> Result<Option<Flow>, DbErr> {
        if state.len() != 43 {
            return Ok(None);
        }
        let hash = opaque::digest(state);
        let Some(m) = entity::Entity::find_by_id(hash.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let gone = entity::Entity::delete_many()
            .filter(entity::Column::StateHash.eq(hash))
            .exec(&self.db)
            .await?;
        if gone.rows_affected != 1 || m.expires_at <= Utc::now() {
            return Ok(None);
        }
        Ok(Some(Flow {
            issuer: m.issuer,
            nonce: m.nonce,
            verifier: m.code_verifier,
            return_to: m.return_to,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login() -> ProviderLogin {
        serde_json::from_value(json!({
            "client_id": "gatehouse",
            "client_secret_file": "/run/secrets/idp",
            "display_name": "Acme SSO",
        }))
        .unwrap()
    }

    #[test]
    fn the_entry_is_checked() {
        assert!(login().check("l").is_ok());
        let mut l = login();
        l.scopes = vec!["profile".into()];
        assert!(l.check("l").unwrap_err().contains("openid"));
        l.scopes = vec!["openid".into(), "a b".into()];
        assert!(l.check("l").unwrap_err().contains("`a b`"));
        let mut l = login();
        l.display_name = " ".into();
        assert!(l.check("l").unwrap_err().contains("display_name"));
        let mut l = login();
        l.client_id = String::new();
        assert!(l.check("l").is_err());
    }

    #[test]
    fn pkce_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn client_credentials_are_form_encoded_then_basic() {
        use base64::Engine as _;
        let b = basic_credentials("a:b", "s p%");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "a%3Ab:s+p%25");
    }

    #[test]
    fn endpoints_come_from_the_document() {
        let doc = |v: Value| v.as_object().unwrap().clone();
        let e = Endpoints::of(&doc(json!({
            "authorization_endpoint": "https://idp/auth",
            "token_endpoint": "https://idp/token",
            "authorization_response_iss_parameter_supported": true,
        })))
        .unwrap();
        assert!(e.sends_iss);
        assert!(
            Endpoints::of(&doc(json!({"authorization_endpoint": "https://idp/auth"})))
                .unwrap_err()
                .contains("token_endpoint")
        );
        assert!(
            Endpoints::of(&doc(json!({
                "authorization_endpoint": "javascript:x", "token_endpoint": "https://idp/t"
            })))
            .is_err()
        );
        assert!(
            Endpoints::of(&doc(json!({
                "authorization_endpoint": "https://idp/a", "token_endpoint": "https://idp/t",
                "code_challenge_methods_supported": ["plain"],
            })))
            .unwrap_err()
            .contains("S256")
        );
    }

    #[test]
    fn token_answers_are_read_to_the_letter() {
        let ok = br#"{"access_token":"a","token_type":"bearer","id_token":"x.y.z"}"#;
        assert_eq!(id_token_of(200, ok).unwrap(), "x.y.z");
        assert_eq!(
            id_token_of(400, br#"{"error":"invalid_grant"}"#),
            Err(TokenAnswer::Refused("invalid_grant".into()))
        );
        assert!(matches!(
            id_token_of(200, br#"{"access_token":"a","token_type":"bearer"}"#),
            Err(TokenAnswer::Unusable(_))
        ));
        assert!(matches!(
            id_token_of(200, br#"{"id_token":"x","token_type":"mac"}"#),
            Err(TokenAnswer::Unusable(_))
        ));
        assert!(matches!(
            id_token_of(502, b"<html>"),
            Err(TokenAnswer::Unusable(_))
        ));
    }

    #[test]
    fn provider_methods_are_kept_within_the_column() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            methods_of(&c(json!({"amr": ["pwd", "otp", "pwd", "has space", 3]}))),
            vec!["pwd", "otp"]
        );
        let many: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
        let kept = methods_of(&c(json!({ "amr": many })));
        assert!(kept.join(" ").len() <= 64);
        assert!(methods_of(&c(json!({"amr": "pwd"}))).is_empty());
    }
}
