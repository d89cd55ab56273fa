//! Settings of the users service (`config/users.yaml`, see the module docs of
//! `common::config` for the layering).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::identity::ProofSettings;
use secrecy::SecretString;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/users.yaml");

/// Unprefixed environment names this service reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.export.endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.export.protocol"),
    ("ADMIN_USERNAME", "admin.username"),
    ("ADMIN_PASSWORD", "admin.password"),
    ("ADMIN_EMAIL", "admin.email"),
    ("GATEWAY_PROOF_PUBLIC_KEY", "gateway_proof.public_key_pem"),
    ("MFA_SECRET_KEY", "mfa.key"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub gateway_proof: ProofSettings,
    pub admin: AdminSettings,
    pub password: PasswordSettings,
    /// Second factors: where the key sealing TOTP secrets comes from.
    #[serde(default)]
    pub mfa: crate::mfa::MfaSettings,
    /// Traces (`common::traces`): no export unless an endpoint is set.
    #[serde(default)]
    pub tracing: common::traces::TracingSettings,
}

/// The administrator created on first start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub max_concurrent_hashes: usize,
    pub queue_timeout_ms: u64,
    /// Hashing threads at nice 19 (SCHED_BATCH), so request handling on the
    /// same cores goes first.
    #[serde(default = "yes")]
    pub low_priority: bool,
}

fn yes() -> bool {
    true
}

impl Settings {
    /// The layers below the environment; the launcher adds its own values.
    pub fn loader() -> Loader {
        Loader::new("users", DEFAULTS)
    }

    /// Complete a loader with the environment layers and extract.
    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        let s: Settings = loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("USERS")
            .extract()?;
        s.check()
    }

    /// Settings from the shipped defaults and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }

    fn check(self) -> Result<Self, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            service: "users".into(),
            message: message.into(),
        };
        if self.password.max_concurrent_hashes == 0 {
            return Err(invalid(
                "password.max_concurrent_hashes: must be at least 1",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections: must be at least 1"));
        }
        Ok(self)
    }
}
