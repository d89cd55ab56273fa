//! TLS plumbing shared by every deployable.
//!
//! rustls needs one process-wide crypto provider. The workspace builds only
//! ring (aws-lc-rs, the default of several crates, is a long C build of its
//! own, and with two providers present rustls cannot choose and panics), so
//! every `build()` installs ring before anything opens a TLS connection.

/// Install ring as the process's rustls crypto provider. Idempotent: a
/// provider already installed (another service in the same process, a test)
/// is kept.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_keeps_one_provider() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
