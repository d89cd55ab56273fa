//! The gateway: the only public entry point. It issues, rotates and revokes
//! tokens (`/api/login`, `/api/refresh`, `/api/logout`, JWKS), checks every
//! routed request against the route's access rule, strips client-sent
//! identity headers and forwards the verified identity with a signed proof.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use arc_swap::ArcSwap;
use common::Problem;
use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::http::Running;
use common::identity::{PROOF_KEY_NAME, ProofMinter};
use limiter::{FailureLimiter, LimitSettings};
use routes::{RouteConfig, RouteTable};
use serde::{Deserialize, Serialize};
use sessions::Sessions;
use state::Gateway;
use tokens::TokenKeys;

pub mod auth;
pub mod limiter;
pub mod proxy;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod tokens;

const DEFAULTS: &str = include_str!("../../config/gateway.yaml");

/// Unprefixed environment names the gateway reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("GATEWAY_LISTEN", "listen"),
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("GATEWAY_PROOF_PRIVATE_KEY", "proof.private_key_pem"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub proof: ProofSigning,
    pub tokens: TokenSettings,
    pub login_limits: LoginLimits,
    pub identity: IdentitySettings,
    pub upstream_timeout_secs: u64,
    /// Upstream name -> target base URLs.
    pub upstreams: BTreeMap<String, Vec<String>>,
    pub routes: Vec<RouteConfig>,
    pub no_route: NoRoute,
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
    pub keys: Vec<tokens::KeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    pub per_username: LimitSettings,
    pub per_ip: LimitSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    pub users_upstream: String,
    pub strip_headers: Vec<String>,
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

    fn check(self) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            service: "gateway".into(),
            message,
        };
        if !(1..=common::identity::MAX_PROOF_TTL_SECS).contains(&self.proof.ttl_secs) {
            return Err(invalid(format!(
                "proof.ttl_secs: {} is out of range (1 to {})",
                self.proof.ttl_secs,
                common::identity::MAX_PROOF_TTL_SECS
            )));
        }
        let t = &self.tokens;
        if t.access_ttl_secs < 1
            || t.refresh_ttl_secs < 1
            || t.session_max_secs < t.refresh_ttl_secs
        {
            return Err(invalid(
                "tokens: access_ttl_secs and refresh_ttl_secs must be positive and session_max_secs at least refresh_ttl_secs"
                    .into(),
            ));
        }
        if !self.upstreams.contains_key(&self.identity.users_upstream) {
            return Err(invalid(format!(
                "identity.users_upstream: unknown upstream `{}`",
                self.identity.users_upstream
            )));
        }
        RouteTable::new(&self.routes, &self.upstreams).map_err(invalid)?;
        if !(400..=599).contains(&self.no_route.status) {
            return Err(invalid(format!(
                "no_route.status: {} is not an error status",
                self.no_route.status
            )));
        }
        for (name, targets) in &self.upstreams {
            if targets.is_empty() {
                return Err(invalid(format!(
                    "upstreams.{name}: needs at least one target"
                )));
            }
            for t in targets {
                let ok = t
                    .strip_prefix("http://")
                    .or_else(|| t.strip_prefix("https://"))
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#', ' ']));
                if !ok {
                    return Err(invalid(format!(
                        "upstreams.{name}: `{t}` is not an http(s) base URL"
                    )));
                }
            }
        }
        Ok(self)
    }
}

/// The proof signer: from `proof.private_key_pem` or `proof.private_key_file`
/// in production, or the development key under `<data_dir>/keys` (generated
/// on first start, with its public half beside it for the services).
pub fn proof_minter(settings: &Settings) -> anyhow::Result<ProofMinter> {
    let p = &settings.proof;
    let pem = match (&p.private_key_pem, &p.private_key_file) {
        (Some(pem), _) => pem.clone(),
        (None, Some(file)) => common::keys::read_pem(file)?,
        (None, None) => {
            common::keys::ensure_ed25519(&settings.data_dir.join("keys"), PROOF_KEY_NAME)?
                .private_pem
        }
    };
    Ok(ProofMinter::from_pem(&pem, &p.issuer, p.ttl_secs)?)
}

pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let listener = common::http::bind(settings.listen)?;
    build_with_listener(settings, listener).await
}

pub async fn build_with_listener(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    build_with_source(settings, listener, Box::new(Settings::load)).await
}

/// The reloadable part of the configuration, resolved from settings (reads
/// key files; generates the development access-token key when none is set).
pub fn live(settings: &Settings) -> anyhow::Result<state::Live> {
    let t = &settings.tokens;
    let dev_key = if t.keys.is_empty() {
        Some(
            common::keys::ensure_ed25519(&settings.data_dir.join("keys"), "access-token")?
                .private_pem,
        )
    } else {
        None
    };
    Ok(state::Live {
        tokens: TokenKeys::new(
            &t.keys,
            dev_key.as_deref(),
            &t.issuer,
            &t.audience,
            t.leeway_secs,
        )?,
        routes: RouteTable::new(&settings.routes, &settings.upstreams)
            .map_err(anyhow::Error::msg)?,
        upstreams: settings.upstreams.clone(),
        no_route: settings.no_route.clone(),
    })
}

/// Build with an explicit source for reloads (SIGHUP, `POST /admin/reload`).
pub async fn build_with_source(
    settings: Settings,
    listener: TcpListener,
    source: state::SettingsSource,
) -> anyhow::Result<Running> {
    let minter = proof_minter(&settings).context("loading the gateway proof signing key")?;
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Gateway,
    )
    .await?;
    let t = &settings.tokens;
    let sessions = Sessions::load(db, t.refresh_ttl_secs, t.session_max_secs)
        .await
        .context("loading sessions")?;
    let gw = web::Data::new(Gateway {
        live: ArcSwap::from_pointee(live(&settings)?),
        sessions,
        minter,
        strip_headers: settings
            .identity
            .strip_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        users_upstream: settings.identity.users_upstream.clone(),
        access_ttl_secs: t.access_ttl_secs,
        user_limiter: FailureLimiter::new(settings.login_limits.per_username),
        ip_limiter: FailureLimiter::new(settings.login_limits.per_ip),
        source,
    });
    reload_on_sighup(gw.clone().into_inner());
    let timeout = Duration::from_secs(settings.upstream_timeout_secs.max(1));
    Ok(common::http::serve(
        listener,
        settings.workers,
        move |cfg| {
            let client = awc::Client::builder()
                .no_default_headers()
                .timeout(timeout)
                .connector(awc::Connector::new().timeout(Duration::from_secs(5)))
                .finish();
            cfg.app_data(gw.clone())
                .app_data(web::Data::new(client))
                .service(web::resource("/api/login").post(auth::login))
                .service(web::resource("/api/refresh").post(auth::refresh))
                .service(web::resource("/api/logout").post(auth::logout))
                .service(web::resource("/.well-known/jwks.json").get(auth::jwks))
                .service(web::resource("/admin/reload").post(auth::reload))
                .service(web::resource("/healthz").get(common::http::healthz))
                .service(web::resource("/readyz").get(readyz))
                .service(web::resource("/{tail:.*}").to(proxy::handle));
        },
    )?)
}

/// SIGHUP re-reads the configuration (see [`Gateway::reload`]).
fn reload_on_sighup(gw: std::sync::Arc<Gateway>) {
    actix_web::rt::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let gw = gw.clone();
            match tokio::task::spawn_blocking(move || gw.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => {
                    tracing::error!(%reason, "reload refused; the previous configuration keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    });
}

/// Readiness body: each upstream's state.
#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    upstreams: BTreeMap<String, &'static str>,
}

/// `GET /readyz`: ready when every upstream has at least one target whose
/// `/healthz` answers 200 within 2 s.
async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(2))
        .finish();
    let live = gw.live.load_full();
    let mut states = BTreeMap::new();
    for (name, targets) in live.upstreams.iter() {
        let mut up = false;
        for t in targets {
            let url = format!("{}/healthz", t.trim_end_matches('/'));
            if client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
        }
        states.insert(name.clone(), if up { "up" } else { "down" });
    }
    let down: Vec<&String> = states
        .iter()
        .filter(|(_, s)| **s == "down")
        .map(|(n, _)| n)
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(Readiness {
            status: "ok",
            upstreams: states,
        })
    } else {
        let names: Vec<&str> = down.iter().map(|s| s.as_str()).collect();
        Problem::service_unavailable(format!("no healthy target for: {}", names.join(", ")))
            .to_response()
    }
}
