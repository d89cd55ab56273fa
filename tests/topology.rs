//! The production topology as separate processes, configured the way
//! docker-compose configures it (environment variables, key files, a
//! gateway config file, migrations applied once beforehand, services that do
//! not migrate, gateways serving HTTPS with their certificate from files):
//! two gateways, users, orders and two scanners, on a private
//! PostgreSQL cluster (so this test may restart it) and the local Redis.
//!
//! It runs on the PostgreSQL pass of the suite (`TEST_DATABASE_URL` set; the
//! cluster it starts is its own) and needs Redis at `REDIS_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster of our own, in a temp dir.
struct Pg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Extra server options (`-c ssl=on ...`).
    options: String,
    _dir: tempfile::TempDir,
}

impl Pg {
    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).output().unwrap()
    }

    fn init() -> Pg {
        Self::init_with(|_| String::new())
    }

    /// A cluster that accepts TLS connections only, with `cert_pem` and
    /// `key_pem` as its certificate.
    fn init_tls(cert_pem: &str, key_pem: &str) -> Pg {
        Self::init_with(|data| {
            let (cert, key) = (data.join("server.crt"), data.join("server.key"));
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            // Nothing but TLS over TCP (and the socket, for pg_ctl).
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            if is_root() {
                let ok = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(data)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
            format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            )
        })
    }

    /// `prepare` runs after initdb on the data directory and returns extra
    /// server options.
    fn init_with(prepare: impl FnOnce(&Path) -> String) -> Pg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (Debian's postgresql package)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        let data = dir.path().join("data");
        let mut pg = Pg {
            bin,
            data: data.clone(),
            port: testkit::free_port(),
            options: String::new(),
            _dir: dir,
        };
        let out = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.options = prepare(&data);
        pg.start();
        pg
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off{}",
            self.port,
            self.data.display(),
            self.options
        );
        let log = self.data.join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

/// A service process, killed with the test.
struct Proc {
    name: String,
    child: Child,
    port: u16,
    /// `https` for the gateways, which serve TLS as in compose.
    scheme: &'static str,
}

impl Proc {
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(name: &str, service: &str, port: u16, env: &[(String, String)], logs: &Path) -> Proc {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg(service)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        name: name.to_owned(),
        child: cmd.spawn().unwrap(),
        port,
        scheme: if service == "gateway" {
            "https"
        } else {
            "http"
        },
    }
}

async fn wait_ready(client: &reqwest::Client, p: &mut Proc, logs: &Path) {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", p.url())).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            p.alive(),
            "{} exited: {}",
            p.name,
            std::fs::read_to_string(logs.join(format!("{}.log", p.name))).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} never got ready",
            p.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Resp {
    status: u16,
    body: Value,
    content_type: String,
}

async fn call(
    c: &reqwest::Client,
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = r.text().await.unwrap_or_default();
            Resp {
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                content_type,
            }
        }
        // A transport error is a lost request: the caller decides.
        Err(_) => Resp {
            status: 0,
            body: Value::Null,
            content_type: String::new(),
        },
    }
}

const ADMIN_PASSWORD: &str = "topology-admin-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_as_processes_survives_failures_and_shares_state() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |v| v.is_empty()) {
        eprintln!("skipped: the topology test runs on the PostgreSQL pass (TEST_DATABASE_URL)");
        return;
    }
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pg = Pg::init();
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().to_path_buf();
    println!("process logs: {}", logs.display());

    // The one-shot migrate step: a database per service, migrated once.
    {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(pg.url("postgres"))
            .await
            .unwrap();
        for (db, service) in [
            ("gateway", migrations::Service::Gateway),
            ("users", migrations::Service::Users),
            ("orders", migrations::Service::Orders),
            ("scanner", migrations::Service::Scanner),
        ] {
            admin
                .execute_unprepared(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
            let conn = sea_orm::Database::connect(pg.url(db)).await.unwrap();
            migrations::up(service, &conn).await.unwrap();
            conn.close().await.unwrap();
        }
        admin.close().await.unwrap();
    }
    // Keys, as deploy/make-secrets.sh makes them.
    let keys = work.path().join("secrets");
    common::keys::ensure_ed25519(&keys, "gateway-proof").unwrap();
    common::keys::ensure_ed25519(&keys, "access-token").unwrap();
    let mfa_key = keys.join("mfa.key");
    common::keys::write_private(&mfa_key, b"c2VhbGVkLWJ5LWEta2V5LW9mLXRoZS10ZXN0LTMyYiE=").unwrap();
    let proof_pub = format!("[\"{}\"]", keys.join("gateway-proof.pub.pem").display());
    // The gateways' certificate, a secret like the keys (here from a CA of
    // the test's own, which the client trusts, instead of self-signed).
    let tls_ca = testkit::pki::TestCa::new("topology CA");
    let (tls_cert, tls_key) = tls_ca
        .leaf(&["127.0.0.1", "localhost"])
        .write(&keys, "gateway-tls");

    let service = |name: &str, svc: &str, extra: Vec<(&str, String)>| {
        let port = testkit::free_port();
        let upper = svc.to_ascii_uppercase();
        let data = work.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let mut env = vec![
            ("DATA_DIR".to_owned(), data.display().to_string()),
            ("DATABASE_URL".to_owned(), pg.url(svc)),
            (format!("{upper}__LISTEN"), format!("127.0.0.1:{port}")),
            (format!("{upper}__DATABASE__AUTO_MIGRATE"), "false".into()),
            (
                format!("{upper}__GATEWAY_PROOF__PUBLIC_KEY_FILES"),
                proof_pub.clone(),
            ),
        ];
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        spawn(name, svc, port, &env, &logs)
    };
    let mut users = service(
        "users",
        "users",
        vec![
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("USERS__MFA__KEY_FILE", mfa_key.display().to_string()),
        ],
    );
    let mut orders = service("orders", "orders", vec![]);
    let mut scanner1 = service(
        "scanner1",
        "scanner",
        vec![("SCANNER__INSTANCE", "scanner1".into())],
    );
    let mut scanner2 = service(
        "scanner2",
        "scanner",
        vec![("SCANNER__INSTANCE", "scanner2".into())],
    );

    // The gateways: the shipped routes plus one rate-limited route, the
    // upstreams at these processes, fast health checks.
    let fast = json!({"interval_secs": 1, "healthy_threshold": 1, "unhealthy_threshold": 1});
    let config = json!({
        "upstreams": {
            "users": {"targets": [users.url()], "health_check": fast},
            "orders": {"targets": [orders.url()], "health_check": fast},
            "scanner": {"targets": [{"name": "scanner1", "url": scanner1.url()},
                                    {"name": "scanner2", "url": scanner2.url()}],
                        "balance": "round_robin", "health_check": fast},
        },
        "routes": [
            {"prefix": "/api/users", "upstream": "users", "rewrite": "/users", "access": ["admin"]},
            {"prefix": "/api/me", "upstream": "users", "rewrite": "/me", "access": "authenticated"},
            {"prefix": "/api/orders", "upstream": "orders", "rewrite": "/orders", "access": "authenticated"},
            {"prefix": "/api/scans", "upstream": "scanner", "rewrite": "/scans", "access": "authenticated"},
            {"prefix": "/api/limited", "upstream": "orders", "rewrite": "/orders", "access": "authenticated",
             "rate_limit": {"rate": "3/m", "burst": 3}},
        ],
    });
    let config_file = work.path().join("gateway.yaml");
    std::fs::write(&config_file, serde_json::to_string(&config).unwrap()).unwrap();
    let prefix = format!("topology:{}:", uuid::Uuid::new_v4().simple());
    let tokens_keys = format!(
        "[{{alg=\"EdDSA\", private_key_file=\"{}\", active=true}}]",
        keys.join("access-token.key.pem").display()
    );
    let gateway = |name: &str| {
        let port = testkit::free_port();
        let data = work.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let env: Vec<(String, String)> = [
            ("GATEWAY_CONFIG_FILE", config_file.display().to_string()),
            ("GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
            ("GATEWAY_TLS", "files".into()),
            ("GATEWAY_TLS_CERT_FILE", tls_cert.display().to_string()),
            ("GATEWAY_TLS_KEY_FILE", tls_key.display().to_string()),
            ("DATA_DIR", data.display().to_string()),
            ("DATABASE_URL", pg.url("gateway")),
            ("GATEWAY__DATABASE__AUTO_MIGRATE", "false".into()),
            ("REDIS_URL", redis.clone()),
            ("GATEWAY__REDIS__KEY_PREFIX", prefix.clone()),
            (
                "GATEWAY__PROOF__PRIVATE_KEY_FILE",
                keys.join("gateway-proof.key.pem").display().to_string(),
            ),
            ("GATEWAY__TOKENS__KEYS", tokens_keys.clone()),
            ("GATEWAY_METRICS_TOKEN", "topology-metrics-token".into()),
            ("GATEWAY__METRICS__REQUIRE_TOKEN", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        spawn(name, "gateway", port, &env, &logs)
    };
    let c = testkit::client_builder()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([reqwest::Certificate::from_pem(tls_ca.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    for p in [&mut users, &mut orders, &mut scanner1, &mut scanner2] {
        wait_ready(&c, p, &logs).await;
    }
    let mut gw_a = gateway("gateway1");
    let mut gw_b = gateway("gateway2");
    wait_ready(&c, &mut gw_a, &logs).await;
    wait_ready(&c, &mut gw_b, &logs).await;
    let (a, b) = (gw_a.url(), gw_b.url());

    // Login on A, refresh on B.
    let login = |base: String| {
        let c = c.clone();
        async move {
            call(
                &c,
                "POST",
                format!("{base}/api/login"),
                None,
                Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
            )
            .await
        }
    };
    let r = login(a.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &c,
        "POST",
        format!("{b}/api/refresh"),
        None,
        Some(json!({"refresh_token": r.body["refresh_token"]})),
    )
    .await;
    assert_eq!(r.status, 200, "refresh on B: {}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&c, "GET", format!("{a}/api/me"), Some(&access), None)
            .await
            .status,
        200
    );

    // Logout on A is refused on B at once.
    let r = call(
        &c,
        "POST",
        format!("{a}/api/logout"),
        Some(&access),
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call(&c, "GET", format!("{b}/api/me"), Some(&access), None)
            .await
            .status,
        401
    );

    // One rate limit across A and B.
    let token = login(b.clone()).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = Vec::new();
    for base in [&a, &b, &a, &b, &a] {
        seen.push(
            call(&c, "GET", format!("{base}/api/limited"), Some(&token), None)
                .await
                .status,
        );
    }
    assert_eq!(seen, [200, 200, 200, 429, 429]);

    // scanner1 killed under load: no idempotent request is lost.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut load = Vec::new();
    for i in 0..4 {
        let (c, token) = (c.clone(), token.clone());
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < deadline {
                statuses.push(
                    call(&c, "GET", format!("{base}/api/scans"), Some(&token), None)
                        .await
                        .status,
                );
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    scanner1.kill();
    let mut total = 0;
    for h in load {
        let statuses = h.await.unwrap();
        total += statuses.len();
        let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
        assert!(bad.is_empty(), "requests lost while scanner1 died: {bad:?}");
    }
    assert!(total > 20, "too little load: {total}");

    // PostgreSQL restarted mid-run: errors only during the outage, no
    // crash, and every acknowledged write is there afterwards.
    let mut acknowledged = Vec::new();
    let place = |n: usize| {
        let (c, a, token) = (c.clone(), a.clone(), token.clone());
        async move {
            call(
                &c,
                "POST",
                format!("{a}/api/orders"),
                Some(&token),
                Some(json!({"item": format!("item {n}"), "quantity": 1, "address": "1 Main St"})),
            )
            .await
        }
    };
    for n in 0..5 {
        let r = place(n).await;
        assert_eq!(r.status, 201, "{}", r.body);
        acknowledged.push(r.body["id"].as_str().unwrap().to_owned());
    }
    pg.stop();
    let mut outage_errors = 0;
    for n in 5..8 {
        let r = place(n).await;
        if r.status == 201 {
            acknowledged.push(r.body["id"].as_str().unwrap().to_owned());
        } else {
            assert!(r.status >= 500, "outage answered {}: {}", r.status, r.body);
            assert_eq!(r.content_type, "application/problem+json", "{}", r.body);
            outage_errors += 1;
        }
    }
    assert!(outage_errors > 0, "the outage was not noticed");
    pg.start();
    let started = Instant::now();
    let mut n = 8;
    loop {
        let r = place(n).await;
        n += 1;
        if r.status == 201 {
            acknowledged.push(r.body["id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never recovered: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in [&mut users, &mut orders, &mut scanner2, &mut gw_a, &mut gw_b] {
        assert!(p.alive(), "{} crashed", p.name);
    }
    let list = call(
        &c,
        "GET",
        format!("{b}/api/orders?limit=100"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let stored: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(&id.as_str()),
            "acknowledged order {id} lost"
        );
    }
    println!(
        "topology: {total} requests while scanner1 died, all 200; {outage_errors} errors during the PostgreSQL outage, {} acknowledged orders all stored",
        acknowledged.len()
    );
}

/// PostgreSQL over TLS with verification, for every service's database: a
/// private cluster that accepts nothing but TLS, its certificate from a CA
/// made here. `sslmode=verify-full` with that CA connects and migrates each
/// service's schema, and the users service serves on it; without TLS, with
/// another CA, or for a name the certificate does not carry, no connection.
#[actix_web::test]
async fn every_service_reaches_postgres_over_verified_tls() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |v| v.is_empty()) {
        eprintln!("skipped: PostgreSQL over TLS runs on the PostgreSQL pass (TEST_DATABASE_URL)");
        return;
    }
    let ca = testkit::pki::TestCa::new("database CA");
    let leaf = ca.leaf(&["localhost"]);
    let pg = Pg::init_tls(&leaf.chain_pem, &leaf.key_pem);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, testkit::pki::TestCa::new("another CA").pem()).unwrap();
    let url = |host: &str, db: &str, query: &str| {
        format!("postgres://postgres@{host}:{}/{db}?{query}", pg.port)
    };
    let verify = |root: &Path| format!("sslmode=verify-full&sslrootcert={}", root.display());
    let admin = common::db::connect(&url("localhost", "postgres", &verify(&ca_file)), 1)
        .await
        .unwrap();
    for service in migrations::Service::ALL {
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!("CREATE DATABASE tls_{}", service.name()))
            .await
            .unwrap();
        let settings = common::db::DatabaseSettings {
            url: Some(url(
                "localhost",
                &format!("tls_{}", service.name()),
                &verify(&ca_file),
            )),
            max_connections: 2,
            auto_migrate: true,
        };
        common::db::open(&settings, dir.path(), service)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", service.name()));
    }
    // A real service on it.
    let env = testkit::TestEnv::new();
    let us: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set(
            "database.url",
            url("localhost", "tls_users", &verify(&ca_file)),
        )
        .set("workers", 1)
        .set("admin.password", "admin-password-0123")
        .extract()
        .unwrap();
    let app = users::build_with_listener(us, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    let ready = testkit::client()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Refused: no TLS (the server takes none), another CA, another name.
    for bad in [
        url("localhost", "postgres", "sslmode=disable"),
        url("localhost", "postgres", &verify(&other)),
        url("127.0.0.1", "postgres", &verify(&ca_file)),
    ] {
        assert!(common::db::connect(&bad, 1).await.is_err(), "{bad}");
    }
}
