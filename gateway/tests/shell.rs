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

    let target = format!("http://127.0.0.1:{users_port}");
    let fast = serde_json::json!({"targets": [target], "health_check": {"interval_secs": 1, "healthy_threshold": 1, "unhealthy_threshold": 1}});
    let s: gateway::Settings = gateway::Settings::loader()
        .set("data_dir", env.dir.path())
        .set("workers", 1)
        .set(
            "upstreams",
            serde_json::json!({"users": fast, "orders": fast, "scanner": fast}),
        )
        .extract()
        .unwrap();
    let gw = gateway::build_with_listener(s, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", gw.port());
    actix_web::rt::spawn(gw.run_until_stopped());
    let c = testkit::client();
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
    // The health checks notice within an interval or two.
    let ready = |want: u16| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            for _ in 0..100 {
                let r = c.get(format!("{base}/readyz")).send().await.unwrap();
                if r.status() == want {
                    return r;
                }
                actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("readyz never answered {want}");
        }
    };
    let r = ready(503).await;
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("users"), "{body}");

    // The same service back on its port rejoins without a gateway restart.
    let us: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", env.database("users").await)
        .set("workers", 1)
        .set("admin.password", "admin-password-0123")
        .extract()
        .unwrap();
    let again =
        users::build_with_listener(us, TcpListener::bind(("127.0.0.1", users_port)).unwrap())
            .await
            .unwrap();
    actix_web::rt::spawn(again.run_until_stopped());
    ready(200).await;
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
    // Production demands a metrics token: none (or an empty one) stops startup.
    for token in [serde_json::Value::Null, serde_json::json!("  ")] {
        let e = err(gateway::Settings::loader()
            .set("metrics.require_token", true)
            .set("metrics.bearer_token", token));
        assert!(e.contains("metrics.require_token"), "{e}");
    }
    assert!(
        gateway::Settings::from_loader(
            gateway::Settings::loader()
                .set("metrics.require_token", true)
                .set("metrics.bearer_token", "s3cret")
        )
        .is_ok()
    );
    let e = err(gateway::Settings::loader().set("trusted_proxies", "10.0.0.0/8,nonsense"));
    assert!(e.contains("nonsense"), "{e}");
}

async fn slow_ok() -> actix_web::HttpResponse {
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    actix_web::HttpResponse::Ok().body("finished")
}

/// The gateway binary on SIGTERM: stops accepting, lets the request in
/// flight finish, exits 0.
#[actix_web::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    use actix_web::web;
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_url = format!("http://127.0.0.1:{}", up.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .route("/healthz", web::get().to(actix_web::HttpResponse::Ok))
            .route("/slow", web::get().to(slow_ok))
    })
    .workers(1)
    .listen(up)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nworkers: 1\nshutdown_timeout_secs: 10\nupstreams: {{users: [{up_url}], orders: [{up_url}], scanner: [{up_url}]}}\nroutes: [{{prefix: /slow, upstream: orders, access: public}}]\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_CONFIG_FILE", &config)
        .env("DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("GATEWAY_LISTEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let c = testkit::client();
    let mut up = false;
    for _ in 0..300 {
        if c.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the gateway did not start");

    let in_flight = actix_web::rt::spawn({
        let c = c.clone();
        let url = format!("{base}/slow");
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    actix_web::rt::time::sleep(std::time::Duration::from_millis(400)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "finished"));

    let mut exit = None;
    for _ in 0..150 {
        if let Some(s) = child.try_wait().unwrap() {
            exit = Some(s);
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(exit) = exit else {
        let _ = child.kill();
        panic!("the gateway did not exit after SIGTERM");
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(
        c.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}
