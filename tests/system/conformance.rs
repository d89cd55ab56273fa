//! Every answer the system tests receive through the gateway is checked
//! against the committed public document (`openapi/gateway.json`): its status
//! must be documented for the operation, and its body must match the
//! documented schema (JSON Schema 2020-12, by the `jsonschema` crate).

use std::sync::OnceLock;

use serde_json::{Value, json};

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/gateway.json"))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

/// The documented path template a concrete path falls under, preferring
/// literal segments.
fn template(doc: &Value, path: &str) -> Option<String> {
    let want: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .filter(|t| {
            let have: Vec<&str> = t.split('/').collect();
            have.len() == want.len()
                && have
                    .iter()
                    .zip(&want)
                    .all(|(h, w)| h == w || (h.starts_with('{') && !w.is_empty()))
        })
        .min_by_key(|t| t.matches('{').count())
        .cloned()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolvable {r}")),
        None => v,
    }
}

/// Check one answer; panics with the reason when it breaks the document.
pub fn check(method: &str, path: &str, status: u16, content_type: &str, body: &Value) {
    let doc = document();
    let path = path.split('?').next().unwrap_or(path);
    let Some(t) = template(doc, path) else { return };
    let Some(op) = doc["paths"][&t].get(method.to_ascii_lowercase()) else {
        return; // a method the route does not serve: 405, not an operation
    };
    let responses = &op["responses"];
    let Some(response) = responses
        .get(status.to_string())
        .or(responses.get("default"))
    else {
        panic!(
            "{method} {path} ({t}) answered {status}, which the document does not list: {}",
            responses
                .as_object()
                .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
    };
    let response = resolve(doc, response);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return;
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(schema) = content.get(media).and_then(|c| c.get("schema")) else {
        panic!(
            "{method} {path} answered {status} as `{media}`; the document has {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    // A root that carries the components, so `#/components/...` resolves.
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
    });
    match schema.as_object() {
        Some(m) => {
            for (k, v) in m {
                root[k] = v.clone();
            }
        }
        None => root["allOf"] = json!([schema]),
    }
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("schema of {method} {t} {status}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} ({t}) {status} does not match the document:\n{}\nbody: {body}",
        errors.join("\n")
    );
}

#[test]
#[should_panic(expected = "does not match the document")]
fn a_body_that_breaks_the_schema_is_caught() {
    check(
        "GET",
        "/api/orders/6a1f8d0c-2c35-4d7e-9a43-1f0b7f6f2b11",
        200,
        "application/json",
        &json!({"id": 5}),
    );
}

#[test]
#[should_panic(expected = "does not list")]
fn an_undocumented_status_is_caught() {
    check("GET", "/api/orders", 418, "application/json", &json!({}));
}
