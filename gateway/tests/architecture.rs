//! The gateway's layering, checked on its source and taken from its
//! folders: every folder under `src/` with a `mod.rs` is a room, whose
//! state is the type named after it in that `mod.rs` (`identity` ->
//! `Identity`). A module that uses a room's `mod.rs` (its state, its
//! endpoints) is a handler; every other module in a room is an engine, and
//! the files at the root (but `lib` and `startup`) are the ground floor.
//! No two files import each other in a circle; engines and the ground
//! floor never import a handler, a room's state or startup; only the
//! upstream client speaks awc; nothing needs more arguments than clippy
//! allows. ARCHITECTURE.md states these rules; this keeps them.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, by its module path (`proxy::cache`; the
/// crate root is the empty path).
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let join = |n: &str| {
            if prefix.is_empty() {
                n.to_owned()
            } else {
                format!("{prefix}::{n}")
            }
        };
        if path.is_dir() {
            modules(&path, &join(&name), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "lib" | "main" if prefix.is_empty() => String::new(),
                "mod" => prefix.to_owned(),
                _ => join(&name),
            };
            if name != "main" {
                out.insert(module, path);
            }
        }
    }
}

/// The file's text without its test module (tests may reach anything).
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            // A test-only declaration (`mod tests_support;`) or the test
            // module, which runs to the end of the file by convention.
            match lines.peek() {
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Paths a file names: `crate::a::b` and `super::c` (made absolute), from
/// `use` trees (one level of braces) and from paths in the code.
fn references(module: &str, code: &str) -> Vec<String> {
    let parent = match module.rsplit_once("::") {
        Some((p, _)) => p.to_owned(),
        None => String::new(),
    };
    let absolute = |p: &str| -> Option<String> {
        if let Some(rest) = p.strip_prefix("crate::") {
            Some(rest.to_owned())
        } else if let Some(rest) = p.strip_prefix("super::") {
            Some(if parent.is_empty() {
                rest.to_owned()
            } else {
                format!("{parent}::{rest}")
            })
        } else if p.starts_with("self::") {
            p.strip_prefix("self::").map(|rest| {
                if module.is_empty() {
                    rest.to_owned()
                } else {
                    format!("{module}::{rest}")
                }
            })
        } else {
            None
        }
    };
    let mut out = Vec::new();
    let mut text = code.to_owned();
    // `use crate::x::{a, b::C};` -> crate::x::a, crate::x::b::C
    while let Some(start) = text.find("::{") {
        let head_start = text[..start]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let head = text[head_start..start].to_owned();
        let Some(end) = text[start..].find('}').map(|e| start + e) else {
            break;
        };
        let inner = text[start + 3..end].to_owned();
        for item in inner.split(',') {
            let item = item.trim().trim_start_matches('{');
            if !item.is_empty() && item != "self" {
                out.extend(absolute(&format!("{head}::{item}")));
            } else if item == "self" {
                out.extend(absolute(&head));
            }
        }
        text.replace_range(head_start..=end, " ");
    }
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("crate::") || word.starts_with("super::") || word.starts_with("self::")
        {
            out.extend(absolute(word.trim_end_matches(':')));
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a file.
fn target(path: &str, known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (0..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| known.contains_key(m))
}

fn graph() -> (
    BTreeMap<String, PathBuf>,
    BTreeMap<String, BTreeSet<String>>,
) {
    graph_of(&src())
}

/// The import graph of the crate whose sources are in `dir`.
fn graph_of(
    dir: &Path,
) -> (
    BTreeMap<String, PathBuf>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut known = BTreeMap::new();
    modules(dir, "", &mut known);
    known.remove("tests_support");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &known {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let code = production_code(&text);
        let deps = edges.entry(module.clone()).or_default();
        for r in references(module, &code) {
            if let Some(t) = target(&r, &known)
                && t != *module
            {
                deps.insert(t);
            }
        }
    }
    (known, edges)
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The rooms: the folders under `src/` with a `mod.rs`, by name.
fn rooms() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("mod.rs").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The type a room's state is: its name, capitalised.
fn state_type(room: &str) -> String {
    let mut c = room.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// What each module is, from where it lives and what it uses.
#[derive(Debug, PartialEq)]
enum Layer {
    /// A room's `mod.rs`: its state, endpoints and wiring.
    Room,
    /// Uses a room's `mod.rs`.
    Handler,
    /// In a room, and uses no room's `mod.rs`.
    Engine,
    /// A root file other than `lib` and `startup`.
    Ground,
    /// `lib` and `startup`.
    Top,
}

fn layers(
    known: &BTreeMap<String, PathBuf>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, Layer> {
    let rooms = rooms();
    known
        .keys()
        .map(|m| {
            let room = m.split("::").next().unwrap_or_default();
            let layer = if rooms.iter().any(|r| r == m) {
                Layer::Room
            } else if m.is_empty() || m == "startup" {
                Layer::Top
            } else if !rooms.iter().any(|r| r == room) {
                Layer::Ground
            } else if edges[m].iter().any(|d| rooms.contains(d)) {
                Layer::Handler
            } else {
                Layer::Engine
            };
            (m.clone(), layer)
        })
        .collect()
}

#[test]
fn the_reference_finder_sees_what_a_file_imports() {
    let code = "use crate::state::{Gateway, Live};\nuse super::pool::{self, Lease};\nfn f() { crate::clock::mono_ms(); }\n";
    let mut refs = references("upstream::client", code);
    refs.sort();
    assert_eq!(
        refs,
        [
            "clock::mono_ms",
            "state::Gateway",
            "state::Live",
            "upstream::pool",
            "upstream::pool::Lease"
        ]
    );
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&edges), [["a", "b"]]);
    assert_eq!(
        production_code("a\n#[cfg(test)]\nmod x;\nb\n#[cfg(test)]\nmod tests {\nc\n}\n"),
        "a\nb\n"
    );
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let (known, edges) = graph();
    assert!(known.len() > 30, "found {} modules", known.len());
    assert!(
        edges["traffic::proxy"].contains("traffic"),
        "the scan sees imports"
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn the_shared_crate_has_no_import_circle_either() {
    let common = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/src");
    let (known, edges) = graph_of(&common);
    assert!(known.contains_key("telemetry") && known.contains_key("http"));
    assert!(edges["http"].contains("telemetry"), "the scan sees imports");
    let found = cycles(&edges);
    assert!(found.is_empty(), "import circles in common: {found:?}");
}

#[test]
fn every_room_has_its_state_and_mounts_its_endpoints() {
    let rooms = rooms();
    assert_eq!(rooms, ["identity", "ops", "traffic"]);
    let startup = std::fs::read_to_string(src().join("startup.rs")).unwrap();
    for room in &rooms {
        let text = std::fs::read_to_string(src().join(room).join("mod.rs")).unwrap();
        let code = production_code(&text);
        let state = state_type(room);
        assert!(
            code.contains(&format!("pub struct {state} {{")),
            "{room}/mod.rs declares no `pub struct {state}`"
        );
        assert!(
            startup.contains(&format!("web::Data::new({state}")),
            "startup does not build the {room} room as its own app data"
        );
        // A room with endpoints mounts them from the list the edge asks.
        if code.contains("pub const ENDPOINTS") {
            assert!(
                code.contains("mount(cfg, ENDPOINTS)"),
                "{room} mounts by hand"
            );
            assert!(
                startup.contains(&format!("{room}::ENDPOINTS")),
                "the edge does not know the {room} room's endpoints"
            );
            assert!(
                startup.contains(&format!(".configure({room}::configure)"))
                    || startup.contains(&format!("{room}::configure(c,")),
                "startup does not mount the {room} room"
            );
        }
    }
}

#[test]
fn engines_and_the_ground_floor_never_import_handlers_or_state() {
    let (known, edges) = graph();
    let layers = layers(&known, &edges);
    let count = |l: Layer| layers.values().filter(|v| **v == l).count();
    assert!(count(Layer::Engine) > 20, "{layers:?}");
    assert!(count(Layer::Handler) > 10, "{layers:?}");
    assert_eq!(layers["identity::tokens"], Layer::Engine);
    assert_eq!(layers["identity::login"], Layer::Handler);
    for (module, layer) in &layers {
        if !matches!(layer, Layer::Engine | Layer::Ground) {
            continue;
        }
        for dep in &edges[module] {
            let forbidden = match layers.get(dep) {
                Some(Layer::Handler) => "the handler",
                Some(Layer::Room) => "the room state",
                Some(Layer::Top) => "the crate root or startup",
                _ => continue,
            };
            panic!("{layer:?} {module} imports {forbidden} `{dep}`");
        }
    }
}

#[test]
fn only_the_upstream_client_speaks_awc_and_decides_retries() {
    let (known, _) = graph();
    for (module, path) in &known {
        let code = production_code(&std::fs::read_to_string(path).unwrap_or_default());
        if !module.starts_with("traffic::upstream::client") {
            assert!(
                !code.contains("awc::"),
                "{module} calls awc directly; go through upstream::client"
            );
            assert!(
                !code.contains("SendRequestError"),
                "{module} inspects send errors; retries are decided in upstream::client"
            );
        }
        assert!(
            !code.contains("too_many_arguments"),
            "{module} allows too many arguments"
        );
    }
}
