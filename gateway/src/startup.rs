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

use crate::identity::caller::TrustedProxies;
use crate::identity::revocations::Revocations;
use crate::identity::sessions::Sessions;
use crate::identity::{self, Identity};
use crate::live::{Live, SettingsSource, Shared};
use crate::mount::Own;
use crate::ops::certificates::CertStore;
use crate::ops::metrics::Metrics;
use crate::ops::openapi::fetch::{ServiceDocs, published_upstreams};
use crate::ops::{self, Ops};
use crate::redis_link::RedisLink;
use crate::settings::{CorsSettings, Settings};
use crate::traffic::edge::Edge;
use crate::traffic::ratelimit::RateLimiter;
use crate::traffic::response_cache::ResponseCache;
use crate::traffic::upstream::pool::Upstream;
use crate::traffic::{self, Traffic, proxy};

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
    use crate::traffic::upstream::discovery::{self, Answer, Discoverer};
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
fn follow_registry(traffic: &web::Data<Traffic>, revocations: &Arc<Revocations>, every: Duration) {
    let weak = Arc::downgrade(&traffic.clone().into_inner());
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

/// Every room's own endpoints.
pub const ROOMS: &[&[crate::mount::Endpoint]] =
    &[identity::ENDPOINTS, traffic::ENDPOINTS, ops::ENDPOINTS];

/// What the edge asks "is this ours?": the rooms' endpoints and the login
/// pages at `login_path`.
pub fn own(login_path: &str) -> Own {
    Own::new(ROOMS, login_path)
}

/// Build with an explicit source for reloads (SIGHUP, `POST /admin/reload`):
/// the shared resources, then the rooms, then their background tasks, then
/// the server.
pub async fn build_with_source(
    settings: Settings,
    listener: TcpListener,
    source: SettingsSource,
) -> anyhow::Result<Running> {
    common::tls::install_crypto_provider();
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Gateway,
    )
    .await?;
    let registrations = crate::traffic::upstream::registry::Registry::new(db.clone());
    // The service registry as stored: a restart keeps what was registered.
    let registered = registrations
        .load()
        .await
        .context("loading the service registry")?;
    let shared = open_shared(&settings, &db, &registered).await?;
    let sessions = Arc::new(load_sessions(&settings, db.clone()).await?);
    if Own::new(ROOMS, "").collides(&settings.login.path) {
        anyhow::bail!(
            "login.path: `{}` overlaps one of the gateway's own endpoints",
            settings.login.path
        );
    }
    let identity = web::Data::new(Identity::build(&settings, &shared, db.clone(), sessions)?);
    if settings.login.docs_client {
        identity
            .clients
            .ensure_docs_client(&identity.public_url)
            .await
            .context("registering the API documentation's client")?;
    }
    let traffic = web::Data::new(Traffic {
        live: shared.live.clone(),
        registry: std::sync::Mutex::new(registered),
        registrations,
        allowed_targets: crate::traffic::upstream::registry::Allowed::parse(
            &settings.registry.allowed_targets,
            (!settings.registry.allow_credential_upstream)
                .then_some(settings.identity.users_upstream.as_str()),
        )
        .map_err(anyhow::Error::msg)?,
        announcer: shared.revocations.clone(),
        audit: shared.audit.clone(),
        minter: shared.minter.clone(),
        strip_headers: settings
            .identity
            .strip_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        limiter: shared.limiter.clone(),
        cache: ResponseCache::new(settings.cache.max_bytes),
        metrics: shared.metrics.clone(),
    });
    let ops = web::Data::new(Ops {
        tracing: shared.tracing.clone(),
        live: shared.live.clone(),
        metrics: shared.metrics.clone(),
        // An empty value (an unset variable in compose) means no token.
        metrics_token: settings
            .metrics
            .bearer_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty()),
        audit: shared.audit.clone(),
        redis: shared.redis.clone(),
        source,
        docs: Arc::new(ServiceDocs::default()),
        tls: open_certificate(&settings)?,
    });
    spawn_tasks(&settings, &shared, &identity, &traffic, &ops).await?;
    serve(settings, listener, shared, identity, traffic, ops)
}

/// The database-independent resources the rooms share, and the live
/// configuration resolved once.
async fn open_shared(
    settings: &Settings,
    db: &sea_orm::DatabaseConnection,
    registered: &std::collections::BTreeMap<String, crate::traffic::upstream::pool::Registrations>,
) -> anyhow::Result<Shared> {
    let minter = proof_minter(settings).context("loading the gateway proof signing key")?;
    let tracing = common::traces::Tracing::new(
        "gateway",
        &settings.tracing,
        settings.trusted_proxies.clone(),
    )
    .context("tracing")?;
    let redis = RedisLink::open(&settings.redis).await;
    let limiter = match &redis {
        Some(link) => RateLimiter::shared(link.clone(), settings.redis.lease_ms),
        None => RateLimiter::local(),
    };
    let live = Live::resolve(settings, None, registered)?;
    Ok(Shared {
        live: Arc::new(ArcSwap::from_pointee(live)),
        audit: common::audit::AuditLog::new(db.clone(), "gateway"),
        metrics: Arc::new(Metrics::new()?),
        minter: Arc::new(minter),
        revocations: Arc::new(Revocations::new(redis.clone())),
        redis,
        limiter: Arc::new(limiter),
        tracing,
    })
}

async fn load_sessions(
    settings: &Settings,
    db: sea_orm::DatabaseConnection,
) -> anyhow::Result<Sessions> {
    let t = &settings.tokens;
    Sessions::load(
        db,
        t.refresh_ttl_secs,
        t.session_max_secs,
        t.access_ttl_secs + i64::try_from(t.leeway_secs).unwrap_or(0),
    )
    .await
    .context("loading sessions")
}

fn open_certificate(settings: &Settings) -> anyhow::Result<Option<Arc<CertStore>>> {
    if !settings.tls.enabled() {
        return Ok(None);
    }
    let store = CertStore::open(&settings.tls, &settings.data_dir)
        .map_err(anyhow::Error::msg)
        .context("the TLS certificate")?;
    Ok(Some(store))
}

/// The background tasks, each given what it uses (weakly, so each ends
/// with the gateway): reload on SIGHUP, health checks, discovery,
/// revocations, the registry, provider keys, the OpenAPI fetch and the
/// certificate's files.
async fn spawn_tasks(
    settings: &Settings,
    shared: &Shared,
    identity: &web::Data<Identity>,
    traffic: &web::Data<Traffic>,
    ops: &web::Data<Ops>,
) -> anyhow::Result<()> {
    reload_on_sighup(ops.clone().into_inner(), traffic.clone().into_inner());
    let weak = Arc::downgrade(&shared.live);
    crate::traffic::upstream::health::spawn(move || current_upstreams(&weak));
    discover(settings, &shared.live, &shared.metrics).await?;
    shared.revocations.spawn(
        Arc::downgrade(&identity.sessions),
        Duration::from_secs(settings.revocations.resync_secs),
    );
    follow_registry(
        traffic,
        &shared.revocations,
        Duration::from_secs(settings.registry.resync_secs),
    );
    let weak = Arc::downgrade(&shared.live);
    refresh_provider_keys(weak.clone());
    crate::ops::openapi::fetch::spawn(ops.docs.clone(), settings.openapi.clone(), move || {
        published(&weak)
    });
    if let Some(store) = &ops.tls {
        watch_certificate(store.clone(), settings.tls.watch_secs);
    }
    sweep_stores(identity);
    Ok(())
}

/// How often the gateway's stores are swept (see [`sweep_stores`]).
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Sweep ended sessions out of the gateway's database every hour (the
/// refresh families and tokens, the deny list, browser sessions), so the
/// tables hold the live ones, not every login there ever was. Every
/// replica sweeps; a row two of them delete at once is simply gone.
fn sweep_stores(identity: &web::Data<Identity>) {
    let sessions = Arc::downgrade(&identity.sessions);
    let browser = Arc::downgrade(&identity.browser);
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(SWEEP_EVERY).await;
            let (Some(sessions), Some(browser)) = (sessions.upgrade(), browser.upgrade()) else {
                return;
            };
            let swept = match (sessions.sweep().await, browser.sweep().await) {
                (Ok(a), Ok(b)) => a + b,
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot sweep ended sessions; trying again in an hour");
                    continue;
                }
            };
            tracing::debug!(rows = swept, "ended sessions swept");
        }
    });
}

/// The listeners and the app: the rooms' states as app data, their
/// endpoints behind the edge, CORS and the metrics middleware, and the
/// proxy for every other path.
fn serve(
    settings: Settings,
    listener: TcpListener,
    shared: Shared,
    identity: web::Data<Identity>,
    traffic: web::Data<Traffic>,
    ops: web::Data<Ops>,
) -> anyhow::Result<Running> {
    let edge = Arc::new(Edge {
        tls: ops.tls.is_some(),
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
        own: own(&settings.login.path),
    });
    let own = own(&settings.login.path);
    let login_path = settings.login.path.clone();
    let listeners = common::http::Listeners {
        tls: match &ops.tls {
            Some(store) => Some(
                store
                    .server_config(&settings.tls)
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        },
        plain: settings
            .tls
            .redirect_listen
            .map(common::http::bind)
            .transpose()?,
        main: listener,
    };
    let metrics = web::Data::from(shared.metrics.clone());
    let trusted = web::Data::new(TrustedProxies::new(settings.trusted_proxies.clone()));
    let swagger = web::Data::new(crate::ops::openapi::handlers::swagger_config());
    let cors_settings = settings.cors.clone();
    let with_cors = !cors_settings.allowed_origins.is_empty();
    let shortcut = Arc::new(crate::traffic::edge::Shortcut {
        edge: edge.clone(),
        cors: with_cors,
    });
    Ok(common::http::serve_listeners(
        listeners,
        settings.workers,
        settings.shutdown_timeout_secs,
        shared.tracing,
        Some(shortcut),
        move |cfg| {
            cfg.app_data(identity.clone())
                .app_data(traffic.clone())
                .app_data(ops.clone())
                .app_data(metrics.clone())
                .app_data(trusted.clone())
                .app_data(swagger.clone())
                .service(
                    web::scope("")
                        .wrap(actix_web::middleware::from_fn({
                            let edge = edge.clone();
                            move |req, next| crate::traffic::edge::phase(edge.clone(), req, next)
                        }))
                        .wrap(actix_web::middleware::Condition::new(
                            with_cors,
                            cors(&cors_settings),
                        ))
                        .wrap(actix_web::middleware::from_fn({
                            let own = own.clone();
                            move |req, next| crate::traffic::edge::observe(own.clone(), req, next)
                        }))
                        .configure(|c| identity::configure(c, &login_path))
                        .configure(traffic::configure)
                        .configure(ops::configure)
                        .default_service(web::to(proxy::handle)),
                );
        },
    )?)
}

/// Reload the certificate when its files change (cert-manager rewrites
/// them in place), checking every `every_secs`; a bad new pair is logged
/// and the old one keeps serving.
fn watch_certificate(store: Arc<CertStore>, every_secs: u64) {
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

/// SIGHUP re-reads the configuration (see [`Ops::reload`]).
fn reload_on_sighup(ops: Arc<Ops>, traffic: Arc<Traffic>) {
    actix_web::rt::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let (ops, traffic) = (ops.clone(), traffic.clone());
            match tokio::task::spawn_blocking(move || ops.reload(&traffic)).await {
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => {
                    tracing::error!(%reason, "reload refused; the previous configuration keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    });
}
