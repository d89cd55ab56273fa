//! The raw cost of one ES256 check with the gateway's JWT library as it is
//! built here (jsonwebtoken with `rust_crypto`): what a trusted provider's
//! token costs the first time the gateway sees it (bench rows 17, beside
//! HAProxy's OpenSSL). Makes a P-256 key with openssl, signs `n` tokens
//! with `tokens`' claims shape, verifies each once with `iss`/`aud`/`exp`
//! checks, and prints the median microseconds. `es256_verify <key.pem>
//! <pub.pem> [n]`.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(key), Some(public)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: es256_verify <key.pem> <pub.pem> [n]");
    };
    let n: usize = args.next().unwrap_or_else(|| "2001".into()).parse()?;
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key)?)?;
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(&std::fs::read(public)?)?;
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let tokens = (0..n)
        .map(|i| {
            let claims = serde_json::json!({"iss": "https://idp.bench.test", "aud": "gatehouse",
                "sub": "bench-user", "iat": now, "exp": now + 7200, "jti": format!("v-{i}")});
            jsonwebtoken::encode(&header, &claims, &encoding)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&["https://idp.bench.test"]);
    v.set_audience(&["gatehouse"]);
    let mut us = Vec::with_capacity(n);
    for t in &tokens {
        let start = std::time::Instant::now();
        jsonwebtoken::decode::<serde_json::Value>(t, &decoding, &v)?;
        us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    println!("{:.1}", us[us.len() / 2]);
    Ok(())
}
