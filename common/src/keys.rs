//! Ed25519 key files: generated on first start into the data directory for
//! development, read from files (or PEM in the environment) in production.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A key problem at startup.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {what}: not a valid Ed25519 PEM key ({reason})")]
    Parse { what: String, reason: String },
}

/// An Ed25519 key pair as PEM text.
#[derive(Clone)]
pub struct Ed25519Pem {
    /// PKCS#8 private key.
    pub private_pem: String,
    /// SPKI public key.
    pub public_pem: String,
}

impl std::fmt::Debug for Ed25519Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Pem")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// A fresh random key pair.
pub fn generate_ed25519() -> Result<Ed25519Pem, KeyError> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let parse = |reason: String| KeyError::Parse {
        what: "generated".into(),
        reason,
    };
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| parse(e.to_string()))?
        .to_string();
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| parse(e.to_string()))?;
    Ok(Ed25519Pem {
        private_pem,
        public_pem,
    })
}

/// Load `<dir>/<name>.key.pem` and `<dir>/<name>.pub.pem`, generating both on
/// first start (private key written with mode 0600).
pub fn ensure_ed25519(dir: &Path, name: &str) -> Result<Ed25519Pem, KeyError> {
    let private = dir.join(format!("{name}.key.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    if private.exists() {
        let private_pem = fs::read_to_string(&private).map_err(io(&private))?;
        let public_pem = public_pem_from_private(&private_pem, &private.display().to_string())?;
        if !public.exists() {
            fs::write(&public, &public_pem).map_err(io(&public))?;
        }
        return Ok(Ed25519Pem {
            private_pem,
            public_pem,
        });
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let pair = generate_ed25519()?;
    write_private(&private, pair.private_pem.as_bytes()).map_err(io(&private))?;
    fs::write(&public, &pair.public_pem).map_err(io(&public))?;
    tracing::info!(path = %private.display(), "generated a development Ed25519 key");
    Ok(pair)
}

/// Write a new secret file readable by its owner only (mode 0600); an
/// existing file is an error, never overwritten.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)
}

/// The public key of a PKCS#8 private key.
pub fn public_pem_from_private(private_pem: &str, what: &str) -> Result<String, KeyError> {
    let parse = |reason: String| KeyError::Parse {
        what: what.to_owned(),
        reason,
    };
    let key = SigningKey::from_pkcs8_pem(private_pem).map_err(|e| parse(e.to_string()))?;
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| parse(e.to_string()))
}

/// The raw 32-byte public key of an SPKI PEM.
pub fn public_key_bytes(public_pem: &str, what: &str) -> Result<[u8; 32], KeyError> {
    VerifyingKey::from_public_key_pem(public_pem)
        .map(|k| k.to_bytes())
        .map_err(|e| KeyError::Parse {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

/// A stable key id: base64url of the first 16 bytes of SHA-256 over the raw
/// public key. Derived, so no one has to configure or keep ids in sync.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Read a PEM file.
pub fn read_pem(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_persist() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = ensure_ed25519(dir.path(), "k").unwrap_or_else(|e| panic!("{e}"));
        let b = ensure_ed25519(dir.path(), "k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.private_pem, b.private_pem);
        assert_eq!(a.public_pem, b.public_pem);
        let raw = public_key_bytes(&a.public_pem, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key_id(&raw).len(), 22);
        let mode = std::fs::metadata(dir.path().join("k.key.pem")).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        assert_eq!(mode.ok(), Some(0o600));
        assert!(public_key_bytes("not a key", "t").is_err());
    }
}
