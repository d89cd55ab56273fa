//! The merge: the public document as a pure function of the gateway's own
//! document, the route table, the composed routes and the services'
//! documents.
//!
//! Merge rules:
//! - a service operation appears once per route that reaches it with a method
//!   the route serves, at `prefix + rest` where the service path is
//!   `rewrite + rest`; paths no route reaches (`/internal/*`, probes) never
//!   appear, nor does anything a composed route shadows;
//! - the services' proof scheme is replaced by the bearer scheme; each
//!   operation says who may call it (`x-required-roles` and the description);
//! - the gateway's own failures are added: 401 (and 403 for role rules) on
//!   protected operations, 413 where a body is sent, 429 on rate-limited
//!   routes, 502/503/504 everywhere;
//! - a schema that two documents define differently is renamed
//!   `<Service><Name>` in the later one (identical ones are shared), and an
//!   operationId already taken gets the service's name in front.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use actix_web::http::Method;
use serde_json::{Map, Value, json};

use super::protection::{
    append_description, gateway_responses, own_access, problem_content, protect,
};
use super::schema_names::{SCHEMA_REF, pascal, rename_refs, schema_refs};
use crate::traffic::compose::table::{Composed, ComposedTable, PartConfig};
use crate::traffic::routes::{Route, RouteTable, Rule};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// A service path the gateway never publishes, whatever the routes say.
fn internal_only(path: &str, op: &Map<String, Value>) -> bool {
    path == "/internal"
        || path.starts_with("/internal/")
        || matches!(path, "/healthz" | "/readyz" | "/openapi.json")
        || op.get("x-internal").is_some_and(|v| v == &json!(true))
}

/// A part of a composed answer that failed.
fn part_error_schema() -> Value {
    json!({
        "type": "object",
        "description": "A part that failed: its status (when there was one), a reason, and the part's own error body when it answered one.",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["detail"],
            "properties": {
                "detail": {"type": "string"},
                "status": {"type": "integer"},
                "body": {}
            }
        }}
    })
}

/// The table holds its own copies of the routes: same configuration, same route.
fn same_route(a: &Route, b: &Route) -> bool {
    a.prefix == b.prefix
        && a.host == b.host
        && a.methods == b.methods
        && a.upstream == b.upstream
        && a.rewrite == b.rewrite
}

fn method_of(m: &str) -> Option<Method> {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()
}

/// The document being built.
struct Merged {
    paths: BTreeMap<String, Map<String, Value>>,
    schemas: Map<String, Value>,
    op_ids: HashSet<String>,
    tags: Vec<Value>,
    /// Per service: its schema names as published.
    renames: BTreeMap<String, HashMap<String, String>>,
}

impl Merged {
    fn unique_op_id(
        &mut self,
        service: &str,
        id: Option<&str>,
        path: &str,
        method: &str,
    ) -> String {
        let base = id.map(str::to_owned).unwrap_or_else(|| {
            format!(
                "{method}_{}",
                path.trim_matches('/')
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            )
        });
        let mut candidate = base.clone();
        if self.op_ids.contains(&candidate) {
            candidate = format!("{service}_{base}");
        }
        let mut n = 2;
        while self.op_ids.contains(&candidate) {
            candidate = format!("{service}_{base}_{n}");
            n += 1;
        }
        self.op_ids.insert(candidate.clone());
        candidate
    }

    fn add_tags(&mut self, op: &Map<String, Value>, doc: &Value) {
        let Some(tags) = op.get("tags").and_then(Value::as_array) else {
            return;
        };
        for t in tags.iter().filter_map(Value::as_str) {
            if self.tags.iter().any(|x| x["name"] == t) {
                continue;
            }
            let described = doc["tags"]
                .as_array()
                .and_then(|all| all.iter().find(|x| x["name"] == t))
                .cloned()
                .unwrap_or_else(|| json!({"name": t}));
            self.tags.push(described);
        }
    }

    /// Bring in the schemas `wanted` needs from `doc`, deciding their
    /// published names; returns the service's rename map.
    fn import_schemas(
        &mut self,
        service: &str,
        doc: &Value,
        wanted: BTreeSet<String>,
    ) -> HashMap<String, String> {
        let empty = Map::new();
        let theirs = doc["components"]["schemas"].as_object().unwrap_or(&empty);
        // The closure of what the operations reference.
        let mut needed = BTreeSet::new();
        let mut todo: Vec<String> = wanted.into_iter().collect();
        while let Some(n) = todo.pop() {
            if !theirs.contains_key(&n) || !needed.insert(n.clone()) {
                continue;
            }
            let mut refs = BTreeSet::new();
            schema_refs(&theirs[&n], &mut refs);
            todo.extend(refs);
        }
        // Shared when identical to what is already published, and so is
        // everything it references; renamed when the name is taken.
        let mut shared: BTreeSet<String> = needed
            .iter()
            .filter(|n| self.schemas.get(*n) == theirs.get(*n))
            .cloned()
            .collect();
        loop {
            let before = shared.len();
            let snapshot = shared.clone();
            shared.retain(|n| {
                let mut refs = BTreeSet::new();
                schema_refs(&theirs[n], &mut refs);
                refs.iter()
                    .all(|r| snapshot.contains(r) || !self.schemas.contains_key(r))
            });
            if shared.len() == before {
                break;
            }
        }
        let mut names = HashMap::new();
        for n in &needed {
            if shared.contains(n) {
                continue;
            }
            let mut name = n.clone();
            if self.schemas.contains_key(&name) {
                name = format!("{}{n}", pascal(service));
                let mut i = 2;
                while self.schemas.contains_key(&name) {
                    name = format!("{}{n}{i}", pascal(service));
                    i += 1;
                }
            }
            // Reserve the name now so later ones in this service avoid it.
            self.schemas.insert(name.clone(), Value::Null);
            names.insert(n.clone(), name);
        }
        for (old, new) in &names {
            let mut schema = theirs[old].clone();
            rename_refs(&mut schema, &names);
            self.schemas.insert(new.clone(), schema);
        }
        names
    }
}

/// Build the public document from the gateway's own description, the route
/// table and the services' documents (keyed by upstream name).
pub fn merge(
    own: &Value,
    routes: &RouteTable,
    composed: &ComposedTable,
    services: &BTreeMap<String, Arc<Value>>,
) -> Value {
    let mut m = Merged {
        paths: BTreeMap::new(),
        schemas: own["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        op_ids: HashSet::new(),
        tags: own["tags"].as_array().cloned().unwrap_or_default(),
        renames: BTreeMap::new(),
    };
    m.schemas
        .insert("ComposedPartError".into(), part_error_schema());
    add_own(&mut m, own);
    // Every service operation a route reaches.
    for (service, doc) in services {
        let Some(paths) = doc["paths"].as_object() else {
            continue;
        };
        let picked = reached_operations(service, paths, routes, composed);
        add_service(&mut m, service, doc, picked);
    }
    add_composed(&mut m, composed, services);
    document(m, own)
}

/// Add the gateway's own operations, each saying who may call it.
fn add_own(m: &mut Merged, own: &Value) {
    let Some(paths) = own["paths"].as_object() else {
        return;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        let mut out = Map::new();
        for (method, op) in item {
            let Some(mut op) = op.as_object().cloned() else {
                continue;
            };
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                m.op_ids.insert(id.to_owned());
            }
            own_access(&mut op);
            out.insert(method.clone(), Value::Object(op));
        }
        m.paths.insert(path.clone(), out);
    }
}

/// A service's operations as the routes publish them: (public path, method, operation).
fn reached_operations(
    service: &str,
    paths: &Map<String, Value>,
    routes: &RouteTable,
    composed: &ComposedTable,
) -> Vec<(String, String, Map<String, Value>)> {
    let mut picked = Vec::new();
    for (service_path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        let shared_params = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(method).and_then(Value::as_object) else {
                continue;
            };
            if internal_only(service_path, op) {
                continue;
            }
            let Some(verb) = method_of(method) else {
                continue;
            };
            for route in routes.routes().iter().filter(|r| r.upstream == service) {
                let Some(public) = route.public_path(service_path) else {
                    continue;
                };
                let Some(rule) = serving_rule(routes, composed, route, &verb, &public) else {
                    continue;
                };
                let op = published_op(op, shared_params, route, rule);
                picked.push((public, method.to_owned(), op));
            }
        }
    }
    picked
}

/// The rule `route` serves `verb public` under; `None`: a composed route or another route has it.
fn serving_rule<'a>(
    routes: &RouteTable,
    composed: &ComposedTable,
    route: &'a Route,
    verb: &Method,
    public: &str,
) -> Option<&'a Rule> {
    if composed.get(public).is_some() {
        return None;
    }
    let host = route.host.as_deref().unwrap_or("");
    let reached = routes
        .find(|| host.to_owned(), verb, public)
        .is_ok_and(|r| same_route(r, route));
    route.rule_for(verb).filter(|_| reached)
}

/// A service operation as `route` publishes it: shared parameters, access, the gateway's errors.
fn published_op(
    op: &Map<String, Value>,
    shared_params: Option<&Value>,
    route: &Route,
    rule: &Rule,
) -> Map<String, Value> {
    let mut op = op.clone();
    if let Some(Value::Array(params)) = shared_params {
        let list = op.entry("parameters").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.extend(params.iter().cloned());
        }
    }
    let has_body = op.contains_key("requestBody");
    protect(&mut op, rule, has_body, route.rate_limit.is_some(), true);
    if let Some(h) = &route.host {
        append_description(&mut op, &format!("Served for the host `{h}` only."));
    }
    op
}

/// Add a service's picked operations with the schemas they need, unique operationIds and tags.
fn add_service(
    m: &mut Merged,
    service: &str,
    doc: &Value,
    picked: Vec<(String, String, Map<String, Value>)>,
) {
    let mut wanted = BTreeSet::new();
    for v in picked.iter().flat_map(|(_, _, op)| op.values()) {
        schema_refs(v, &mut wanted);
    }
    let names = m.import_schemas(service, doc, wanted);
    for (public, method, mut op) in picked {
        let id = m.unique_op_id(
            service,
            op.get("operationId").and_then(Value::as_str),
            &public,
            &method,
        );
        op.insert("operationId".into(), json!(id));
        let mut v = Value::Object(op);
        rename_refs(&mut v, &names);
        if let Value::Object(op) = v {
            m.add_tags(&op, doc);
            m.paths
                .entry(public)
                .or_default()
                .insert(method, Value::Object(op));
        }
    }
    m.renames.insert(service.to_owned(), names);
}

/// Add the composed routes' operations, in path order.
fn add_composed(m: &mut Merged, composed: &ComposedTable, services: &BTreeMap<String, Arc<Value>>) {
    let mut all: Vec<&Composed> = composed.all().collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    for c in all {
        let op = composed_op(m, c, services);
        m.paths
            .entry(c.path.clone())
            .or_default()
            .insert(c.method.as_str().to_ascii_lowercase(), Value::Object(op));
    }
}

/// The finished document: only schemas actually published, the gateway's responses, sorted tags.
fn document(mut m: Merged, own: &Value) -> Value {
    m.schemas.retain(|_, v| !v.is_null());
    let mut components = own["components"].as_object().cloned().unwrap_or_default();
    components.insert("schemas".into(), Value::Object(m.schemas));
    components.insert("responses".into(), gateway_responses());
    let mut tags = m.tags;
    tags.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({
        "openapi": "3.1.0",
        "info": own["info"],
        "paths": m.paths,
        "components": components,
        "tags": tags,
    })
}

/// The service operation a composed part calls, with its schemas as published.
fn part_op(
    m: &Merged,
    services: &BTreeMap<String, Arc<Value>>,
    upstream: &str,
    path: &str,
    method: &Method,
) -> Option<Value> {
    let path = path.split('?').next().unwrap_or(path);
    let op = services
        .get(upstream)?
        .get("paths")?
        .get(path)?
        .get(method.as_str().to_ascii_lowercase())?
        .clone();
    let mut op = op;
    if let Some(names) = m.renames.get(upstream) {
        rename_refs(&mut op, names);
    }
    Some(op)
}

/// The success schema of an operation (200 or 201, JSON), if it has one
/// whose schemas were published.
fn success_schema(m: &Merged, op: &Value) -> Value {
    let schema = ["200", "201"]
        .iter()
        .find_map(|c| op["responses"][c]["content"]["application/json"].get("schema"))
        .cloned();
    match schema {
        Some(s) => {
            let mut refs = BTreeSet::new();
            schema_refs(&s, &mut refs);
            if refs.iter().all(|r| m.schemas.contains_key(r)) {
                s
            } else {
                json!({})
            }
        }
        None => json!({}),
    }
}

/// A composed answer's entry for one part: what the part answers, or the part's error.
fn part_entry(schema: Value) -> Value {
    json!({"oneOf": [schema, {"$ref": format!("{SCHEMA_REF}ComposedPartError")}]})
}

/// What a composed operation answers and says, as [`composed_op`] assembles it.
struct Shape {
    summary: String,
    description: String,
    /// The answer's named properties (`status` first), and the required ones.
    properties: Map<String, Value>,
    required: Vec<Value>,
    /// The answer's `additionalProperties`: a fan-out's entries are keyed by target name.
    additional: Value,
    /// The fanned-out operation's own 4xx, answered when every target gives it.
    passthrough: Map<String, Value>,
    request_body: Option<Value>,
}

/// The `status` property every composed answer has, as a start of its properties.
fn status_property() -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert(
        "status".into(),
        json!({"type": "string", "enum": ["success", "partial"],
               "description": "`success` when every part answered, `partial` when some failed"}),
    );
    properties
}

/// The shape of a fan-out: the operation `p` names, called on every target of its upstream.
fn fan_out_shape(
    m: &Merged,
    c: &Composed,
    p: &PartConfig,
    services: &BTreeMap<String, Arc<Value>>,
) -> Shape {
    let called = part_op(m, services, &p.upstream, &p.path, &c.method);
    let mut passthrough = Map::new();
    // Every target refusing the input alike answers that error.
    if let Some(rs) = called.as_ref().and_then(|o| o["responses"].as_object()) {
        for (code, r) in rs {
            if code.starts_with('4') && code != "401" && code != "403" {
                passthrough.insert(code.clone(), r.clone());
            }
        }
    }
    let request_body = called
        .as_ref()
        .and_then(|o| o.get("requestBody"))
        .map(|body| {
            // Only schemas that are published may be referenced.
            let mut refs = BTreeSet::new();
            schema_refs(body, &mut refs);
            if refs.iter().all(|r| m.schemas.contains_key(r)) {
                body.clone()
            } else {
                json!({"content": {"application/json": {"schema": {}}}})
            }
        });
    let schema = called
        .as_ref()
        .map(|o| success_schema(m, o))
        .unwrap_or_else(|| json!({}));
    Shape {
        summary: format!("Call every `{}` target at once", p.upstream),
        description: format!(
            "Sends the request to `{} {}` on every target of the `{}` upstream concurrently and answers one object keyed by target name, plus an overall `status`. A target that fails (or exceeds {} ms) becomes an error object. When every target refuses the input with the same client error, that error is the answer; when all fail otherwise, 502.",
            c.method,
            p.path,
            p.upstream,
            c.timeout.as_millis()
        ),
        properties: status_property(),
        required: vec![json!("status")],
        additional: part_entry(schema),
        passthrough,
        request_body,
    }
}

/// The shape of named parts: one entry per part, each its operation's success schema.
fn parts_shape(m: &Merged, c: &Composed, services: &BTreeMap<String, Arc<Value>>) -> Shape {
    let mut properties = status_property();
    let mut required = vec![json!("status")];
    for (name, p) in &c.parts {
        let schema = part_op(m, services, &p.upstream, &p.path, &c.method)
            .map(|o| success_schema(m, &o))
            .unwrap_or_else(|| json!({}));
        properties.insert(name.clone(), part_entry(schema));
        required.push(json!(name));
    }
    let names: Vec<&str> = c.parts.iter().map(|(n, _)| n.as_str()).collect();
    Shape {
        summary: format!("{} in one call", names.join(", ")),
        description: format!(
            "Calls {} concurrently (each within {} ms) and answers one object keyed by part name, plus an overall `status`. A part that fails becomes an error object; when every part fails, 502.",
            c.parts
                .iter()
                .map(|(n, p)| format!("`{n}` (`{} {}` on `{}`)", c.method, p.path, p.upstream))
                .collect::<Vec<_>>()
                .join(", "),
            c.timeout.as_millis()
        ),
        properties,
        required,
        additional: json!(false),
        passthrough: Map::new(),
        request_body: None,
    }
}

/// A composed route's operation: its answer's shape, responses, access and the gateway's errors.
fn composed_op(
    m: &mut Merged,
    c: &Composed,
    services: &BTreeMap<String, Arc<Value>>,
) -> Map<String, Value> {
    let shape = match &c.fan_out {
        Some(p) => fan_out_shape(m, c, p, services),
        None => parts_shape(m, c, services),
    };
    let mut op = Map::new();
    if let Some(body) = shape.request_body {
        op.insert("requestBody".into(), body);
    }
    let path_slug: String = c
        .path
        .trim_matches('/')
        .replace(|ch: char| !ch.is_ascii_alphanumeric(), "_");
    let id = m.unique_op_id(
        "composed",
        Some(&format!(
            "composed_{}_{path_slug}",
            c.method.as_str().to_ascii_lowercase()
        )),
        &c.path,
        c.method.as_str(),
    );
    let mut responses = shape.passthrough;
    responses.insert(
        "200".into(),
        json!({"description": "One entry per part, and the overall status",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": shape.required,
            "properties": shape.properties,
            "additionalProperties": shape.additional,
        }}}}),
    );
    responses.insert(
        "502".into(),
        json!({"description": "Every part failed (the reasons are in `detail`)",
               "content": problem_content()}),
    );
    op.insert("tags".into(), json!(["composed"]));
    op.insert("summary".into(), json!(shape.summary));
    op.insert("operationId".into(), json!(id));
    op.insert("responses".into(), Value::Object(responses));
    op.insert("description".into(), json!(shape.description));
    let has_body = op.contains_key("requestBody");
    protect(&mut op, &c.rule, has_body, c.rate_limit.is_some(), false);
    op
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ops::openapi::handlers::own_document;

    fn tables(routes: Value, composed: Value) -> (RouteTable, ComposedTable) {
        let routes: Vec<crate::traffic::routes::RouteConfig> =
            serde_json::from_value(routes).unwrap();
        let composed: Vec<crate::traffic::compose::table::ComposedConfig> =
            serde_json::from_value(composed).unwrap();
        (
            RouteTable::new(&routes, |_| true).unwrap(),
            ComposedTable::new(&composed, |_| true).unwrap(),
        )
    }

    fn op(id: &str, schema: &str) -> Value {
        json!({"operationId": id, "tags": ["t"], "security": [{"gateway_proof": []}],
               "responses": {
                   "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("{SCHEMA_REF}{schema}")}}}},
                   "401": {"description": "no proof"}}})
    }

    /// A service with `/items` and `/items/{id}` (GET, POST), an internal
    /// path and a probe; `Item` is defined by `item_schema`.
    fn service(item_schema: Value) -> Arc<Value> {
        Arc::new(json!({
            "openapi": "3.1.0",
            "paths": {
                "/items": {"get": op("list_items", "Item"), "post": {
                    "operationId": "create_item",
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewItem"}}}},
                    "responses": {"201": {"description": "created"}, "413": {"description": "Body over 64 KiB"}}}},
                "/items/{id}": {"get": op("get_item", "Item")},
                "/internal/items": {"get": op("internal_items", "Secret")},
                "/healthz": {"get": op("healthz", "Item")},
            },
            "components": {"schemas": {
                "Item": item_schema,
                "NewItem": {"type": "object", "properties": {"name": {"type": "string"}}},
                "Problem": {"type": "object"},
                "Secret": {"type": "object", "properties": {"hash": {"type": "string"}}},
            }},
            "tags": [{"name": "t", "description": "things"}]
        }))
    }

    fn ops(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (p, item) in doc["paths"].as_object().unwrap() {
            for (m, o) in item.as_object().unwrap() {
                out.push((p.clone(), m.clone(), o.clone()));
            }
        }
        out
    }

    #[test]
    fn service_operations_appear_at_their_public_paths_with_access_and_gateway_errors() {
        let (routes, composed) = tables(
            json!([
                {"prefix": "/api/items", "upstream": "a", "rewrite": "/items",
                 "access": {"GET": "authenticated", "POST": ["editor", "admin"]},
                 "rate_limit": {"rate": "5/s", "burst": 5, "by": "user"}},
            ]),
            json!([]),
        );
        let services = BTreeMap::from([("a".to_owned(), service(json!({"type": "object"})))]);
        let doc = merge(&own_document(), &routes, &composed, &services);
        let list = &doc["paths"]["/api/items"]["get"];
        assert_eq!(list["security"], json!([{"bearer": []}]));
        assert_eq!(list["x-required-roles"], json!([]));
        assert_eq!(
            list["responses"]["401"]["$ref"],
            "#/components/responses/GatewayUnauthorized"
        );
        assert!(
            list["responses"].get("403").is_none(),
            "no role rule, no gateway 403"
        );
        for code in ["429", "502", "503", "504"] {
            assert!(list["responses"].get(code).is_some(), "{code}");
        }
        let create = &doc["paths"]["/api/items"]["post"];
        assert_eq!(create["x-required-roles"], json!(["editor", "admin"]));
        assert!(
            create["description"]
                .as_str()
                .unwrap()
                .contains("`editor` or `admin`")
        );
        assert!(create["responses"].get("403").is_some());
        // The service's own 413 is kept and says the gateway may answer it too.
        let d413 = create["responses"]["413"]["description"].as_str().unwrap();
        assert!(d413.starts_with("Body over 64 KiB; or:"), "{d413}");
        assert_eq!(
            doc["paths"]["/api/items/{id}"]["get"]["operationId"],
            "get_item"
        );
        // Never: internal paths, probes, the proof scheme, unreachable schemas.
        let text = doc.to_string();
        assert!(!text.contains("internal"), "{text}");
        assert!(!text.contains("healthz"));
        assert!(!text.contains("gateway_proof"));
        assert!(doc["components"]["schemas"].get("Secret").is_none());
        assert!(doc["components"]["schemas"].get("NewItem").is_some());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn scoped_operations_name_their_scopes_in_the_security_requirement() {
        let (routes, composed) = tables(
            json!([{"prefix": "/api/items", "upstream": "a", "rewrite": "/items",
                    "access": {"GET": {"scopes": ["items:read"]},
                               "POST": {"scopes": ["items:write"], "roles": ["admin"]}}}]),
            json!([]),
        );
        let services = BTreeMap::from([("a".to_owned(), service(json!({"type": "object"})))]);
        let doc = merge(&own_document(), &routes, &composed, &services);
        let list = &doc["paths"]["/api/items"]["get"];
        assert_eq!(list["security"], json!([{"bearer": ["items:read"]}]));
        assert_eq!(list["x-required-scopes"], json!(["items:read"]));
        assert_eq!(list["x-required-roles"], json!([]));
        assert!(
            list["responses"].get("403").is_some(),
            "a missing scope is 403"
        );
        assert!(
            list["description"]
                .as_str()
                .unwrap()
                .contains("`items:read`")
        );
        let create = &doc["paths"]["/api/items"]["post"];
        assert_eq!(create["security"], json!([{"bearer": ["items:write"]}]));
        assert_eq!(create["x-required-roles"], json!(["admin"]));
    }

    #[test]
    fn a_route_to_the_whole_service_still_hides_internal_paths() {
        let (routes, composed) = tables(
            json!([{"prefix": "/a", "upstream": "a", "rewrite": "/", "access": "public"}]),
            json!([]),
        );
        let services = BTreeMap::from([("a".to_owned(), service(json!({"type": "object"})))]);
        let doc = merge(&own_document(), &routes, &composed, &services);
        let paths: Vec<String> = ops(&doc).into_iter().map(|(p, _, _)| p).collect();
        assert!(paths.contains(&"/a/items/{id}".to_owned()), "{paths:?}");
        assert!(
            paths
                .iter()
                .all(|p| !p.contains("internal") && !p.contains("healthz"))
        );
        // Public: no security, no gateway 401, the service's own 401 stays.
        let get = &doc["paths"]["/a/items"]["get"];
        assert!(get.get("security").is_none());
        assert!(get.get("x-required-roles").is_none());
        assert_eq!(get["responses"]["401"]["description"], "no proof");
    }

    #[test]
    fn colliding_schemas_are_renamed_identical_ones_shared_and_operation_ids_unique() {
        let (routes, composed) = tables(
            json!([
                {"prefix": "/api/a", "upstream": "a", "rewrite": "/items", "access": "authenticated"},
                {"prefix": "/api/b", "upstream": "b-svc", "rewrite": "/items", "access": "authenticated"},
            ]),
            json!([]),
        );
        let services = BTreeMap::from([
            (
                "a".to_owned(),
                service(json!({"type": "object", "title": "A's item"})),
            ),
            (
                "b-svc".to_owned(),
                service(json!({"type": "object", "title": "B's item"})),
            ),
        ]);
        let doc = merge(&own_document(), &routes, &composed, &services);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert_eq!(schemas["Item"]["title"], "A's item");
        assert_eq!(schemas["BSvcItem"]["title"], "B's item");
        // NewItem is the same in both: published once.
        assert!(schemas.contains_key("NewItem") && !schemas.contains_key("BSvcNewItem"));
        assert_eq!(
            doc["paths"]["/api/b/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/BSvcItem"
        );
        let mut ids: Vec<String> = ops(&doc)
            .iter()
            .map(|(_, _, o)| o["operationId"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.contains(&"b-svc_get_item".to_owned()), "{ids:?}");
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operationIds collide: {ids:?}");
        // Every reference resolves.
        let mut refs = BTreeSet::new();
        schema_refs(&doc, &mut refs);
        assert!(refs.iter().all(|r| schemas.contains_key(r)), "{refs:?}");
    }

    #[test]
    fn only_the_route_that_really_serves_a_path_publishes_it() {
        let (routes, composed) = tables(
            json!([
                {"prefix": "/api", "upstream": "a", "rewrite": "/", "access": "public"},
                // Longer prefix: /api/items goes to b, not a.
                {"prefix": "/api/items", "upstream": "b", "rewrite": "/items",
                 "methods": ["GET"], "access": ["admin"]},
            ]),
            json!([{"path": "/api/items/summary", "method": "GET", "access": "authenticated",
                    "parts": {"x": {"upstream": "a", "path": "/items"}}}]),
        );
        let svc = service(json!({"type": "object"}));
        let services = BTreeMap::from([("a".to_owned(), svc.clone()), ("b".to_owned(), svc)]);
        let doc = merge(&own_document(), &routes, &composed, &services);
        let get = &doc["paths"]["/api/items"]["get"];
        assert_eq!(get["x-required-roles"], json!(["admin"]), "{get}");
        // b's route serves GET only, so POST /api/items falls through to
        // a's route (as the router does) and is public.
        let post = &doc["paths"]["/api/items"]["post"];
        assert!(post.get("security").is_none(), "{post}");
        // The composed route has its own operation, with the part's schema.
        let c = &doc["paths"]["/api/items/summary"]["get"];
        assert_eq!(c["tags"], json!(["composed"]));
        let props = &c["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
        assert_eq!(props["x"]["oneOf"][0]["$ref"], "#/components/schemas/Item");
        assert_eq!(props["status"]["enum"], json!(["success", "partial"]));
    }
}
