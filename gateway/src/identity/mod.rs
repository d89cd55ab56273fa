//! Identity: who is calling. The gateway's own tokens and their keys, the
//! trusted providers, sessions and revocations, the login limits and the
//! second step, machine clients, and admission (bearer token -> caller ->
//! decision), with the endpoints that issue and end them.

pub mod admission;
pub mod apps;
pub mod authorize;
pub mod browser;
pub mod caller;
pub mod client_admin;
pub mod clients;
pub mod codes;
pub mod consents_api;
pub mod cookie_admission;
pub mod end_session;
pub mod issuer_keys;
pub mod issuers;
pub mod login;
pub mod login_limits;
pub mod login_page;
pub mod me_sessions;
pub mod mfa;
pub mod oauth;
pub mod oauth_wire;
pub mod oidc;
pub mod opaque;
pub mod page;
pub mod provider_login;
pub mod provider_pages;
pub mod revocations;
pub mod sessions;
pub mod sign_in;
pub mod strings;
pub mod tokens;
pub mod users_api;

use actix_web::web;

use crate::mount::{Endpoint, mount};

use std::sync::Arc;

use arc_swap::ArcSwap;
use common::audit::AuditLog;
use common::identity::ProofMinter;

use crate::live::Live;
use crate::ops::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::traffic::ratelimit::{Quota, RateLimiter};

/// What the identity room's handlers and phases use.
pub struct Identity {
    /// The configuration's token keys and trusted providers.
    pub live: Arc<ArcSwap<Live>>,
    pub sessions: Arc<sessions::Sessions>,
    /// Announces revocations to the other replicas.
    pub revocations: Arc<revocations::Revocations>,
    /// The security events this gateway sees, in its own database.
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    /// The proof for the gateway's own calls to the users service.
    pub minter: Arc<ProofMinter>,
    /// Shared failure counters and quotas (when configured).
    pub redis: Option<Arc<RedisLink>>,
    /// The request rate limiter, lent for the login and refresh quotas.
    pub limiter: Arc<RateLimiter>,
    /// The upstream that checks credentials and re-reads users.
    pub users_upstream: String,
    pub access_ttl_secs: i64,
    /// Roles exercised only with a second factor (`mfa.required_for_roles`).
    pub mfa_roles: Vec<String>,
    /// The challenges between a login's two steps.
    pub challenges: mfa::Challenges,
    pub user_limiter: login_limits::FailureLimiter,
    /// Failed client authentications per address count here too, with
    /// failed logins.
    pub ip_limiter: login_limits::FailureLimiter,
    /// Failed client authentications per `client_id`.
    pub client_limiter: login_limits::FailureLimiter,
    /// Machine clients (client credentials).
    pub clients: clients::Clients,
    /// Trusted providers' tokens being verified and linked, by token: the
    /// single flight that makes concurrent first requests with one token
    /// share one verification and one users call (entries live seconds).
    pub linking: moka::future::Cache<String, Arc<tokens::AccessClaims>>,
    /// Provider users' linked accounts, by issuer and subject (see
    /// [`admission::Links`]): a known user's new token makes no users call.
    pub links: admission::Links,
    /// Lifetime of a machine client's access token.
    pub client_ttl_secs: i64,
    /// How long a revocation of client tokens must be remembered: their
    /// lifetime and the leeway.
    pub client_deny_secs: i64,
    /// Where clients reach the gateway (no trailing slash), for metadata.
    pub public_url: String,
    /// `login_limits.rate`: login attempts per client IP.
    pub login_quota: Option<Quota>,
    /// `login_limits.refresh_rate`: refreshes per client IP.
    pub refresh_quota: Option<Quota>,
    /// The hosted pages' look and cookies.
    pub pages: page::Pages,
    /// Browser sessions (the login page's).
    pub browser: Arc<browser::BrowserSessions>,
    /// Authorization codes and consents.
    pub codes: codes::Codes,
    /// Browser sessions' callers, as routes that admit a session see them.
    pub session_callers: cookie_admission::SessionCallers,
    /// Sign-ins through a trusted provider, waiting for its answer.
    pub provider_flows: provider_login::Flows,
}

impl Identity {
    /// The identity room from the settings and the shared resources.
    pub(crate) fn build(
        settings: &crate::settings::Settings,
        shared: &crate::live::Shared,
        db: sea_orm::DatabaseConnection,
        sessions: Arc<sessions::Sessions>,
    ) -> anyhow::Result<Self> {
        let t = &settings.tokens;
        let limits = &settings.login_limits;
        let quota = |q: &Option<crate::traffic::ratelimit::quota::RateLimitConfig>, key: &str| {
            q.as_ref()
                .map(Quota::from_config)
                .transpose()
                .map_err(|e| anyhow::anyhow!("login_limits.{key}: {e}"))
        };
        Ok(Self {
            live: shared.live.clone(),
            sessions,
            revocations: shared.revocations.clone(),
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
            minter: shared.minter.clone(),
            redis: shared.redis.clone(),
            limiter: shared.limiter.clone(),
            users_upstream: settings.identity.users_upstream.clone(),
            access_ttl_secs: t.access_ttl_secs,
            mfa_roles: settings.mfa.required_for_roles.clone(),
            challenges: mfa::Challenges::new(db.clone(), settings.mfa.challenge_ttl_secs),
            user_limiter: login_limits::FailureLimiter::new("user", limits.per_username),
            ip_limiter: login_limits::FailureLimiter::new("ip", limits.per_ip),
            client_limiter: login_limits::FailureLimiter::new("client", limits.per_username),
            clients: clients::Clients::new(db.clone()),
            pages: page::Pages::new(&settings.login, &t.public_url),
            browser: Arc::new(browser::BrowserSessions::new(
                db.clone(),
                settings.login.session,
            )),
            provider_flows: provider_login::Flows::new(db.clone()),
            codes: codes::Codes::new(db, settings.login.code_ttl_secs),
            session_callers: cookie_admission::session_callers(),
            links: admission::links(),
            linking: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(5))
                .build(),
            client_ttl_secs: t.client_ttl_secs,
            client_deny_secs: t.client_ttl_secs + i64::try_from(t.leeway_secs).unwrap_or(0),
            public_url: t.public_url.trim_end_matches('/').to_owned(),
            login_quota: quota(&limits.rate, "rate")?,
            refresh_quota: quota(&limits.refresh_rate, "refresh_rate")?,
        })
    }
}

/// The identity room's endpoints (see [`Endpoint`]).
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::Exact("/api/login", |r| r.post(login::login)),
    Endpoint::Exact("/api/login/mfa", |r| r.post(login::login_mfa)),
    Endpoint::Exact("/api/refresh", |r| r.post(login::refresh)),
    Endpoint::Exact("/api/logout", |r| r.post(login::logout)),
    Endpoint::Exact("/.well-known/jwks.json", |r| r.get(login::jwks)),
    Endpoint::Exact("/.well-known/openid-configuration", |r| {
        r.get(oauth::openid_configuration)
    }),
    Endpoint::Exact("/.well-known/oauth-authorization-server", |r| {
        r.get(oauth::authorization_server)
    }),
    Endpoint::Exact("/api/oauth/token", |r| r.post(oauth::token)),
    Endpoint::Exact("/api/oauth/introspect", |r| r.post(oauth::introspect)),
    Endpoint::Exact("/api/oauth/revoke", |r| r.post(oidc::revoke)),
    Endpoint::Exact("/api/me/consents", |r| r.get(consents_api::list)),
    Endpoint::Exact("/api/me/sessions", |r| {
        r.get(me_sessions::list).delete(me_sessions::end_all)
    }),
    Endpoint::Scope("/api/me/sessions", |s| {
        s.service(web::resource("/{id}").delete(me_sessions::end))
    }),
    Endpoint::Scope("/api/me/consents", |s| {
        s.service(web::resource("/{client_id}").delete(consents_api::withdraw))
    }),
    Endpoint::Scope("/oauth", |s| {
        s.service(
            web::resource("/authorize")
                .get(authorize::authorize_get)
                .post(authorize::authorize_post),
        )
        .service(
            web::resource("/userinfo")
                .get(oidc::userinfo)
                .post(oidc::userinfo),
        )
        .service(
            web::resource("/logout")
                .get(end_session::end_session_get)
                .post(end_session::end_session_post),
        )
    }),
    Endpoint::Scope("/api/clients", |s| {
        s.service(
            web::resource("")
                .get(client_admin::list)
                .post(client_admin::create),
        )
        .service(
            web::resource("/{id}")
                .get(client_admin::get)
                .patch(client_admin::update)
                .delete(client_admin::delete),
        )
        .service(web::resource("/{id}/secrets").post(client_admin::add_secret))
        .service(web::resource("/{id}/secrets/{secret_id}").delete(client_admin::remove_secret))
    }),
];

/// Mount the identity room's endpoints, and the login pages at
/// `login_path` (`login.path`; [`crate::mount::Own`] knows it too).
pub fn configure(cfg: &mut web::ServiceConfig, login_path: &str) {
    mount(cfg, ENDPOINTS);
    cfg.service(
        web::scope(login_path)
            .app_data(page::form_config())
            .service(
                web::resource("")
                    .get(login_page::show)
                    .post(login_page::password),
            )
            .service(web::resource("/mfa").post(login_page::second_step))
            .service(web::resource("/provider").post(provider_pages::start))
            .service(web::resource("/callback").get(provider_pages::callback))
            .service(web::resource("/logout").post(login_page::sign_out))
            .service(web::resource("/style.css").get(login_page::style)),
    );
}
