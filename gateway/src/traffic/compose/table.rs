//! The composed routes as configured and resolved: exact path, one method,
//! one access rule, and either named parts or a fan-out to every target of
//! one upstream.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::http::Method;
use serde::Deserialize;

use crate::traffic::ratelimit::quota::{LimitBy, Quota, RateLimitConfig};
use crate::traffic::routes::{AccessConfig, Rule};

/// `composed[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposedConfig {
    /// Exact public path.
    pub path: String,
    pub method: String,
    /// Same forms as a route's `access`.
    pub access: AccessConfig,
    /// Budget of each part, in milliseconds.
    #[serde(default = "default_part_timeout")]
    pub timeout_ms: u64,
    /// Named parts: `{name: {upstream, path}}`.
    #[serde(default)]
    pub parts: BTreeMap<String, PartConfig>,
    /// Or: the same call to every target of one upstream.
    #[serde(default)]
    pub fan_out: Option<PartConfig>,
    /// Requests per caller (or client address), as on a route.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

fn default_part_timeout() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartConfig {
    pub upstream: String,
    /// Upstream path, with a query if needed.
    pub path: String,
}

/// A resolved composed route.
#[derive(Debug, Clone)]
pub struct Composed {
    pub path: String,
    pub method: Method,
    pub rule: Rule,
    pub timeout: Duration,
    pub parts: Vec<(String, PartConfig)>,
    pub fan_out: Option<PartConfig>,
    pub rate_limit: Option<(Quota, LimitBy)>,
}

/// Composed routes by exact path.
#[derive(Debug, Clone, Default)]
pub struct ComposedTable(HashMap<String, Composed>);

impl ComposedTable {
    pub fn new(
        configs: &[ComposedConfig],
        upstream_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let mut out = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |m: String| format!("composed[{i}] ({}): {m}", c.path);
            if !c.path.starts_with('/') {
                return Err(at("path must start with `/`".into()));
            }
            let method = Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| at(format!("`{}` is not an HTTP method", c.method)))?;
            let rule = match &c.access {
                AccessConfig::Rule(r) => Rule::from_config(r).map_err(at)?,
                AccessConfig::PerMethod(_) => {
                    return Err(at(
                        "access: one rule (a composed route has one method)".into()
                    ));
                }
            };
            if c.parts.is_empty() == c.fan_out.is_none() {
                return Err(at("give either `parts` or `fan_out`".into()));
            }
            for p in c.parts.values().chain(c.fan_out.iter()) {
                if !upstream_exists(&p.upstream) {
                    return Err(at(format!("unknown upstream `{}`", p.upstream)));
                }
                if !p.path.starts_with('/') {
                    return Err(at(format!("part path `{}` must start with `/`", p.path)));
                }
            }
            if c.parts.contains_key("status") {
                return Err(at("`status` is reserved for the overall outcome".into()));
            }
            if c.timeout_ms == 0 {
                return Err(at("timeout_ms must be positive".into()));
            }
            let composed = Composed {
                path: c.path.clone(),
                method,
                rule,
                timeout: Duration::from_millis(c.timeout_ms),
                parts: c
                    .parts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                fan_out: c.fan_out.clone(),
                rate_limit: c
                    .rate_limit
                    .as_ref()
                    .map(|r| Quota::from_config(r).map(|q| (q, r.by)))
                    .transpose()
                    .map_err(|e| at(format!("rate_limit: {e}")))?,
            };
            if out.insert(c.path.clone(), composed).is_some() {
                return Err(at("path declared twice".into()));
            }
        }
        Ok(Self(out))
    }

    pub fn get(&self, path: &str) -> Option<&Composed> {
        self.0.get(path)
    }

    pub fn all(&self) -> impl Iterator<Item = &Composed> {
        self.0.values()
    }
}
