//! Health, OpenAPI, request ids, default errors, startup behaviour.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

#[actix_web::test]
async fn health_openapi_and_defaults() {
    let app = spawn_app().await;
    let h = app.send(None, Method::GET, "/healthz", None).await;
    assert_eq!(h.status, 200);
    let r = app.send(None, Method::GET, "/readyz", None).await;
    assert_eq!(r.status, 200);

    let doc = app.send(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/users",
        "/users/{id}",
        "/me",
        "/internal/credentials/verify",
        "/internal/users/{id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    // Every operation documents its error responses with the Problem schema.
    let create = &doc.body["paths"]["/users"]["post"]["responses"];
    for code in ["201", "401", "403", "409", "415", "422"] {
        assert!(create.get(code).is_some(), "POST /users documents {code}");
    }
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
    assert!(!doc.text.contains("password_hash"));

    let nf = app.send(None, Method::GET, "/nope", None).await;
    nf.problem(404);
    let m = app
        .send(Some(&app.admin), Method::PUT, "/users", None)
        .await;
    m.problem(405);
    // An id that is not a UUID names no resource.
    app.get(&app.admin, "/users/not-a-uuid").await.problem(404);
}

/// Every operation that takes a JSON body answers 415 to a body sent
/// without a content type, and its OpenAPI operation says so (#30: six of
/// them did not, `PATCH /me` and the MFA writes among them).
#[actix_web::test]
async fn every_operation_with_a_json_body_documents_its_415() {
    let app = spawn_app().await;
    let doc = app.send(None, Method::GET, "/openapi.json", None).await;
    let mut checked = Vec::new();
    let mut undocumented = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"]["content"]
                .get("application/json")
                .is_none()
            {
                continue;
            }
            let name = format!("{} {path}", method.to_uppercase());
            if op["responses"].get("415").is_none() {
                undocumented.push(name.clone());
            }
            // The caller each one takes: the gateway for `/internal`, an
            // admin (who is a user too) for the rest.
            let who = if path.starts_with("/internal/") {
                common::identity::Principal::Gateway
            } else {
                app.admin.clone()
            };
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{id}", &uuid::Uuid::new_v4().to_string())
            );
            let r = read(
                app.client
                    .request(method.to_uppercase().parse().unwrap(), url)
                    .headers(testkit::identity_headers(&app.minter, "users", &who))
                    .body("{}"),
            )
            .await;
            assert_eq!(r.status, 415, "{name}: {}", r.text);
            checked.push(name);
        }
    }
    assert!(checked.len() >= 10, "{checked:?}");
    assert!(
        undocumented.is_empty(),
        "answer 415 but do not document it: {undocumented:?}"
    );
}

#[actix_web::test]
async fn request_id_is_kept_when_sane_and_replaced_otherwise() {
    let app = spawn_app().await;
    let r = read(
        app.client
            .get(format!("{}/nope", app.base))
            .header("x-request-id", "trace-123"),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "trace-123");
    assert_eq!(r.body["request_id"], "trace-123");
    let r = read(
        app.client
            .get(format!("{}/healthz", app.base))
            .header("x-request-id", "bad id with spaces"),
    )
    .await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_ne!(id, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

#[actix_web::test]
async fn first_start_creates_the_admin_once() {
    // spawn_app configured ADMIN_PASSWORD: the admin exists with that password.
    let app = spawn_app().await;
    let me = app.get(&app.admin, "/me").await;
    assert_eq!(me.body["roles"], serde_json::json!(["admin", "user"]));
    assert_eq!(me.body["email"], "admin@example.com");
}

#[actix_web::test]
async fn generated_admin_password_when_none_is_set() {
    // No password configured: one is generated (and printed); the account exists
    // and no configured password opens it.
    let mut env = testkit::TestEnv::new();
    let url = env.database("users").await;
    let settings: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", url)
        .set("workers", 1)
        .extract()
        .unwrap();
    let app = users::build_with_listener(
        settings,
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = testkit::client();
    let mut rb = client.post(format!("{base}/internal/credentials/verify"));
    rb = rb.headers(testkit::identity_headers(
        &env.minter,
        "users",
        &common::identity::Principal::Gateway,
    ));
    let r =
        read(rb.json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))).await;
    r.problem(401);
}

#[actix_web::test]
async fn startup_fails_without_the_gateway_key() {
    let mut env = testkit::TestEnv::new();
    let url = env.database("users").await;
    let settings: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir().join("elsewhere"))
        .set("database.url", url)
        .extract()
        .unwrap();
    let err = users::build_with_listener(
        settings,
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(err.contains("gateway proof public key"), "{err}");
    let _: Option<Value> = None;
}
