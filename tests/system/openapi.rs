//! Issue #6: the merged document served by the running gateway, its
//! refresh from the running services, and Swagger UI.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::support::{Options, System, eventually};

async fn served(s: &System) -> Value {
    let r = s
        .client
        .get(format!("{}/openapi.json", s.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn state(doc: &Value, upstream: &str) -> String {
    doc["x-service-documents"][upstream]["state"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

#[actix_web::test]
async fn the_served_document_is_the_committed_one_once_the_services_are_read() {
    let s = System::start().await;
    eventually("every service document fetched", || async {
        let d = served(&s).await;
        ["users", "orders", "scanner"]
            .iter()
            .all(|u| state(&d, u) == "current")
    })
    .await;
    let mut doc = served(&s).await;
    doc.as_object_mut().unwrap().remove("x-service-documents");
    // Built from what the services serve = built from their code.
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/gateway.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        doc == committed,
        "the served document differs from openapi/gateway.json"
    );
    for p in [
        "/api/login",
        "/api/users",
        "/api/me",
        "/api/orders/{id}/cancel",
        "/api/scans",
        "/api/scan",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let text = doc.to_string();
    assert!(!text.contains("/internal"), "internal paths leaked");
}

#[actix_web::test]
async fn a_service_that_goes_down_keeps_its_last_good_document() {
    let s = System::start().await;
    eventually("orders document fetched", || async {
        state(&served(&s).await, "orders") == "current"
    })
    .await;
    s.orders.stop(false).await;
    eventually("orders marked stale", || async {
        state(&served(&s).await, "orders") == "stale"
    })
    .await;
    let doc = served(&s).await;
    assert!(
        doc["paths"]["/api/orders"]["post"].is_object(),
        "orders operations dropped"
    );
    assert!(doc["x-service-documents"]["orders"]["error"].is_string());
}

/// A service whose document the test rewrites, as a deploy would.
async fn versioned_service(doc: Arc<Mutex<Value>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        let doc = doc.clone();
        actix_web::App::new()
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/openapi.json",
                web::get().to(move || {
                    let d = doc.lock().unwrap().clone();
                    async move { HttpResponse::Ok().json(d) }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn version(paths: Value) -> Value {
    json!({"openapi": "3.1.0", "info": {"title": "extra", "version": "1"}, "paths": paths})
}

#[actix_web::test]
async fn a_new_service_version_shows_up_without_touching_the_gateway() {
    let doc = Arc::new(Mutex::new(version(json!({
        "/things": {"get": {"operationId": "list_things", "responses": {"200": {"description": "ok"}}}}
    }))));
    let url = versioned_service(doc.clone()).await;
    let s = System::start_with(Options {
        gateway: Box::new(move |l| {
            let mut routes: Value = serde_json::from_str(
                // One route per shipped prefix (some split by method), all
                // open to any caller: this test is about documents, not access.
                &serde_json::to_string(&gateway::Settings::shipped().unwrap().routes.iter()
                    .filter(|r| r.methods.as_ref().is_none_or(|m| m.iter().any(|m| m == "GET")))
                    .map(|r| json!({
                    "prefix": r.prefix, "upstream": r.upstream, "rewrite": r.rewrite,
                    "access": "authenticated"})).collect::<Vec<_>>()).unwrap(),
            )
            .unwrap();
            routes.as_array_mut().unwrap().push(json!(
                {"prefix": "/api/things", "upstream": "extra", "rewrite": "/things", "access": ["admin"]}));
            l.set("upstreams.extra", json!([url])).set("routes", routes)
        }),
        ..Options::default()
    })
    .await;
    eventually("version 1 published", || async {
        served(&s).await["paths"]["/api/things"]["get"].is_object()
    })
    .await;
    *doc.lock().unwrap() = version(json!({
        "/things": {"get": {"operationId": "list_things", "responses": {"200": {"description": "ok"}}},
                    "post": {"operationId": "create_thing", "responses": {"201": {"description": "made"}}}}
    }));
    eventually("version 2 published", || async {
        served(&s).await["paths"]["/api/things"]["post"].is_object()
    })
    .await;
    let d = served(&s).await;
    let op = &d["paths"]["/api/things"]["post"];
    assert_eq!(op["x-required-roles"], json!(["admin"]));
    assert_eq!(op["security"], json!([{"bearer": []}]));
}

#[actix_web::test]
async fn swagger_ui_is_served_from_the_binary() {
    let s = System::start().await;
    let get = |p: &str| s.client.get(format!("{}{p}", s.gw)).send();
    let r = get("/docs").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/docs/");
    let r = get("/docs/").await.unwrap();
    assert_eq!(r.status(), 200);
    // A page that can hold a token is never framed and loads only its own code.
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "frame-ancestors 'none'",
        "script-src 'self'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("swagger-ui"));
    let init = get("/docs/swagger-initializer.js")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = get("/docs/swagger-ui-bundle.js").await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
    let r = get("/docs/no-such-file.js").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
