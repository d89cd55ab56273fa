//! The orders app shape: health, readiness, OpenAPI, problem+json defaults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[actix_web::test]
async fn serves_health_and_openapi() {
    let mut env = testkit::TestEnv::new();
    let url = env.database("orders").await;
    let settings: orders::Settings = orders::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", url)
        .set("workers", 1)
        .extract()
        .unwrap();
    let app = orders::build_with_listener(
        settings,
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: serde_json::Value = c
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/readyz"].is_object());
    let nf = c.get(format!("{base}/orders")).send().await.unwrap();
    assert_eq!(nf.status(), 404);
    assert_eq!(nf.headers()["content-type"], "application/problem+json");
}
