//! Schema names across the merged documents: the `$ref`s that name a
//! schema, found and renamed, and the `<Service>` prefix a colliding name
//! takes, so that two services' `Item` can both be published.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

/// Where a schema `$ref` points, up to the schema's name.
pub(super) const SCHEMA_REF: &str = "#/components/schemas/";

/// Every `$ref` to a schema, by name.
pub(super) fn schema_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(name) = x.as_str().and_then(|s| s.strip_prefix(SCHEMA_REF))
                {
                    out.insert(name.to_owned());
                } else {
                    schema_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| schema_refs(x, out)),
        _ => {}
    }
}

pub(super) fn rename_refs(v: &mut Value, names: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "$ref"
                    && let Some(new) = x
                        .as_str()
                        .and_then(|s| s.strip_prefix(SCHEMA_REF))
                        .and_then(|n| names.get(n))
                {
                    *x = json!(format!("{SCHEMA_REF}{new}"));
                } else {
                    rename_refs(x, names);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, names)),
        _ => {}
    }
}

pub(super) fn pascal(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
