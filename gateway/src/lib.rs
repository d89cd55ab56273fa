//! The gateway: the only public entry point. Login, tokens, role-checked
//! routing and forwarding arrive with issues #3 and #4; today it owns the
//! identity-proof signing key (generated on first start) and reports its own
//! health and its upstreams' readiness.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use common::Problem;
use common::config::{ConfigError, Loader};
use common::http::Running;
use common::identity::{PROOF_KEY_NAME, ProofMinter};
use serde::{Deserialize, Serialize};

pub mod tokens;

const DEFAULTS: &str = include_str!("../../config/gateway.yaml");

/// Unprefixed environment names the gateway reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("GATEWAY_LISTEN", "listen"),
    ("DATA_DIR", "data_dir"),
    ("GATEWAY_PROOF_PRIVATE_KEY", "proof.private_key_pem"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub proof: ProofSigning,
    /// Upstream name -> target base URLs.
    pub upstreams: BTreeMap<String, Vec<String>>,
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
    let minter =
        web::Data::new(proof_minter(&settings).context("loading the gateway proof signing key")?);
    let upstreams = web::Data::new(Arc::new(settings.upstreams.clone()));
    Ok(common::http::serve(
        listener,
        settings.workers,
        move |cfg| {
            cfg.app_data(minter.clone())
                .app_data(upstreams.clone())
                .service(web::resource("/healthz").get(common::http::healthz))
                .service(web::resource("/readyz").get(readyz));
        },
    )?)
}

/// Readiness body: each upstream's state.
#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    upstreams: BTreeMap<String, &'static str>,
}

/// `GET /readyz`: ready when every upstream has at least one target whose
/// `/healthz` answers 200 within 2 s.
async fn readyz(upstreams: web::Data<Arc<BTreeMap<String, Vec<String>>>>) -> HttpResponse {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(2))
        .finish();
    let mut states = BTreeMap::new();
    for (name, targets) in upstreams.iter() {
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
