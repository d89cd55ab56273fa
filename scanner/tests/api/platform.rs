//! Health, OpenAPI and the platform's default errors.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let h = app.send(None, Method::GET, "/healthz", None).await;
    assert_eq!(h.ok(200), &json!({"status": "ok"}));
    app.send(None, Method::GET, "/readyz", None).await.ok(200);
}

#[actix_web::test]
async fn openapi_documents_every_operation_status_and_the_scoring() {
    let app = spawn_app().await;
    let doc = app.send(None, Method::GET, "/openapi.json", None).await;
    doc.ok(200);
    assert_eq!(doc.body["info"]["title"], "gatehouse scanner service");
    let description = doc.body["info"]["description"].as_str().unwrap();
    for s in ["Scoring", "15552000", "A ≥ 90", "SSRF", "169.254.169.254"] {
        assert!(description.contains(s), "{s}");
    }
    let paths = &doc.body["paths"];
    for (path, method, codes) in [
        (
            "/scans",
            "post",
            &["201", "401", "413", "415", "422", "429"][..],
        ),
        ("/scans", "get", &["200", "400", "401", "403", "422"]),
        ("/scans/{id}", "get", &["200", "401", "404"]),
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
        "ScanResponse",
        "ScanList",
        "CreateScanRequest",
        "Report",
        "HeaderChecks",
        "HeaderCheck",
        "HeaderState",
        "CookieCheck",
        "Banner",
        "Hop",
        "Grade",
    ] {
        assert!(schemas[s].is_object(), "{s} schema");
    }
    assert_eq!(schemas["CreateScanRequest"]["additionalProperties"], false);
    assert_eq!(schemas["Grade"]["enum"], json!(["A", "B", "C", "D", "F"]));
    assert_eq!(
        schemas["HeaderState"]["enum"],
        json!(["present", "missing", "misconfigured", "not_applicable"])
    );
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    app.send(None, Method::GET, "/nope", None)
        .await
        .problem(404);
    for (m, path) in [
        (Method::PUT, "/scans".to_owned()),
        (Method::DELETE, format!("/scans/{}", uuid::Uuid::new_v4())),
    ] {
        app.send(Some(&app.alice), m, &path, None)
            .await
            .problem(405);
    }
}
