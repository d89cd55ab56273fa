//! Startup: from settings to a running server. Opens the database and
//! Redis, builds the state and its engines, starts the background tasks
//! (each given what it uses, never the whole gateway), and mounts the
//! gateway's own endpoints in front of the catch-all proxy.

use std::net::TcpListener;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use arc_swap::ArcSwap;
use common::http::Running;
use common::identity::{PROOF_KEY_NAME, ProofMinter};
use secrecy::ExposeSecret;

use crate::admission::TrustedProxies;
use crate::cache::ResponseCache;
use crate::login_limits::FailureLimiter;
use crate::metrics::Metrics;
use crate::openapi::fetch::{ServiceDocs, published_upstreams};
use crate::ratelimit::{Quota, RateLimiter};
use crate::redis_link::RedisLink;
use crate::revocations::Revocations;
use crate::sessions::Sessions;
use crate::settings::{CorsSettings, Settings};
use crate::state::{Gateway, Live, SettingsSource};
use crate::upstream::pool::Upstream;
use crate::{admin, auth, client_admin, oauth, openapi, ops, proxy};

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

/// DNS discovery: the names resolved once before serving (so a started
/// gateway routes to what they have), then followed by the background
/// task. The resolver is built whenever it can be (a reload may add names
/// later); without one, only a configuration that discovers is refused.
async fn discover(
    settings: &Settings,
    live: &Arc<ArcSwap<Live>>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    use crate::upstream::discovery::{self, Answer, Discoverer};
    let ups = live.load().upstreams.values().cloned().collect::<Vec<_>>();
    let used = ups.iter().any(|u| !u.lookups().is_empty());
    let discoverer = match Discoverer::new(&settings.discovery) {
        Ok(d) => Arc::new(d),
        Err(e) if used => return Err(anyhow::anyhow!(e)),
        Err(e) => {
            tracing::info!(reason = %e, "no DNS resolver: targets cannot be discovered");
            return Ok(());
        }
    };
    for up in &ups {
        for lookup in up.lookups() {
            match discoverer.resolve(&lookup).await {
                Answer::Found(found, _) => up.set_discovered(&lookup.key(), found),
                Answer::Failed(why) => tracing::warn!(
                    upstream = %up.name, name = %lookup.key(), reason = %why,
                    "a name to discover did not resolve at start; retrying"
                ),
            }
        }
    }
    let weak = Arc::downgrade(live);
    let metrics = metrics.clone();
    discovery::spawn(
        discoverer,
        move || current_upstreams(&weak),
        Arc::new(move |upstream, result| metrics.discovery(upstream, result)),
    );
    Ok(())
}

/// Keep this replica's registry in step with the database: at once when
/// another replica announces a change (the revocation channel's `registry`
/// message), and every `every` in any case (a message lost while Redis was
/// away). Both hold the gateway weakly and end with it.
fn follow_registry(gw: &web::Data<Gateway>, revocations: &Arc<Revocations>, every: Duration) {
    let weak = Arc::downgrade(&gw.clone().into_inner());
    let on_message = weak.clone();
    revocations.on_registry_change(Arc::new(move || {
        let gw = on_message.clone();
        Box::pin(async move {
            if let Some(gw) = gw.upgrade() {
                gw.sync_registry().await;
            }
        })
    }));
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(every).await;
            let Some(gw) = weak.upgrade() else { return };
            gw.sync_registry().await;
        }
    });
}

/// The upstreams in the current configuration, for as long as it exists.
fn current_upstreams(live: &Weak<ArcSwap<Live>>) -> Option<Vec<Arc<Upstream>>> {
    let live = live.upgrade()?;
    let snapshot = live.load();
    Some(snapshot.upstreams.values().cloned().collect())
}

/// The upstreams whose documents the public API description needs.
fn published(live: &Weak<ArcSwap<Live>>) -> Option<Vec<Arc<Upstream>>> {
    let live = live.upgrade()?;
    let snapshot = live.load();
    Some(
        published_upstreams(&snapshot.routes, &snapshot.composed)
            .into_iter()
            .filter_map(|name| snapshot.upstreams.get(&name).cloned())
            .collect(),
    )
}

/// Build with an explicit source for reloads (SIGHUP, `POST /admin/reload`).
pub async fn build_with_source(
    settings: Settings,
    listener: TcpListener,
    source: SettingsSource,
) -> anyhow::Result<Running> {
    common::tls::install_crypto_provider();
    let minter = proof_minter(&settings).context("loading the gateway proof signing key")?;
    let tracing = common::traces::Tracing::new(
        "gateway",
        &settings.tracing,
        settings.trusted_proxies.clone(),
    )
    .context("tracing")?;
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Gateway,
    )
    .await?;
    let t = &settings.tokens;
    let audit = common::audit::AuditLog::new(db.clone(), "gateway");
    let clients = crate::clients::Clients::new(db.clone());
    let challenges = crate::mfa::Challenges::new(db.clone(), settings.mfa.challenge_ttl_secs);
    let registrations = crate::upstream::registry::Registry::new(db.clone());
    // The service registry as stored: a restart keeps what was registered.
    let registered = registrations
        .load()
        .await
        .context("loading the service registry")?;
    let sessions = Arc::new(
        Sessions::load(
            db,
            t.refresh_ttl_secs,
            t.session_max_secs,
            t.access_ttl_secs + i64::try_from(t.leeway_secs).unwrap_or(0),
        )
        .await
        .context("loading sessions")?,
    );
    let redis = RedisLink::open(&settings.redis).await;
    let limiter = match &redis {
        Some(link) => RateLimiter::shared(link.clone(), settings.redis.lease_ms),
        None => RateLimiter::local(),
    };
    let live = Arc::new(ArcSwap::from_pointee(Live::resolve(
        &settings,
        None,
        &registered,
    )?));
    let docs = Arc::new(ServiceDocs::default());
    let tls = if settings.tls.enabled() {
        Some(
            crate::tls::CertStore::open(&settings.tls, &settings.data_dir)
                .map_err(anyhow::Error::msg)
                .context("the TLS certificate")?,
        )
    } else {
        None
    };
    let revocations = Arc::new(Revocations::new(redis.clone()));
    let gw = web::Data::new(Gateway {
        live: live.clone(),
        tracing: tracing.clone(),
        registry: std::sync::Mutex::new(registered),
        registrations,
        allowed_targets: crate::upstream::registry::Allowed::parse(
            &settings.registry.allowed_targets,
        )
        .map_err(anyhow::Error::msg)?,
        sessions: sessions.clone(),
        audit,
        minter,
        strip_headers: settings
            .identity
            .strip_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        users_upstream: settings.identity.users_upstream.clone(),
        access_ttl_secs: t.access_ttl_secs,
        mfa_roles: settings.mfa.required_for_roles.clone(),
        challenges,
        user_limiter: FailureLimiter::new("user", settings.login_limits.per_username),
        ip_limiter: FailureLimiter::new("ip", settings.login_limits.per_ip),
        client_limiter: FailureLimiter::new("client", settings.login_limits.per_username),
        linking: moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(Duration::from_secs(5))
            .build(),
        clients,
        client_ttl_secs: t.client_ttl_secs,
        client_deny_secs: t.client_ttl_secs + i64::try_from(t.leeway_secs).unwrap_or(0),
        public_url: t.public_url.trim_end_matches('/').to_owned(),
        login_quota: settings
            .login_limits
            .rate
            .as_ref()
            .map(Quota::from_config)
            .transpose()
            .map_err(|e| anyhow::anyhow!("login_limits.rate: {e}"))?,
        refresh_quota: settings
            .login_limits
            .refresh_rate
            .as_ref()
            .map(Quota::from_config)
            .transpose()
            .map_err(|e| anyhow::anyhow!("login_limits.refresh_rate: {e}"))?,
        redis: redis.clone(),
        revocations: revocations.clone(),
        limiter,
        cache: ResponseCache::new(settings.cache.max_bytes),
        metrics: Arc::new(Metrics::new()?),
        // An empty value (an unset variable in compose) means no token.
        metrics_token: settings
            .metrics
            .bearer_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty()),
        source,
        docs: docs.clone(),
        tls: tls.clone(),
    });
    reload_on_sighup(gw.clone().into_inner());
    let weak = Arc::downgrade(&live);
    crate::upstream::health::spawn(move || current_upstreams(&weak));
    discover(&settings, &live, &gw.metrics).await?;
    revocations.spawn(
        Arc::downgrade(&sessions),
        Duration::from_secs(settings.revocations.resync_secs),
    );
    follow_registry(
        &gw,
        &revocations,
        Duration::from_secs(settings.registry.resync_secs),
    );
    let weak = Arc::downgrade(&live);
    refresh_provider_keys(weak.clone());
    openapi::fetch::spawn(docs, settings.openapi.clone(), move || published(&weak));
    let metrics = web::Data::from(gw.metrics.clone());
    let trusted = web::Data::new(TrustedProxies::new(settings.trusted_proxies.clone()));
    let swagger = web::Data::new(openapi::handlers::swagger_config());
    let cors_settings = settings.cors.clone();
    let edge = Arc::new(crate::edge::Edge {
        tls: tls.is_some(),
        https_port: match settings.tls.redirect_port {
            Some(p) => p,
            None => listener.local_addr()?.port(),
        },
        hsts: settings
            .tls
            .hsts
            .as_ref()
            .map(|h| actix_web::http::header::HeaderValue::from_str(&h.value()))
            .transpose()?,
    });
    let listeners = common::http::Listeners {
        tls: match &tls {
            Some(store) => {
                watch_certificate(store.clone(), settings.tls.watch_secs);
                Some(
                    store
                        .server_config(&settings.tls)
                        .map_err(anyhow::Error::msg)?,
                )
            }
            None => None,
        },
        plain: settings
            .tls
            .redirect_listen
            .map(common::http::bind)
            .transpose()?,
        main: listener,
    };
    let shortcut = crate::edge::shortcut(edge.clone(), !cors_settings.allowed_origins.is_empty());
    Ok(common::http::serve_listeners(
        listeners,
        settings.workers,
        settings.shutdown_timeout_secs,
        tracing,
        Some(shortcut),
        move |cfg| {
            cfg.app_data(gw.clone())
                .app_data(metrics.clone())
                .app_data(trusted.clone())
                .app_data(swagger.clone())
                .service(
                    web::scope("")
                        .wrap(actix_web::middleware::from_fn({
                            let edge = edge.clone();
                            move |req, next| crate::edge::phase(edge.clone(), req, next)
                        }))
                        .wrap(actix_web::middleware::Condition::new(
                            !cors_settings.allowed_origins.is_empty(),
                            cors(&cors_settings),
                        ))
                        .wrap(actix_web::middleware::from_fn(crate::edge::observe))
                        .service(web::resource("/api/login").post(auth::login))
                        .service(web::resource("/api/login/mfa").post(auth::login_mfa))
                        .service(web::resource("/api/refresh").post(auth::refresh))
                        .service(web::resource("/api/logout").post(auth::logout))
                        .service(web::resource("/api/audit").get(crate::audit::list))
                        .service(web::resource("/.well-known/jwks.json").get(auth::jwks))
                        .service(
                            web::resource("/.well-known/openid-configuration")
                                .get(oauth::openid_configuration),
                        )
                        .service(
                            web::resource("/.well-known/oauth-authorization-server")
                                .get(oauth::authorization_server),
                        )
                        .service(web::resource("/api/oauth/token").post(oauth::token))
                        .service(web::resource("/api/oauth/introspect").post(oauth::introspect))
                        .service(
                            web::scope("/api/clients")
                                .service(
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
                                .service(
                                    web::resource("/{id}/secrets").post(client_admin::add_secret),
                                )
                                .service(
                                    web::resource("/{id}/secrets/{secret_id}")
                                        .delete(client_admin::remove_secret),
                                )
                                .default_service(web::to(proxy::handle)),
                        )
                        // The resources with path parameters sit in scopes, so
                        // a proxied path pays one prefix comparison for them,
                        // not a pattern match each (what the profile showed);
                        // anything else under the prefix is still proxied.
                        .service(
                            web::scope("/admin")
                                .service(web::resource("/reload").post(admin::reload))
                                .service(web::resource("/routes").get(admin::routes))
                                .service(web::resource("/upstreams").get(admin::upstreams))
                                .service(
                                    web::resource("/upstreams/{name}/targets")
                                        .post(admin::add_target)
                                        .delete(admin::remove_target),
                                )
                                .default_service(web::to(proxy::handle)),
                        )
                        .service(web::resource("/stats").get(ops::stats))
                        .service(web::resource("/metrics").get(ops::endpoint))
                        .service(
                            web::resource("/openapi.json").get(openapi::handlers::openapi_json),
                        )
                        .service(
                            web::scope("/docs")
                                .service(web::resource("").get(openapi::handlers::docs_redirect))
                                .service(
                                    web::resource("/{tail:.*}").get(openapi::handlers::docs_file),
                                )
                                .default_service(web::to(proxy::handle)),
                        )
                        .service(web::resource("/redoc").get(openapi::handlers::redoc_page))
                        .service(web::resource("/redoc/redoc.js").get(openapi::handlers::redoc_js))
                        .service(web::resource("/healthz").get(common::http::healthz))
                        .service(web::resource("/readyz").get(ops::readyz))
                        .default_service(web::to(proxy::handle)),
                );
        },
    )?)
}

/// Reload the certificate when its files change (cert-manager rewrites
/// them in place), checking every `every_secs`; a bad new pair is logged
/// and the old one keeps serving.
fn watch_certificate(store: Arc<crate::tls::CertStore>, every_secs: u64) {
    if every_secs == 0 {
        return;
    }
    let weak = Arc::downgrade(&store);
    drop(store);
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(Duration::from_secs(every_secs)).await;
            let Some(store) = weak.upgrade() else { return };
            match tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => {
                    tracing::error!(%reason, "the changed TLS certificate is refused; the previous one keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "checking the TLS certificate failed"),
            }
        }
    });
}

/// Keep the trusted identity providers' keys fresh (each on its own
/// schedule, see `issuers`), for as long as the gateway lives.
fn refresh_provider_keys(live: std::sync::Weak<ArcSwap<Live>>) {
    actix_web::rt::spawn(async move {
        loop {
            let Some(current) = live.upgrade().map(|l| l.load_full()) else {
                return;
            };
            if !current.issuers.is_empty() {
                current.issuers.refresh_due().await;
            }
            drop(current);
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
    });
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
