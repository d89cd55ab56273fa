//! Access tokens of a test identity provider, for the bench's provider
//! rows: `count` ES256 tokens signed with the PKCS#8 P-256 key at `key`
//! (made by `openssl genpkey` in bench/run.sh), one per line on stdout, all
//! of one user (`sub` = `bench-user`) for audience `gatehouse`, each with
//! its own `jti` (`<prefix>-<n>`: each is a new token to a verifier), valid
//! two hours. `tokens <key.pem> <issuer> <count> <prefix>`.

use std::io::Write as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(key), Some(issuer), Some(count), Some(prefix)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: tokens <key.pem> <issuer> <count> <prefix>");
    };
    let count: usize = count.parse()?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key)?)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench-1".into());
    header.typ = Some("at+jwt".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..count {
        let claims = serde_json::json!({
            "iss": issuer, "aud": "gatehouse", "sub": "bench-user",
            "preferred_username": "bench-user", "iat": now, "exp": now + 7200,
            "jti": format!("{prefix}-{i}"), "scope": "orders:read",
        });
        writeln!(out, "{}", jsonwebtoken::encode(&header, &claims, &key)?)?;
    }
    out.flush()?;
    Ok(())
}
