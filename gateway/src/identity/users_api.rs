//! The gateway's calls to the users service on its own behalf (a proof
//! whose subject is the gateway): the credential check at login, the
//! re-read at refresh, the audit trail, and linking the accounts of
//! trusted identity providers' users.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use common::Problem;
use common::identity::Principal;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Identity;
use crate::identity::issuers::ExternalClaims;
use crate::traffic::upstream::client::{self, Body, Call, RetryPolicy, unavailable};

/// What the users service says about a user.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
    pub is_active: bool,
    /// A second factor is active: a login takes a code too.
    #[serde(default)]
    pub mfa_enabled: bool,
    /// For ID tokens and userinfo (`email`, `name`).
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

pub fn users_unavailable() -> HttpResponse {
    unavailable("users")
}

/// Call the users service on the gateway's own behalf (a proof whose
/// subject is the gateway). These calls only read, or (linking) can be
/// repeated with the same effect, so any failure is tried once more, on
/// another target when there is one.
pub async fn users_call(
    gw: &Identity,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), HttpResponse> {
    let live = gw.live.load_full();
    let upstream = live
        .upstreams
        .get(&gw.users_upstream)
        .ok_or_else(users_unavailable)?;
    let proof = gw
        .minter
        .headers(&gw.users_upstream, &Principal::Gateway)
        .map_err(|e| {
            tracing::error!(error = %e, "minting a gateway proof failed");
            Problem::internal().to_response()
        })?;
    let mut call = Call::new(upstream, method, path, &gw.metrics);
    call.retry = RetryPolicy::reads(upstream.spec.retries.max(1));
    let json = body.is_some();
    if let Some(b) = body {
        let bytes = serde_json::to_vec(&b).map_err(|_| Problem::internal().to_response())?;
        call.body = Body::Bytes(bytes.into());
    }
    let headers = || {
        let mut h = actix_web::http::header::HeaderMap::new();
        proof.insert_into(&mut h);
        if json {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(h)
    };
    let mut answer = client::send(call, &headers)
        .await
        .map_err(|e| e.dependency_unavailable())?;
    let status = answer.response.status();
    let value = answer
        .response
        .json::<Value>()
        .limit(64 * 1024)
        .await
        .unwrap_or(Value::Null);
    Ok((status, value))
}

/// An account re-read so changes apply now (a refresh, a browser session,
/// userinfo); `None`: gone or inactive, `Err`: 503.
pub(crate) async fn active_account(
    gw: &Identity,
    user: Uuid,
) -> Result<Option<Account>, HttpResponse> {
    let path = format!("/internal/users/{user}");
    let (status, value) = users_call(gw, Method::GET, &path, None).await?;
    match status {
        StatusCode::OK => match serde_json::from_value::<Account>(value) {
            Ok(i) if i.is_active => Ok(Some(i)),
            Ok(_) => Ok(None),
            Err(_) => Err(users_unavailable()),
        },
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(users_unavailable()),
    }
}

/// Why a linked account cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The account exists and is deactivated.
    Inactive,
    /// The users service could not be asked or refused the request.
    Unavailable(String),
}

/// The local account of a trusted provider's user: created on first use,
/// its roles set from the mapping (see the users service's
/// `/internal/links`).
pub async fn link(gw: &Identity, ext: &ExternalClaims) -> Result<Account, LinkError> {
    let body = json!({
        "issuer": ext.issuer,
        "subject": ext.subject,
        "username": ext.username,
        "email": ext.email,
        "roles": ext.roles,
    });
    let (status, value) = users_call(gw, Method::POST, "/internal/links", Some(body))
        .await
        .map_err(|res| LinkError::Unavailable(format!("status {}", res.status())))?;
    if status != StatusCode::OK {
        return Err(LinkError::Unavailable(format!(
            "the users service answered {status}: {value}"
        )));
    }
    let identity: Account = serde_json::from_value(value)
        .map_err(|e| LinkError::Unavailable(format!("unexpected answer: {e}")))?;
    if identity.is_active {
        Ok(identity)
    } else {
        Err(LinkError::Inactive)
    }
}
