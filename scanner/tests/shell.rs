//! The scanner app shape, and replica settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[actix_web::test]
async fn replicas_share_one_database() {
    let mut env = testkit::TestEnv::new();
    let url = env.database("scanner").await;
    let mut bases = Vec::new();
    for name in ["scanner1", "scanner2"] {
        let settings: scanner::Settings = scanner::Settings::loader()
            .set("instance", name)
            .set("data_dir", env.data_dir())
            .set("database.url", url.clone())
            .set("workers", 1)
            .extract()
            .unwrap();
        assert_eq!(settings.instance, name);
        let app = scanner::build_with_listener(
            settings,
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        )
        .await
        .unwrap();
        bases.push(format!("http://127.0.0.1:{}", app.port()));
        actix_web::rt::spawn(app.run_until_stopped());
    }
    let c = reqwest::Client::new();
    for base in bases {
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
        assert_eq!(doc["info"]["title"], "gatehouse scanner service");
    }
}
