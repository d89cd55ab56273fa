//! The gateway's shared state, behind `web::Data`. What a reload may change
//! (keys, routes, upstreams, the no-route answer) sits in one [`Live`] value
//! swapped atomically: a request sees the old or the new configuration,
//! never a mix, and in-flight requests finish on the one they started with.
//!
//! Only the handler layer (proxy, compose, auth, admin, ops, the OpenAPI
//! handlers and admission's extractors) and startup know this type; the
//! engines it holds never import it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use common::config::ConfigError;
use common::identity::ProofMinter;
use secrecy::SecretString;

use crate::cache::ResponseCache;
use crate::compose::table::ComposedTable;
use crate::issuers::Issuers;
use crate::login_limits::FailureLimiter;
use crate::metrics::Metrics;
use crate::openapi::fetch::ServiceDocs;
use crate::ratelimit::{Quota, RateLimiter};
use crate::redis_link::RedisLink;
use crate::routes::RouteTable;
use crate::sessions::Sessions;
use crate::settings::{NoRoute, Settings};
use crate::tokens::TokenKeys;
use crate::upstream::pool::{Registrations, Upstream, build_all};

/// The reloadable part of the configuration, resolved.
pub struct Live {
    pub tokens: TokenKeys,
    /// Trusted external identity providers and their cached keys.
    pub issuers: Issuers,
    pub routes: RouteTable,
    pub composed: ComposedTable,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub no_route: NoRoute,
    pub max_body_bytes: u64,
    /// `identity.forward_claims`: (claim, header) for every route.
    pub forward_claims: Vec<(String, String)>,
    /// Every header any route forwards a claim in: stripped from clients.
    pub claim_headers: Vec<String>,
    /// Every claim any route forwards: kept from trusted providers' tokens.
    pub claim_names: Vec<String>,
    /// Limits and token sources of relayed WebSockets.
    pub websocket: crate::websocket::WebSocketSettings,
}

impl Live {
    /// Resolve from settings (reads key files; generates the development
    /// access-token key when none is set). Targets known to `previous` keep
    /// their health and counters; targets registered through the admin API
    /// are re-applied.
    pub fn resolve(
        settings: &Settings,
        previous: Option<&Live>,
        registry: &BTreeMap<String, Registrations>,
    ) -> anyhow::Result<Self> {
        let t = &settings.tokens;
        let dev_key = if t.keys.is_empty() {
            Some(
                common::keys::ensure_ed25519(&settings.data_dir.join("keys"), "access-token")
                    .context("the development access-token key")?
                    .private_pem,
            )
        } else {
            None
        };
        let known = |u: &str| settings.upstreams.contains_key(u);
        let routes = RouteTable::new(&settings.routes, known).map_err(anyhow::Error::msg)?;
        let forward_claims = crate::routes::forward_claims(
            &settings.identity.forward_claims,
            "identity.forward_claims",
        )
        .map_err(anyhow::Error::msg)?;
        let every = || {
            forward_claims
                .iter()
                .chain(routes.routes().iter().flat_map(|r| r.forward_claims.iter()))
        };
        let mut claim_headers: Vec<String> = every().map(|(_, h)| h.clone()).collect();
        claim_headers.sort();
        claim_headers.dedup();
        let mut claim_names: Vec<String> = every().map(|(c, _)| c.clone()).collect();
        claim_names.sort();
        claim_names.dedup();
        Ok(Self {
            tokens: TokenKeys::new(
                &t.keys,
                dev_key.as_deref(),
                &t.issuer,
                &t.audience,
                t.leeway_secs,
            )?,
            issuers: Issuers::new(
                &settings.trusted_issuers,
                previous.map(|p| &p.issuers),
                crate::upstream::client::fetch_provider_document,
                t.leeway_secs,
            ),
            routes,
            forward_claims,
            claim_headers,
            claim_names,
            websocket: settings.websocket.clone(),
            upstreams: build_all(
                &settings.upstreams,
                registry,
                previous.map(|p| &p.upstreams),
            )
            .map_err(anyhow::Error::msg)?,
            composed: ComposedTable::new(&settings.composed, known).map_err(anyhow::Error::msg)?,
            no_route: settings.no_route.clone(),
            max_body_bytes: settings.max_body_bytes,
        })
    }
}

/// Where a reload reads settings from (the same layers as startup).
pub type SettingsSource = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

pub struct Gateway {
    /// This gateway's traces: its tracer, the `traceparent` policy at the
    /// edge, the export counters for `/metrics`.
    pub tracing: common::traces::Tracing,
    /// Shared with the background tasks that follow the configuration
    /// (health checks, the OpenAPI fetch).
    pub live: Arc<ArcSwap<Live>>,
    /// Targets added or removed through the admin API. Held while a reload
    /// or an admin change builds and swaps, so the two never interleave.
    pub registry: Mutex<BTreeMap<String, Registrations>>,
    /// The registrations in the database (the source of `registry`).
    pub registrations: crate::upstream::registry::Registry,
    /// `registry.allowed_targets`: the hosts a registration may name.
    pub allowed_targets: crate::upstream::registry::Allowed,
    pub sessions: Arc<Sessions>,
    /// The security events this gateway sees, in its own database.
    pub audit: common::audit::AuditLog,
    pub minter: ProofMinter,
    /// Extra client headers removed before forwarding (besides the identity ones).
    pub strip_headers: Vec<String>,
    /// The upstream that checks credentials and re-reads users.
    pub users_upstream: String,
    pub access_ttl_secs: i64,
    /// Roles exercised only with a second factor (`mfa.required_for_roles`).
    pub mfa_roles: Vec<String>,
    /// The challenges between a login's two steps.
    pub challenges: crate::mfa::Challenges,
    pub user_limiter: FailureLimiter,
    /// Failed client authentications per address count here too, with
    /// failed logins.
    pub ip_limiter: FailureLimiter,
    /// Failed client authentications per `client_id`.
    pub client_limiter: FailureLimiter,
    /// Machine clients (client credentials).
    pub clients: crate::clients::Clients,
    /// Trusted providers' tokens being verified and linked, by token: the
    /// single flight that makes concurrent first requests with one token
    /// share one verification and one users call (entries live seconds).
    pub linking: moka::future::Cache<String, Arc<crate::tokens::AccessClaims>>,
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
    /// The connection to Redis, when configured; lent to the rate limiter,
    /// the login limits and the revocation announcements.
    pub redis: Option<Arc<RedisLink>>,
    /// Announces revocations to the other replicas.
    pub revocations: Arc<crate::revocations::Revocations>,
    /// Per-route request rate limits (in memory, or shared through Redis).
    pub limiter: RateLimiter,
    pub cache: ResponseCache,
    pub metrics: Arc<Metrics>,
    pub metrics_token: Option<SecretString>,
    pub source: SettingsSource,
    /// The services' OpenAPI documents, last good ones.
    pub docs: Arc<ServiceDocs>,
    /// The HTTPS listener's certificate, when TLS is on.
    pub tls: Option<Arc<crate::tls::CertStore>>,
}

impl Gateway {
    /// The gateway's state from a request's app data (registered at
    /// startup; missing only by a wiring mistake, answered 500 and logged).
    pub fn of(
        req: &actix_web::HttpRequest,
    ) -> Result<actix_web::web::Data<Gateway>, actix_web::Error> {
        req.app_data::<actix_web::web::Data<Gateway>>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("the gateway state is missing from app data");
                actix_web::Error::from(common::Problem::internal())
            })
    }

    /// Make `registry` this replica's registrations and apply them to the
    /// live upstreams (an unchanged upstream is left alone). Held with the
    /// registry's lock, like a reload, so the two never interleave.
    pub fn apply_registry(&self, registry: BTreeMap<String, Registrations>) {
        let Ok(mut mine) = self.registry.lock() else {
            return;
        };
        let live = self.live.load();
        let none = Registrations::default();
        for (name, up) in &live.upstreams {
            up.apply_registrations(registry.get(name).unwrap_or(&none));
        }
        *mine = registry;
    }

    /// Read the registrations from the database and apply them; a failed
    /// read keeps what this replica has (and is logged).
    pub async fn sync_registry(&self) {
        match self.registrations.load().await {
            Ok(registry) => self.apply_registry(registry),
            Err(e) => tracing::warn!(error = %e, "could not re-read the service registry"),
        }
    }

    /// Re-read the settings and swap in the new keys, routes and upstreams.
    /// Blocking (reads key files): call it off the reactor. On any problem
    /// the old configuration keeps serving and the reason is returned.
    pub fn reload(&self) -> Result<Arc<Live>, String> {
        let settings = (self.source)().map_err(|e| e.to_string())?;
        // A certificate that does not load refuses the whole reload: the
        // old one keeps serving, and so does the old configuration.
        if let Some(store) = &self.tls {
            store.reload().map_err(|e| format!("tls: {e}"))?;
        }
        let registry = self.registry.lock().map_err(|_| "registry lock poisoned")?;
        let previous = self.live.load_full();
        let live = Arc::new(
            Live::resolve(&settings, Some(&previous), &registry).map_err(|e| format!("{e:#}"))?,
        );
        self.live.store(live.clone());
        drop(registry);
        tracing::info!(
            routes = live.routes.routes().len(),
            active_kid = live.tokens.active_kid(),
            "configuration reloaded"
        );
        Ok(live)
    }
}
