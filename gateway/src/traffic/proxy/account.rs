//! Phases around the upstream call that keep accounts and sessions in
//! step with what the users service did.
//!
//! - [`reserve`], before the call, on a route marked `credential_check`: the
//!   request may make the service check the caller's password, so it takes
//!   a login attempt for the caller's username first; when the budget is
//!   spent the request still goes, marked `x-gatehouse-credential-locked`,
//!   and the service answers 429 if (and only if) it would check a password;
//! - [`settle`], after it: the service's `x-gatehouse-credential-check`
//!   (`passed` / `failed`) settles that attempt; no header, no verdict;
//! - [`end_sessions`], on an answer of the users upstream carrying
//!   `x-gatehouse-revoke-sessions`: the account's sessions end before the
//!   answer leaves (all of them, or all but the caller's), on every replica.
//!
//! Both headers are the services' words to the gateway only: the response
//! filter never lets them reach a client, and only the users upstream's are
//! believed.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use common::Problem;
use common::identity::{
    CREDENTIAL_CHECK_HEADER, CREDENTIAL_LOCKED_HEADER, REVOKE_SESSIONS_HEADER, canonical_username,
};
use uuid::Uuid;

use super::context::Ctx;
use crate::identity::Identity;
use crate::identity::login_limits::{Outcome, Reservation};

/// What the credential reservation decided.
#[derive(Debug, Default)]
pub struct Credential {
    reservation: Option<Reservation>,
    username: String,
    client: Option<String>,
    /// The budget is spent for this many seconds: the request goes on, and
    /// the service refuses (429) if it would have to check the password.
    locked: Option<u64>,
}

impl Credential {
    /// An attempt was reserved, so the answer settles it.
    pub fn is_reserved(&self) -> bool {
        self.reservation.is_some()
    }

    /// Tell the service when its password check is not allowed.
    pub fn mark(&self, h: &mut HeaderMap) {
        if let Some(secs) = self.locked {
            h.insert(
                header::HeaderName::from_static(CREDENTIAL_LOCKED_HEADER),
                HeaderValue::from(secs),
            );
        }
    }
}

/// Whether the request takes a credential reservation: a `credential_check`
/// route with a caller.
pub fn reserves(ctx: &Ctx<'_>) -> bool {
    ctx.route.credential_check && ctx.caller.is_some()
}

/// Phase: credential reservation (see the module doc).
pub async fn reserve(gw: &Identity, ctx: &Ctx<'_>) -> Credential {
    let (true, Some(caller)) = (ctx.route.credential_check, &ctx.caller) else {
        return Credential::default();
    };
    let key = canonical_username(caller.username());
    match gw.user_limiter.reserve(gw.redis.as_ref(), &key).await {
        Ok(r) => Credential {
            reservation: Some(r),
            locked: None,
            username: key,
            client: ctx.client.map(|a| a.to_string()),
        },
        Err(secs) => Credential {
            reservation: None,
            locked: Some(secs),
            username: key,
            client: ctx.client.map(|a| a.to_string()),
        },
    }
}

/// Phase: credential settlement, from the service's answer (`None`: no
/// answer came).
pub async fn settle(gw: &Identity, mut credential: Credential, answer: Option<&HeaderMap>) {
    let Some(r) = credential.reservation.take() else {
        return;
    };
    let outcome = match answer
        .and_then(|h| h.get(CREDENTIAL_CHECK_HEADER))
        .and_then(|v| v.to_str().ok())
    {
        Some("failed") => Outcome::Failed,
        Some("passed") => Outcome::Passed,
        _ => Outcome::Void,
    };
    gw.user_limiter.settle(gw.redis.as_ref(), r, outcome).await;
    if outcome != Outcome::Void {
        let failed = outcome == Outcome::Failed;
        gw.audit.record(
            common::audit::Event::new("password.check", if failed { "failure" } else { "success" })
                .subject(credential.username)
                .client(credential.client)
                .detail("the current password, checked for an account change"),
        );
    }
}

/// What `x-gatehouse-revoke-sessions` asks: whose sessions, and whether the
/// caller's own stays.
fn parse_revoke(value: &str) -> Option<(Uuid, bool)> {
    let mut parts = value.split(';').map(str::trim);
    let user = Uuid::parse_str(parts.next()?).ok()?;
    let keep_current = parts.any(|p| p.eq_ignore_ascii_case("keep=current"));
    Some((user, keep_current))
}

/// What an answer of the users upstream asks of the gateway's sessions:
/// the account whose sessions end, and whether the caller's own stays.
/// `None` for every other answer (nearly all of them).
pub fn revoke_asked(gw: &Identity, ctx: &Ctx<'_>, head: &HeaderMap) -> Option<(Uuid, bool)> {
    if ctx.route.upstream != gw.users_upstream {
        return None;
    }
    head.get(REVOKE_SESSIONS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_revoke)
}

/// Phase: end sessions, as [`revoke_asked`] read them. `Err` is the answer
/// when they could not be ended (the change itself was made; repeating it
/// ends them).
pub async fn end_sessions(
    gw: &Identity,
    ctx: &Ctx<'_>,
    (user, keep_current): (Uuid, bool),
) -> Result<(), HttpResponse> {
    let keep = ctx
        .caller
        .as_ref()
        .filter(|c| keep_current && c.id() == user)
        .and_then(|c| Uuid::parse_str(c.session_id()).ok());
    let ended = async {
        let mut denied = gw.sessions.revoke_user(user, keep).await?;
        // The account's browser sessions end too (and what was issued
        // through them); the caller's own API session may stay.
        let browser = gw.browser.end_user(user).await?;
        let sids: Vec<String> = browser.iter().map(|b| b.to_string()).collect();
        let until = crate::clock::unix_secs() + gw.browser.absolute_secs();
        denied.extend(gw.sessions.revoke_sids(&sids, until).await?);
        Ok::<_, sea_orm::DbErr>(denied)
    };
    match ended.await {
        Ok(denied) => {
            gw.revocations.announce(&denied).await;
            gw.audit.record(
                common::audit::Event::new("sessions.ended", "success")
                    .actor(ctx.caller.as_ref().map(|c| c.id()))
                    .subject(user.to_string())
                    .client(ctx.client.map(|a| a.to_string()))
                    .detail(format!(
                        "{} session(s) ended after an account change{}",
                        denied.iter().filter(|d| d.key.starts_with("sid:")).count(),
                        if keep.is_some() {
                            " (the caller's kept)"
                        } else {
                            ""
                        }
                    )),
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, %user, "ending the sessions of a changed account failed");
            let mut res = Problem::service_unavailable(
                "the change was made but the account's sessions could not be ended; repeat it",
            )
            .to_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(res)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn revocation_requests_are_read_strictly() {
        let id = Uuid::new_v4();
        assert_eq!(parse_revoke(&id.to_string()), Some((id, false)));
        assert_eq!(
            parse_revoke(&format!("{id}; keep=current")),
            Some((id, true))
        );
        assert_eq!(parse_revoke("someone"), None);
        assert_eq!(parse_revoke(""), None);
    }
}
