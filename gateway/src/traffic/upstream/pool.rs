//! Upstreams: named groups of targets, with balancing, active health checks
//! (a probe on an interval, see `health`) and passive ones (a target that
//! fails in traffic is ejected for a cool-down). Targets carry their own
//! state, so a reload or an admin change keeps what is known about a target
//! that stays.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::spec::{Balance, HealthCheck, Passive, TargetConfig, UpstreamSpec};
use crate::clock::mono_ms;

/// `upstreams.<name>`: a list of target base URLs, or the full form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UpstreamConfig {
    Targets(Vec<String>),
    Full(UpstreamSpec),
}

impl UpstreamConfig {
    pub fn spec(&self) -> UpstreamSpec {
        match self {
            UpstreamConfig::Targets(t) => UpstreamSpec {
                targets: t.iter().cloned().map(TargetConfig::Url).collect(),
                ..UpstreamSpec::default()
            },
            UpstreamConfig::Full(s) => s.clone(),
        }
    }
}

/// Where a target comes from (`GET /admin/upstreams` says it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum TargetSource {
    /// The configuration.
    Config,
    /// The service registry: registered through the admin API, by whom
    /// and when.
    Registered {
        registered_by: Option<String>,
        registered_at: chrono::DateTime<chrono::Utc>,
    },
    /// An address a configured hostname resolved to (DNS discovery).
    Discovered { discovered_from: String },
}

/// One target and what is known about it.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub url: String,
    /// Where it comes from (a registration may take over a configured URL).
    source: Mutex<TargetSource>,
    /// The active check's verdict (targets start healthy).
    healthy: AtomicBool,
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    /// Consecutive failures seen in traffic.
    passive_failures: AtomicU32,
    /// Out of rotation until this `mono_ms`.
    ejected_until: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU64,
    /// Room for requests in flight (`max_connections`); replaced, not
    /// resized, when a reload changes the bound (requests holding a permit
    /// of the old one finish on it).
    room: ArcSwap<Room>,
}

/// The permits of one bound.
#[derive(Debug)]
struct Room {
    max: u32,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Room {
    fn new(max: u32) -> Self {
        Self {
            max,
            permits: Arc::new(tokio::sync::Semaphore::new(max as usize)),
        }
    }
}

/// A target's state as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub url: String,
    /// `healthy`, `unhealthy` (failed its checks) or `ejected` (failed in traffic).
    pub health: &'static str,
    pub in_flight: usize,
    /// The bound on requests in flight (`max_connections`).
    pub max_connections: u32,
    pub requests: u64,
    pub failures: u64,
    pub ejections: u64,
    #[serde(flatten)]
    pub source: TargetSource,
}

impl Target {
    pub fn new(name: String, url: String) -> Self {
        Self::bounded(name, url, UpstreamSpec::default().max_connections)
    }

    /// A target with room for `max_connections` requests in flight.
    pub fn bounded(name: String, url: String, max_connections: u32) -> Self {
        Self {
            name,
            url,
            source: Mutex::new(TargetSource::Config),
            healthy: AtomicBool::new(true),
            ok_streak: AtomicU32::new(0),
            fail_streak: AtomicU32::new(0),
            passive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            room: ArcSwap::from_pointee(Room::new(max_connections)),
        }
    }

    /// Change the bound (a reload); the same bound keeps its permits.
    fn bound_to(&self, max_connections: u32) {
        if self.room.load().max != max_connections {
            self.room.store(Arc::new(Room::new(max_connections)));
        }
    }

    /// Whether a request could start now without waiting.
    fn has_room(&self) -> bool {
        self.room.load().permits.available_permits() > 0
    }

    fn ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    /// In rotation: healthy by its checks and not ejected.
    pub fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.ejected(now)
    }

    pub fn health(&self) -> &'static str {
        if !self.healthy.load(Ordering::Relaxed) {
            "unhealthy"
        } else if self.ejected(mono_ms()) {
            "ejected"
        } else {
            "healthy"
        }
    }

    pub fn view(&self) -> TargetView {
        TargetView {
            name: self.name.clone(),
            url: self.url.clone(),
            health: self.health(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_connections: self.room.load().max,
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            source: self.source(),
        }
    }

    pub fn source(&self) -> TargetSource {
        self.source
            .lock()
            .map(|s| s.clone())
            .unwrap_or(TargetSource::Config)
    }

    fn set_source(&self, source: &TargetSource) {
        if let Ok(mut s) = self.source.lock()
            && *s != *source
        {
            *s = source.clone();
        }
    }

    /// Traffic reached the target and it answered.
    pub fn record_success(&self) {
        self.passive_failures.store(0, Ordering::Relaxed);
    }

    /// Traffic failed to reach the target (connection, broken answer, timeout).
    pub fn record_failure(&self, passive: &Passive) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= passive.max_failures {
            let until = mono_ms() + passive.cooldown_secs.saturating_mul(1000);
            if !self.ejected(mono_ms()) {
                self.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target_url = %self.url, failures = n, cooldown_secs = passive.cooldown_secs, "target ejected");
            }
            self.ejected_until.store(until, Ordering::Relaxed);
            // Half-open after the cool-down: one more failure ejects again.
            self.passive_failures
                .store(passive.max_failures.saturating_sub(1), Ordering::Relaxed);
        }
    }

    /// The outcome of one active probe.
    pub(super) fn record_probe(&self, ok: bool, hc: &HealthCheck) {
        if ok {
            self.fail_streak.store(0, Ordering::Relaxed);
            let n = self.ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= hc.healthy_threshold && !self.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(target_url = %self.url, "target healthy again");
            }
            // A probe that passes ends an ejection early.
            if self.ejected(mono_ms()) {
                self.ejected_until.store(0, Ordering::Relaxed);
                self.passive_failures.store(0, Ordering::Relaxed);
            }
        } else {
            self.ok_streak.store(0, Ordering::Relaxed);
            let n = self.fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= hc.unhealthy_threshold && self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(target_url = %self.url, "target failed its health checks");
            }
        }
    }
}

/// A target chosen for one request; counts it as in flight until dropped,
/// and once [`admitted`](Lease::admit), holds one of the target's
/// `max_connections` permits.
pub struct Lease {
    target: Arc<Target>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// No room on the target within the time allowed.
#[derive(Debug)]
pub struct Saturated;

impl Lease {
    /// A lease on a target chosen by the caller (fan-out parts).
    pub fn on(target: Arc<Target>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        target.requests.fetch_add(1, Ordering::Relaxed);
        Lease {
            target,
            permit: None,
        }
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Take room on the target: at once when there is some (no await, no
    /// clock read), else wait for a request to finish, at most `within`.
    /// Answers what is left of `within`.
    pub async fn admit(
        &mut self,
        within: std::time::Duration,
    ) -> Result<std::time::Duration, Saturated> {
        if self.permit.is_some() {
            return Ok(within);
        }
        let permits = self.target.room.load().permits.clone();
        let (permit, left) = match permits.clone().try_acquire_owned() {
            Ok(p) => (p, within),
            Err(_) => {
                let asked = std::time::Instant::now();
                match tokio::time::timeout(within, permits.acquire_owned()).await {
                    Ok(Ok(p)) => (p, within.saturating_sub(asked.elapsed())),
                    _ => return Err(Saturated),
                }
            }
        };
        self.permit = Some(permit);
        Ok(left)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream at run time.
pub struct Upstream {
    pub name: String,
    pub spec: UpstreamSpec,
    /// The configured targets, (name, url), before the registry's changes.
    configured: Vec<(String, String)>,
    /// What the service registry changes (see [`Upstream::refresh`]).
    registered: Mutex<Registrations>,
    /// The names discovered by DNS, and each one's last good addresses
    /// (by [`super::discovery::Lookup::key`]).
    lookups: Vec<super::discovery::Lookup>,
    discovered: Mutex<BTreeMap<String, super::discovery::Found>>,
    /// Held while the targets are recomputed: the registry (a worker or the
    /// resync task) and discovery (its task) may refresh at once, and the
    /// later must not store what the earlier computed before its change.
    refreshing: Mutex<()>,
    targets: ArcSwap<Vec<Arc<Target>>>,
    cursor: AtomicUsize,
    /// When the next active check is due (`mono_ms`).
    pub(super) next_probe: AtomicU64,
    /// The TLS client configuration for `https://` targets (`None`: the
    /// connector's default, the public roots).
    pub tls: Option<Arc<super::tls::ClientTls>>,
}

impl Upstream {
    /// Build from its spec, reusing the state of targets `previous` knows.
    /// `targets` are the configured (name, url) pairs.
    pub fn new(
        name: &str,
        spec: UpstreamSpec,
        targets: &[(String, String)],
        previous: Option<&Upstream>,
    ) -> Self {
        Self::with_lookups(name, spec, targets, Vec::new(), previous)
    }

    /// [`Self::new`] with names to discover; a name `previous` discovered
    /// too keeps its addresses (a reload does not empty it).
    pub fn with_lookups(
        name: &str,
        spec: UpstreamSpec,
        targets: &[(String, String)],
        lookups: Vec<super::discovery::Lookup>,
        previous: Option<&Upstream>,
    ) -> Self {
        let mut discovered = BTreeMap::new();
        if let Some(p) = previous
            && let Ok(before) = p.discovered.lock()
        {
            for l in &lookups {
                if let Some(found) = before.get(&l.key()) {
                    discovered.insert(l.key(), found.clone());
                }
            }
        }
        let up = Self {
            name: name.to_owned(),
            spec,
            configured: targets.to_vec(),
            registered: Mutex::new(Registrations::default()),
            lookups,
            discovered: Mutex::new(discovered),
            refreshing: Mutex::new(()),
            targets: ArcSwap::from_pointee(previous.map(|p| p.targets()).unwrap_or_default()),
            cursor: AtomicUsize::new(0),
            next_probe: AtomicU64::new(0),
            tls: None,
        };
        up.refresh();
        up
    }

    /// The names this upstream discovers.
    pub fn lookups(&self) -> Vec<super::discovery::Lookup> {
        self.lookups.clone()
    }

    /// The addresses a name has now (see `upstream::discovery`).
    pub fn set_discovered(&self, key: &str, found: super::discovery::Found) {
        if let Ok(mut d) = self.discovered.lock() {
            if d.get(key) == Some(&found) {
                return;
            }
            d.insert(key.to_owned(), found);
        }
        self.refresh();
    }

    /// Whether `url` is one of the configured targets.
    pub fn is_configured(&self, url: &str) -> bool {
        self.configured.iter().any(|(_, u)| u == url)
    }

    /// The hosts this upstream's configuration names (its targets' and
    /// the names it discovers): what a registration may name without
    /// `registry.allowed_targets`.
    pub fn configured_hosts(&self) -> Vec<String> {
        let host = |u: &str| url::Url::parse(u).ok()?.host_str().map(str::to_owned);
        self.configured
            .iter()
            .filter_map(|(_, u)| host(u))
            .chain(self.lookups.iter().filter_map(|l| match l {
                super::discovery::Lookup::Host { host, .. } => Some(host.clone()),
                super::discovery::Lookup::Srv { .. } => None,
            }))
            .collect()
    }

    /// Take the registry's changes to this upstream (targets added, and
    /// configured ones removed) and refresh the targets.
    pub fn apply_registrations(&self, registrations: &Registrations) {
        if let Ok(mut r) = self.registered.lock() {
            if *r == *registrations {
                return;
            }
            *r = registrations.clone();
        }
        self.refresh();
    }

    /// The targets that should be in this upstream: the configured ones
    /// but those the registry removed, then the registered ones (a URL or
    /// name already there is not added twice).
    fn desired(&self) -> Vec<(String, String, TargetSource)> {
        let reg = self
            .registered
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut out: Vec<(String, String, TargetSource)> = self
            .configured
            .iter()
            .filter(|(_, u)| !reg.removed.contains(u))
            .map(|(n, u)| (n.clone(), u.clone(), TargetSource::Config))
            .collect();
        let discovered = self
            .discovered
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        for (from, found) in &discovered {
            for (n, u) in found {
                if !reg.removed.contains(u) && !out.iter().any(|(_, url, _)| url == u) {
                    out.push((
                        n.clone(),
                        u.clone(),
                        TargetSource::Discovered {
                            discovered_from: from.clone(),
                        },
                    ));
                }
            }
        }
        for (u, r) in &reg.added {
            if !out.iter().any(|(n, url, _)| url == u || *n == r.name) {
                out.push((
                    r.name.clone(),
                    u.clone(),
                    TargetSource::Registered {
                        registered_by: r.by.clone(),
                        registered_at: r.at,
                    },
                ));
            }
        }
        out
    }

    /// Make the targets what [`Self::desired`] says. A target that stays
    /// keeps its state (health, counters, its connection bound); one that
    /// goes leaves the rotation, and the requests holding it finish.
    fn refresh(&self) {
        let _one_at_a_time = self.refreshing.lock();
        let desired = self.desired();
        let max = self.spec.max_connections;
        self.targets.rcu(|current| {
            desired
                .iter()
                .map(|(n, u, source)| {
                    let target = current
                        .iter()
                        .find(|t| &t.url == u && &t.name == n)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Target::bounded(n.clone(), u.clone(), max)));
                    target.bound_to(max);
                    target.set_source(source);
                    target
                })
                .collect::<Vec<_>>()
        });
    }

    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.targets.load().as_ref().clone()
    }

    /// True when a target other than `this` is in rotation.
    pub fn has_other_than(&self, this: &Arc<Target>) -> bool {
        let now = mono_ms();
        self.targets
            .load()
            .iter()
            .any(|t| !Arc::ptr_eq(t, this) && t.available(now))
    }

    /// True when at least one target is in rotation.
    pub fn has_available(&self) -> bool {
        let now = mono_ms();
        self.targets.load().iter().any(|t| t.available(now))
    }

    /// Choose a target in rotation, other than `avoid`, by the balancing
    /// policy. `None`: no target is available.
    pub fn pick(&self, avoid: Option<&Arc<Target>>) -> Option<Lease> {
        let now = mono_ms();
        let targets = self.targets.load();
        let usable =
            |t: &&Arc<Target>| t.available(now) && avoid.is_none_or(|a| !Arc::ptr_eq(a, t));
        let n = targets.iter().filter(usable).count();
        if n == 0 {
            return None;
        }
        let chosen = match self.spec.balance {
            // The turn's target, or the next one with room when it has none.
            Balance::RoundRobin => {
                let k = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                let mut turn = targets.iter().filter(usable).cycle().skip(k).take(n);
                let first = turn.next();
                if first.is_some_and(|t| !t.has_room()) {
                    turn.find(|t| t.has_room()).or(first)
                } else {
                    first
                }
            }
            Balance::Random => targets.iter().filter(usable).nth(rand::random_range(0..n)),
            Balance::LeastConnections => {
                // Ties go round-robin, so equal targets share the load.
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                targets
                    .iter()
                    .filter(usable)
                    .enumerate()
                    .min_by_key(|(i, t)| (t.in_flight.load(Ordering::Relaxed), (i + n - start) % n))
                    .map(|(_, t)| t)
            }
        }?;
        Some(Lease::on(chosen.clone()))
    }
}

/// Targets added or removed through the admin API; they outlive reloads
/// (a reload re-applies them to the configured list) and, kept in the
/// gateway's database by `upstream::registry`, restarts.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Registrations {
    /// URL -> the registration.
    pub added: BTreeMap<String, Registered>,
    /// URLs of configured targets taken out.
    pub removed: BTreeSet<String>,
}

/// A target registered through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub name: String,
    /// The principal that registered it.
    pub by: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl super::discovery::Discovers for Upstream {
    fn name(&self) -> &str {
        &self.name
    }

    fn lookups(&self) -> Vec<super::discovery::Lookup> {
        Upstream::lookups(self)
    }

    fn set_discovered(&self, key: &str, found: super::discovery::Found) {
        Upstream::set_discovered(self, key, found);
    }
}

/// Build every upstream from config, the admin changes and the previous state.
pub fn build_all(
    configs: &BTreeMap<String, UpstreamConfig>,
    registry: &BTreeMap<String, Registrations>,
    previous: Option<&BTreeMap<String, Arc<Upstream>>>,
) -> Result<BTreeMap<String, Arc<Upstream>>, String> {
    let mut out = BTreeMap::new();
    for (name, c) in configs {
        let mut spec = c.spec();
        spec.check(name)?;
        let mut lookups = Vec::new();
        let mut targets: Vec<(String, String)> = Vec::new();
        for t in &spec.targets {
            match t.lookup() {
                Some(l) => lookups.push(l.map_err(|e| format!("upstreams.{name}: {e}"))?),
                None => targets.push(t.resolve()?),
            }
        }
        spec.targets = targets
            .iter()
            .map(|(n, u)| TargetConfig::Named {
                name: n.clone(),
                url: u.clone(),
            })
            .chain(
                spec.targets
                    .iter()
                    .filter(|t| t.lookup().is_some())
                    .cloned(),
            )
            .collect();
        let prev = previous.and_then(|p| p.get(name)).map(Arc::as_ref);
        // The files are read once: an unchanged `tls` keeps what was built.
        let tls = match prev {
            Some(p) if p.spec.tls == spec.tls => p.tls.clone(),
            _ if spec.tls.is_default() => None,
            _ => Some(Arc::new(
                spec.tls
                    .build()
                    .map_err(|e| format!("upstreams.{name}.{e}"))?,
            )),
        };
        let mut up = Upstream::with_lookups(name, spec, &targets, lookups, prev);
        up.tls = tls;
        if let Some(reg) = registry.get(name) {
            up.apply_registrations(reg);
        }
        out.insert(name.clone(), Arc::new(up));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn upstream(balance: Balance, n: usize) -> Upstream {
        let targets: Vec<(String, String)> = (0..n)
            .map(|i| (format!("t{i}"), format!("http://t{i}")))
            .collect();
        let spec = UpstreamSpec {
            targets: targets
                .iter()
                .map(|(_, u)| TargetConfig::Url(u.clone()))
                .collect(),
            balance,
            ..UpstreamSpec::default()
        };
        Upstream::new("u", spec, &targets, None)
    }

    #[test]
    fn round_robin_skips_unavailable_and_avoided_targets() {
        let up = upstream(Balance::RoundRobin, 3);
        let picks: Vec<String> = (0..6)
            .map(|_| up.pick(None).unwrap().target().url.clone())
            .collect();
        assert_eq!(picks.iter().filter(|u| *u == "http://t0").count(), 2);
        let ts = up.targets();
        let passive = Passive {
            max_failures: 2,
            cooldown_secs: 60,
        };
        ts[1].record_failure(&passive);
        assert!(ts[1].available(mono_ms()), "one failure is not enough");
        ts[1].record_failure(&passive);
        assert_eq!(ts[1].health(), "ejected");
        for _ in 0..10 {
            let l = up.pick(Some(&ts[0])).unwrap();
            assert_eq!(l.target().url, "http://t2");
        }
        ts[2].record_probe(false, &HealthCheck::default());
        ts[2].record_probe(false, &HealthCheck::default());
        assert_eq!(ts[2].health(), "unhealthy");
        assert!(up.pick(Some(&ts[0])).is_none());
        // A passing probe ends the ejection early.
        ts[1].record_probe(true, &HealthCheck::default());
        assert_eq!(ts[1].health(), "healthy");
    }

    #[test]
    fn least_connections_prefers_idle_targets() {
        let up = upstream(Balance::LeastConnections, 3);
        let a = up.pick(None).unwrap();
        let b = up.pick(None).unwrap();
        assert_ne!(a.target().url, b.target().url);
        let c = up.pick(None).unwrap();
        let urls: BTreeSet<String> = [&a, &b, &c]
            .iter()
            .map(|l| l.target().url.clone())
            .collect();
        assert_eq!(urls.len(), 3);
        drop(b);
        let d = up.pick(None).unwrap();
        assert_eq!(d.target().in_flight.load(Ordering::Relaxed), 1);
        let spread: BTreeSet<String> = (0..30)
            .map(|_| {
                let l = up.pick(None).unwrap();
                l.target().url.clone()
            })
            .collect();
        assert_eq!(spread.len(), 3, "idle ties rotate");
    }

    #[test]
    fn random_stays_on_available_targets() {
        let up = upstream(Balance::Random, 4);
        let ts = up.targets();
        ts[0].record_probe(
            false,
            &HealthCheck {
                unhealthy_threshold: 1,
                ..HealthCheck::default()
            },
        );
        for _ in 0..100 {
            assert_ne!(up.pick(None).unwrap().target().url, "http://t0");
        }
    }

    #[test]
    fn registrations_survive_a_rebuild_and_state_is_kept() {
        let configs = BTreeMap::from([(
            "u".to_owned(),
            UpstreamConfig::Targets(vec!["http://a/".into(), "http://b".into()]),
        )]);
        let first = build_all(&configs, &BTreeMap::new(), None).unwrap();
        first["u"].targets()[0].requests.store(7, Ordering::Relaxed);
        let reg = BTreeMap::from([(
            "u".to_owned(),
            Registrations {
                added: [(
                    "http://c".to_owned(),
                    Registered {
                        name: "c".to_owned(),
                        by: None,
                        at: chrono::Utc::now(),
                    },
                )]
                .into(),
                removed: ["http://b".to_owned()].into(),
            },
        )]);
        let second = build_all(&configs, &reg, Some(&first)).unwrap();
        let urls: Vec<String> = second["u"]
            .targets()
            .iter()
            .map(|t| t.url.clone())
            .collect();
        assert_eq!(urls, ["http://a", "http://c"]);
        let names: Vec<String> = second["u"]
            .targets()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(second["u"].targets()[0].requests.load(Ordering::Relaxed), 7);
    }
}
