//! The gateway's shared state. What a reload may change (keys, routes,
//! upstreams, the no-route answer) sits in one [`Live`] value swapped
//! atomically: a request sees the old or the new configuration, never a mix,
//! and in-flight requests finish on the one they started with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use common::config::ConfigError;
use common::identity::ProofMinter;

use secrecy::SecretString;

use crate::cache::ResponseCache;
use crate::compose::ComposedTable;
use crate::limiter::FailureLimiter;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::routes::RouteTable;
use crate::sessions::Sessions;
use crate::tokens::TokenKeys;
use crate::upstreams::{Registrations, Upstream};
use crate::{NoRoute, Settings};

/// The reloadable part of the configuration, resolved.
pub struct Live {
    pub tokens: TokenKeys,
    pub routes: RouteTable,
    pub composed: ComposedTable,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub no_route: NoRoute,
    pub max_body_bytes: u64,
}

/// Where a reload reads settings from (the same layers as startup).
pub type SettingsSource = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

pub struct Gateway {
    pub live: ArcSwap<Live>,
    /// Targets added or removed through the admin API. Held while a reload
    /// or an admin change builds and swaps, so the two never interleave.
    pub registry: Mutex<BTreeMap<String, Registrations>>,
    pub sessions: Sessions,
    pub minter: ProofMinter,
    /// Extra client headers removed before forwarding (besides the identity ones).
    pub strip_headers: Vec<String>,
    /// The upstream that checks credentials and re-reads users.
    pub users_upstream: String,
    pub access_ttl_secs: i64,
    pub user_limiter: FailureLimiter,
    pub ip_limiter: FailureLimiter,
    /// `login_limits.rate`: login attempts per client IP.
    pub login_quota: Option<crate::ratelimit::Quota>,
    /// Per-route request rate limits (in memory, or shared through Redis).
    pub limiter: RateLimiter,
    pub cache: ResponseCache,
    pub metrics: Metrics,
    pub metrics_token: Option<SecretString>,
    pub source: SettingsSource,
    /// The services' OpenAPI documents, last good ones.
    pub docs: crate::openapi::ServiceDocs,
}

impl Gateway {
    /// Re-read the settings and swap in the new keys, routes and upstreams.
    /// Blocking (reads key files): call it off the reactor. On any problem
    /// the old configuration keeps serving and the reason is returned.
    pub fn reload(&self) -> Result<Arc<Live>, String> {
        let settings = (self.source)().map_err(|e| e.to_string())?;
        let registry = self.registry.lock().map_err(|_| "registry lock poisoned")?;
        let previous = self.live.load_full();
        let live = Arc::new(
            crate::live(&settings, Some(&previous), &registry).map_err(|e| format!("{e:#}"))?,
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
