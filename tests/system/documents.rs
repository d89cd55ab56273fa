//! The committed documents against what they describe: the OpenAPI
//! documents (`openapi/`) are what the code produces, valid OpenAPI 3.1 by an
//! independent validator, and free of collisions; the configuration reference
//! (`docs/configuration.md`) holds every key of `config/gateway.yaml` with its
//! default; and the README's first walk-through runs as it is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use crate::support::{ADMIN_PASSWORD, System};

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
                // A bearer token, or (routes with `session: true`, the
                // user's own sessions) the browser session's cookie too.
                let bearer = serde_json::json!([{"bearer": []}]);
                let or_session = serde_json::json!([{"bearer": []}, {"session": []}]);
                assert!(
                    op["security"] == bearer || op["security"] == or_session,
                    "{at}: {}",
                    op["security"]
                );
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
                && path != "/api/me/overview"
                && !path.starts_with("/api/me/consents")
                && !path.starts_with("/api/me/sessions");
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a configuration table says about a key's default.
#[derive(Debug)]
enum Documented {
    /// A code span holding YAML: the value the file must hold.
    Value(Yaml),
    /// `unset`: `~` in the file, or a commented-out `# key: ...` line there.
    Unset,
    /// `shipped`: the file holds a whole list or map, described elsewhere.
    Shipped,
}

/// The rows of every table placed right after the marker
/// `<!-- config-keys: config/gateway.yaml -->`: a `dotted.key` in a code
/// span, then its default (a YAML code span, `unset` or `shipped`), then the
/// meaning. `\|` inside a cell is a literal `|`.
fn documented_keys(markdown: &str) -> BTreeMap<String, Documented> {
    let mut keys = BTreeMap::new();
    for section in markdown
        .split("<!-- config-keys: config/gateway.yaml -->")
        .skip(1)
    {
        let rows = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2); // the header row and the |---| row
        for row in rows {
            let cells: Vec<String> = row
                .replace("\\|", "\u{0}")
                .split('|')
                .map(|c| c.trim().replace('\u{0}', "|"))
                .collect();
            // "| key | default | meaning |" splits into five, the ends empty.
            assert!(cells.len() >= 4, "a row without a key and a default: {row}");
            let key = code_span(&cells[1])
                .unwrap_or_else(|| panic!("the key is not one `dotted.key`: {row}"))
                .to_owned();
            let default = match cells[2].as_str() {
                "unset" => Documented::Unset,
                "shipped" => Documented::Shipped,
                cell => {
                    let text = code_span(cell).unwrap_or_else(|| {
                        panic!("{key}: the default is not a `yaml` value, unset or shipped: {cell}")
                    });
                    Documented::Value(
                        serde_yaml::from_str(text).unwrap_or_else(|e| {
                            panic!("{key}: the default `{text}` is not YAML: {e}")
                        }),
                    )
                }
            };
            assert!(
                keys.insert(key.clone(), default).is_none(),
                "`{key}` is in the tables twice"
            );
        }
    }
    keys
}

/// The text of a cell that is exactly one code span.
fn code_span(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// Every leaf of the file as a dotted key and its value. A map is descended
/// into unless it is empty or a table documents it whole (such as
/// `login_limits.per_ip` or `upstreams`); a list is a leaf.
fn leaves<'a>(
    prefix: &str,
    value: &'a Yaml,
    documented: &BTreeMap<String, Documented>,
    out: &mut Vec<(String, &'a Yaml)>,
) {
    match value {
        Yaml::Mapping(map)
            if !map.is_empty() && (prefix.is_empty() || !documented.contains_key(prefix)) =>
        {
            for (k, v) in map {
                let k = k
                    .as_str()
                    .unwrap_or_else(|| panic!("a key under `{prefix}` is not a string"));
                let path = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, documented, out);
            }
        }
        _ => out.push((prefix.to_owned(), value)),
    }
}

fn lookup<'a>(yaml: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    key.split('.').try_fold(yaml, |v, k| v.get(k))
}

fn shown(v: &Yaml) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim_end().replace('\n', " "))
        .unwrap_or_default()
}

/// The configuration reference cannot disagree with the embedded defaults:
/// every leaf of `config/gateway.yaml` is a row with the same default, and
/// every row is a key of the file (or, `unset`, a commented-out line there).
#[test]
fn the_configuration_tables_match_the_shipped_gateway_yaml() {
    let text = std::fs::read_to_string(repo().join("config/gateway.yaml")).unwrap();
    let yaml: Yaml = serde_yaml::from_str(&text).unwrap();
    let markdown = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let documented = documented_keys(&markdown);
    assert!(
        documented.len() > 50,
        "docs/configuration.md: too few rows after <!-- config-keys: config/gateway.yaml -->"
    );
    let mut found = Vec::new();
    leaves("", &yaml, &documented, &mut found);
    let mut problems = Vec::new();
    for (key, value) in &found {
        let value: &Yaml = value;
        let problem = match documented.get(key) {
            None => Some(format!(
                "`{key}: {}` is in config/gateway.yaml but in no table",
                shown(value)
            )),
            Some(Documented::Value(d)) if d != value => Some(format!(
                "`{key}`: the table says `{}`, the file `{}`",
                shown(d),
                shown(value)
            )),
            Some(Documented::Unset) if !value.is_null() => Some(format!(
                "`{key}`: the table says unset, the file `{}`",
                shown(value)
            )),
            Some(Documented::Shipped) if !(value.is_sequence() || value.is_mapping()) => {
                Some(format!(
                    "`{key}`: shipped is for a list or map, the file has `{}`",
                    shown(value)
                ))
            }
            Some(_) => None,
        };
        problems.extend(problem);
    }
    for (key, default) in &documented {
        if lookup(&yaml, key).is_some() {
            continue;
        }
        let last = key.rsplit('.').next().unwrap_or(key);
        let commented = text.contains(&format!("# {last}:"));
        match default {
            Documented::Unset if commented => {}
            Documented::Unset => problems.push(format!(
                "`{key}` is unset in the table but neither `~` nor a commented-out `# {last}:` line in config/gateway.yaml"
            )),
            _ => problems.push(format!(
                "`{key}` is in a table but not in config/gateway.yaml"
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md and config/gateway.yaml disagree:\n{}",
        problems.join("\n")
    );
}

/// The fenced `sh` block after `marker` in the file at `path` (relative to
/// the repository): a walk-through a test runs as it is written.
pub(crate) fn fenced_block(path: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let after = text
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{path} has no {marker}"));
    let body = after.split("```sh\n").nth(1).unwrap();
    body.split("\n```").next().unwrap().to_owned()
}

/// Run the walk-through after `marker` in `path` as it is written (bash,
/// `-euo pipefail`) with `env`, off the reactor; what it printed, once it
/// succeeded.
pub(crate) async fn run_walk_through(path: &str, marker: &str, env: Vec<(&str, String)>) -> String {
    let block = fenced_block(path, marker);
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the block in {path} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's first walk-through, run as it is written against the whole
/// system with the shipped routes.
#[actix_web::test]
async fn the_readme_first_walk_through_works_as_written() {
    let sys = System::start().await;
    let stdout = run_walk_through(
        "README.md",
        "<!-- first-steps -->",
        vec![
            ("GATEWAY", sys.gw.clone()),
            ("PASSWORD", ADMIN_PASSWORD.into()),
        ],
    )
    .await;
    // It printed the account, the new order, the list, then the 401's status.
    let mut answers = stdout.lines().filter(|l| l.starts_with('{'));
    let me: Value = serde_json::from_str(answers.next().unwrap()).unwrap();
    assert_eq!(me["username"], "admin", "{stdout}");
    let order: Value = serde_json::from_str(answers.next().unwrap()).unwrap();
    assert_eq!(order["item"], "tea", "{stdout}");
    let list: Value = serde_json::from_str(answers.next().unwrap()).unwrap();
    assert_eq!(list["total"], 1, "{stdout}");
    assert_eq!(stdout.lines().next_back(), Some("401"), "{stdout}");
}
