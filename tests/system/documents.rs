//! The committed OpenAPI documents (`openapi/`): what the code produces,
//! valid OpenAPI 3.1 by an independent validator, and free of collisions.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi")
}

#[test]
fn the_committed_documents_are_what_the_code_produces() {
    let stale = gatehouse::stale_documents(&dir()).unwrap();
    assert!(
        stale.is_empty(),
        "openapi/ differs from the code ({}): run `cargo run --bin openapi` and commit",
        stale.join(", ")
    );
}

/// `openapi-spec-validator` (Python, an implementation independent of ours).
fn validator() -> PathBuf {
    testkit::python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "openapi-venv",
        &["openapi-spec-validator==0.9.0"],
    )
    .join("openapi-spec-validator")
}

#[test]
fn every_document_is_valid_openapi_3_1() {
    let files: Vec<PathBuf> = ["gateway", "users", "orders", "scanner"]
        .iter()
        .map(|n| dir().join(format!("{n}.json")))
        .collect();
    let out = Command::new(validator()).args(&files).output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for f in &files {
        assert!(report.contains(&format!("{}: OK", f.display())), "{report}");
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("gateway.json")).unwrap())
            .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_owned()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_merged_document_has_no_collisions_and_keeps_its_promises() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("gateway.json")).unwrap())
            .unwrap();
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(
            !path.contains("/internal") && !path.ends_with("healthz"),
            "{path} published"
        );
        for (method, op) in item.as_object().unwrap() {
            ids.push(op["operationId"].as_str().unwrap().to_owned());
            let at = format!("{method} {path}");
            let client_auth = serde_json::json!([{}, {"client_basic": []}]);
            if op.get("security") == Some(&client_auth) {
                // The OAuth endpoints: a machine client authenticates.
                assert!(op["responses"].get("401").is_some(), "{at}: no 401");
                assert!(
                    op["description"].as_str().unwrap().contains("**Access:**"),
                    "{at}"
                );
            } else if op.get("security").is_some() {
                assert_eq!(op["security"], serde_json::json!([{"bearer": []}]), "{at}");
                assert!(
                    op["x-required-roles"].is_array(),
                    "{at}: no x-required-roles"
                );
                assert!(op["responses"].get("401").is_some(), "{at}: no 401");
                assert!(
                    op["description"].as_str().unwrap().contains("**Access:**"),
                    "{at}"
                );
            }
            let roles = op["x-required-roles"].as_array().map(Vec::len).unwrap_or(0);
            if roles > 0 {
                assert!(op["responses"].get("403").is_some(), "{at}: no 403");
            }
            let proxied = ["/api/users", "/api/me", "/api/orders", "/api/scans"]
                .iter()
                .any(|p| path == p || path.starts_with(&format!("{p}/")))
                && path != "/api/me/overview";
            if proxied {
                for code in ["502", "503", "504"] {
                    assert!(op["responses"].get(code).is_some(), "{at}: no {code}");
                }
                if op.get("requestBody").is_some() {
                    assert!(op["responses"].get("413").is_some(), "{at}: no 413");
                }
            }
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(n, ids.len(), "operationIds collide");
    // The access rules of the shipped routes.
    assert_eq!(
        doc["paths"]["/api/users"]["get"]["x-required-roles"],
        serde_json::json!(["admin"])
    );
    assert_eq!(
        doc["paths"]["/api/orders"]["post"]["x-required-roles"],
        serde_json::json!([])
    );
    assert!(doc["paths"]["/api/login"]["post"].get("security").is_none());
    // Every reference resolves, and nothing refers to the services' proof.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        assert!(
            doc.pointer(r.trim_start_matches('#')).is_some(),
            "unresolved {r}"
        );
    }
    assert!(!doc.to_string().contains("gateway_proof"));
    // Each service schema is published under its own name only when it is
    // the same as what that name already means.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for service in ["users", "orders", "scanner"] {
        let own: Value = serde_json::from_str(
            &std::fs::read_to_string(dir().join(format!("{service}.json"))).unwrap(),
        )
        .unwrap();
        for (name, schema) in own["components"]["schemas"].as_object().unwrap() {
            if let Some(published) = schemas.get(name)
                && published != schema
            {
                let mut r = Vec::new();
                refs(schema, &mut r);
                // Differing only by renamed references is fine; differing
                // content must have been renamed.
                assert!(
                    !r.is_empty(),
                    "{service}'s `{name}` collides with another `{name}`"
                );
            }
        }
    }
}
