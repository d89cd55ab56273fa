//! Health, OpenAPI and the platform's default errors.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let h = app.send(None, Method::GET, "/healthz", None).await;
    assert_eq!(h.ok(200), &json!({"status": "ok"}));
    let r = app.send(None, Method::GET, "/readyz", None).await;
    r.ok(200);
}

#[actix_web::test]
async fn openapi_documents_every_operation_and_status() {
    let app = spawn_app().await;
    let doc = app.send(None, Method::GET, "/openapi.json", None).await;
    doc.ok(200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = &doc.body["paths"];
    for (path, method, codes) in [
        ("/orders", "post", &["201", "401", "413", "415", "422"][..]),
        ("/orders", "get", &["200", "400", "401", "403", "422"]),
        ("/orders/{id}", "get", &["200", "401", "404"]),
        ("/orders/{id}/cancel", "post", &["200", "401", "404", "409"]),
        (
            "/orders/{id}/confirm",
            "post",
            &["200", "401", "403", "404", "409"],
        ),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} documented");
        assert_eq!(op["security"], json!([{"gateway_proof": []}]), "{path}");
        let responses = op["responses"].as_object().unwrap();
        let mut documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        documented.sort();
        assert_eq!(documented, codes, "{method} {path}");
        for code in codes.iter().filter(|c| !c.starts_with('2')) {
            let problem = &responses[*code]["content"]["application/problem+json"]["schema"];
            assert_eq!(
                problem["$ref"], "#/components/schemas/Problem",
                "{method} {path} {code}"
            );
        }
    }
    for p in ["/healthz", "/readyz", "/openapi.json"] {
        assert!(paths[p].is_object(), "{p}");
    }
    let schemas = &doc.body["components"]["schemas"];
    for s in [
        "Problem",
        "FieldError",
        "OrderResponse",
        "OrderList",
        "CreateOrderRequest",
        "Status",
    ] {
        assert!(schemas[s].is_object(), "{s} schema");
    }
    assert_eq!(
        schemas["CreateOrderRequest"]["additionalProperties"], false,
        "unknown fields are refused"
    );
    assert_eq!(
        schemas["Status"]["enum"],
        json!(["pending", "confirmed", "cancelled"])
    );
    assert!(doc.body["components"]["securitySchemes"]["gateway_proof"].is_object());
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    app.send(None, Method::GET, "/nope", None)
        .await
        .problem(404);
    let id = app.create(&app.alice, "widget").await.id();
    for (m, path) in [
        (Method::PUT, "/orders".to_owned()),
        (Method::DELETE, format!("/orders/{id}")),
        (Method::PATCH, format!("/orders/{id}")),
        (Method::GET, format!("/orders/{id}/cancel")),
        (Method::GET, format!("/orders/{id}/confirm")),
    ] {
        app.send(Some(&app.alice), m, &path, None)
            .await
            .problem(405);
    }
    app.get(&app.alice, &format!("/orders/{id}/ship"))
        .await
        .problem(404);
}
