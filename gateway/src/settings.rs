//! The gateway's settings: every key of `config/gateway.yaml`, the layers
//! they are read from (the embedded defaults, `GATEWAY_CONFIG_FILE`, the
//! environment), and the checks across fields that run before anything
//! starts, so a typo or a contradiction stops startup with its key named.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use secrecy::SecretString;
use serde::Deserialize;

use crate::identity::login_limits::LimitSettings;
use crate::identity::tokens::KeyConfig;
use crate::traffic::compose::table::{ComposedConfig, ComposedTable};
use crate::traffic::ratelimit::Quota;
use crate::traffic::ratelimit::quota::RateLimitConfig;
use crate::traffic::routes::{RouteConfig, RouteTable};
use crate::traffic::upstream::pool::{UpstreamConfig, build_all};

const DEFAULTS: &str = include_str!("../../config/gateway.yaml");

/// Unprefixed environment names the gateway reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("GATEWAY_LISTEN", "listen"),
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("GATEWAY_PROOF_PRIVATE_KEY", "proof.private_key_pem"),
    ("REDIS_URL", "redis.url"),
    ("GATEWAY_METRICS_TOKEN", "metrics.bearer_token"),
    ("GATEWAY_TRUSTED_PROXIES", "trusted_proxies"),
    ("GATEWAY_PUBLIC_URL", "tokens.public_url"),
    ("GATEWAY_TLS", "tls.mode"),
    ("GATEWAY_TLS_CERT_FILE", "tls.cert_file"),
    ("GATEWAY_TLS_KEY_FILE", "tls.key_file"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.export.endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.export.protocol"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// HTTPS on `listen` (off by default).
    #[serde(default)]
    pub tls: crate::ops::certificates::TlsSettings,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub proof: ProofSigning,
    pub tokens: TokenSettings,
    pub login_limits: LoginLimits,
    /// Second factors: who must use one, the login challenge's lifetime.
    #[serde(default)]
    pub mfa: crate::identity::mfa::MfaSettings,
    /// The hosted login page, browser sessions and the code flow.
    #[serde(default)]
    pub login: crate::identity::browser::LoginSettings,
    pub identity: IdentitySettings,
    /// Proxies in front of the gateway (CIDRs or addresses) whose
    /// `Forwarded`/`X-Forwarded-For` name the client; a list or a
    /// comma-separated string (`GATEWAY_TRUSTED_PROXIES`). Empty: the peer
    /// address is the client.
    #[serde(default, deserialize_with = "common::config::cidr_list")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest request body a route accepts unless it says otherwise.
    pub max_body_bytes: u64,
    /// Time in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Shared rate-limit counters (in memory when `url` is unset).
    pub redis: crate::redis_link::RedisSettings,
    pub cache: CacheSettings,
    pub cors: CorsSettings,
    pub metrics: MetricsSettings,
    /// The merged public API document.
    pub openapi: crate::ops::openapi::fetch::OpenApiSettings,
    /// How the access-token deny list reaches every replica.
    pub revocations: crate::identity::revocations::RevocationSettings,
    /// The service registry: its resync, the hosts registrations may name.
    #[serde(default)]
    pub registry: crate::traffic::upstream::registry::RegistrySettings,
    /// DNS discovery of targets: name servers, re-resolution bounds.
    #[serde(default)]
    pub discovery: crate::traffic::upstream::discovery::DiscoverySettings,
    /// Upstream name -> targets (a list of base URLs, or the full form).
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Identity providers whose access tokens are accepted besides the
    /// gateway's own (see `issuers`).
    #[serde(default)]
    pub trusted_issuers: Vec<crate::identity::issuers::IssuerConfig>,
    /// Routes answered by several upstream calls at once.
    pub composed: Vec<ComposedConfig>,
    pub no_route: NoRoute,
    /// Relayed WebSockets: where the token may be, limits.
    #[serde(default)]
    pub websocket: crate::traffic::ws_relay::WebSocketSettings,
    /// Traces (`common::traces`): W3C `traceparent` in and out always, OTLP
    /// export once an endpoint is set.
    pub tracing: common::traces::TracingSettings,
}

/// The response cache shared by the routes that enable it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Memory bound for cached bodies and headers.
    pub max_bytes: u64,
}

/// Cross-origin requests from browsers; off while `allowed_origins` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: usize,
    pub allow_credentials: bool,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>`.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// Refuse to start without a token (the production files set this, so
    /// metrics are never anonymous there).
    #[serde(default)]
    pub require_token: bool,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<set>"))
            .field("require_token", &self.require_token)
            .finish()
    }
}

/// The response for a path no route matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRoute {
    pub status: u16,
    pub detail: String,
}
/// Access and refresh tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub session_max_secs: i64,
    pub leeway_secs: u64,
    pub keys: Vec<KeyConfig>,
    /// Lifetime of a machine client's access token (client credentials).
    #[serde(default = "default_client_ttl")]
    pub client_ttl_secs: i64,
    /// The gateway's public base URL, for the endpoints its metadata names
    /// (`/.well-known/openid-configuration`).
    #[serde(default = "default_public_url")]
    pub public_url: String,
}

fn default_client_ttl() -> i64 {
    300
}

fn default_public_url() -> String {
    "http://127.0.0.1:8000".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    pub per_username: LimitSettings,
    pub per_ip: LimitSettings,
    /// Login attempts per client IP, whatever their outcome (each one costs
    /// the users service an argon2 verify): a storm is answered 429 cheaply.
    pub rate: Option<RateLimitConfig>,
    /// `POST /api/refresh` per client address (a refresh costs a users call
    /// and a database write); `~` for no limit.
    #[serde(default)]
    pub refresh_rate: Option<RateLimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    pub users_upstream: String,
    pub strip_headers: Vec<String>,
    /// Token claims sent to every upstream as headers (claim -> header
    /// name; a dotted path reaches a nested claim), covered by the proof;
    /// routes add their own. Clients cannot send these headers.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
}

/// How the gateway signs identity proofs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSigning {
    pub issuer: String,
    pub ttl_secs: i64,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_pem: Option<String>,
}

impl std::fmt::Debug for ProofSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofSigning")
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .field("private_key_file", &self.private_key_file)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn loader() -> Loader {
        Loader::new("gateway", DEFAULTS)
    }

    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        let s: Settings = loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("GATEWAY")
            .extract()?;
        s.check()
    }

    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }

    /// The shipped configuration (`config/gateway.yaml`) alone, ignoring the
    /// environment and any config file.
    pub fn shipped() -> Result<Self, ConfigError> {
        Loader::embedded("gateway", DEFAULTS)
            .extract::<Settings>()?
            .check()
    }

    /// Every check across fields, in one place, before anything starts:
    /// each problem names its key. The route table, the composed routes
    /// and the upstreams are built here only to be checked; each gateway
    /// builds its own when a configuration goes live (`live::Live`), since
    /// they carry its meters and its targets' health.
    fn check(self) -> Result<Self, ConfigError> {
        self.check_identity()?;
        self.check_tokens()?;
        self.check_intervals()?;
        self.check_tables()?;
        self.check_edge()?;
        Ok(self)
    }

    /// Who may do what: second factors, the credential checker, the
    /// trusted providers, the registry's hosts, the login quotas.
    fn check_identity(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self
            .mfa
            .required_for_roles
            .iter()
            .find(|r| !common::identity::is_valid_role(r))
        {
            return Err(invalid(
                "mfa.required_for_roles",
                format!("`{bad}` is not a valid role name"),
            ));
        }
        if !(1..=3600).contains(&self.mfa.challenge_ttl_secs) {
            return Err(invalid(
                "mfa.challenge_ttl_secs",
                format!(
                    "{} is out of range (1 to 3600)",
                    self.mfa.challenge_ttl_secs
                ),
            ));
        }
        if !self.upstreams.contains_key(&self.identity.users_upstream) {
            return Err(invalid(
                "identity.users_upstream",
                format!("unknown upstream `{}`", self.identity.users_upstream),
            ));
        }
        crate::traffic::upstream::registry::Allowed::parse(&self.registry.allowed_targets, None)
            .map_err(|e| invalid("registry.allowed_targets", e))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.trusted_issuers.iter().enumerate() {
            let key = format!("trusted_issuers[{i}]");
            c.check(&key).map_err(untitled)?;
            if c.issuer == self.tokens.issuer || !seen.insert(c.issuer.as_str()) {
                return Err(invalid(
                    format!("{key}.issuer"),
                    format!("`{}` is the gateway's own issuer or listed twice", c.issuer),
                ));
            }
        }
        for (key, quota) in [
            ("login_limits.rate", &self.login_limits.rate),
            ("login_limits.refresh_rate", &self.login_limits.refresh_rate),
        ] {
            if let Some(q) = quota {
                Quota::from_config(q).map_err(|e| invalid(key, e))?;
            }
        }
        Ok(())
    }

    /// Token and proof lifetimes.
    fn check_tokens(&self) -> Result<(), ConfigError> {
        if !(1..=common::identity::MAX_PROOF_TTL_SECS).contains(&self.proof.ttl_secs) {
            return Err(invalid(
                "proof.ttl_secs",
                format!(
                    "{} is out of range (1 to {})",
                    self.proof.ttl_secs,
                    common::identity::MAX_PROOF_TTL_SECS
                ),
            ));
        }
        let t = &self.tokens;
        if t.access_ttl_secs < 1
            || t.refresh_ttl_secs < 1
            || t.session_max_secs < t.refresh_ttl_secs
        {
            return Err(invalid(
                "tokens",
                "access_ttl_secs and refresh_ttl_secs must be positive and session_max_secs at least refresh_ttl_secs",
            ));
        }
        Ok(())
    }

    /// What runs on a timer must run.
    fn check_intervals(&self) -> Result<(), ConfigError> {
        if self.registry.resync_secs == 0 {
            return Err(invalid("registry.resync_secs", "must be at least 1"));
        }
        if self.revocations.resync_secs == 0 {
            return Err(invalid("revocations.resync_secs", "must be positive"));
        }
        let session = &self.login.session;
        if session.idle_secs == 0 || session.absolute_secs < session.idle_secs {
            return Err(invalid(
                "login.session",
                "idle_secs must be positive and at most absolute_secs",
            ));
        }
        let path = self.login.path.as_str();
        let shaped = path.len() >= 2
            && path.len() <= 64
            && path.starts_with('/')
            && !path.ends_with('/')
            && !path.contains("//")
            && path
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-_".contains(&b));
        if !shaped {
            return Err(invalid(
                "login.path",
                "a path like /login: lower-case letters, digits, - _ and /, no trailing /",
            ));
        }
        if !(1..=600).contains(&self.login.code_ttl_secs) {
            return Err(invalid("login.code_ttl_secs", "must be 1 to 600"));
        }
        if self.login.product_name.trim().is_empty() || self.login.product_name.len() > 64 {
            return Err(invalid("login.product_name", "1 to 64 bytes"));
        }
        let host_name = |h: &str| {
            !h.is_empty()
                && h.len() <= 253
                && !h.starts_with(['.', '-'])
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        };
        if let Some(d) = &self.login.cookie_domain
            && (!host_name(d) || !d.contains('.'))
        {
            return Err(invalid(
                "login.cookie_domain",
                "a lower-case domain name with a dot, like example.com (no scheme, port or leading dot)",
            ));
        }
        if let Some(bad) = self.login.return_hosts.iter().find(|h| !host_name(h)) {
            return Err(invalid(
                "login.return_hosts",
                format!("`{bad}` is not a lower-case host name (no scheme or port)"),
            ));
        }
        if self.openapi.refresh_secs == 0 || self.openapi.fetch_timeout_ms == 0 {
            return Err(invalid(
                "openapi",
                "refresh_secs and fetch_timeout_ms must be positive",
            ));
        }
        Ok(())
    }

    /// The upstreams, the routes and composed routes on them, the claims
    /// they forward, and what a request finds when no route matches.
    fn check_tables(&self) -> Result<(), ConfigError> {
        build_all(&self.upstreams, &BTreeMap::new(), None).map_err(untitled)?;
        let known = |u: &str| self.upstreams.contains_key(u);
        RouteTable::new(&self.routes, known).map_err(untitled)?;
        ComposedTable::new(&self.composed, known).map_err(untitled)?;
        crate::traffic::routes::forward_claims(
            &self.identity.forward_claims,
            "identity.forward_claims",
        )
        .map_err(untitled)?;
        if !(400..=599).contains(&self.no_route.status) {
            return Err(invalid(
                "no_route.status",
                format!("{} is not an error status", self.no_route.status),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be positive"));
        }
        Ok(())
    }

    /// The listener, browsers, metrics and Redis.
    fn check_edge(&self) -> Result<(), ConfigError> {
        self.tls.check().map_err(untitled)?;
        self.websocket.check().map_err(untitled)?;
        if self.metrics.require_token
            && self
                .metrics
                .bearer_token
                .as_ref()
                .is_none_or(|t| secrecy::ExposeSecret::expose_secret(t).trim().is_empty())
        {
            return Err(invalid(
                "metrics.require_token",
                "it is set but metrics.bearer_token (GATEWAY_METRICS_TOKEN) is empty",
            ));
        }
        let c = &self.cors;
        if c.allow_credentials && c.allowed_origins.iter().any(|o| o == "*") {
            return Err(invalid(
                "cors",
                "allow_credentials cannot be combined with the `*` origin",
            ));
        }
        if let Some(o) = c
            .allowed_origins
            .iter()
            .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(invalid(
                "cors.allowed_origins",
                format!("`{o}` is not `*` or an http(s) origin"),
            ));
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        Ok(())
    }
}

/// `key` of the gateway's settings is wrong.
fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::key("gateway", key, message)
}

/// A check of a section that names its own keys in its message
/// (`routes[2] (/api/x): ...`, `websocket: ...`): the key is split off
/// the front.
fn untitled(message: String) -> ConfigError {
    let key_like = |k: &str| {
        k.split(' ').next().is_some_and(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c))
        })
    };
    match message.split_once(": ") {
        Some((key, rest)) if key_like(key) => invalid(key, rest),
        _ => ConfigError::Invalid {
            service: "gateway".into(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(loader: Loader) -> Option<String> {
        match Settings::from_loader(loader) {
            Err(ConfigError::Key { key, .. }) => Some(key),
            _ => None,
        }
    }

    #[test]
    fn a_bad_value_is_refused_with_its_key() {
        assert!(Settings::from_loader(Settings::loader()).is_ok());
        for (key, value) in [
            ("mfa.challenge_ttl_secs", serde_json::json!(0)),
            ("proof.ttl_secs", serde_json::json!(0)),
            ("registry.resync_secs", serde_json::json!(0)),
            ("no_route.status", serde_json::json!(200)),
            ("login_limits.rate", serde_json::json!({"rate": "0/s"})),
            (
                "registry.allowed_targets",
                serde_json::json!(["not a host"]),
            ),
            ("redis.url", serde_json::json!("http://x")),
        ] {
            assert_eq!(
                // Pinned: the machine's REDIS_URL or DATABASE_URL must not win.
                key_of(Settings::loader().pin(key, value)).as_deref(),
                Some(key),
                "{key}"
            );
        }
        // A section that names its keys in its message: split off.
        let routes =
            serde_json::json!([{"prefix": "/a", "upstream": "nowhere", "access": "public"}]);
        let key = key_of(Settings::loader().pin("routes", routes)).unwrap_or_default();
        assert!(key.starts_with("routes"), "{key}");
    }
}
