//! Second factors on the whole system with the shipped route table: the
//! curl walk-through of `docs/http-api.md`, run as it is written (oathtool
//! standing in for the authenticator app), and the shipped routes with
//! `mfa.required_for_roles: [admin]`, every answer checked against the
//! committed OpenAPI document.

use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::*;

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Wait until at least `margin` seconds are left of the current 30-second
/// step, so the codes the block makes stay within one step of the server's.
async fn settle(margin: i64) {
    loop {
        let t = chrono::Utc::now().timestamp();
        if 30 - t % 30 >= margin {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[actix_web::test]
async fn the_second_factor_walk_through_works_as_written() {
    let sys = System::start().await;
    let admin = sys.admin().await;
    sys.user(&admin, "wren").await;
    settle(10).await;
    let stdout = crate::documents::run_walk_through(
        "docs/http-api.md",
        "<!-- mfa-curl -->",
        vec![
            ("GATEWAY", sys.gw.clone()),
            ("USERNAME", "wren".into()),
            ("PASSWORD", "wren-password-0123".into()),
        ],
    )
    .await;
    // It printed the recovery codes, then the token pair of the second step.
    let mut lines = stdout.lines().filter(|l| l.starts_with('{'));
    let codes: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        codes["recovery_codes"].as_array().unwrap().len(),
        10,
        "{stdout}"
    );
    let pair: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let access = pair["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(claims(access)["amr"], json!(["pwd", "otp"]));
    let me = sys.call("GET", "/api/me", Some(access), None).await;
    assert_eq!(me.ok(200)["mfa_enabled"], true);
}

#[actix_web::test]
async fn the_shipped_routes_ask_admins_for_a_second_factor_once_configured() {
    let sys = System::start_with(Options {
        gateway: Box::new(|l| l.set("mfa.required_for_roles", json!(["admin"]))),
        ..Options::default()
    })
    .await;
    let admin = sys.admin().await;
    // Told to enrol, on the users API and the gateway's admin API alike.
    for path in ["/api/users", "/admin/routes", "/api/audit"] {
        let r = sys.call("GET", path, Some(&admin), None).await;
        assert_eq!(
            r.problem(403)["type"],
            "urn:gatehouse:problem:mfa-enrolment-required",
            "{path}"
        );
    }
    // Enrolment stays open; each answer is checked against the document.
    let r = sys
        .call(
            "POST",
            "/api/me/mfa/totp",
            Some(&admin),
            Some(json!({"current_password": ADMIN_PASSWORD})),
        )
        .await;
    let secret = r.ok(201)["secret"].as_str().unwrap().to_owned();
    settle(10).await;
    let code = |when: &str| {
        let out = Command::new("oathtool")
            .args(["--totp", "-b", &secret, "--now", when])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let r = sys
        .call(
            "POST",
            "/api/me/mfa/totp/confirm",
            Some(&admin),
            Some(json!({"code": code("now")})),
        )
        .await;
    r.ok(200);
    let r = sys
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    let challenge = r.problem(401)["challenge"].as_str().unwrap().to_owned();
    let r = sys
        .call(
            "POST",
            "/api/login/mfa",
            None,
            Some(json!({"challenge": challenge, "code": code("now + 30 seconds")})),
        )
        .await;
    let strong = r.ok(200)["access_token"].as_str().unwrap().to_owned();
    for path in ["/api/users", "/admin/routes"] {
        sys.call("GET", path, Some(&strong), None).await.ok(200);
    }
    let r = sys.call("GET", "/api/me/mfa", Some(&strong), None).await;
    assert_eq!(r.ok(200)["totp"], "active");
}
