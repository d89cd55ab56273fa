//! DNS discovery: a target given as a name to discover
//! (`{url: http://orders.internal:8080, discover: dns}`, or
//! `{srv: _http._tcp.orders.internal, discover: dns}`) becomes one target
//! per address the name has, each with its own health and ejection state.
//!
//! Why it is built this way:
//! - One background task per gateway resolves every name (hickory, on the
//!   gateway's runtime, with its cache off: the task is the cache) and asks
//!   again when the answer's smallest TTL runs out, within
//!   `discovery.min_interval_secs` and `max_interval_secs`: a k8s headless
//!   Service or a `docker compose --scale` service grows and shrinks
//!   without a reload.
//! - An address that disappears leaves the rotation; requests already on
//!   it finish (its target is dropped when they are done).
//! - A lookup that fails (a timeout, a server failure) keeps the last good
//!   set, logged once per transition and counted
//!   (`gatehouse_discovery_failures_total`); a name that has no address
//!   (NXDOMAIN, no records) is an upstream without that target, answered
//!   503 like any upstream without one.
//! - Discovered addresses are plain `http` targets: `https` would need the
//!   certificate checked against the name while connecting to an address,
//!   which the upstream client cannot do, so it is refused at load.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use serde::Deserialize;

/// `discovery:` in the gateway's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// Name servers to ask (`ip:port`); empty: the system's
    /// (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Bounds on how soon a name is asked again (its TTL, within them).
    #[serde(default = "default_min")]
    pub min_interval_secs: u64,
    #[serde(default = "default_max")]
    pub max_interval_secs: u64,
    /// One lookup's deadline.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_min() -> u64 {
    1
}

fn default_max() -> u64 {
    300
}

fn default_timeout() -> u64 {
    2000
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            min_interval_secs: default_min(),
            max_interval_secs: default_max(),
            timeout_ms: default_timeout(),
        }
    }
}

/// What a target asks to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The A and AAAA records of `host`, each address on `port`.
    Host { host: String, port: u16 },
    /// The SRV records of `name`: each target host's addresses on its port.
    Srv { name: String },
}

impl Lookup {
    /// From a target's `url` (`http://host:port`) or `srv` name.
    pub fn parse(url: Option<&str>, srv: Option<&str>) -> Result<Self, String> {
        match (url, srv) {
            (Some(u), None) => {
                let parsed = url::Url::parse(u).map_err(|e| format!("`{u}`: {e}"))?;
                if parsed.scheme() != "http" {
                    return Err(format!(
                        "`{u}`: discovered targets are plain http (https checks the name the \
                         certificate carries, and an address is not that name)"
                    ));
                }
                let host = parsed
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| format!("`{u}`: no host to discover"))?;
                if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
                    return Err(format!("`{u}`: an address is not a name to discover"));
                }
                if parsed.path() != "/" || parsed.query().is_some() {
                    return Err(format!("`{u}`: a discovered target has no path"));
                }
                Ok(Lookup::Host {
                    host: host.to_ascii_lowercase(),
                    port: parsed.port_or_known_default().unwrap_or(80),
                })
            }
            (None, Some(s)) if !s.trim().is_empty() => Ok(Lookup::Srv {
                name: s.trim().trim_end_matches('.').to_ascii_lowercase(),
            }),
            _ => Err("a discovered target names either `url` or `srv`".into()),
        }
    }

    /// What the discovered targets say they came from.
    pub fn key(&self) -> String {
        match self {
            Lookup::Host { host, port } => format!("{host}:{port}"),
            Lookup::Srv { name } => format!("srv {name}"),
        }
    }
}

/// One target per address: (name, url).
pub type Found = Vec<(String, String)>;

/// What a lookup came to.
#[derive(Debug)]
pub enum Answer {
    /// The addresses (none: the name has none), and how long they hold.
    Found(Found, Duration),
    /// The lookup did not complete: keep what was found before.
    Failed(String),
}

fn target(ip: IpAddr, port: u16) -> (String, String) {
    let authority = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    (authority.clone(), format!("http://{authority}"))
}

/// The resolver and the interval bounds.
pub struct Discoverer {
    resolver: TokioResolver,
    min: Duration,
    max: Duration,
}

impl Discoverer {
    pub fn new(settings: &DiscoverySettings) -> Result<Self, String> {
        let mut builder = if settings.nameservers.is_empty() {
            Resolver::builder_tokio().map_err(|e| format!("discovery: the system resolver: {e}"))?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|addr| {
                    let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                    udp.port = addr.port();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let o = builder.options_mut();
        // The task re-resolves on the TTL itself; a cache would answer it
        // from memory.
        o.cache_size = 0;
        o.use_hosts_file = ResolveHosts::Never;
        o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        o.timeout = Duration::from_millis(settings.timeout_ms.max(100));
        o.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| format!("discovery: building the resolver: {e}"))?;
        Ok(Self {
            resolver,
            min: Duration::from_secs(settings.min_interval_secs.max(1)),
            max: Duration::from_secs(
                settings
                    .max_interval_secs
                    .max(settings.min_interval_secs.max(1)),
            ),
        })
    }

    /// When to ask again after an answer that holds for `ttl`.
    pub fn next_in(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min, self.max)
    }

    /// The shortest wait (after a failure).
    pub fn min_interval(&self) -> Duration {
        self.min
    }

    /// Resolve `lookup`.
    pub async fn resolve(&self, lookup: &Lookup) -> Answer {
        match lookup {
            Lookup::Host { host, port } => match self.addresses(host).await {
                Ok((ips, ttl)) => {
                    Answer::Found(ips.into_iter().map(|ip| target(ip, *port)).collect(), ttl)
                }
                Err(e) => Answer::Failed(e),
            },
            Lookup::Srv { name } => {
                let fqdn = format!("{name}.");
                let srv = match self.resolver.srv_lookup(fqdn.as_str()).await {
                    Ok(s) => s,
                    Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                        return Answer::Found(Vec::new(), self.min);
                    }
                    Err(e) => return Answer::Failed(e.to_string()),
                };
                let mut found = Vec::new();
                let mut ttl = self.max;
                for r in srv.answers() {
                    if let RData::SRV(s) = &r.data {
                        ttl = ttl.min(Duration::from_secs(u64::from(r.ttl)));
                        let host = s.target.to_ascii();
                        match self.addresses(host.trim_end_matches('.')).await {
                            Ok((ips, t)) => {
                                ttl = ttl.min(t);
                                found.extend(ips.into_iter().map(|ip| target(ip, s.port)));
                            }
                            Err(e) => return Answer::Failed(e),
                        }
                    }
                }
                found.sort();
                found.dedup();
                Answer::Found(found, ttl)
            }
        }
    }

    /// The addresses of `host` and the smallest TTL among them; a name
    /// without any is an empty set, not a failure.
    async fn addresses(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => {
                let mut ttl = self.max;
                let mut ips = Vec::new();
                for r in found.as_lookup().answers() {
                    if let Some(ip) = r.data.ip_addr() {
                        ttl = ttl.min(Duration::from_secs(u64::from(r.ttl)));
                        ips.push(ip);
                    }
                }
                ips.sort();
                ips.dedup();
                Ok((ips, ttl))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok((Vec::new(), self.min)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Counts lookups by result (`found`, `empty`, `failed`), by upstream.
pub type Observe = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What has names to discover (an upstream): the task asks for them and
/// hands back each one's addresses.
pub trait Discovers {
    fn name(&self) -> &str;
    fn lookups(&self) -> Vec<Lookup>;
    fn set_discovered(&self, key: &str, found: Found);
}

/// The background task: every upstream's names, each asked again when its
/// answer runs out. `upstreams` names the current ones (a reload's new
/// upstreams are followed; `None`: the gateway is gone, the task ends).
pub fn spawn<U, F>(discoverer: Arc<Discoverer>, upstreams: F, observe: Observe)
where
    U: Discovers + 'static,
    F: Fn() -> Option<Vec<Arc<U>>> + 'static,
{
    actix_web::rt::spawn(async move {
        let mut due: HashMap<(String, String), Instant> = HashMap::new();
        let mut failing: HashMap<(String, String), bool> = HashMap::new();
        loop {
            let Some(ups) = upstreams() else { return };
            let now = Instant::now();
            for up in &ups {
                for lookup in up.lookups() {
                    let key = (up.name().to_owned(), lookup.key());
                    if due.get(&key).is_some_and(|t| *t > now) {
                        continue;
                    }
                    let next = match discoverer.resolve(&lookup).await {
                        Answer::Found(found, ttl) => {
                            observe(up.name(), if found.is_empty() { "empty" } else { "found" });
                            if failing.insert(key.clone(), false) == Some(true) {
                                tracing::info!(upstream = %up.name(), name = %lookup.key(), "discovery answers again");
                            }
                            if found.is_empty() {
                                tracing::warn!(upstream = %up.name(), name = %lookup.key(), "a discovered name has no address");
                            }
                            up.set_discovered(&lookup.key(), found);
                            discoverer.next_in(ttl)
                        }
                        Answer::Failed(why) => {
                            observe(up.name(), "failed");
                            if failing.insert(key.clone(), true) != Some(true) {
                                tracing::warn!(upstream = %up.name(), name = %lookup.key(), reason = %why, "discovery failed; the last addresses stay");
                            }
                            discoverer.min_interval()
                        }
                    };
                    due.insert(key, Instant::now() + next);
                }
            }
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_to_discover_are_plain_http_names() {
        assert_eq!(
            Lookup::parse(Some("http://Orders.internal:8080"), None).unwrap(),
            Lookup::Host {
                host: "orders.internal".into(),
                port: 8080
            }
        );
        assert_eq!(
            Lookup::parse(Some("http://orders.internal"), None)
                .unwrap()
                .key(),
            "orders.internal:80"
        );
        assert_eq!(
            Lookup::parse(None, Some("_http._tcp.orders.internal."))
                .unwrap()
                .key(),
            "srv _http._tcp.orders.internal"
        );
        for (url, srv) in [
            (Some("https://orders.internal:8443"), None),
            (Some("http://10.0.0.1:80"), None),
            (Some("http://orders.internal:80/base"), None),
            (None, None),
            (Some("http://a:1"), Some("_b._tcp.c")),
        ] {
            assert!(Lookup::parse(url, srv).is_err(), "{url:?} {srv:?}");
        }
        assert_eq!(
            target("10.0.0.5".parse().unwrap(), 8080),
            ("10.0.0.5:8080".into(), "http://10.0.0.5:8080".into())
        );
        assert_eq!(target("::1".parse().unwrap(), 80).1, "http://[::1]:80");
    }
}
