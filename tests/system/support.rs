//! The whole system on port 0 for one test: users, orders, scanner1 and
//! scanner2 each with a fresh database, and the gateway with the shipped
//! route table (`config/gateway.yaml`) pointed at them.

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use common::config::Loader;
use serde_json::{Value, json};
use testkit::TestEnv;

pub const ADMIN_PASSWORD: &str = "admin-password-0123";

/// Handles stop a service mid-test; unused ones are there for tests to come.
#[allow(dead_code)]
pub struct System {
    pub gw: String,
    pub client: reqwest::Client,
    pub env: TestEnv,
    pub users: ServerHandle,
    pub orders: ServerHandle,
    pub scanner1: ServerHandle,
    pub scanner2: ServerHandle,
    pub gateway: ServerHandle,
}

/// A response, read whole (the services' tests' type and assertions).
pub use testkit::http::Resp;

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Ready-made options: the scanner may scan loopback (the tests' targets).
pub struct Options {
    pub scanner_allowed: Vec<String>,
    pub gateway: Box<dyn Fn(Loader) -> Loader>,
    /// Applied to the settings of users, orders and both scanners.
    pub services: Box<dyn Fn(Loader) -> Loader>,
    /// Where the gateway listens (for settings that name its own URL, such
    /// as the issuer); a new port by default.
    pub gateway_listener: Option<TcpListener>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scanner_allowed: vec!["127.0.0.1/32".into()],
            gateway: Box::new(|l| l),
            services: Box::new(|l| l),
            gateway_listener: None,
        }
    }
}

impl System {
    pub async fn start() -> System {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> System {
        if std::env::var_os("TEST_LOG").is_some() {
            common::telemetry::init();
        }
        let mut env = TestEnv::new();
        let data = env.data_dir();

        let db = env.database("users").await;
        let s: users::Settings = (opts.services)(users::Settings::loader())
            .set("data_dir", &data)
            .set("database.url", db)
            .set("workers", 1)
            .set("admin.password", ADMIN_PASSWORD)
            .extract()
            .unwrap();
        let users = users::build_with_listener(s, listener()).await.unwrap();

        let db = env.database("orders").await;
        let s: orders::Settings = (opts.services)(orders::Settings::loader())
            .set("data_dir", &data)
            .set("database.url", db)
            .set("workers", 1)
            .extract()
            .unwrap();
        let orders = orders::build_with_listener(s, listener()).await.unwrap();

        // Two replicas, one database.
        let db = env.database("scanner").await;
        let mut scanners = Vec::new();
        for name in ["scanner1", "scanner2"] {
            let s: scanner::Settings = (opts.services)(scanner::Settings::loader())
                .set("instance", name)
                .set("data_dir", &data)
                .set("database.url", &db)
                .set("workers", 1)
                .set("scan.timeout_ms", 3000)
                .pin("scan.allowed_targets", &opts.scanner_allowed)
                .extract()
                .unwrap();
            scanners.push(scanner::build_with_listener(s, listener()).await.unwrap());
        }

        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let db = env.database("gateway").await;
        let loader = gateway::Settings::loader()
            .set("data_dir", &data)
            .set("database.url", db)
            .set("workers", 1)
            .set("upstreams.users", json!([url(users.port())]))
            .set("upstreams.orders", json!([url(orders.port())]))
            .set(
                "upstreams.scanner.targets",
                json!([
                    {"name": "scanner1", "url": url(scanners[0].port())},
                    {"name": "scanner2", "url": url(scanners[1].port())},
                ]),
            )
            .set("openapi.refresh_secs", 1)
            .pin("redis.url", Value::Null);
        let settings = gateway::Settings::from_loader((opts.gateway)(loader)).unwrap();
        let gateway =
            gateway::build_with_listener(settings, opts.gateway_listener.unwrap_or_else(listener))
                .await
                .unwrap();
        let gw = url(gateway.port());

        let spawn = |r: common::http::Running| {
            let h = r.handle();
            actix_web::rt::spawn(r.run_until_stopped());
            h
        };
        let mut scanners = scanners.into_iter();
        System {
            gw,
            client: testkit::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            env,
            users: spawn(users),
            orders: spawn(orders),
            scanner1: spawn(scanners.next().unwrap()),
            scanner2: spawn(scanners.next().unwrap()),
            gateway: spawn(gateway),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(verb, format!("{}{path}", self.gw));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = testkit::http::read(req).await;
        let content_type = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        crate::conformance::check(method, path, r.status.as_u16(), content_type, &r.body);
        r
    }

    /// An access token for `username`.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        r.ok(200)["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// A new user with the `user` role, and their token.
    pub async fn user(&self, admin: &str, name: &str) -> (String, String) {
        let password = format!("{name}-password-0123");
        let r = self
            .call(
                "POST",
                "/api/users",
                Some(admin),
                Some(
                    json!({"username": name, "email": format!("{name}@example.com"),
                            "password": password, "roles": ["user"]}),
                ),
            )
            .await;
        let id = r.ok(201)["id"].as_str().unwrap().to_owned();
        (id, self.login(name, &password).await)
    }
}

/// Poll until `f` holds (or fail after ~10 s).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}
