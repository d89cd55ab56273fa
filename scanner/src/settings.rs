//! Settings of the scanner service (`config/scanner.yaml`, see the module docs
//! of `common::config` for the layering).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::identity::ProofSettings;
use ipnet::IpNet;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/scanner.yaml");

/// Unprefixed environment names this service reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.export.endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.export.protocol"),
    ("GATEWAY_PROOF_PUBLIC_KEY", "gateway_proof.public_key_pem"),
    ("SCANNER_ALLOWED_TARGETS", "scan.allowed_targets"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This replica's name (`scanner1`, `scanner2`, ...); every result names it.
    pub instance: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub gateway_proof: ProofSettings,
    pub scan: ScanSettings,
    /// Traces (`common::traces`): no export unless an endpoint is set.
    #[serde(default)]
    pub tracing: common::traces::TracingSettings,
}

/// How a scan is bounded, and which private addresses it may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSettings {
    /// The whole scan (DNS, every hop, the body) ends within this budget.
    pub timeout_ms: u64,
    /// Redirects followed before the scan is recorded as failed.
    pub max_redirects: usize,
    /// Bytes of the final body read at most; the rest is never received.
    pub max_body_bytes: u64,
    /// Address ranges a scan may reach although the SSRF policy refuses them
    /// (loopback, private, ...): CIDRs or single addresses. A YAML list, or a
    /// comma-separated string (`SCANNER_ALLOWED_TARGETS=10.1.0.0/16,127.0.0.1`).
    #[serde(deserialize_with = "common::config::cidr_list")]
    pub allowed_targets: Vec<IpNet>,
    /// Scans one caller may have in progress on this replica; more are
    /// refused with 429.
    pub max_concurrent_per_user: usize,
}

impl Settings {
    /// The layers below the environment; the launcher and tests add their own values.
    pub fn loader() -> Loader {
        Loader::new("scanner", DEFAULTS)
    }

    /// Complete a loader with the environment layers and extract.
    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("SCANNER")
            .extract()
    }

    /// One replica of the all-in-one launcher: its name and port, with
    /// `<INSTANCE>__*` variables (e.g. `SCANNER2__LISTEN`) over `SCANNER__*`.
    pub fn replica(instance: &str, listen: SocketAddr) -> Result<Self, ConfigError> {
        Self::loader()
            .set("instance", instance)
            .set("listen", listen.to_string())
            .env_aliases(ENV_ALIASES)
            .env_prefix("SCANNER")
            .env_prefix(instance)
            .extract()
    }

    /// Settings from the shipped defaults and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn with(value: serde_json::Value) -> Result<Settings, ConfigError> {
        Settings::loader()
            .set("scan.allowed_targets", value)
            .extract()
    }

    #[test]
    fn defaults_allow_no_private_target() {
        let s: Settings = Settings::loader().extract().unwrap();
        assert!(s.scan.allowed_targets.is_empty());
        assert_eq!(s.scan.timeout_ms, 10_000);
        assert_eq!(s.scan.max_redirects, 5);
        assert_eq!(s.scan.max_body_bytes, 1 << 20);
    }

    #[test]
    fn allowed_targets_from_a_list_or_a_comma_separated_string() {
        let s = with(serde_json::json!(["127.0.0.0/8", "::1"])).unwrap();
        assert_eq!(
            s.scan.allowed_targets,
            [
                "127.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        let s = with(serde_json::json!(" 10.0.0.0/8, 192.168.1.7 ,")).unwrap();
        assert_eq!(
            s.scan.allowed_targets,
            [
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.1.7/32".parse().unwrap()
            ]
        );
        assert!(
            with(serde_json::json!(""))
                .unwrap()
                .scan
                .allowed_targets
                .is_empty()
        );
    }

    #[test]
    fn a_bad_entry_is_named() {
        let e = with(serde_json::json!("10.0.0.0/8,10.0.0.0/33")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`10.0.0.0/33`"), "{msg}");
        assert!(msg.contains("allowed_targets"), "{msg}");
        let e = with(serde_json::json!(["localhost"])).unwrap_err();
        assert!(e.to_string().contains("`localhost`"), "{e}");
    }
}
