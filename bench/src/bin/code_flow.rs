//! The OpenID Connect code flow, timed: signs in once on the login page
//! (as a browser would: the anti-CSRF cookie and field, then the session
//! cookie), registers a first-party public application, then runs `n`
//! flows one after another on one connection: `GET /oauth/authorize` with
//! the session (a code back) and the code exchange at `/api/oauth/token`
//! (PKCE, an access, refresh and ID token). Prints what `bench/run.sh`
//! records for a row: `exchanges/s p50_ms p99_ms failures` of the code
//! exchange alone, then the authorize step's median on stderr.
//! `code_flow GATEWAY_URL ADMIN_PASSWORD [n]`.

use std::time::{Duration, Instant};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// A fixed PKCE pair (RFC 7636 appendix B): a fresh one per flow would
/// only add the client's own hashing to the measure.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn field<'a>(html: &'a str, name: &str) -> anyhow::Result<&'a str> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| anyhow::anyhow!("no {name} field"))?
        + marker.len();
    let end = html[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated {name}"))?;
    Ok(&html[start..start + end])
}

fn cookie(res: &awc::ClientResponse<impl Sized>, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gw = args.next().ok_or_else(|| anyhow::anyhow!("GATEWAY_URL"))?;
    let password = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("ADMIN_PASSWORD"))?;
    let n: usize = args.next().unwrap_or_else(|| "200".into()).parse()?;
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .disable_redirects()
        .finish();
    let err = |e: awc::error::SendRequestError| anyhow::anyhow!("{e}");

    // An admin token, and the application.
    let mut r = http
        .post(format!("{gw}/api/login"))
        .content_type("application/json")
        .send_body(serde_json_body(&[
            ("username", "admin"),
            ("password", &password),
        ]))
        .await
        .map_err(err)?;
    let body = String::from_utf8(r.body().await?.to_vec())?;
    let token = json_str(&body, "access_token")?;
    let mut r = http
        .post(format!("{gw}/api/clients"))
        .bearer_auth(&token)
        .content_type("application/json")
        .send_body(format!(
            r#"{{"name":"bench app","public":true,"first_party":true,"redirect_uris":["{REDIRECT}"]}}"#
        ))
        .await
        .map_err(err)?;
    let body = String::from_utf8(r.body().await?.to_vec())?;
    let client_id = json_str(&body, "client_id")?;

    // Signing in on the page, once.
    let mut page = http.get(format!("{gw}/login")).send().await.map_err(err)?;
    let csrf_cookie =
        cookie(&page, "gatehouse-csrf").ok_or_else(|| anyhow::anyhow!("no csrf cookie"))?;
    let html = String::from_utf8(page.body().await?.to_vec())?;
    let csrf = field(&html, "csrf")?.to_owned();
    let signed = http
        .post(format!("{gw}/login"))
        .insert_header(("cookie", csrf_cookie))
        .content_type("application/x-www-form-urlencoded")
        .send_body(format!(
            "csrf={}&username=admin&password={}",
            enc(&csrf),
            enc(&password)
        ))
        .await
        .map_err(err)?;
    let session = cookie(&signed, "gatehouse-session")
        .ok_or_else(|| anyhow::anyhow!("not signed in: {}", signed.status()))?;

    let authorize = format!(
        "{gw}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256",
        enc(&client_id),
        enc(REDIRECT)
    );
    let (mut auth_ms, mut exchange_ms) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut failures = 0;
    let mut exchanging = Duration::ZERO;
    for _ in 0..n {
        let t0 = Instant::now();
        let r = http
            .get(&authorize)
            .insert_header(("cookie", session.clone()))
            .send()
            .await
            .map_err(err)?;
        auth_ms.push(ms(t0.elapsed()));
        let code = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split("code=").nth(1))
            .and_then(|c| c.split('&').next())
            .map(str::to_owned);
        let Some(code) = code else {
            failures += 1;
            continue;
        };
        let t1 = Instant::now();
        let mut res = http
            .post(format!("{gw}/api/oauth/token"))
            .content_type("application/x-www-form-urlencoded")
            .send_body(format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}&client_id={}",
                enc(REDIRECT),
                enc(&client_id)
            ))
            .await
            .map_err(err)?;
        let _ = res.body().await;
        let took = t1.elapsed();
        exchanging += took;
        exchange_ms.push(ms(took));
        if !res.status().is_success() {
            failures += 1;
        }
    }
    if exchange_ms.is_empty() {
        anyhow::bail!("no code was issued");
    }
    let rate = exchange_ms.len() as f64 / exchanging.as_secs_f64();
    let p50 = quantile(&mut exchange_ms, 0.5);
    let p99 = quantile(&mut exchange_ms, 0.99);
    println!("{rate:.0} {p50:.3} {p99:.3} {failures}");
    eprintln!(
        "authorize (with a session, a code back): median {:.3} ms",
        quantile(&mut auth_ms, 0.5)
    );
    Ok(())
}

/// A JSON object of strings (no serde in the bench crate).
fn serde_json_body(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "\"{k}\":\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A string field of a flat JSON answer.
fn json_str(body: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("\"{name}\":\"");
    let start = body
        .find(&marker)
        .ok_or_else(|| anyhow::anyhow!("no {name} in {body}"))?
        + marker.len();
    let end = body[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated {name}"))?;
    Ok(body[start..start + end].to_owned())
}
