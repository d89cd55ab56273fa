//! Composed routes: one request, several upstream calls made concurrently,
//! one JSON object keyed by part name. A part either names its upstream and
//! path (`parts`), or the route fans out to every target of one upstream
//! (`fan_out`, parts named after the targets). Each part has a time budget;
//! a failed part becomes `{"error": {...}}` and the answer's `status` says
//! `success` (every part answered 2xx) or `partial`. When every part fails
//! the same client error (say 422 for a bad body) that answer is passed on
//! as it is; when every part fails otherwise, 502.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use common::identity::Principal;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::proxy::{Clients, gateway_headers};
use crate::routes::{AccessConfig, Rule};
use crate::state::{Gateway, Live};
use crate::upstreams::Upstream;

/// `composed[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposedConfig {
    /// Exact public path.
    pub path: String,
    pub method: String,
    /// Same forms as a route's `access`.
    pub access: AccessConfig,
    /// Budget of each part, in milliseconds.
    #[serde(default = "default_part_timeout")]
    pub timeout_ms: u64,
    /// Named parts: `{name: {upstream, path}}`.
    #[serde(default)]
    pub parts: BTreeMap<String, PartConfig>,
    /// Or: the same call to every target of one upstream.
    #[serde(default)]
    pub fan_out: Option<PartConfig>,
}

fn default_part_timeout() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartConfig {
    pub upstream: String,
    /// Upstream path, with a query if needed.
    pub path: String,
}

/// A resolved composed route.
#[derive(Debug, Clone)]
pub struct Composed {
    pub path: String,
    pub method: Method,
    pub rule: Rule,
    pub timeout: Duration,
    pub parts: Vec<(String, PartConfig)>,
    pub fan_out: Option<PartConfig>,
}

/// Composed routes by exact path.
#[derive(Debug, Clone, Default)]
pub struct ComposedTable(HashMap<String, Composed>);

impl ComposedTable {
    pub fn new(
        configs: &[ComposedConfig],
        upstream_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let mut out = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |m: String| format!("composed[{i}] ({}): {m}", c.path);
            if !c.path.starts_with('/') {
                return Err(at("path must start with `/`".into()));
            }
            let method = Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| at(format!("`{}` is not an HTTP method", c.method)))?;
            let rule = match &c.access {
                AccessConfig::Rule(r) => Rule::from_config(r).map_err(at)?,
                AccessConfig::PerMethod(_) => {
                    return Err(at(
                        "access: one rule (a composed route has one method)".into()
                    ));
                }
            };
            if c.parts.is_empty() == c.fan_out.is_none() {
                return Err(at("give either `parts` or `fan_out`".into()));
            }
            for p in c.parts.values().chain(c.fan_out.iter()) {
                if !upstream_exists(&p.upstream) {
                    return Err(at(format!("unknown upstream `{}`", p.upstream)));
                }
                if !p.path.starts_with('/') {
                    return Err(at(format!("part path `{}` must start with `/`", p.path)));
                }
            }
            if c.parts.contains_key("status") {
                return Err(at("`status` is reserved for the overall outcome".into()));
            }
            if c.timeout_ms == 0 {
                return Err(at("timeout_ms must be positive".into()));
            }
            let composed = Composed {
                path: c.path.clone(),
                method,
                rule,
                timeout: Duration::from_millis(c.timeout_ms),
                parts: c
                    .parts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                fan_out: c.fan_out.clone(),
            };
            if out.insert(c.path.clone(), composed).is_some() {
                return Err(at("path declared twice".into()));
            }
        }
        Ok(Self(out))
    }

    pub fn get(&self, path: &str) -> Option<&Composed> {
        self.0.get(path)
    }

    pub fn all(&self) -> impl Iterator<Item = &Composed> {
        self.0.values()
    }
}

/// What one part answered.
struct Part {
    name: String,
    status: Option<u16>,
    value: Value,
}

impl Part {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

fn failed(name: String, status: Option<u16>, detail: String, body: Option<Value>) -> Part {
    let mut error = json!({ "detail": detail });
    if let Some(s) = status {
        error["status"] = json!(s);
    }
    if let Some(b) = body {
        error["body"] = b;
    }
    Part {
        name,
        status,
        value: json!({ "error": error }),
    }
}

/// One part: `target` is a fixed target (fan-out) or `None` (balanced).
#[allow(clippy::too_many_arguments)]
async fn call(
    client: awc::Client,
    name: String,
    upstream: &Upstream,
    fixed: Option<std::sync::Arc<crate::upstreams::Target>>,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Part {
    // Held until the part is done, so least-connections counts it.
    let mut _lease = None;
    let mut avoid: Option<std::sync::Arc<crate::upstreams::Target>> = None;
    let mut attempt = 0;
    let (target, mut res) = loop {
        let target = match &fixed {
            Some(t) => t.clone(),
            None => match upstream
                .pick(avoid.as_ref())
                .or_else(|| upstream.pick(None))
            {
                Some(l) => {
                    let t = l.target().clone();
                    _lease = Some(l);
                    t
                }
                None => {
                    return failed(
                        name,
                        Some(503),
                        format!("upstream `{}` has no healthy target", upstream.name),
                        None,
                    );
                }
            },
        };
        let mut req = client
            .request(method.clone(), format!("{}{path}", target.url))
            .timeout(timeout);
        *req.headers_mut() = headers.clone();
        let sent = if body.is_empty() {
            req.send().await
        } else {
            req.send_body(body.clone()).await
        };
        match sent {
            Ok(r) => break (target, r),
            Err(awc::error::SendRequestError::Timeout) => {
                return failed(
                    name,
                    Some(504),
                    "the part did not answer in time".into(),
                    None,
                );
            }
            Err(e) => {
                target.record_failure(&upstream.spec.passive);
                // A refused connection never delivered the request (and the
                // body is at hand): a balanced part tries another target.
                if fixed.is_none()
                    && matches!(e, awc::error::SendRequestError::Connect(_))
                    && attempt < upstream.spec.retries
                {
                    attempt += 1;
                    avoid = Some(target);
                    continue;
                }
                tracing::warn!(part = %name, error = %e, "composed part failed");
                return failed(
                    name,
                    Some(502),
                    "the part could not be reached".into(),
                    None,
                );
            }
        }
    };
    target.record_success();
    let status = res.status().as_u16();
    let value = match res.body().limit(1024 * 1024).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(_) => {
                return failed(name, Some(502), "the part did not answer JSON".into(), None);
            }
        },
        Err(_) => {
            return failed(
                name,
                Some(502),
                "the part's answer was cut short or too large".into(),
                None,
            );
        }
    };
    if (200..300).contains(&status) {
        Part {
            name,
            status: Some(status),
            value,
        }
    } else {
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("the part answered an error")
            .to_owned();
        failed(name, Some(status), detail, Some(value))
    }
}

/// Answer a composed route for an admitted caller.
pub async fn answer(
    gw: &Gateway,
    live: &Live,
    clients: &Clients,
    req: &HttpRequest,
    mut payload: web::Payload,
    composed: &Composed,
    who: Option<&Principal>,
) -> HttpResponse {
    // The body goes to every part, so it is read whole (within the limit).
    let limit = live.max_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) if (body.len() + c.len()) as u64 <= limit => body.extend_from_slice(&c),
            Ok(_) => {
                return Problem::payload_too_large(format!(
                    "the request body exceeds {limit} bytes"
                ))
                .to_response();
            }
            Err(_) => return Problem::bad_request("the request body was cut short").to_response(),
        }
    }
    let body = body.freeze();
    let mut calls = Vec::new();
    let plan: Vec<(
        String,
        &PartConfig,
        Option<std::sync::Arc<crate::upstreams::Target>>,
    )> = match &composed.fan_out {
        Some(p) => match live.upstreams.get(&p.upstream) {
            Some(up) => up
                .targets()
                .into_iter()
                .map(|t| (t.name.clone(), p, Some(t)))
                .collect(),
            None => Vec::new(),
        },
        None => composed
            .parts
            .iter()
            .map(|(n, p)| (n.clone(), p, None))
            .collect(),
    };
    for (name, part, fixed) in plan {
        let Some(upstream) = live.upstreams.get(&part.upstream) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        for h in [
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
        ] {
            if let Some(v) = req.headers().get(&h) {
                headers.insert(h, v.clone());
            }
        }
        if let Err(p) = gateway_headers(gw, req, &mut headers, &part.upstream, who) {
            return p.to_response();
        }
        let now = crate::upstreams::now_ms();
        if let Some(t) = &fixed
            && !t.available(now)
        {
            let name = name.clone();
            calls.push(futures_util::future::Either::Left(async move {
                failed(
                    name,
                    Some(503),
                    "this target is out of rotation".into(),
                    None,
                )
            }));
            continue;
        }
        calls.push(futures_util::future::Either::Right(call(
            clients.get(upstream.spec.connect_timeout_ms),
            name,
            upstream,
            fixed,
            composed.method.clone(),
            part.path.clone(),
            headers,
            body.clone(),
            composed.timeout,
        )));
    }
    let parts = futures_util::future::join_all(calls).await;
    respond(parts)
}

fn respond(parts: Vec<Part>) -> HttpResponse {
    let ok = parts.iter().filter(|p| p.ok()).count();
    if ok == 0 {
        // Every part refused the request for the same client error: that is
        // the answer (the client's input is at fault, not a part).
        let first = parts.first().and_then(|p| p.status);
        if let Some(s) = first
            && (400..500).contains(&s)
            && parts.iter().all(|p| p.status == Some(s))
            && let Some(body) = parts.first().and_then(|p| p.value["error"].get("body"))
        {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST);
            let mut res = HttpResponse::build(status);
            res.insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static(common::problem::PROBLEM_JSON),
            ));
            return res.json(body);
        }
        let detail = parts
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    p.name,
                    p.value["error"]["detail"].as_str().unwrap_or("failed")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Problem::new(StatusCode::BAD_GATEWAY, "composed-failure", "Bad gateway")
            .with_detail(if detail.is_empty() {
                "no part could be called".to_owned()
            } else {
                detail
            })
            .to_response();
    }
    let status = if ok == parts.len() {
        "success"
    } else {
        "partial"
    };
    let mut out = Map::new();
    for p in parts {
        out.insert(p.name, p.value);
    }
    out.insert("status".into(), json!(status));
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Value::Object(out))
}
