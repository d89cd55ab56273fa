//! What the launcher and the `openapi` command share: the OpenAPI documents
//! the code produces. Each service describes itself (utoipa); the gateway's
//! public document is the merge of its own endpoints and those, through the
//! shipped route table (`config/gateway.yaml`), by the same function the
//! running gateway uses on the documents it fetches.
//!
//! `openapi/` at the root holds them committed; `cargo run --bin openapi`
//! regenerates them and `tests/openapi_files.rs` fails when they differ.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;
use utoipa::OpenApi;

/// Each service's own document, keyed by the upstream name the shipped
/// gateway configuration gives it.
pub fn service_documents() -> BTreeMap<String, Value> {
    let doc = |d: utoipa::openapi::OpenApi| serde_json::to_value(d).unwrap_or(Value::Null);
    BTreeMap::from([
        ("users".to_owned(), doc(users::ApiDoc::openapi())),
        ("orders".to_owned(), doc(orders::ApiDoc::openapi())),
        ("scanner".to_owned(), doc(scanner::ApiDoc::openapi())),
    ])
}

/// Every document by file name: `gateway.json` (the merged public API) and
/// `<service>.json`.
pub fn documents() -> anyhow::Result<BTreeMap<String, Value>> {
    let services = service_documents();
    let settings = gateway::Settings::shipped().context("the shipped gateway configuration")?;
    let shared: BTreeMap<String, Arc<Value>> = services
        .iter()
        .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
        .collect();
    let merged = gateway::ops::openapi::offline(&settings, &shared).map_err(anyhow::Error::msg)?;
    let mut out: BTreeMap<String, Value> = services
        .into_iter()
        .map(|(k, v)| (format!("{k}.json"), v))
        .collect();
    out.insert("gateway.json".into(), merged);
    Ok(out)
}

/// The text a document is committed as.
pub fn render(doc: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(doc)? + "\n")
}

/// Files under `dir` that are missing or differ from what the code
/// produces, by name.
pub fn stale_documents(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut stale = Vec::new();
    for (name, doc) in documents()? {
        let want = render(&doc)?;
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(have) if have == want => {}
            _ => stale.push(name),
        }
    }
    Ok(stale)
}

/// Write every document into `dir`.
pub fn write_documents(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, doc) in documents()? {
        let path = dir.join(&name);
        std::fs::write(&path, render(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(name);
    }
    Ok(written)
}
