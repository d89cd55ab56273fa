use std::net::TcpListener;
use std::sync::Arc;

use common::identity::{Principal, ProofMinter};
use reqwest::Method;
use serde_json::Value;
use testkit::TestEnv;
use uuid::Uuid;

/// A running scanner service, and three callers: two users and an admin.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub minter: Arc<ProofMinter>,
    pub alice: Principal,
    pub bob: Principal,
    pub admin: Principal,
    #[allow(dead_code)] // keeps the temp dir and database alive
    pub env: TestEnv,
}

pub use testkit::Resp;

/// A refusal of the scanner's SSRF policy.
pub trait Refused {
    /// Assert a 422 `target-refused` and return its detail.
    fn refused(&self) -> String;
}

impl Refused for Resp {
    fn refused(&self) -> String {
        let p = self.problem(422);
        assert_eq!(p["type"], "urn:gatehouse:problem:target-refused", "{p}");
        assert_eq!(p["errors"][0]["field"], "url", "{p}");
        assert_eq!(p["errors"][0]["code"], "refused", "{p}");
        p["detail"].as_str().unwrap().to_owned()
    }
}

pub fn fc(field: &str, code: &str) -> (String, String) {
    (field.to_owned(), code.to_owned())
}

pub fn principal(roles: &[&str]) -> Principal {
    Principal::User {
        id: Uuid::new_v4(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

pub fn id_of(p: &Principal) -> Uuid {
    match p {
        Principal::User { id, .. } | Principal::Client { id, .. } => *id,
        Principal::Gateway => panic!("not a user"),
    }
}

/// How a test app is configured.
#[derive(Clone)]
pub struct Config {
    pub instance: &'static str,
    pub allowed_targets: Vec<&'static str>,
    pub timeout_ms: u64,
    pub max_redirects: usize,
    pub max_body_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            instance: "scanner1",
            allowed_targets: Vec::new(),
            timeout_ms: 5_000,
            max_redirects: 5,
            max_body_bytes: 1 << 20,
        }
    }
}

impl Config {
    /// Loopback allowed, as the tests' own targets need.
    pub fn loopback() -> Self {
        Self {
            allowed_targets: vec!["127.0.0.0/8"],
            ..Self::default()
        }
    }
}

/// The shipped defaults (no allowed targets).
pub async fn spawn_app() -> TestApp {
    spawn_with(Config::default()).await
}

pub async fn spawn_with(config: Config) -> TestApp {
    let mut env = TestEnv::new();
    let url = env.database("scanner").await;
    let base = start(&env, &url, &config).await;
    TestApp {
        base,
        client: testkit::client(),
        minter: env.minter.clone(),
        alice: principal(&["user"]),
        bob: principal(&["user"]),
        admin: principal(&["admin", "user"]),
        env,
    }
}

/// Start one scanner app on `database_url`; its base URL.
pub async fn start(env: &TestEnv, database_url: &str, config: &Config) -> String {
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init();
    }
    let settings: scanner::Settings = scanner::Settings::loader()
        .set("instance", config.instance)
        .set("data_dir", env.data_dir())
        .set("database.url", database_url)
        .set("workers", 1)
        .set("scan.allowed_targets", &config.allowed_targets)
        .set("scan.timeout_ms", config.timeout_ms)
        .set("scan.max_redirects", config.max_redirects)
        .set("scan.max_body_bytes", config.max_body_bytes)
        .extract()
        .expect("settings");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = scanner::build_with_listener(settings, listener)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    base
}

impl TestApp {
    /// The identity headers the gateway would send for `who`.
    pub fn identity(&self, who: &Principal) -> reqwest::header::HeaderMap {
        testkit::identity_headers(&self.minter, "scanner", who)
    }

    /// A request as `who` (None: without any identity headers).
    pub async fn send(
        &self,
        who: Option<&Principal>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(p) = who {
            rb = rb.headers(self.identity(p));
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb).await
    }

    pub async fn get(&self, who: &Principal, path: &str) -> Resp {
        self.send(Some(who), Method::GET, path, None).await
    }

    pub async fn post(&self, who: &Principal, path: &str, body: Value) -> Resp {
        self.send(Some(who), Method::POST, path, Some(body)).await
    }

    /// `POST /scans {url}` as `who`.
    pub async fn scan(&self, who: &Principal, url: &str) -> Resp {
        self.post(who, "/scans", serde_json::json!({ "url": url }))
            .await
    }

    /// Scan as `who`; asserts 201.
    pub async fn scanned(&self, who: &Principal, url: &str) -> Resp {
        let r = self.scan(who, url).await;
        r.ok(201);
        r
    }

    /// `POST /scans` with a raw body and content type.
    pub async fn post_raw(&self, who: &Principal, content_type: &str, body: String) -> Resp {
        read(
            self.client
                .post(format!("{}/scans", self.base))
                .headers(self.identity(who))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// The `total` of `GET /scans` as `who`.
    pub async fn total(&self, who: &Principal) -> u64 {
        let r = self.get(who, "/scans").await;
        r.ok(200)["total"].as_u64().unwrap()
    }
}

/// Send and read; every response must carry the request id.
pub async fn read(rb: reqwest::RequestBuilder) -> Resp {
    let r = testkit::http::read(rb).await;
    assert!(
        r.status.as_u16() < 500,
        "no input may cause a server error: {} {}",
        r.status,
        r.text
    );
    r
}
