//! What the gateway adds to each operation it publishes: who may call it
//! (the bearer scheme with the scopes it needs, `x-required-roles`, a note
//! in the description) and the failures the gateway answers itself (401,
//! 403, 413, 429, 502 to 504, as shared responses). Apart from the merge so
//! that what a published operation promises about access reads in one place.

use serde_json::{Map, Value, json};

use super::schema_names::SCHEMA_REF;
use crate::traffic::routes::Rule;

/// The errors the gateway adds: (status, component name, description).
const GATEWAY_ERRORS: [(&str, &str, &str); 7] = [
    (
        "401",
        "GatewayUnauthorized",
        "No valid access token: missing, malformed, expired, revoked or signed by an unknown key (answered by the gateway, with `WWW-Authenticate: Bearer`)",
    ),
    (
        "403",
        "GatewayForbidden",
        "The access token lacks a role this operation requires (answered by the gateway)",
    ),
    (
        "413",
        "GatewayPayloadTooLarge",
        "The request body exceeds the route's limit (answered by the gateway)",
    ),
    (
        "429",
        "GatewayTooManyRequests",
        "The route's rate limit is reached; retry after `Retry-After` seconds (answered by the gateway)",
    ),
    (
        "502",
        "GatewayBadGateway",
        "The upstream service refused the connection or sent a broken answer (answered by the gateway)",
    ),
    (
        "503",
        "GatewayUnavailable",
        "The upstream service has no healthy target (answered by the gateway)",
    ),
    (
        "504",
        "GatewayTimeout",
        "The upstream service did not answer in time (answered by the gateway)",
    ),
];

fn gateway_error(code: &str) -> (&'static str, &'static str) {
    GATEWAY_ERRORS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, n, d)| (*n, *d))
        .unwrap_or(("GatewayBadGateway", "Bad gateway"))
}

pub(super) fn problem_content() -> Value {
    json!({"application/problem+json": {"schema": {"$ref": format!("{SCHEMA_REF}Problem")}}})
}

pub(super) fn gateway_responses() -> Value {
    let mut out = Map::new();
    for (code, name, description) in GATEWAY_ERRORS {
        let mut r = json!({"description": description, "content": problem_content()});
        match code {
            "401" => {
                r["headers"] = json!({"WWW-Authenticate": {
                    "description": "`Bearer realm=\"gatehouse\", error=\"invalid_token\"`",
                    "schema": {"type": "string"}}});
            }
            "429" | "503" => {
                r["headers"] = json!({"Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"}}});
                if code == "429" {
                    r["headers"]["RateLimit"] = json!({
                        "description": "Remaining quota and reset (`limit=…, remaining=…, reset=…`)",
                        "schema": {"type": "string"}});
                    r["headers"]["RateLimit-Policy"] = json!({
                        "description": "The route's policy (`<burst>;w=<window>`)",
                        "schema": {"type": "string"}});
                }
            }
            _ => {}
        }
        out.insert(name.to_owned(), r);
    }
    Value::Object(out)
}

fn access_note(rule: &Rule) -> String {
    match rule {
        Rule::Public => "**Access:** public; no token needed.".to_owned(),
        Rule::Authenticated => "**Access:** any signed-in caller (bearer token).".to_owned(),
        Rule::AnyRole(roles) => format!(
            "**Access:** bearer token with the role {}.",
            roles
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Rule::Grant {
            roles,
            scopes,
            mfa,
            session,
        } => {
            let mut needs = Vec::new();
            if !scopes.is_empty() {
                needs.push(format!(
                    "the scope {}",
                    scopes
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ));
            }
            if !roles.is_empty() {
                needs.push(format!(
                    "the role {}",
                    roles
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
            if *mfa {
                needs.push(
                    "a login with a second factor (`amr` with `otp`; else 403 `insufficient_user_authentication`)"
                        .to_owned(),
                );
            }
            let credential = if *session {
                "bearer token or browser session (the login page's cookie; unsafe methods need the same-site checks)"
            } else {
                "bearer token"
            };
            if needs.is_empty() {
                format!("**Access:** any signed-in caller ({credential}).")
            } else {
                format!("**Access:** {credential} with {}.", needs.join(" and "))
            }
        }
    }
}

fn required_roles(rule: &Rule) -> Option<Value> {
    match rule {
        Rule::Public => None,
        Rule::Authenticated => Some(json!([])),
        Rule::AnyRole(roles) | Rule::Grant { roles, .. } => Some(json!(roles)),
    }
}

pub(super) fn append_description(op: &mut Map<String, Value>, note: &str) {
    let text = match op.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
        _ => note.to_owned(),
    };
    op.insert("description".into(), json!(text));
}

/// Add one of the gateway's errors, or fold it into the service's own
/// answer with the same status.
fn add_gateway_error(responses: &mut Map<String, Value>, code: &str) {
    let (name, description) = gateway_error(code);
    match responses.get_mut(code) {
        Some(Value::Object(existing)) if !existing.contains_key("$ref") => {
            let own = existing
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            existing.insert(
                "description".into(),
                json!(format!("{own}; or: {description}")),
            );
        }
        Some(_) => {}
        None => {
            responses.insert(
                code.to_owned(),
                json!({"$ref": format!("#/components/responses/{name}")}),
            );
        }
    }
}

/// Security, roles, description and the gateway's errors for an operation
/// that passes `rule`.
pub(super) fn protect(
    op: &mut Map<String, Value>,
    rule: &Rule,
    has_body: bool,
    rate_limited: bool,
    proxied: bool,
) {
    op.remove("security");
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut responses = responses;
    if let Some(roles) = required_roles(rule) {
        // OpenAPI's scopes of an HTTP bearer scheme: what the token must carry.
        let mut security = vec![json!({"bearer": rule.scopes()})];
        if rule.admits_session() {
            security.push(json!({"session": []}));
        }
        op.insert("security".into(), Value::Array(security));
        op.insert("x-required-roles".into(), roles);
        if !rule.scopes().is_empty() {
            op.insert("x-required-scopes".into(), json!(rule.scopes()));
        }
        // The service's own 401 (no gateway proof) cannot reach a caller.
        responses.remove("401");
        add_gateway_error(&mut responses, "401");
        if matches!(rule, Rule::AnyRole(_) | Rule::Grant { .. }) {
            add_gateway_error(&mut responses, "403");
        }
    }
    if has_body {
        add_gateway_error(&mut responses, "413");
    }
    if rate_limited {
        add_gateway_error(&mut responses, "429");
    }
    if proxied {
        for code in ["502", "503", "504"] {
            add_gateway_error(&mut responses, code);
        }
    }
    op.insert("responses".into(), Value::Object(responses));
    append_description(op, &access_note(rule));
}

/// Say who may call one of the gateway's own operations: a machine client, an admin, any caller, anyone.
pub(super) fn own_access(op: &mut Map<String, Value>) {
    let admin = op["tags"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("admin")) || t.contains(&json!("clients")));
    let client_auth = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|r| r.get("client_basic").is_some()));
    if client_auth {
        append_description(
            op,
            "**Access:** a registered machine client, by HTTP Basic \
             (`client_secret_basic`) or `client_id` and `client_secret` in the form \
             (`client_secret_post`).",
        );
    } else if admin {
        op.insert("x-required-roles".into(), json!(["admin"]));
        append_description(op, &access_note(&Rule::AnyRole(vec!["admin".into()])));
    } else if op.contains_key("security") {
        op.insert("x-required-roles".into(), json!([]));
        append_description(op, &access_note(&Rule::Authenticated));
    } else {
        append_description(op, &access_note(&Rule::Public));
    }
}
