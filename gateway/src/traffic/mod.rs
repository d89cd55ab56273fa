//! Traffic: where requests go. The edge, the route table, the proxy's
//! phases, the upstreams and the one client that reaches them, rate
//! limits, the response cache, composed routes and the WebSocket relay.

pub mod cert_subjects;
pub mod compose;
pub mod edge;
pub mod forward_auth;
pub mod header_edits;
pub mod proxy;
pub mod ratelimit;
pub mod response_cache;
pub mod routes;
pub mod upstream;
pub mod ws_frames;
pub mod ws_relay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use common::audit::AuditLog;
use common::identity::ProofMinter;

use actix_web::web;

use crate::identity::revocations::Revocations;
use crate::live::Live;
use crate::mount::{Endpoint, mount};
use crate::ops::metrics::Metrics;
use crate::settings::Settings;
use upstream::pool::Registrations;

/// What the traffic room's phases and the registry use.
pub struct Traffic {
    /// Shared with the background tasks that follow the configuration
    /// (health checks, discovery, the OpenAPI fetch).
    pub live: Arc<ArcSwap<Live>>,
    /// Targets added or removed through the admin API. Held while a reload
    /// or an admin change builds and swaps, so the two never interleave.
    pub registry: Mutex<BTreeMap<String, Registrations>>,
    /// The registrations in the database (the source of `registry`).
    pub registrations: upstream::registry::Registry,
    /// `registry.allowed_targets`: the hosts a registration may name.
    pub allowed_targets: upstream::registry::Allowed,
    /// Announces registry changes to the other replicas (the revocation
    /// channel carries them).
    pub announcer: Arc<Revocations>,
    /// Registrations are audited.
    pub audit: AuditLog,
    pub minter: Arc<ProofMinter>,
    /// Extra client headers removed before forwarding (besides the identity ones).
    pub strip_headers: Vec<String>,
    /// Per-route request rate limits (in memory, or shared through Redis).
    pub limiter: Arc<ratelimit::RateLimiter>,
    pub cache: response_cache::ResponseCache,
    pub metrics: Arc<Metrics>,
}

impl Traffic {
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

    /// Resolve `settings` against what is live (targets keep their state,
    /// registrations are re-applied) and swap it in. Blocking (reads key
    /// files): call it off the reactor. On any problem the old
    /// configuration keeps serving and the reason is returned.
    pub fn swap(&self, settings: &Settings) -> Result<Arc<Live>, String> {
        let registry = self.registry.lock().map_err(|_| "registry lock poisoned")?;
        let previous = self.live.load_full();
        let live = Arc::new(
            Live::resolve(settings, Some(&previous), &registry).map_err(|e| format!("{e:#}"))?,
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

/// The traffic room's endpoints (see [`Endpoint`]): the decisions for
/// another ingress, at `/auth/verify` and, for Envoy's `path_prefix`, under
/// it, for every method.
pub const ENDPOINTS: &[Endpoint] = &[Endpoint::Scope(forward_auth::PATH, |s| {
    s.service(web::resource("").to(forward_auth::verify))
        .service(web::resource("/{tail:.*}").to(forward_auth::verify))
})];

/// Mount the traffic room's endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    mount(cfg, ENDPOINTS);
}
