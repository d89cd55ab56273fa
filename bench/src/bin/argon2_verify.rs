//! The raw cost of one argon2id verify with the users service's parameters
//! (m = 19 MiB, t = 2, p = 1): the floor under `POST /api/login`.
//! Prints the median of `n` verifies in milliseconds. `argon2_verify [n]`.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "21".into())
        .parse()?;
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon
        .hash_password(b"bench-password-0123")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        argon
            .verify_password(b"bench-password-0123", hash.as_str())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.2}", times[times.len() / 2]);
    Ok(())
}
