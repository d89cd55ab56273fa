//! The opaque values the gateway hands out (refresh tokens, login
//! challenges, browser-session cookies, authorization codes, client
//! secrets, anti-CSRF tokens): 256 random bits as base64url, and the
//! SHA-256 (lower-case hex) the database keeps instead of the value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// A new value: 32 random bytes, base64url without padding (43 characters).
pub fn new_value() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (only on their lengths).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What is stored of `value`: its SHA-256, lower-case hex.
pub fn digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_43_characters_and_digests_64_hex() {
        let v = new_value();
        assert_eq!(v.len(), 43);
        assert_ne!(v, new_value());
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
