//! The raw cost of one argon2id verify with the users service's parameters
//! (m = 19 MiB, t = 2, p = 1): the floor under `POST /api/login`.
//! Prints two medians of `n` verifies in milliseconds: with the working
//! memory reused between verifies (as the users service does), and with it
//! allocated afresh each time (the argon2 crate's `verify_password`).
//! `argon2_verify [n]`.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Block, Params, Version};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "21".into())
        .parse()?;
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let password = b"bench-password-0123";
    let hash = argon
        .hash_password(password)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let salt = b"sixteen-byte-slt";
    let mut blocks = vec![Block::default(); params.block_count()];
    let mut out = [0u8; 32];
    let mut reused = Vec::with_capacity(n);
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        argon
            .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        reused.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = std::time::Instant::now();
        argon
            .verify_password(password, hash.as_str())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        fresh.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("{:.2} {:.2}", median(reused), median(fresh));
    Ok(())
}
