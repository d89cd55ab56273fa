//! The gateway's shared state. What a reload may change (keys, routes,
//! upstreams, the no-route answer) sits in one [`Live`] value swapped
//! atomically: a request sees the old or the new configuration, never a mix,
//! and in-flight requests finish on the one they started with.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use common::config::ConfigError;
use common::identity::ProofMinter;

use crate::limiter::FailureLimiter;
use crate::routes::RouteTable;
use crate::sessions::Sessions;
use crate::tokens::TokenKeys;
use crate::{NoRoute, Settings};

/// The reloadable part of the configuration, resolved.
pub struct Live {
    pub tokens: TokenKeys,
    pub routes: RouteTable,
    pub upstreams: BTreeMap<String, Vec<String>>,
    pub no_route: NoRoute,
}

/// Where a reload reads settings from (the same layers as startup).
pub type SettingsSource = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

pub struct Gateway {
    pub live: ArcSwap<Live>,
    pub sessions: Sessions,
    pub minter: ProofMinter,
    /// Extra client headers removed before forwarding (besides the identity ones).
    pub strip_headers: Vec<String>,
    /// The upstream that checks credentials and re-reads users.
    pub users_upstream: String,
    pub access_ttl_secs: i64,
    pub user_limiter: FailureLimiter,
    pub ip_limiter: FailureLimiter,
    pub source: SettingsSource,
}

impl Gateway {
    /// Re-read the settings and swap in the new keys, routes and upstreams.
    /// Blocking (reads key files): call it off the reactor. On any problem
    /// the old configuration keeps serving and the reason is returned.
    pub fn reload(&self) -> Result<Arc<Live>, String> {
        let settings = (self.source)().map_err(|e| e.to_string())?;
        let live = Arc::new(crate::live(&settings).map_err(|e| format!("{e:#}"))?);
        self.live.store(live.clone());
        tracing::info!(
            routes = live.routes.routes().len(),
            active_kid = live.tokens.active_kid(),
            "configuration reloaded"
        );
        Ok(live)
    }
}
