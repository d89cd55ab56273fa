//! HTTPS at the edge: the listener's certificate, served with rustls, TLS
//! 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN (actix-web offers both).
//!
//! The certificate is held by a [`CertStore`], rustls's certificate
//! resolver: every new handshake takes the current one, so replacing it
//! drops no connection. It is replaced by a reload (SIGHUP,
//! `POST /admin/reload`) and when its files change (cert-manager rotates
//! them in place; checked every `watch_secs`). A new pair that does not
//! parse, whose key does not match the certificate, or that is not valid
//! now is refused with the reason, and the old one keeps serving.
//!
//! `mode: dev` (`GATEWAY_TLS=dev`) makes a self-signed certificate for
//! `localhost`, `127.0.0.1` and `::1` under `DATA_DIR/keys` on first start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// `tls:` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// `off` (plain HTTP), `files` (`cert_file` and `key_file`), or `dev`
    /// (a generated self-signed certificate for localhost).
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM certificate chain, leaf first.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How often the files are checked for a change (0: never).
    #[serde(default = "default_watch")]
    pub watch_secs: u64,
    /// `Strict-Transport-Security` on HTTPS answers, when set.
    #[serde(default)]
    pub hsts: Option<Hsts>,
    /// A plain-HTTP listener that only redirects to HTTPS (308) and answers
    /// `/healthz`.
    #[serde(default)]
    pub redirect_listen: Option<SocketAddr>,
    /// The HTTPS port redirects name (default: the one the gateway listens
    /// on; set it when a port mapping stands in between).
    #[serde(default)]
    pub redirect_port: Option<u16>,
    /// PEM CA certificates that sign client certificates (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` (verified when presented; routes may require one)
    /// or `required` (no handshake without one).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Required,
}

fn default_watch() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Off,
    Files,
    Dev,
}

/// HTTP Strict Transport Security (RFC 6797).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    pub max_age_secs: u64,
    #[serde(default)]
    pub include_subdomains: bool,
}

impl Hsts {
    /// The header value.
    pub fn value(&self) -> String {
        if self.include_subdomains {
            format!("max-age={}; includeSubDomains", self.max_age_secs)
        } else {
            format!("max-age={}", self.max_age_secs)
        }
    }
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Off
    }

    /// Cross-field checks.
    pub fn check(&self) -> Result<(), String> {
        match self.mode {
            TlsMode::Files if self.cert_file.is_none() || self.key_file.is_none() => {
                Err("tls: mode `files` needs cert_file and key_file".into())
            }
            TlsMode::Off
                if self.redirect_listen.is_some()
                    || self.hsts.is_some()
                    || self.client_auth != ClientAuth::None =>
            {
                Err(
                    "tls: redirect_listen, hsts and client_auth need TLS (mode `files` or `dev`)"
                        .into(),
                )
            }
            _ if (self.client_auth == ClientAuth::None) != self.client_ca_file.is_none() => {
                Err("tls: client_auth `optional` or `required` goes with client_ca_file".into())
            }
            _ => Ok(()),
        }
    }

    /// The certificate and key files: the configured ones, or the
    /// development pair under `data_dir/keys` (made on first use).
    pub fn files(&self, data_dir: &Path) -> Result<(PathBuf, PathBuf), String> {
        match (self.mode, &self.cert_file, &self.key_file) {
            (TlsMode::Files, Some(c), Some(k)) => Ok((c.clone(), k.clone())),
            (TlsMode::Dev, _, _) => ensure_dev_certificate(&data_dir.join("keys")),
            _ => Err("tls: no certificate configured".into()),
        }
    }
}

/// The development certificate pair in `dir` (`dev-tls.crt.pem`,
/// `dev-tls.key.pem`, the key mode 0600), generated when missing.
pub fn ensure_dev_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("dev-tls.crt.pem");
    let key = dir.join("dev-tls.key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("generating the development certificate: {e}"))?;
    common::keys::write_private(&key, made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    tracing::warn!(cert = %cert.display(), "generated a self-signed development TLS certificate for localhost; configure tls.cert_file for anything else");
    Ok((cert, key))
}

/// A certificate chain and its key, checked: they parse, the key matches
/// the leaf, and the leaf is valid now. Also the leaf's expiry (Unix secs).
pub fn load_pair(cert: &Path, key: &Path) -> Result<(CertifiedKey, i64), String> {
    let chain = common::tls::read_certificates(cert)?;
    let leaf = &chain[0];
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = common::tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now < validity.not_before || now > validity.not_after {
        return Err(format!(
            "{}: not valid now (valid from {} to {})",
            cert.display(),
            validity.not_before,
            validity.not_after
        ));
    }
    let expires = validity.not_after.timestamp();
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    Ok((certified, expires))
}

/// The serving certificate, swapped atomically; rustls asks it at every
/// handshake.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    files: (PathBuf, PathBuf),
    /// The files' modification times when last loaded.
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
    expires_at: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn stamps(files: &(PathBuf, PathBuf)) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.0)?, m(&files.1)?))
}

impl CertStore {
    /// Load the configured pair (blocking: reads files).
    pub fn open(settings: &TlsSettings, data_dir: &Path) -> Result<Arc<Self>, String> {
        let files = settings.files(data_dir)?;
        let (key, expires) = load_pair(&files.0, &files.1)?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(key),
            stamp: Mutex::new(stamps(&files)),
            files,
            expires_at: std::sync::atomic::AtomicI64::new(expires),
        }))
    }

    /// Load the files again and serve them from the next handshake on, or
    /// keep the current pair and say why not (blocking: reads files).
    pub fn reload(&self) -> Result<(), String> {
        let stamp = stamps(&self.files);
        let (key, expires) = load_pair(&self.files.0, &self.files.1)?;
        self.current.store(Arc::new(key));
        self.expires_at
            .store(expires, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.stamp.lock() {
            *s = stamp;
        }
        tracing::info!(cert = %self.files.0.display(), "TLS certificate loaded");
        Ok(())
    }

    /// Reload when the files changed since the last load; `Ok(false)` when
    /// they did not.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = stamps(&self.files);
        let unchanged = self.stamp.lock().map(|s| *s == now).unwrap_or(false);
        if unchanged || now.is_none() {
            return Ok(false);
        }
        match self.reload() {
            Ok(()) => Ok(true),
            Err(e) => {
                // Do not try the same broken files every round.
                if let Ok(mut s) = self.stamp.lock() {
                    *s = now;
                }
                Err(e)
            }
        }
    }

    /// When the serving certificate expires (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The rustls server configuration over this store: TLS 1.3 and 1.2,
    /// no client certificates (actix-web adds the ALPN protocols).
    pub fn server_config(
        self: &Arc<Self>,
        settings: &TlsSettings,
    ) -> Result<rustls::ServerConfig, String> {
        let provider = common::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match (&settings.client_ca_file, settings.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                let mut roots = rustls::RootCertStore::empty();
                for c in common::tls::read_certificates(ca)? {
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.display()))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(builder.with_cert_resolver(self.clone()))
    }

    /// The subject of a verified client certificate, as attribute pairs
    /// (a value that is no string is kept as RFC 4514's `#` and its hex).
    pub fn subject_of(der: &[u8]) -> Option<crate::traffic::cert_subjects::Dn> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let rdns = cert
            .subject()
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|ava| {
                        let value = match ava.as_str() {
                            Ok(s) => s.to_owned(),
                            Err(_) => ava.as_slice().iter().fold("#".to_owned(), |mut h, b| {
                                h.push_str(&format!("{b:02x}"));
                                h
                            }),
                        };
                        (ava.attr_type().to_id_string(), value)
                    })
                    .collect()
            })
            .collect();
        Some(crate::traffic::cert_subjects::Dn::from_certificate(rdns))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, made.cert.pem()).unwrap();
        std::fs::write(&k, made.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn pairs_are_checked_before_they_serve() {
        common::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair(dir.path(), "one", &["localhost"]);
        let (_, k2) = pair(dir.path(), "two", &["localhost"]);
        assert!(load_pair(&c1, &k1).is_ok());
        // The key of another certificate.
        let e = load_pair(&c1, &k2).err().unwrap();
        assert!(e.contains("one.crt"), "{e}");
        // Not PEM at all; no certificate in it.
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert!(load_pair(&junk, &k1).is_err());
        assert!(load_pair(&c1, &junk).is_err());
    }

    #[test]
    fn the_store_keeps_serving_the_old_pair_when_the_new_one_is_bad() {
        common::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "live", &["localhost"]);
        let settings = TlsSettings {
            mode: TlsMode::Files,
            cert_file: Some(c.clone()),
            key_file: Some(k.clone()),
            ..TlsSettings::default()
        };
        let store = CertStore::open(&settings, dir.path()).unwrap();
        let before = store.current.load_full();
        assert!(!store.reload_if_changed().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&c, "garbage").unwrap();
        assert!(store.reload_if_changed().is_err());
        assert!(Arc::ptr_eq(&before, &store.current.load_full()));
        // Not tried again until the files change again.
        assert!(!store.reload_if_changed().unwrap());
        let (c2, k2) = pair(dir.path(), "next", &["localhost"]);
        std::fs::copy(&c2, &c).unwrap();
        std::fs::copy(&k2, &k).unwrap();
        assert!(store.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &store.current.load_full()));
        assert!(store.expires_at() > crate::clock::unix_secs());
    }

    #[test]
    fn development_certificates_are_made_once() {
        common::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ensure_dev_certificate(dir.path()).unwrap();
        let first = std::fs::read(&c).unwrap();
        assert!(load_pair(&c, &k).is_ok());
        let _ = ensure_dev_certificate(dir.path()).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), first);
        let settings = TlsSettings {
            mode: TlsMode::Files,
            ..TlsSettings::default()
        };
        assert!(settings.check().is_err());
    }
}
