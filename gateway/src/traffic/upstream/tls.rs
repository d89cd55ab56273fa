//! TLS to upstreams: `https://` targets are verified against the Mozilla
//! roots (webpki-roots) or, with `tls.ca_file`, against that CA only; the
//! name checked is the target's host, which is also the SNI. There is no
//! way to skip verification. `tls.client_cert_file` and
//! `tls.client_key_file` present a client certificate (mTLS to services).
//! HTTP/2 is used where the target negotiates it (ALPN).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// An upstream's `tls:` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// PEM CA certificates that sign the targets' certificates (instead of
    /// the public roots).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) and its key, for targets that ask.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// A built client configuration; `id` tells the thread-local clients apart.
pub struct ClientTls {
    pub id: u64,
    pub config: Arc<rustls::ClientConfig>,
    /// The same, offering only HTTP/1.1: a WebSocket is an HTTP/1.1
    /// upgrade, and awc opens none over an HTTP/2 connection.
    pub websocket: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    pub fn is_default(&self) -> bool {
        *self == UpstreamTls::default()
    }

    /// Read the files and build the client configuration (blocking).
    pub fn build(&self) -> Result<ClientTls, String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for c in common::tls::read_certificates(ca)? {
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(common::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match (&self.client_cert_file, &self.client_key_file) {
            (Some(c), Some(k)) => {
                let key =
                    PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
                builder
                    .with_client_auth_cert(common::tls::read_certificates(c)?, key)
                    .map_err(|e| format!("{} and {}: {e}", c.display(), k.display()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err("tls: client_cert_file and client_key_file go together".into());
            }
        };
        let mut websocket = config.clone();
        websocket.alpn_protocols = vec![b"http/1.1".to_vec()];
        // HTTP/2 where the target offers it; awc reads the answer's ALPN.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ClientTls {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            config: Arc::new(config),
            websocket: Arc::new(websocket),
        })
    }
}
