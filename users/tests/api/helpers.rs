use std::net::TcpListener;
use std::sync::Arc;

use common::identity::{Principal, ProofClaims, ProofMinter};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestEnv;
use uuid::Uuid;

pub const ADMIN_PASSWORD: &str = "admin-password-0123";

/// A running users service and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub minter: Arc<ProofMinter>,
    pub admin: Principal,
    /// The service's database, for tests that open a connection of their own.
    pub db_url: String,
    #[allow(dead_code)] // keeps the temp dir and databases alive
    pub env: TestEnv,
}

pub use testkit::Resp;

pub fn user(id: Uuid, roles: &[&str]) -> Principal {
    Principal::User {
        id,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|l| l).await
}

pub async fn spawn_app_with(
    f: impl FnOnce(common::config::Loader) -> common::config::Loader,
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init();
    }
    let mut env = TestEnv::new();
    let url = env.database("users").await;
    let loader = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", url.clone())
        .set("workers", 1)
        .set("admin.password", ADMIN_PASSWORD);
    let settings: users::Settings = f(loader).extract().expect("settings");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = users::build_with_listener(settings, listener)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = testkit::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut t = TestApp {
        base,
        client,
        minter: env.minter.clone(),
        admin: Principal::Gateway,
        db_url: url,
        env,
    };
    let me = t.verify("admin", ADMIN_PASSWORD).await;
    assert_eq!(me.status, 200, "{}", me.text);
    t.admin = user(me.id(), &["admin", "user"]);
    t
}

impl TestApp {
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
            rb = rb.headers(testkit::identity_headers(&self.minter, "users", p));
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
    pub async fn patch(&self, who: &Principal, path: &str, body: Value) -> Resp {
        self.send(Some(who), Method::PATCH, path, Some(body)).await
    }
    /// A PATCH with extra headers (what the gateway adds for a service).
    pub async fn patch_with(
        &self,
        who: &Principal,
        path: &str,
        body: Value,
        extra: &[(&'static str, &'static str)],
    ) -> Resp {
        let mut rb = self
            .client
            .patch(format!("{}{}", self.base, path))
            .headers(testkit::identity_headers(&self.minter, "users", who))
            .json(&body);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        read(rb).await
    }
    pub async fn delete(&self, who: &Principal, path: &str) -> Resp {
        self.send(Some(who), Method::DELETE, path, None).await
    }

    /// Create a user as the admin; asserts 201.
    pub async fn create_user(&self, username: &str, roles: &[&str]) -> (Principal, Resp) {
        let r = self
            .post(
                &self.admin,
                "/users",
                json!({"username": username, "email": format!("{username}@example.com"),
                       "password": format!("{username}-password-1"), "roles": roles}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        (user(r.id(), roles), r)
    }

    /// The internal credential check, as the gateway.
    pub async fn verify(&self, username: &str, password: &str) -> Resp {
        self.post(
            &Principal::Gateway,
            "/internal/credentials/verify",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// A proof signed with the gateway key but with chosen claims.
    pub fn forged_claims(&self, claims: &ProofClaims) -> String {
        self.minter.sign_claims(claims).unwrap()
    }
}

/// Send and read; every body is checked for leaked password material.
pub async fn read(rb: reqwest::RequestBuilder) -> Resp {
    let r = testkit::http::read(rb).await;
    let text = &r.text;
    assert!(!text.contains("$argon2"), "a password hash leaked: {text}");
    assert!(
        !text.contains("password_hash"),
        "a hash field leaked: {text}"
    );
    assert!(!text.contains("-password-1"), "a password leaked: {text}");
    r
}
