use std::net::TcpListener;

use actix_web::{HttpRequest, HttpResponse, web};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;

pub const ADMIN_PASSWORD: &str = "admin-password-0123";

pub struct Stack {
    pub gw: String,
    pub client: reqwest::Client,
    pub env: TestEnv,
    pub users_port: u16,
    pub echo_port: u16,
    pub gateway_db: String,
    pub gw_handle: actix_web::dev::ServerHandle,
    pub overrides: Overrides,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.text
        );
        assert!(self.body["request_id"].is_string(), "{}", self.text);
        &self.body
    }

    /// A 401 with the RFC 6750 challenge.
    pub fn invalid_token(&self) {
        self.problem(401);
        let www = self.headers["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("Bearer") && www.contains("error=\"invalid_token\""),
            "{www}"
        );
    }
}

/// Echoes the request it received (method, path, headers) as JSON.
async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
        .collect();
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(), "path": req.path(), "query": req.query_string(),
        "headers": headers, "body_len": body.len()
    }))
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(|l| l).await
}

pub async fn spawn_stack_with(
    f: impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static,
) -> Stack {
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init();
    }
    let mut env = TestEnv::new();
    let users_db = env.database("users").await;
    let us: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", users_db)
        .set("workers", 1)
        .set("admin.password", ADMIN_PASSWORD)
        .extract()
        .unwrap();
    let users = users::build_with_listener(us, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let users_port = users.port();
    actix_web::rt::spawn(users.run_until_stopped());

    let echo_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo_listener.local_addr().unwrap().port();
    let echo_server =
        actix_web::HttpServer::new(|| actix_web::App::new().default_service(web::to(echo)))
            .workers(1)
            .listen(echo_listener)
            .unwrap()
            .run();
    actix_web::rt::spawn(echo_server);

    let gateway_db = env.database("gateway").await;
    let overrides = Overrides::default();
    let (gw, gw_handle) = start_gateway_with(
        &env.data_dir(),
        &gateway_db,
        users_port,
        echo_port,
        &f,
        overrides.clone(),
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Stack {
        gw,
        client,
        env,
        users_port,
        echo_port,
        gateway_db,
        gw_handle,
        overrides,
    }
}

/// Settings changes a test applies before a reload: `(key, value)` pairs set
/// on top of the stack's settings whenever the gateway (re)reads them.
pub type Overrides = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

pub async fn start_gateway(
    data_dir: &std::path::Path,
    db: &str,
    users_port: u16,
    echo_port: u16,
    f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
) -> (String, actix_web::dev::ServerHandle) {
    start_gateway_with(data_dir, db, users_port, echo_port, f, Overrides::default()).await
}

pub async fn start_gateway_with(
    data_dir: &std::path::Path,
    db: &str,
    users_port: u16,
    echo_port: u16,
    f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
    overrides: Overrides,
) -> (String, actix_web::dev::ServerHandle) {
    let users = format!("http://127.0.0.1:{users_port}");
    let echo = format!("http://127.0.0.1:{echo_port}");
    let (data_dir, db, f) = (data_dir.to_path_buf(), db.to_owned(), f.clone());
    let source = move || {
        let mut loader = gateway::Settings::loader()
            .set("data_dir", &data_dir)
            .set("database.url", &db)
            .set("workers", 1)
            .set("upstreams", json!({"users": [users], "orders": [echo.clone()], "scanner": [echo.clone()], "echo": [echo]}))
            .set(
                "routes",
                json!([
                    {"prefix": "/api/users", "upstream": "users", "rewrite": "/users", "access": ["admin"]},
                    {"prefix": "/api/me", "upstream": "users", "rewrite": "/me", "access": "authenticated"},
                    {"prefix": "/api/echo/admin", "upstream": "echo", "access": {"GET": ["user", "admin"], "DELETE": ["admin"]}},
                    {"prefix": "/api/echo", "upstream": "echo", "rewrite": "/echoed", "access": "authenticated"},
                    {"prefix": "/public", "upstream": "echo", "access": "public"},
                ]),
            );
        loader = f(loader);
        for (k, v) in overrides.lock().unwrap().iter() {
            loader = loader.set(k, v.clone());
        }
        gateway::Settings::from_loader(loader)
    };
    let settings = source().unwrap();
    let app = gateway::build_with_source(
        settings,
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Box::new(source),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    (base, handle)
}

pub async fn read(rb: reqwest::RequestBuilder) -> Resp {
    let res = rb.send().await.expect("sent");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert_ne!(status.as_u16(), 500, "never a 500: {text}");
    assert!(!text.contains("$argon2"), "{text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw)
    }

    pub async fn login(&self, username: &str, password: &str) -> Resp {
        read(
            self.client
                .post(self.url("/api/login"))
                .json(&json!({"username": username, "password": password})),
        )
        .await
    }

    /// Log in and return (access, refresh).
    pub async fn tokens(&self, username: &str, password: &str) -> (String, String) {
        let r = self.login(username, password).await;
        assert_eq!(r.status, 200, "{}", r.text);
        (
            r.body["access_token"].as_str().unwrap().into(),
            r.body["refresh_token"].as_str().unwrap().into(),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        read(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn send(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Resp {
        read(
            self.client
                .request(method, self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn refresh(&self, refresh: &str) -> Resp {
        read(
            self.client
                .post(self.url("/api/refresh"))
                .json(&json!({"refresh_token": refresh})),
        )
        .await
    }

    /// Create a user through the gateway as the admin; returns its id.
    pub async fn create_user(&self, admin: &str, name: &str, roles: &[&str]) -> String {
        let r = self
            .send(admin, reqwest::Method::POST, "/api/users",
                json!({"username": name, "email": format!("{name}@example.com"), "password": format!("{name}-password-1"), "roles": roles}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }
}
