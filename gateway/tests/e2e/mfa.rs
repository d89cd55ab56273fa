//! Second factors end to end: enrolment through the gateway, the two-step
//! login, codes checked by pyotp (Python, an implementation nobody here
//! wrote) from the `otpauth://` URI the gateway answered, replays, clock
//! skew, the lockout, challenges, recovery codes, routes that need a second
//! factor, an admin's reset, and two gateway replicas.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;

fn python() -> PathBuf {
    testkit::python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "totp-venv",
        &["pyotp==2.12.1"],
    )
    .join("python")
}

/// pyotp's codes of `uri` at each of `times`.
async fn pyotp(uri: &str, times: &[i64]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/totp.py");
    let mut args = vec![uri.to_owned()];
    args.extend(times.iter().map(i64::to_string));
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pyotp: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

async fn describe(uri: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/totp.py");
    let uri = uri.to_owned();
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args([uri.as_str(), "--describe"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The start of the current 30-second step, once at least `margin` seconds
/// of it are left: codes made for it (and the steps around it) are then
/// checked by the server within this same step.
async fn step_start(margin: i64) -> i64 {
    loop {
        let t = now();
        if 30 - t % 30 >= margin {
            return t - t % 30;
        }
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An access token's claims (not verified: the gateway issued it).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub(crate) struct Enrolled {
    uri: String,
    pub(crate) recovery: Vec<String>,
    /// The start of the step whose code confirmed the enrolment.
    step: i64,
}

/// Enrol and confirm a TOTP for the caller of `token`.
pub(crate) async fn enrol(s: &Stack, token: &str, password: &str) -> Enrolled {
    let r = s
        .send(
            token,
            Method::POST,
            "/api/me/mfa/totp",
            json!({"current_password": password}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uri = r.body["otpauth_uri"].as_str().unwrap().to_owned();
    let step = step_start(12).await;
    let code = pyotp(&uri, &[step]).await.remove(0);
    let r = s
        .send(
            token,
            Method::POST,
            "/api/me/mfa/totp/confirm",
            json!({"code": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recovery: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Enrolled {
        uri,
        recovery,
        step,
    }
}

/// The first step on the gateway at `base`: the challenge of an
/// `mfa-required` answer.
async fn challenge_on(s: &Stack, base: &str, user: &str, password: &str) -> String {
    let r = read(
        s.client
            .post(format!("{base}/api/login"))
            .json(&json!({"username": user, "password": password})),
    )
    .await;
    let p = r.problem(401);
    assert_eq!(
        p["type"], "urn:gatehouse:problem:mfa-required",
        "{}",
        r.text
    );
    assert!(r.body.get("access_token").is_none());
    assert_eq!(p["challenge_expires_in"], 300);
    assert_eq!(p["methods"], json!(["totp", "recovery_code"]));
    p["challenge"].as_str().unwrap().to_owned()
}

async fn challenge(s: &Stack, user: &str, password: &str) -> String {
    challenge_on(s, &s.gw, user, password).await
}

async fn second_step_on(s: &Stack, base: &str, body: Value) -> Resp {
    read(s.client.post(format!("{base}/api/login/mfa")).json(&body)).await
}

async fn second_step(s: &Stack, body: Value) -> Resp {
    second_step_on(s, &s.gw, body).await
}

#[actix_web::test]
async fn enrolment_then_a_two_step_login_whose_tokens_say_otp() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let id = s.create_user(&admin, "mia", &["user"]).await;
    let password = "mia-password-1";
    let (token, _) = s.tokens("mia", password).await;
    let c = claims(&token);
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["acr"], "urn:gatehouse:acr:password");
    assert!(c["auth_time"].is_i64());
    // A second session, which enabling the second factor ends.
    let (_, other_refresh) = s.tokens("mia", password).await;

    // A wrong password counts as a failed check and enrols nothing.
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/totp",
            json!({"current_password": "nope-nope-nope"}),
        )
        .await;
    r.problem(403);
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/totp",
            json!({"current_password": password}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let uri = r.body["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(r.body["qr_svg"].as_str().unwrap().starts_with("<svg"));
    // RFC 6238 as pyotp reads the URI: SHA-1, 6 digits, 30 s, the issuer
    // and the username.
    let d = describe(&uri).await;
    assert_eq!(d["issuer"], "gatehouse", "{d}");
    assert_eq!(d["name"], "mia");
    assert_eq!(d["digits"], 6);
    assert_eq!(d["interval"], 30);
    assert_eq!(d["digest"], "sha1");
    assert_eq!(d["secret"], r.body["secret"]);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&token, "/api/me/mfa").await.body["totp"], "pending");
    // Until confirmed, logins take the password only.
    assert_eq!(s.login("mia", password).await.status, 200);

    let step = step_start(12).await;
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/totp/confirm",
            json!({"code": "000000"}),
        )
        .await;
    r.problem(403);
    let code = pyotp(&uri, &[step]).await.remove(0);
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/totp/confirm",
            json!({"code": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let codes = r.body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::BTreeSet<&str> =
        codes.iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 10);
    // The caller's session stays; the other one ended.
    assert_eq!(s.get(&token, "/api/me").await.status, 200);
    assert_eq!(s.refresh(&other_refresh).await.status, 401);

    // Never shown again, anywhere.
    let me = s.get(&token, "/api/me").await;
    assert_eq!(me.body["mfa_enabled"], true, "{}", me.text);
    let listed = s.get(&admin, &format!("/api/users/{id}")).await;
    assert_eq!(listed.body["mfa_enabled"], true);
    let everything = format!(
        "{}{}{}{}",
        me.text,
        listed.text,
        s.get(&admin, "/api/users").await.text,
        s.get(&admin, "/api/audit?limit=100").await.text
    );
    assert!(!everything.contains(&secret), "{everything}");
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/totp",
            json!({"current_password": password}),
        )
        .await;
    assert_eq!(
        r.problem(409)["type"],
        "urn:gatehouse:problem:mfa-already-enabled"
    );

    // Now the password alone gets a challenge, then a code gets tokens:
    // the next step's code (one step of skew ahead), as the confirmation
    // took this step's.
    let ch = challenge(&s, "mia", password).await;
    let next = pyotp(&uri, &[step + 30]).await.remove(0);
    let r = second_step(&s, json!({"challenge": ch, "code": next})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let c = claims(&access);
    assert_eq!(c["amr"], json!(["pwd", "otp"]), "{c}");
    assert_eq!(c["acr"], "urn:gatehouse:acr:mfa");
    assert!(c["auth_time"].as_i64().unwrap() >= step);
    assert_eq!(s.get(&access, "/api/me").await.status, 200);
    // The challenge was used, and the code cannot be used again.
    let r = second_step(&s, json!({"challenge": ch, "code": next})).await;
    assert_eq!(
        r.problem(401)["type"],
        "urn:gatehouse:problem:invalid-challenge"
    );
    let ch2 = challenge(&s, "mia", password).await;
    let r = second_step(&s, json!({"challenge": ch2, "code": next})).await;
    assert_eq!(r.problem(401)["type"], "urn:gatehouse:problem:invalid-code");
    // A wrong code leaves the challenge usable (within the lockout); and
    // refreshed tokens keep how the session logged in.
    let r = second_step(&s, json!({"challenge": ch2, "recovery_code": codes[0]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = s.refresh(&refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = claims(r.body["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "otp"]));
    assert_eq!(c["acr"], "urn:gatehouse:acr:mfa");
    // Exactly one of a code and a recovery code.
    let r = second_step(&s, json!({"challenge": "x"})).await;
    r.problem(422);
    let r = second_step(
        &s,
        json!({"challenge": "x", "code": "1", "recovery_code": "2"}),
    )
    .await;
    r.problem(422);
    // The metadata names both context classes.
    let d = read(s.client.get(s.url("/.well-known/openid-configuration"))).await;
    assert_eq!(
        d.body["acr_values_supported"],
        json!(["urn:gatehouse:acr:password", "urn:gatehouse:acr:mfa"])
    );
}

#[actix_web::test]
async fn codes_count_within_one_step_of_skew_and_never_twice_on_any_replica() {
    // Room for the wrong codes below (the lockout has a test of its own).
    let budget = |l: common::config::Loader| {
        l.set(
            "login_limits.per_username",
            json!({"max_failures": 20, "window_secs": 60, "lockout_secs": 30}),
        )
    };
    let s = spawn_stack_with(budget).await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "noa", &["user"]).await;
    let password = "noa-password-1";
    let (token, _) = s.tokens("noa", password).await;
    let e = enrol(&s, &token, password).await;
    let (b, _b_handle) = s.another_gateway(&budget).await;
    let t = e.step;
    let codes = pyotp(&e.uri, &[t - 60, t - 30, t, t + 30, t + 60]).await;
    // Two steps away either side: refused (and counted).
    let ch = challenge(&s, "noa", password).await;
    for far in [&codes[0], &codes[4]] {
        let r = second_step(&s, json!({"challenge": ch, "code": far})).await;
        assert_eq!(r.problem(401)["type"], "urn:gatehouse:problem:invalid-code");
    }
    // The step the confirmation used and the one before it: used, or older.
    for used in [&codes[1], &codes[2]] {
        let r = second_step(&s, json!({"challenge": ch, "code": used})).await;
        r.problem(401);
    }
    // One step ahead, on replica B: accepted; then nowhere again.
    let ch_b = challenge_on(&s, &b, "noa", password).await;
    let r = second_step_on(&s, &b, json!({"challenge": ch_b, "code": codes[3]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = second_step(&s, json!({"challenge": ch, "code": codes[3]})).await;
    assert_eq!(r.problem(401)["type"], "urn:gatehouse:problem:invalid-code");
    // A challenge is the replicas' alike: A's, used on B, then on A.
    let ch = challenge(&s, "noa", password).await;
    let r = second_step_on(
        &s,
        &b,
        json!({"challenge": ch, "recovery_code": e.recovery[0]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = second_step(&s, json!({"challenge": ch, "recovery_code": e.recovery[1]})).await;
    assert_eq!(
        r.problem(401)["type"],
        "urn:gatehouse:problem:invalid-challenge"
    );
}

#[actix_web::test]
async fn concurrent_uses_of_one_code_let_exactly_one_in() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "oli", &["user"]).await;
    let password = "oli-password-1";
    let (token, _) = s.tokens("oli", password).await;
    let e = enrol(&s, &token, password).await;
    let code = pyotp(&e.uri, &[e.step + 30]).await.remove(0);
    let mut challenges = Vec::new();
    for _ in 0..4 {
        challenges.push(challenge(&s, "oli", password).await);
    }
    let tries = challenges
        .iter()
        .map(|ch| second_step(&s, json!({"challenge": ch, "code": code})));
    let results = futures_util::future::join_all(tries).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{results:?}");
}

#[actix_web::test]
async fn wrong_codes_count_toward_the_same_lockout_as_wrong_passwords() {
    let s = spawn_stack_with(|l| {
        l.set(
            "login_limits.per_username",
            json!({"max_failures": 3, "window_secs": 60, "lockout_secs": 30}),
        )
    })
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "pia", &["user"]).await;
    let password = "pia-password-1";
    let (token, _) = s.tokens("pia", password).await;
    let e = enrol(&s, &token, password).await;
    // One wrong password, two wrong codes: the budget of three is spent.
    assert_eq!(s.login("pia", "wrong-password-1").await.status, 401);
    let ch = challenge(&s, "pia", password).await;
    for _ in 0..2 {
        let r = second_step(&s, json!({"challenge": ch, "code": "123456"})).await;
        r.problem(401);
    }
    // Locked: even the right code is not checked.
    let right = pyotp(&e.uri, &[e.step + 30]).await.remove(0);
    let r = second_step(&s, json!({"challenge": ch, "code": right})).await;
    r.problem(429);
    assert!(r.headers.contains_key("retry-after"));
    let r = s.login("pia", password).await;
    r.problem(429);
    let m = read(s.client.get(s.url("/metrics"))).await.text;
    assert!(
        m.lines()
            .any(|l| l.starts_with("gatehouse_logins_total{outcome=\"mfa_failure\"} 2")),
        "{m}"
    );
}

#[actix_web::test]
async fn a_challenge_is_short_lived_single_use_and_bound_to_its_client_and_user() {
    let s = spawn_stack_with(|l| {
        l.set("mfa.challenge_ttl_secs", 2)
            .set("trusted_proxies", json!(["127.0.0.1/32"]))
    })
    .await;
    let admin = admin_token(&s).await;
    let id = s.create_user(&admin, "rio", &["user"]).await;
    s.create_user(&admin, "sol", &["user"]).await;
    let (rio, _) = s.tokens("rio", "rio-password-1").await;
    let (sol, _) = s.tokens("sol", "sol-password-1").await;
    let rio_totp = enrol(&s, &rio, "rio-password-1").await;
    let sol_totp = enrol(&s, &sol, "sol-password-1").await;
    let from = |ip: &str| {
        let ip = ip.to_owned();
        move |rb: reqwest::RequestBuilder| rb.header("x-forwarded-for", ip.clone())
    };
    let first = |ip: &'static str| {
        let s = &s;
        async move {
            let r =
                read(from(ip)(s.client.post(s.url("/api/login")).json(
                    &json!({"username": "rio", "password": "rio-password-1"}),
                )))
                .await;
            r.problem(401)["challenge"].as_str().unwrap().to_owned()
        }
    };
    let second = |ip: &'static str, body: Value| {
        let s = &s;
        async move { read(from(ip)(s.client.post(s.url("/api/login/mfa")).json(&body))).await }
    };
    // Another client's challenge is refused.
    let ch = first("192.0.2.1").await;
    let r = second(
        "192.0.2.2",
        json!({"challenge": ch, "recovery_code": rio_totp.recovery[0]}),
    )
    .await;
    assert_eq!(
        r.problem(401)["type"],
        "urn:gatehouse:problem:invalid-challenge"
    );
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("another client")
    );
    // Another user's code does not fit this user's challenge.
    let sol_code = pyotp(&sol_totp.uri, &[sol_totp.step + 30]).await.remove(0);
    let r = second("192.0.2.1", json!({"challenge": ch, "code": sol_code})).await;
    assert_eq!(r.problem(401)["type"], "urn:gatehouse:problem:invalid-code");
    // Expired after its lifetime.
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let r = second(
        "192.0.2.1",
        json!({"challenge": ch, "recovery_code": rio_totp.recovery[0]}),
    )
    .await;
    assert!(
        r.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        r.text
    );
    // A deactivated account's challenge takes no code.
    let ch = first("192.0.2.1").await;
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{id}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = second(
        "192.0.2.1",
        json!({"challenge": ch, "recovery_code": rio_totp.recovery[0]}),
    )
    .await;
    r.problem(401);
    // An unknown challenge.
    let r = second(
        "192.0.2.1",
        json!({"challenge": "made-up", "code": "123456"}),
    )
    .await;
    assert_eq!(
        r.problem(401)["type"],
        "urn:gatehouse:problem:invalid-challenge"
    );
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str, col: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<String>("", col).unwrap())
        .collect()
}

#[actix_web::test]
async fn recovery_codes_work_once_secrets_rest_sealed_and_the_factor_can_go() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "tam", &["user"]).await;
    let password = "tam-password-1";
    let (token, _) = s.tokens("tam", password).await;
    let e = enrol(&s, &token, password).await;
    let secret = describe(&e.uri).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // At rest: the secret sealed, the recovery codes as hashes.
    let db = sea_orm::Database::connect(&s.users_db).await.unwrap();
    let stored = scalar(&db, "SELECT secret FROM totp_secrets", "secret").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("v1:"), "{}", stored[0]);
    assert!(!stored[0].contains(&secret));
    let hashes = scalar(&db, "SELECT code_hash FROM recovery_codes", "code_hash").await;
    assert_eq!(hashes.len(), 10);
    for code in &e.recovery {
        let bare = code.replace('-', "");
        assert!(hashes.iter().all(|h| !h.contains(&bare) && h.len() == 64));
    }

    // A recovery code logs in once (typed in capitals, without dashes).
    let typed = e.recovery[0].to_uppercase().replace('-', "");
    let ch = challenge(&s, "tam", password).await;
    let r = second_step(&s, json!({"challenge": ch, "recovery_code": typed})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ch = challenge(&s, "tam", password).await;
    let r = second_step(&s, json!({"challenge": ch, "recovery_code": e.recovery[0]})).await;
    assert_eq!(r.problem(401)["type"], "urn:gatehouse:problem:invalid-code");
    assert_eq!(
        s.get(&token, "/api/me/mfa").await.body["recovery_codes_left"],
        9
    );

    // A new set (with a code from the app) replaces the old one.
    let code = pyotp(&e.uri, &[e.step + 30]).await.remove(0);
    let r = s
        .send(
            &token,
            Method::POST,
            "/api/me/mfa/recovery-codes",
            json!({"code": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = r.body["recovery_codes"][0].as_str().unwrap().to_owned();
    let r = second_step(&s, json!({"challenge": ch, "recovery_code": e.recovery[1]})).await;
    r.problem(401);

    // Removing the factor takes the password and a code (a recovery code
    // here); then the password alone logs in again.
    let r = s
        .send(
            &token,
            Method::DELETE,
            "/api/me/mfa/totp",
            json!({"current_password": "wrong-password-1", "recovery_code": fresh}),
        )
        .await;
    r.problem(403);
    let r = s
        .send(
            &token,
            Method::DELETE,
            "/api/me/mfa/totp",
            json!({"current_password": password, "recovery_code": fresh}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.login("tam", password).await.status, 200);
    assert!(
        scalar(&db, "SELECT secret FROM totp_secrets", "secret")
            .await
            .is_empty()
    );
    assert!(
        scalar(&db, "SELECT code_hash FROM recovery_codes", "code_hash")
            .await
            .is_empty()
    );
    for event in [
        "mfa.enrolment_started",
        "mfa.enabled",
        "login.mfa_required",
        "mfa.recovery_code_used",
        "login.mfa_failure",
        "mfa.recovery_codes_replaced",
        "mfa.disabled",
    ] {
        audit_until(&s, &admin, &format!("?event={event}"), |items| {
            !items.is_empty()
        })
        .await;
    }
}

#[actix_web::test]
async fn routes_can_need_a_second_factor_and_admins_are_told_to_enrol() {
    let s = spawn_stack_with(|l| {
        l.set("mfa.required_for_roles", json!(["admin"])).set(
            "routes",
            base_routes(json!([
                {"prefix": "/api/strong", "upstream": "echo", "access": {"roles": ["user"], "mfa": true}}
            ])),
        )
    })
    .await;
    let admin = admin_token(&s).await;
    // Without a second factor the admin role opens nothing but enrolment.
    let r = s.get(&admin, "/api/users").await;
    let p = r.problem(403);
    assert_eq!(
        p["type"], "urn:gatehouse:problem:mfa-enrolment-required",
        "{}",
        r.text
    );
    let www = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("error=\"insufficient_user_authentication\""),
        "{www}"
    );
    assert!(
        www.contains("acr_values=\"urn:gatehouse:acr:mfa\""),
        "{www}"
    );
    let r = s.get(&admin, "/admin/routes").await;
    assert_eq!(
        r.problem(403)["type"],
        "urn:gatehouse:problem:mfa-enrolment-required"
    );
    assert_eq!(s.get(&admin, "/api/me").await.status, 200);
    // The admin is a user too: on a route for users and admins it is
    // admitted as a user, which needs no second factor; where only the
    // admin role admits, it does.
    assert_eq!(s.get(&admin, "/api/echo/admin").await.status, 200);
    let r = s
        .send(&admin, Method::DELETE, "/api/echo/admin", json!({}))
        .await;
    assert_eq!(
        r.problem(403)["type"],
        "urn:gatehouse:problem:mfa-enrolment-required"
    );
    let e = enrol(&s, &admin, ADMIN_PASSWORD).await;
    // Enrolled, the old token is still without `otp`: log in again.
    let r = s.get(&admin, "/api/users").await;
    assert_eq!(
        r.problem(403)["type"],
        "urn:gatehouse:problem:insufficient-user-authentication"
    );
    let ch = challenge(&s, "admin", ADMIN_PASSWORD).await;
    let code = pyotp(&e.uri, &[e.step + 30]).await.remove(0);
    let r = second_step(&s, json!({"challenge": ch, "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let strong_admin = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&strong_admin, "/api/users").await.status, 200);
    assert_eq!(s.get(&strong_admin, "/admin/routes").await.status, 200);

    // `mfa: true` on a route: everyone needs a second factor there.
    s.create_user(&strong_admin, "uma", &["user"]).await;
    let (uma, _) = s.tokens("uma", "uma-password-1").await;
    assert_eq!(s.get(&uma, "/api/echo/x").await.status, 200);
    let r = s.get(&uma, "/api/strong").await;
    assert_eq!(
        r.problem(403)["type"],
        "urn:gatehouse:problem:mfa-enrolment-required"
    );
    let e = enrol(&s, &uma, "uma-password-1").await;
    let ch = challenge(&s, "uma", "uma-password-1").await;
    let code = pyotp(&e.uri, &[e.step + 30]).await.remove(0);
    let r = second_step(&s, json!({"challenge": ch, "code": code})).await;
    let strong = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&strong, "/api/strong").await.status, 200);
}

#[actix_web::test]
async fn an_admin_reset_removes_the_factor_and_ends_every_session_at_once() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let id = s.create_user(&admin, "vic", &["user"]).await;
    let password = "vic-password-1";
    let (token, _) = s.tokens("vic", password).await;
    let e = enrol(&s, &token, password).await;
    let ch = challenge(&s, "vic", password).await;
    let r = second_step(&s, json!({"challenge": ch, "recovery_code": e.recovery[0]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (access, refresh) = (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(s.get(&access, "/api/me").await.status, 200);
    // Not the user's to call.
    let r = s
        .send(
            &access,
            Method::DELETE,
            &format!("/api/users/{id}/mfa"),
            json!({}),
        )
        .await;
    r.problem(403);
    let r = read(
        s.client
            .delete(s.url(&format!("/api/users/{id}/mfa")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.get(&access, "/api/me").await.invalid_token();
    assert_eq!(s.refresh(&refresh).await.status, 401);
    assert_eq!(s.login("vic", password).await.status, 200);
    audit_until(&s, &admin, "?event=mfa.reset", |items| {
        items.iter().any(|e| e["subject"] == id.as_str())
    })
    .await;
    let r = read(
        s.client
            .delete(s.url(&format!("/api/users/{}/mfa", uuid::Uuid::new_v4())))
            .bearer_auth(&admin),
    )
    .await;
    r.problem(404);
}
