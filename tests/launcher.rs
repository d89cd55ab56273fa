//! The all-in-one launcher (`cargo run --release`, the `gatehouse` binary
//! with no argument): every port it opens comes from the services' settings,
//! and the gateway reaches the services where they actually listen. Two
//! copies run side by side while the default ports are held by someone else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Copy {
    child: Child,
    gateway: String,
    ports: Ports,
    data: tempfile::TempDir,
}

#[derive(Clone, Copy)]
struct Ports {
    users: u16,
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the launcher; with `log`, its JSON log lines go to
/// `<data>/log.jsonl`.
fn start_logging(log: bool) -> Copy {
    let data = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let users = testkit::free_port();
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
        .env("USERS__LISTEN", format!("127.0.0.1:{users}"))
        .env(
            "ORDERS__LISTEN",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .env(
            "SCANNER1__LISTEN",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .env(
            "SCANNER2__LISTEN",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    if log {
        // Log lines go to standard output.
        let file = std::fs::File::create(data.path().join("log.jsonl")).unwrap();
        cmd.env("LOG_FORMAT", "json").stdout(file);
    } else {
        cmd.stdout(Stdio::null());
    }
    Copy {
        child: cmd.spawn().unwrap(),
        gateway: format!("http://127.0.0.1:{port}"),
        ports: Ports { users },
        data,
    }
}

/// A copy that answers `/readyz`. Ports are picked free just before the
/// copy binds them, so another test may take one first: then the copy
/// cannot bind and exits, and a new one is started on other ports.
async fn started(client: &reqwest::Client, log: bool) -> Copy {
    for _ in 0..3 {
        let mut copy = start_logging(log);
        if ready(client, &mut copy).await {
            return copy;
        }
    }
    panic!("the launcher exited early three times");
}

async fn ready(client: &reqwest::Client, copy: &mut Copy) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if copy.child.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(r) = client.get(format!("{}/readyz", copy.gateway)).send().await
            && r.status() == 200
        {
            return true;
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
    let copies = [started(&client, false).await, started(&client, false).await];
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
        // Every service behind this gateway answers, where it really listens,
        // and still does after a reload: the launcher's addresses are not the
        // file's (8081-8084), and a reload must keep them.
        for round in ["started", "reloaded"] {
            for path in ["/api/me", "/api/orders", "/api/scans", "/api/me/overview"] {
                let r = client
                    .get(format!("{}{path}", copy.gateway))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{} {path} ({round})", copy.gateway);
            }
            let r = client
                .post(format!("{}/admin/reload", copy.gateway))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "reload: {}", r.text().await.unwrap());
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

/// Send raw bytes, read what comes back within a moment.
fn raw(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_clients_broken_request_is_never_logged_as_an_error() {
    let client = testkit::client();
    let copy = started(&client, true).await;
    let gateway: u16 = copy.gateway.rsplit(':').next().unwrap().parse().unwrap();
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let broken: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        long_header.into_bytes(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n".to_vec(),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user".to_vec(),
        b"GET /%ff%00?a=%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{not json".to_vec(),
    ];
    for port in [gateway, copy.ports.users] {
        for b in &broken {
            let answer = raw(port, b);
            assert!(!answer.contains(" 500 "), "{answer}");
        }
    }
    // Let the servers write what they log.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(copy.data.path().join("log.jsonl")).unwrap();
    assert!(
        log.contains("\"level\":\"WARN\""),
        "the broken requests are logged, at WARN: {log}"
    );
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "logged as errors: {errors:#?}");
}
