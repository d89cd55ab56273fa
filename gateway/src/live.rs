//! The gateway's shared state, behind `web::Data`. What a reload may change
//! (keys, routes, upstreams, the no-route answer) sits in one [`Live`] value
//! swapped atomically: a request sees the old or the new configuration,
//! never a mix, and in-flight requests finish on the one they started with.
//!
//! The rooms' states each hold the `Arc<ArcSwap<Live>>` they read;
//! [`room`] fetches one from a request.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use common::config::ConfigError;

use crate::identity::issuers::Issuers;
use crate::identity::tokens::TokenKeys;
use crate::settings::{NoRoute, Settings};
use crate::traffic::compose::table::ComposedTable;
use crate::traffic::routes::RouteTable;
use crate::traffic::upstream::pool::{Registrations, Upstream, build_all};

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
    pub websocket: crate::traffic::ws_relay::WebSocketSettings,
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
        let forward_claims = crate::traffic::routes::forward_claims(
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
                crate::traffic::upstream::client::fetch_provider_document,
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

/// What more than one room holds: opened once, lent to each.
pub struct Shared {
    pub live: Arc<arc_swap::ArcSwap<Live>>,
    pub audit: common::audit::AuditLog,
    pub metrics: Arc<crate::ops::metrics::Metrics>,
    pub minter: Arc<common::identity::ProofMinter>,
    pub redis: Option<Arc<crate::redis_link::RedisLink>>,
    pub limiter: Arc<crate::traffic::ratelimit::RateLimiter>,
    pub revocations: Arc<crate::identity::revocations::Revocations>,
    pub tracing: common::traces::Tracing,
}

/// A room's state from a request's app data (registered at startup;
/// missing only by a wiring mistake, answered 500 and logged).
pub fn room<T: 'static>(
    req: &actix_web::HttpRequest,
) -> Result<actix_web::web::Data<T>, actix_web::Error> {
    req.app_data::<actix_web::web::Data<T>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!(
                room = std::any::type_name::<T>(),
                "a room's state is missing from app data"
            );
            actix_web::Error::from(common::Problem::internal())
        })
}
