use std::net::TcpListener;
use std::sync::Arc;

use common::identity::{Principal, ProofMinter};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestEnv;
use uuid::Uuid;

/// A running orders service, and three callers: two users and an admin.
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

pub async fn spawn_app() -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init();
    }
    let mut env = TestEnv::new();
    let url = env.database("orders").await;
    let settings: orders::Settings = orders::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", url)
        .set("workers", 1)
        .extract()
        .expect("settings");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = orders::build_with_listener(settings, listener)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
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

/// A valid `POST /orders` body.
pub fn order_body(item: &str) -> Value {
    json!({"item": item, "quantity": 2, "address": "1 Main Street\nSpringfield"})
}

impl TestApp {
    /// The identity headers the gateway would send for `who`.
    pub fn identity(&self, who: &Principal) -> reqwest::header::HeaderMap {
        testkit::identity_headers(&self.minter, "orders", who)
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

    /// `POST` without a body, as the transitions are called.
    pub async fn act(&self, who: &Principal, id: Uuid, action: &str) -> Resp {
        self.send(
            Some(who),
            Method::POST,
            &format!("/orders/{id}/{action}"),
            None,
        )
        .await
    }

    /// Place an order as `who`; asserts 201.
    pub async fn create(&self, who: &Principal, item: &str) -> Resp {
        let r = self.post(who, "/orders", order_body(item)).await;
        r.ok(201);
        r
    }

    /// `POST /orders` with a raw body and content type.
    pub async fn post_raw(&self, who: &Principal, content_type: &str, body: String) -> Resp {
        read(
            self.client
                .post(format!("{}/orders", self.base))
                .headers(self.identity(who))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// The `total` of `GET /orders` as `who`.
    pub async fn total(&self, who: &Principal) -> u64 {
        let r = self.get(who, "/orders").await;
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
