//! Layered configuration (12-factor): embedded defaults (the shipped YAML),
//! then an optional YAML file named by `<SERVICE>_CONFIG_FILE`, then values
//! set by the launcher, then well-known environment names (`DATA_DIR`,
//! `DATABASE_URL`, ...), then `<PREFIX>__a__b` variables for any nested key.
//!
//! Settings structs use `#[serde(deny_unknown_fields)]`, so an unknown key or
//! an invalid value stops startup with a message naming the key, the reason
//! and where the value came from.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A configuration problem found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} (from {var}) cannot be read: {source}")]
    File {
        var: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration for {service}: {message}")]
    Invalid { service: String, message: String },
    /// One key's value is wrong (or contradicts another's).
    #[error("invalid configuration for {service}: {key}: {message}")]
    Key {
        service: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// `key` of `service`'s settings is wrong: `message` says why.
    pub fn key(service: &str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key {
            service: service.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Builds one service's settings from the layers described in the module docs.
pub struct Loader {
    service: String,
    figment: Figment,
    file_error: Option<ConfigError>,
    pinned: Vec<(String, serde_json::Value)>,
}

impl Loader {
    /// Embedded defaults plus the optional `<SERVICE>_CONFIG_FILE`.
    pub fn new(service: &str, defaults_yaml: &'static str) -> Self {
        let mut figment = Figment::from(Yaml::string(defaults_yaml));
        let var = format!("{}_CONFIG_FILE", service.to_ascii_uppercase());
        let mut file_error = None;
        if let Ok(path) = std::env::var(&var) {
            let path = PathBuf::from(path);
            match std::fs::metadata(&path) {
                Ok(_) => figment = figment.merge(Yaml::file_exact(&path)),
                Err(source) => file_error = Some(ConfigError::File { var, path, source }),
            }
        }
        Self {
            service: service.to_owned(),
            figment,
            file_error,
            pinned: Vec::new(),
        }
    }

    /// The embedded defaults alone, whatever the environment says: what the
    /// code ships (used to generate the committed OpenAPI documents).
    pub fn embedded(service: &str, defaults_yaml: &'static str) -> Self {
        Self {
            service: service.to_owned(),
            figment: Figment::from(Yaml::string(defaults_yaml)),
            file_error: None,
            pinned: Vec::new(),
        }
    }

    /// A value that wins over every layer, the environment included: for
    /// tests that must not inherit, say, `REDIS_URL` from the machine.
    pub fn pin(mut self, key: &str, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(v) => self.pinned.push((key.to_owned(), v)),
            Err(e) => {
                self.file_error = Some(ConfigError::Invalid {
                    service: self.service.clone(),
                    message: format!("{key}: {e}"),
                })
            }
        }
        self
    }

    /// A value set by the program (the all-in-one launcher), below the environment.
    pub fn set(mut self, key: &str, value: impl Serialize) -> Self {
        self.figment = self.figment.merge(Serialized::default(key, value));
        self
    }

    /// Well-known, unprefixed environment names mapped to keys, e.g.
    /// `("DATA_DIR", "data_dir")`.
    pub fn env_aliases(mut self, aliases: &'static [(&'static str, &'static str)]) -> Self {
        let env = Env::raw().filter_map(move |name| {
            aliases
                .iter()
                .find(|(var, _)| name.as_str().eq_ignore_ascii_case(var))
                .map(|(_, key)| (*key).into())
        });
        self.figment = self.figment.merge(env);
        self
    }

    /// `<PREFIX>__a__b=value` sets key `a.b`. Later prefixes win.
    pub fn env_prefix(mut self, prefix: &str) -> Self {
        let prefix = format!("{}__", prefix.to_ascii_uppercase());
        self.figment = self.figment.merge(Env::prefixed(&prefix).split("__"));
        self
    }

    /// Deserialize, reporting the offending key and its source on failure.
    pub fn extract<T: DeserializeOwned>(self) -> Result<T, ConfigError> {
        if let Some(e) = self.file_error {
            return Err(e);
        }
        let mut figment = self.figment;
        for (key, value) in self.pinned {
            figment = figment.merge(Serialized::default(&key, value));
        }
        figment.extract().map_err(|e| ConfigError::Invalid {
            service: self.service.clone(),
            message: e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

/// One entry of a list of address ranges: a CIDR, or an address (a /32 or
/// /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an IP address"))
}

/// Deserialize a list of address ranges (`scan.allowed_targets`,
/// `trusted_proxies`): a list, or one comma-separated string (what an
/// environment variable gives); a bad entry is named.
pub fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<IpNet>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of CIDRs, or a comma-separated string of them")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_cidr(s).map_err(E::custom))
                .collect()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(parse_cidr(&s).map_err(de::Error::custom)?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S {
        port: u16,
        nested: N,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct N {
        name: String,
    }

    const YAML: &str = "port: 1\nnested:\n  name: a\n";

    #[test]
    fn layers_and_errors() {
        figment::Jail::expect_with(|jail| {
            let s: S = Loader::new("svc", YAML)
                .extract()
                .map_err(|e| e.to_string())?;
            assert_eq!((s.port, s.nested.name.as_str()), (1, "a"));

            jail.set_env("SVC__NESTED__NAME", "b");
            jail.set_env("SVC_PORT_ALIAS", "7");
            let s: S = Loader::new("svc", YAML)
                .set("port", 5)
                .env_aliases(&[("SVC_PORT_ALIAS", "port")])
                .env_prefix("svc")
                .extract()
                .map_err(|e| e.to_string())?;
            assert_eq!((s.port, s.nested.name.as_str()), (7, "b"));

            jail.set_env("SVC__NESTED__BOGUS", "x");
            let err = Loader::new("svc", YAML)
                .env_prefix("svc")
                .extract::<S>()
                .err();
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("bogus"), "{msg}");
            jail.clear_env();

            jail.set_env("SVC__PORT", "70000");
            let msg = Loader::new("svc", YAML)
                .env_prefix("svc")
                .extract::<S>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.to_lowercase().contains("port") && msg.contains("70000"),
                "{msg}"
            );
            jail.clear_env();

            jail.set_env("SVC_CONFIG_FILE", "/nonexistent/x.yaml");
            let msg = Loader::new("svc", YAML)
                .extract::<S>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains("SVC_CONFIG_FILE"), "{msg}");
            Ok(())
        });
    }
}
