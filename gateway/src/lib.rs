//! The gateway: the only public entry point. It issues, rotates and revokes
//! tokens (`/api/login`, `/api/refresh`, `/api/logout`, JWKS), checks every
//! routed request against the route's access rule, strips client-sent
//! identity headers and forwards the verified identity with a signed proof.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use arc_swap::ArcSwap;
use common::Problem;
use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::http::Running;
use common::identity::{PROOF_KEY_NAME, ProofMinter};
use limiter::{FailureLimiter, LimitSettings};
use routes::{RouteConfig, RouteTable};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sessions::Sessions;
use state::Gateway;
use tokens::TokenKeys;
use upstreams::UpstreamConfig;

pub mod admin;
pub mod auth;
pub mod cache;
pub mod compose;
pub mod limiter;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod ratelimit;
pub mod revocations;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod tokens;
pub mod upstreams;

const DEFAULTS: &str = include_str!("../../config/gateway.yaml");

/// Unprefixed environment names the gateway reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("GATEWAY_LISTEN", "listen"),
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("GATEWAY_PROOF_PRIVATE_KEY", "proof.private_key_pem"),
    ("REDIS_URL", "redis.url"),
    ("GATEWAY_METRICS_TOKEN", "metrics.bearer_token"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub proof: ProofSigning,
    pub tokens: TokenSettings,
    pub login_limits: LoginLimits,
    pub identity: IdentitySettings,
    /// Largest request body a route accepts unless it says otherwise.
    pub max_body_bytes: u64,
    /// Time in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Shared rate-limit counters (in memory when `url` is unset).
    pub redis: ratelimit::RedisSettings,
    pub cache: CacheSettings,
    pub cors: CorsSettings,
    pub metrics: MetricsSettings,
    /// The merged public API document.
    pub openapi: openapi::OpenApiSettings,
    /// How the access-token deny list reaches every replica.
    pub revocations: revocations::RevocationSettings,
    /// Upstream name -> targets (a list of base URLs, or the full form).
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Routes answered by several upstream calls at once.
    pub composed: Vec<compose::ComposedConfig>,
    pub no_route: NoRoute,
}

/// The response cache shared by the routes that enable it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Memory bound for cached bodies and headers.
    pub max_bytes: u64,
}

/// Cross-origin requests from browsers; off while `allowed_origins` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: usize,
    pub allow_credentials: bool,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>`.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The response for a path no route matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRoute {
    pub status: u16,
    pub detail: String,
}
/// Access and refresh tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub session_max_secs: i64,
    pub leeway_secs: u64,
    pub keys: Vec<tokens::KeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    pub per_username: LimitSettings,
    pub per_ip: LimitSettings,
    /// Login attempts per client IP, whatever their outcome (each one costs
    /// the users service an argon2 verify): a storm is answered 429 cheaply.
    pub rate: Option<ratelimit::RateLimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    pub users_upstream: String,
    pub strip_headers: Vec<String>,
}

/// How the gateway signs identity proofs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSigning {
    pub issuer: String,
    pub ttl_secs: i64,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_pem: Option<String>,
}

impl std::fmt::Debug for ProofSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofSigning")
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .field("private_key_file", &self.private_key_file)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn loader() -> Loader {
        Loader::new("gateway", DEFAULTS)
    }

    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        let s: Settings = loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("GATEWAY")
            .extract()?;
        s.check()
    }

    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }

    /// The shipped configuration (`config/gateway.yaml`) alone, ignoring the
    /// environment and any config file.
    pub fn shipped() -> Result<Self, ConfigError> {
        Loader::embedded("gateway", DEFAULTS)
            .extract::<Settings>()?
            .check()
    }

    fn check(self) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            service: "gateway".into(),
            message,
        };
        if !(1..=common::identity::MAX_PROOF_TTL_SECS).contains(&self.proof.ttl_secs) {
            return Err(invalid(format!(
                "proof.ttl_secs: {} is out of range (1 to {})",
                self.proof.ttl_secs,
                common::identity::MAX_PROOF_TTL_SECS
            )));
        }
        if self.revocations.resync_secs == 0 {
            return Err(invalid("revocations.resync_secs must be positive".into()));
        }
        if self.openapi.refresh_secs == 0 || self.openapi.fetch_timeout_ms == 0 {
            return Err(invalid(
                "openapi: refresh_secs and fetch_timeout_ms must be positive".into(),
            ));
        }
        let t = &self.tokens;
        if t.access_ttl_secs < 1
            || t.refresh_ttl_secs < 1
            || t.session_max_secs < t.refresh_ttl_secs
        {
            return Err(invalid(
                "tokens: access_ttl_secs and refresh_ttl_secs must be positive and session_max_secs at least refresh_ttl_secs"
                    .into(),
            ));
        }
        if !self.upstreams.contains_key(&self.identity.users_upstream) {
            return Err(invalid(format!(
                "identity.users_upstream: unknown upstream `{}`",
                self.identity.users_upstream
            )));
        }
        upstreams::build_all(&self.upstreams, &BTreeMap::new(), None).map_err(invalid)?;
        RouteTable::new(&self.routes, |u| self.upstreams.contains_key(u)).map_err(invalid)?;
        compose::ComposedTable::new(&self.composed, |u| self.upstreams.contains_key(u))
            .map_err(invalid)?;
        if !(400..=599).contains(&self.no_route.status) {
            return Err(invalid(format!(
                "no_route.status: {} is not an error status",
                self.no_route.status
            )));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes must be positive".into()));
        }
        let c = &self.cors;
        if c.allow_credentials && c.allowed_origins.iter().any(|o| o == "*") {
            return Err(invalid(
                "cors: allow_credentials cannot be combined with the `*` origin".into(),
            ));
        }
        for o in &c.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(invalid(format!(
                    "cors.allowed_origins: `{o}` is not `*` or an http(s) origin"
                )));
            }
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "redis.url must start with redis:// or rediss://".into(),
            ));
        }
        Ok(self)
    }
}

/// The proof signer: from `proof.private_key_pem` or `proof.private_key_file`
/// in production, or the development key under `<data_dir>/keys` (generated
/// on first start, with its public half beside it for the services).
pub fn proof_minter(settings: &Settings) -> anyhow::Result<ProofMinter> {
    let p = &settings.proof;
    let pem = match (&p.private_key_pem, &p.private_key_file) {
        (Some(pem), _) => pem.clone(),
        (None, Some(file)) => common::keys::read_pem(file)?,
        (None, None) => {
            common::keys::ensure_ed25519(&settings.data_dir.join("keys"), PROOF_KEY_NAME)?
                .private_pem
        }
    };
    Ok(ProofMinter::from_pem(&pem, &p.issuer, p.ttl_secs)?)
}

pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let listener = common::http::bind(settings.listen)?;
    build_with_listener(settings, listener).await
}

pub async fn build_with_listener(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    build_with_source(settings, listener, Box::new(Settings::load)).await
}

/// The reloadable part of the configuration, resolved from settings (reads
/// key files; generates the development access-token key when none is set).
/// Targets known to `previous` keep their health and counters; targets
/// registered through the admin API are re-applied.
pub fn live(
    settings: &Settings,
    previous: Option<&state::Live>,
    registry: &BTreeMap<String, upstreams::Registrations>,
) -> anyhow::Result<state::Live> {
    let t = &settings.tokens;
    let dev_key = if t.keys.is_empty() {
        Some(
            common::keys::ensure_ed25519(&settings.data_dir.join("keys"), "access-token")?
                .private_pem,
        )
    } else {
        None
    };
    Ok(state::Live {
        tokens: TokenKeys::new(
            &t.keys,
            dev_key.as_deref(),
            &t.issuer,
            &t.audience,
            t.leeway_secs,
        )?,
        routes: RouteTable::new(&settings.routes, |u| settings.upstreams.contains_key(u))
            .map_err(anyhow::Error::msg)?,
        upstreams: upstreams::build_all(
            &settings.upstreams,
            registry,
            previous.map(|p| &p.upstreams),
        )
        .map_err(anyhow::Error::msg)?,
        composed: compose::ComposedTable::new(&settings.composed, |u| {
            settings.upstreams.contains_key(u)
        })
        .map_err(anyhow::Error::msg)?,
        no_route: settings.no_route.clone(),
        max_body_bytes: settings.max_body_bytes,
    })
}

fn cors(c: &CorsSettings) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(c.allowed_methods.iter().map(String::as_str))
        .allowed_headers(c.allowed_headers.iter().map(String::as_str))
        .expose_headers(c.expose_headers.iter().map(String::as_str))
        .max_age(c.max_age_secs)
        // A foreign origin gets no grant (the browser blocks it), not an error.
        .block_on_origin_mismatch(false);
    for o in &c.allowed_origins {
        cors = if o == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(o)
        };
    }
    if c.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}

/// Build with an explicit source for reloads (SIGHUP, `POST /admin/reload`).
pub async fn build_with_source(
    settings: Settings,
    listener: TcpListener,
    source: state::SettingsSource,
) -> anyhow::Result<Running> {
    let minter = proof_minter(&settings).context("loading the gateway proof signing key")?;
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Gateway,
    )
    .await?;
    let t = &settings.tokens;
    let sessions = Sessions::load(db, t.refresh_ttl_secs, t.session_max_secs)
        .await
        .context("loading sessions")?;
    let limiter = ratelimit::RateLimiter::new(&settings.redis).await;
    let gw = web::Data::new(Gateway {
        live: ArcSwap::from_pointee(live(&settings, None, &BTreeMap::new())?),
        registry: std::sync::Mutex::new(BTreeMap::new()),
        sessions,
        minter,
        strip_headers: settings
            .identity
            .strip_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        users_upstream: settings.identity.users_upstream.clone(),
        access_ttl_secs: t.access_ttl_secs,
        user_limiter: FailureLimiter::new("user", settings.login_limits.per_username),
        ip_limiter: FailureLimiter::new("ip", settings.login_limits.per_ip),
        login_quota: settings
            .login_limits
            .rate
            .as_ref()
            .map(ratelimit::Quota::from_config)
            .transpose()
            .map_err(|e| anyhow::anyhow!("login_limits.rate: {e}"))?,
        limiter,
        cache: cache::ResponseCache::new(settings.cache.max_bytes),
        metrics: metrics::Metrics::new()?,
        // An empty value (an unset variable in compose) means no token.
        metrics_token: settings
            .metrics
            .bearer_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty()),
        source,
        docs: openapi::ServiceDocs::default(),
    });
    reload_on_sighup(gw.clone().into_inner());
    upstreams::spawn_health_checks(std::sync::Arc::downgrade(&gw.clone().into_inner()));
    revocations::spawn(
        std::sync::Arc::downgrade(&gw.clone().into_inner()),
        std::time::Duration::from_secs(settings.revocations.resync_secs),
    );
    openapi::spawn_refresh(
        std::sync::Arc::downgrade(&gw.clone().into_inner()),
        settings.openapi.clone(),
    );
    let swagger = web::Data::new(openapi::swagger_config());
    let cors_settings = settings.cors.clone();
    Ok(common::http::serve_with(
        listener,
        settings.workers,
        settings.shutdown_timeout_secs,
        move |cfg| {
            cfg.app_data(gw.clone())
                .app_data(web::Data::new(proxy::Clients::default()))
                .app_data(swagger.clone())
                .service(
                    web::scope("")
                        .wrap(actix_web::middleware::Condition::new(
                            !cors_settings.allowed_origins.is_empty(),
                            cors(&cors_settings),
                        ))
                        .wrap(actix_web::middleware::from_fn(metrics::observe))
                        .service(web::resource("/api/login").post(auth::login))
                        .service(web::resource("/api/refresh").post(auth::refresh))
                        .service(web::resource("/api/logout").post(auth::logout))
                        .service(web::resource("/.well-known/jwks.json").get(auth::jwks))
                        // The resources with path parameters sit in scopes, so
                        // a proxied path pays one prefix comparison for them,
                        // not a pattern match each (what the profile showed);
                        // anything else under the prefix is still proxied.
                        .service(
                            web::scope("/admin")
                                .service(web::resource("/reload").post(auth::reload))
                                .service(web::resource("/routes").get(admin::routes))
                                .service(web::resource("/upstreams").get(admin::upstreams))
                                .service(
                                    web::resource("/upstreams/{name}/targets")
                                        .post(admin::add_target)
                                        .delete(admin::remove_target),
                                )
                                .default_service(web::to(proxy::handle)),
                        )
                        .service(web::resource("/stats").get(admin::stats))
                        .service(web::resource("/metrics").get(metrics::endpoint))
                        .service(web::resource("/openapi.json").get(openapi::openapi_json))
                        .service(
                            web::scope("/docs")
                                .service(web::resource("").get(openapi::docs_redirect))
                                .service(web::resource("/{tail:.*}").get(openapi::docs_file))
                                .default_service(web::to(proxy::handle)),
                        )
                        .service(web::resource("/healthz").get(common::http::healthz))
                        .service(web::resource("/readyz").get(readyz))
                        .default_service(web::to(proxy::handle)),
                );
        },
    )?)
}

/// SIGHUP re-reads the configuration (see [`Gateway::reload`]).
fn reload_on_sighup(gw: std::sync::Arc<Gateway>) {
    actix_web::rt::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let gw = gw.clone();
            match tokio::task::spawn_blocking(move || gw.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => {
                    tracing::error!(%reason, "reload refused; the previous configuration keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    });
}

/// Readiness body: each upstream's state.
#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    upstreams: BTreeMap<String, &'static str>,
    rate_limits: &'static str,
}

/// `GET /readyz`: ready when the configuration is loaded and every upstream
/// has a target in rotation (by the health checks and passive ejection).
async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    let live = gw.live.load();
    let states: BTreeMap<String, &'static str> = live
        .upstreams
        .iter()
        .map(|(n, u)| (n.clone(), if u.has_available() { "up" } else { "down" }))
        .collect();
    let down: Vec<&str> = states
        .iter()
        .filter(|(_, s)| **s == "down")
        .map(|(n, _)| n.as_str())
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(Readiness {
            status: "ok",
            upstreams: states,
            rate_limits: metrics::backend_name(&gw.limiter),
        })
    } else {
        Problem::service_unavailable(format!("no healthy target for: {}", down.join(", ")))
            .to_response()
    }
}
