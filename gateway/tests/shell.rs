//! Gateway startup pieces: its proof key (generated once, then reused),
//! health, readiness that follows its upstreams, and settings validation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;

fn settings(data_dir: &std::path::Path, users_target: &str) -> gateway::Settings {
    gateway::Settings::loader()
        .set("data_dir", data_dir)
        .set("workers", 1)
        // Maps merge with the shipped defaults: override every upstream.
        .set("upstreams", serde_json::json!({"users": [users_target], "orders": [users_target], "scanner": [users_target]}))
        .extract()
        .unwrap()
}

#[actix_web::test]
async fn proof_key_is_generated_once_and_services_accept_its_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), "http://127.0.0.1:1");
    let a = gateway::proof_minter(&s).unwrap();
    let pub1 = std::fs::read_to_string(dir.path().join("keys/gateway-proof.pub.pem")).unwrap();
    let b = gateway::proof_minter(&s).unwrap();
    let pub2 = std::fs::read_to_string(dir.path().join("keys/gateway-proof.pub.pem")).unwrap();
    assert_eq!(pub1, pub2, "the key survives a restart");
    // A proof from either instance verifies with the published public key.
    let verifier = common::identity::ProofVerifier::new(&[pub1], "gateway", "users").unwrap();
    for m in [a, b] {
        let t = m
            .mint("users", &common::identity::Principal::Gateway)
            .unwrap();
        assert!(verifier.verify(&t).is_ok());
    }
}

#[actix_web::test]
async fn readiness_follows_upstreams() {
    // A users service to be ready against.
    let mut env = testkit::TestEnv::new();
    let url = env.database("users").await;
    let us: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", url)
        .set("workers", 1)
        .set("admin.password", "admin-password-0123")
        .extract()
        .unwrap();
    let users_app = users::build_with_listener(us, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let users_port = users_app.port();
    let users_handle = users_app.handle();
    actix_web::rt::spawn(users_app.run_until_stopped());

    let gw = gateway::build_with_listener(
        settings(env.dir.path(), &format!("http://127.0.0.1:{users_port}")),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", gw.port());
    actix_web::rt::spawn(gw.run_until_stopped());
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["upstreams"]["users"], "up");

    users_handle.stop(true).await;
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("users"), "{body}");
}

#[test]
fn invalid_settings_are_refused_with_the_key() {
    let err = |l: common::config::Loader| {
        gateway::Settings::from_loader(l)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = err(gateway::Settings::loader().set("proof.ttl_secs", 600));
    assert!(e.contains("proof.ttl_secs"), "{e}");
    let e = err(gateway::Settings::loader().set("upstreams.users", vec!["ftp://x"]));
    assert!(e.contains("upstreams.users"), "{e}");
    let e = err(gateway::Settings::loader().set("listen", "nowhere"));
    assert!(e.contains("listen"), "{e}");
}
