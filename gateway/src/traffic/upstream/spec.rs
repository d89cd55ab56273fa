//! Upstreams as configured (`upstreams.<name>` in full): targets,
//! balancing, time budgets, retries, health checks and the connection
//! bound, with the checks they pass before the pool builds anything from
//! them, so that what the configuration may say reads in one place. The
//! pool holds what is known at run time; the short form (a list of URLs,
//! `pool::UpstreamConfig`) expands to an [`UpstreamSpec`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A target: its base URL, or `{name, url}` (the name labels it in fanned-out
/// answers, metrics and the admin API; default: the URL's host and port),
/// or a name to discover (`{url: http://orders.internal:8080, discover:
/// dns}` or `{srv: _http._tcp.orders.internal, discover: dns}`: a target
/// per address, see `upstream::discovery`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TargetConfig {
    Url(String),
    Discover {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        srv: Option<String>,
        discover: DiscoverBy,
    },
    Named {
        name: String,
        url: String,
    },
}

/// How a target's addresses are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverBy {
    Dns,
}

impl TargetConfig {
    /// What a discovered target looks up (`None` for a fixed one).
    pub fn lookup(&self) -> Option<Result<super::discovery::Lookup, String>> {
        match self {
            TargetConfig::Discover { url, srv, .. } => Some(super::discovery::Lookup::parse(
                url.as_deref(),
                srv.as_deref(),
            )),
            _ => None,
        }
    }

    /// (name, checked URL).
    pub fn resolve(&self) -> Result<(String, String), String> {
        match self {
            TargetConfig::Discover { .. } => {
                Err("a discovered target has no fixed URL (see `lookup`)".into())
            }
            TargetConfig::Url(u) => {
                let url = target_url(u)?;
                Ok((default_name(&url), url))
            }
            TargetConfig::Named { name, url } => {
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    return Err(format!(
                        "target name `{name}`: 1 to 64 characters of a-z A-Z 0-9 - _ . :"
                    ));
                }
                Ok((name.clone(), target_url(url)?))
            }
        }
    }
}

/// A target's default name: its host and port.
pub fn default_name(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_owned()
}

/// An upstream, fully spelled out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSpec {
    pub targets: Vec<TargetConfig>,
    pub balance: Balance,
    /// Time to open a connection to a target.
    pub connect_timeout_ms: u64,
    /// Time for a target to answer (up to the response head).
    pub timeout_secs: u64,
    /// Extra attempts on another target for an idempotent request whose
    /// connection failed.
    pub retries: u32,
    pub health_check: HealthCheck,
    pub passive: Passive,
    /// How `https://` targets are verified, and a client certificate.
    pub tls: super::tls::UpstreamTls,
    /// Requests in flight to one target at once, across all workers: each
    /// holds a connection, so this bounds the connections the gateway opens
    /// to a target. A request beyond it waits for one to finish, within its
    /// attempt's `timeout_secs` (then 503, `upstream-saturated`); a retry
    /// prefers a target with room.
    pub max_connections: u32,
}

impl Default for UpstreamSpec {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            balance: Balance::RoundRobin,
            connect_timeout_ms: 2000,
            timeout_secs: 30,
            retries: 1,
            health_check: HealthCheck::default(),
            passive: Passive::default(),
            tls: super::tls::UpstreamTls::default(),
            max_connections: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    LeastConnections,
}

/// Active health check: `GET <target><path>` every `interval_secs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub enabled: bool,
    pub path: String,
    pub interval_secs: u64,
    pub timeout_ms: u64,
    /// Consecutive successes that bring an unhealthy target back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a target out.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/healthz".into(),
            interval_secs: 5,
            timeout_ms: 2000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// Passive health: eject a target after `max_failures` consecutive
/// connection failures or timeouts, for `cooldown_secs`; after that it gets
/// traffic again, and one more failure ejects it at once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Passive {
    pub max_failures: u32,
    pub cooldown_secs: u64,
}

impl Default for Passive {
    fn default() -> Self {
        Self {
            max_failures: 3,
            cooldown_secs: 10,
        }
    }
}

impl UpstreamSpec {
    /// Check the values; `name` is for messages.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let at = |m: String| format!("upstreams.{name}: {m}");
        if self.targets.is_empty() {
            return Err(at("needs at least one target".into()));
        }
        let (mut urls, mut names) = (BTreeSet::new(), BTreeSet::new());
        for t in &self.targets {
            if let Some(lookup) = t.lookup() {
                let key = lookup.map_err(at)?.key();
                if !urls.insert(key.clone()) {
                    return Err(at(format!("`{key}` is discovered twice")));
                }
                continue;
            }
            let (name, url) = t.resolve().map_err(at)?;
            if !urls.insert(url.clone()) {
                return Err(at(format!("target `{url}` is listed twice")));
            }
            if !names.insert(name.clone()) {
                return Err(at(format!("target name `{name}` is used twice")));
            }
        }
        if self.connect_timeout_ms == 0 || self.timeout_secs == 0 {
            return Err(at(
                "connect_timeout_ms and timeout_secs must be positive".into()
            ));
        }
        if !(1..=65_535).contains(&self.max_connections) {
            return Err(at("max_connections: 1 to 65535".into()));
        }
        if self.retries > 5 {
            return Err(at("retries: at most 5".into()));
        }
        let h = &self.health_check;
        if h.enabled
            && (h.interval_secs == 0
                || h.timeout_ms == 0
                || h.healthy_threshold == 0
                || h.unhealthy_threshold == 0
                || !h.path.starts_with('/'))
        {
            return Err(at("health_check: interval_secs, timeout_ms and the thresholds must be positive and path must start with `/`".into()));
        }
        if self.passive.max_failures == 0 {
            return Err(at(
                "passive.max_failures must be positive (use a large number to disable)".into(),
            ));
        }
        Ok(())
    }
}

/// A target base URL, checked and without trailing slash.
pub fn target_url(t: &str) -> Result<String, String> {
    let ok = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .is_some_and(|rest| {
            let authority = rest.split('/').next().unwrap_or_default();
            !authority.is_empty()
                && !rest.contains(['?', '#', ' ', '@'])
                && !rest.chars().any(char::is_control)
        });
    if !ok {
        return Err(format!("`{t}` is not an http(s) base URL"));
    }
    Ok(t.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_plain_http_base_urls() {
        assert!(target_url("ftp://x").is_err());
        assert!(target_url("http://user@x").is_err());
        assert!(target_url("http://").is_err());
    }
}
