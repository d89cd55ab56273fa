//! The all-in-one launcher (`cargo run --release`, the `gatehouse` binary
//! with no argument): every port it opens comes from the services' settings,
//! and the gateway reaches the services where they actually listen. Two
//! copies run side by side while the default ports are held by someone else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Copy {
    child: Child,
    gateway: String,
    _data: tempfile::TempDir,
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Copy {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (k, _) in std::env::vars() {
        // Nothing of the test run's own settings (databases, Redis) leaks in.
        if k.starts_with("GATEWAY")
            || k.starts_with("USERS")
            || k.starts_with("ORDERS")
            || k.starts_with("SCANNER")
            || k.ends_with("DATABASE_URL")
            || k == "REDIS_URL"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("DATA_DIR", data.path())
        .env("ADMIN_PASSWORD", "launcher-admin-password-0123")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("USERS__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("ORDERS__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SCANNER1__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SCANNER2__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Copy {
        child: cmd.spawn().unwrap(),
        gateway: format!("http://127.0.0.1:{port}"),
        _data: data,
    }
}

async fn ready(client: &reqwest::Client, copy: &mut Copy) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = copy.child.try_wait().unwrap() {
            panic!("the launcher exited early: {status}");
        }
        if let Ok(r) = client.get(format!("{}/readyz", copy.gateway)).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got ready",
            copy.gateway
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_launchers_run_side_by_side_on_ports_of_their_own() {
    // Whatever else holds the default ports (a developer's own copy, or
    // this test), the launchers configured elsewhere do not care.
    let _held: Vec<TcpListener> = [8000, 8081, 8082, 8083, 8084]
        .into_iter()
        .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
        .collect();
    let client = testkit::client();
    let mut copies = [start(), start()];
    for copy in &mut copies {
        ready(&client, copy).await;
    }
    for copy in &copies {
        let login: Value = client
            .post(format!("{}/api/login", copy.gateway))
            .json(&json!({"username": "admin", "password": "launcher-admin-password-0123"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().expect("a token").to_owned();
        // Every service behind this gateway answers, where it really listens.
        for path in ["/api/me", "/api/orders", "/api/scans", "/api/me/overview"] {
            let r = client
                .get(format!("{}{path}", copy.gateway))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{} {path}", copy.gateway);
        }
        let overview: Value = client
            .get(format!("{}/api/me/overview", copy.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(overview["status"], "success", "{overview}");
        // The fan-out reaches both scanners of this copy: both refuse a
        // loopback target alike, so their shared 422 is the answer (a
        // scanner out of reach would make it partial or a 502).
        let r = client
            .post(format!("{}/api/scan", copy.gateway))
            .bearer_auth(&token)
            .json(&json!({"url": "http://127.0.0.1:9/"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{}", copy.gateway);
        let scan: Value = r.json().await.unwrap();
        assert!(
            scan["type"]
                .as_str()
                .unwrap_or("")
                .ends_with("target-refused"),
            "{scan}"
        );
    }
}
