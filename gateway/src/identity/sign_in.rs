//! The two steps of signing in, shared by `POST /api/login` (JSON) and the
//! hosted login page (HTML): the per-address rate, the attempt reserved per
//! address and username before anything is checked, the users service's
//! verdict, the second-factor challenge, and the metrics and audit events.
//! The outcome is a value; each front renders it its own way, so the page
//! and the API cannot drift apart in what they let through.

use actix_web::http::{Method, StatusCode};
use common::audit::Event;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::Identity;
use crate::identity::login_limits::{self, Outcome};
use crate::identity::mfa::{Challenge, Refused};
use crate::identity::users_api::{Account, users_call};
use crate::traffic::ratelimit::Decision;

/// What a right password (or a right code) leads to.
pub enum Passed {
    /// Signed in, with how (RFC 8176 `amr`).
    Done(Account, &'static [&'static str]),
    /// The password was right and the account has a second factor: the
    /// challenge the second step takes, good for `expires_in` seconds.
    SecondFactor { challenge: String, expires_in: i64 },
}

/// Why a step did not sign in. Every front says the same thing whatever
/// was wrong with the credentials ([`Failure::Wrong`]): no enumeration.
#[derive(Debug)]
pub enum Failure {
    /// Over `login_limits.rate` from this address.
    RateLimited(Decision),
    /// A spent failure budget: retry after that many seconds.
    Locked(u64),
    /// A wrong username or password.
    Wrong,
    /// A wrong or used code (second step).
    WrongCode,
    /// A challenge that admits no second step (why).
    BadChallenge(&'static str),
    /// The users service refused the request's shape.
    Malformed,
    /// The users service did not answer usably.
    Unavailable,
    /// The call to the users service failed: the answer the API gives
    /// (503, or 504 for a timeout).
    Dependency(actix_web::HttpResponse),
    /// The gateway's own store failed.
    Store(sea_orm::DbErr),
}

/// The code of a second step.
pub enum Code {
    Totp(String),
    Recovery(String),
}

/// The per-address rate of login attempts (`login_limits.rate`).
async fn rate_limited(
    gw: &Identity,
    route: &str,
    ip: &str,
    user_key: Option<&str>,
) -> Result<(), Failure> {
    let Some(quota) = gw.login_quota.as_ref() else {
        return Ok(());
    };
    let decision = gw.limiter.check(&format!("login|ip:{ip}"), quota).await;
    let Decision::Deny { .. } = decision else {
        return Ok(());
    };
    gw.metrics.rate_limited(route);
    gw.metrics.login("rate_limited");
    gw.audit.record(
        Event::new("login.rate_limited", "refused")
            .subject(user_key.unwrap_or_default().to_owned())
            .client(Some(ip.to_owned())),
    );
    Err(Failure::RateLimited(decision))
}

/// A login attempt, reserved per address and per username before a
/// password or a code is checked, so concurrency cannot outrun the budget
/// (with Redis, across every replica); settled with the check's outcome.
struct Attempt {
    by_ip: login_limits::Reservation,
    by_user: login_limits::Reservation,
}

impl Attempt {
    /// Reserve, or [`Failure::Locked`] (`step` says which step in the
    /// audit record).
    async fn reserve(gw: &Identity, ip: &str, user_key: &str, step: &str) -> Result<Self, Failure> {
        let shared = gw.redis.as_ref();
        let locked = |what: &'static str, secs: u64| {
            gw.metrics.login_locked(what);
            gw.audit.record(
                Event::new("login.locked", "refused")
                    .subject(user_key.to_owned())
                    .client(Some(ip.to_owned()))
                    .detail(format!("the {what} budget is spent{step}")),
            );
            Failure::Locked(secs)
        };
        let by_ip = gw
            .ip_limiter
            .reserve(shared, ip)
            .await
            .map_err(|secs| locked("address", secs))?;
        match gw.user_limiter.reserve(shared, user_key).await {
            Ok(by_user) => Ok(Self { by_ip, by_user }),
            Err(secs) => {
                gw.ip_limiter.settle(shared, by_ip, Outcome::Void).await;
                Err(locked("username", secs))
            }
        }
    }

    /// Have the users service check the credential (`path`, `payload`)
    /// and settle the attempt with its verdict: 200 passed, 401 failed,
    /// anything else (no verdict) void.
    async fn check(
        self,
        gw: &Identity,
        path: &str,
        payload: serde_json::Value,
    ) -> Result<(StatusCode, serde_json::Value), Failure> {
        let checked = users_call(gw, Method::POST, path, Some(payload)).await;
        let outcome = match &checked {
            Ok((StatusCode::OK, _)) => Outcome::Passed,
            Ok((StatusCode::UNAUTHORIZED, _)) => Outcome::Failed,
            _ => Outcome::Void,
        };
        let shared = gw.redis.as_ref();
        gw.user_limiter.settle(shared, self.by_user, outcome).await;
        gw.ip_limiter.settle(shared, self.by_ip, outcome).await;
        checked.map_err(|res| {
            gw.metrics.login("error");
            Failure::Dependency(res)
        })
    }
}

fn account(gw: &Identity, value: serde_json::Value) -> Result<Account, Failure> {
    serde_json::from_value::<Account>(value).map_err(|_| {
        gw.metrics.login("error");
        Failure::Unavailable
    })
}

/// The first step: a username and a password, from the client at `ip`
/// (`route` names the front in metrics).
pub async fn password(
    gw: &Identity,
    route: &str,
    ip: &str,
    username: &str,
    password: &SecretString,
) -> Result<Passed, Failure> {
    let user_key = common::identity::canonical_username(username);
    rate_limited(gw, route, ip, Some(&user_key)).await?;
    let attempt = Attempt::reserve(gw, ip, &user_key, "").await?;
    let payload = json!({"username": username, "password": password.expose_secret()});
    let (status, value) = attempt
        .check(gw, "/internal/credentials/verify", payload)
        .await?;
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            gw.metrics.login("failure");
            gw.audit.record(
                Event::new("login.failure", "failure")
                    .subject(user_key)
                    .client(Some(ip.to_owned())),
            );
            return Err(Failure::Wrong);
        }
        StatusCode::UNPROCESSABLE_ENTITY => return Err(Failure::Malformed),
        _ => {
            gw.metrics.login("error");
            return Err(Failure::Unavailable);
        }
    }
    let identity = account(gw, value)?;
    if identity.mfa_enabled {
        // The password was right; the second factor comes next, against a
        // challenge bound to this account and this client.
        let challenge = gw
            .challenges
            .issue(identity.id, &user_key, ip)
            .await
            .map_err(Failure::Store)?;
        gw.metrics.login("mfa_required");
        gw.audit.record(
            Event::new("login.mfa_required", "success")
                .actor(Some(identity.id))
                .subject(user_key)
                .client(Some(ip.to_owned()))
                .detail("the password was right; a second factor is asked for"),
        );
        return Ok(Passed::SecondFactor {
            challenge,
            expires_in: gw.challenges.ttl_secs(),
        });
    }
    gw.metrics.login("success");
    gw.audit.record(
        Event::new("login.success", "success")
            .actor(Some(identity.id))
            .subject(user_key)
            .client(Some(ip.to_owned())),
    );
    Ok(Passed::Done(identity, &["pwd"]))
}

/// The challenge `token` names, if `ip` may take its second step now.
async fn open_challenge(gw: &Identity, token: &str, ip: &str) -> Result<Challenge, Failure> {
    match gw.challenges.find(token, ip).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(why)) => {
            gw.metrics.login("mfa_failure");
            gw.audit.record(
                Event::new("login.mfa_challenge_refused", "refused")
                    .client(Some(ip.to_owned()))
                    .detail(why.reason()),
            );
            Err(Failure::BadChallenge(why.reason()))
        }
        Err(e) => Err(Failure::Store(e)),
    }
}

/// The second step: the first step's challenge and one code. The
/// challenge must be this client's, unused and unexpired; the code one the
/// account has not used before. Wrong codes spend the same budget as wrong
/// passwords.
pub async fn second_factor(
    gw: &Identity,
    route: &str,
    ip: &str,
    challenge: &str,
    code: Code,
) -> Result<(Account, &'static [&'static str]), Failure> {
    rate_limited(gw, route, ip, None).await?;
    let challenge = open_challenge(gw, challenge, ip).await?;
    let user_key = challenge.username.clone();
    let attempt = Attempt::reserve(gw, ip, &user_key, " (second step)").await?;
    let with_recovery_code = matches!(code, Code::Recovery(_));
    let payload = match code {
        Code::Totp(c) => json!({"user_id": challenge.user_id, "code": c}),
        Code::Recovery(c) => json!({"user_id": challenge.user_id, "recovery_code": c}),
    };
    let (status, value) = attempt.check(gw, "/internal/mfa/verify", payload).await?;
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            gw.metrics.login("mfa_failure");
            gw.audit.record(
                Event::new("login.mfa_failure", "failure")
                    .actor(Some(challenge.user_id))
                    .subject(challenge.username.clone())
                    .client(Some(ip.to_owned()))
                    .detail(if with_recovery_code {
                        "a wrong or used recovery code"
                    } else {
                        "a wrong or reused code"
                    }),
            );
            return Err(Failure::WrongCode);
        }
        _ => {
            gw.metrics.login("error");
            return Err(Failure::Unavailable);
        }
    }
    let identity = account(gw, value)?;
    // Use the challenge, once across replicas (a second use at the same
    // moment is refused).
    match gw.challenges.spend(&challenge).await {
        Ok(true) => {}
        Ok(false) => return Err(Failure::BadChallenge(Refused::Used.reason())),
        Err(e) => return Err(Failure::Store(e)),
    }
    gw.metrics.login("success");
    gw.audit.record(
        Event::new("login.success", "success")
            .actor(Some(identity.id))
            .subject(user_key)
            .client(Some(ip.to_owned()))
            .detail(if with_recovery_code {
                "password and a recovery code"
            } else {
                "password and a code"
            }),
    );
    Ok((identity, &["pwd", "otp"]))
}
