//! Settings of the orders service (`config/orders.yaml`, see the module docs of
//! `common::config` for the layering).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::identity::ProofSettings;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/orders.yaml");

/// Unprefixed environment names this service reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.export.endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.export.protocol"),
    ("GATEWAY_PROOF_PUBLIC_KEY", "gateway_proof.public_key_pem"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub gateway_proof: ProofSettings,
    /// Traces (`common::traces`): no export unless an endpoint is set.
    #[serde(default)]
    pub tracing: common::traces::TracingSettings,
}

impl Settings {
    /// The layers below the environment; the launcher adds its own values.
    pub fn loader() -> Loader {
        Loader::new("orders", DEFAULTS)
    }

    /// Complete a loader with the environment layers and extract.
    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("ORDERS")
            .extract()
    }

    /// Settings from the shipped defaults and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }
}
