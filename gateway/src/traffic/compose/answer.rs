//! Answering a composed route: the parts are called concurrently through
//! the one upstream client, each within its time budget; a failed part
//! becomes `{"error": {...}}` and the answer's `status` says `success`
//! (every part answered 2xx) or `partial`. When every part fails the same
//! client error (say 422 for a bad body) that answer is passed on as it is;
//! when every part fails otherwise, 502.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use common::identity::Principal;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::table::{Composed, PartConfig};
use crate::clock::mono_ms;
use crate::live::Live;
use crate::ops::metrics::Metrics;
use crate::traffic::Traffic;
use crate::traffic::proxy::upstream_request::{Downstream, gateway_headers};
use crate::traffic::upstream::client::{self, Body, Call, Peer, RetryPolicy, Source};
use crate::traffic::upstream::pool::{Target, Upstream};

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

/// What one part is: where it goes and what it sends.
struct PartCall<'a> {
    name: String,
    upstream: &'a Upstream,
    /// A fan-out part's own target; `None`: balanced.
    fixed: Option<Arc<Target>>,
    path: &'a str,
    headers: HeaderMap,
}

/// Call one part. A balanced part may be retried on another target as the
/// method allows (its body is at hand); a fan-out part goes to its target
/// once.
async fn call(
    part: PartCall<'_>,
    method: &Method,
    body: &Bytes,
    timeout: Duration,
    metrics: &Metrics,
) -> Part {
    let PartCall {
        name,
        upstream,
        fixed,
        path,
        headers,
    } = part;
    let mut c = Call::new(upstream, method.clone(), path, metrics);
    c.timeout = timeout;
    c.retry = match fixed {
        Some(_) => RetryPolicy::never(),
        None => RetryPolicy::for_method(method, upstream.spec.retries),
    };
    c.peer = fixed.map_or(Peer::Balanced, Peer::Fixed);
    c.body = if body.is_empty() {
        Body::Empty
    } else {
        Body::Bytes(body.clone())
    };
    let mut answer = match client::send(c, &|| Ok(headers.clone())).await {
        Ok(a) => a,
        Err(e) => {
            let detail = match e.source {
                Source::Timeout => "the part did not answer in time".to_owned(),
                Source::NoTarget | Source::Saturated => e.detail(),
                Source::Internal => {
                    tracing::error!(part = %name, error = %e, "composed part failed");
                    "internal error".to_owned()
                }
                _ => {
                    tracing::warn!(part = %name, error = %e, "composed part failed");
                    "the part could not be reached".to_owned()
                }
            };
            return failed(name, Some(e.status().as_u16()), detail, None);
        }
    };
    let status = answer.response.status().as_u16();
    let value = match answer.response.body().limit(1024 * 1024).await {
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

/// The request body, read whole (it goes to every part); `Err`: the 413 or 400.
async fn read_body(payload: &mut web::Payload, limit: u64) -> Result<Bytes, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) if (body.len() + c.len()) as u64 <= limit => body.extend_from_slice(&c),
            Ok(_) => {
                return Err(Problem::payload_too_large(format!(
                    "the request body exceeds {limit} bytes"
                ))
                .to_response());
            }
            Err(_) => {
                return Err(Problem::bad_request("the request body was cut short").to_response());
            }
        }
    }
    Ok(body.freeze())
}

/// The parts to call: (name, part, target) per target of a fan-out, else the named parts.
fn plan<'a>(
    live: &Live,
    composed: &'a Composed,
) -> Vec<(String, &'a PartConfig, Option<Arc<Target>>)> {
    match &composed.fan_out {
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
    }
}

/// A part's request headers: the client's content negotiation, and the identity with its proof.
fn part_headers(
    gw: &Traffic,
    down: Downstream<'_>,
    part: &PartConfig,
) -> Result<HeaderMap, HttpResponse> {
    let mut headers = HeaderMap::new();
    for h in [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::ACCEPT_LANGUAGE,
    ] {
        if let Some(v) = down.req.headers().get(&h) {
            headers.insert(h, v.clone());
        }
    }
    gateway_headers(down, &mut headers, &part.upstream, &[], &gw.minter)
        .map_err(|e| e.to_response())?;
    Ok(headers)
}

/// Answer a composed route for an admitted caller (`who`: `None` on a
/// public one).
pub async fn answer(
    gw: &Traffic,
    live: &Live,
    req: &HttpRequest,
    client: Option<std::net::IpAddr>,
    mut payload: web::Payload,
    composed: &Composed,
    who: Option<&Principal>,
) -> HttpResponse {
    let body = match read_body(&mut payload, live.max_body_bytes).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let mut calls = Vec::new();
    for (name, part, fixed) in plan(live, composed) {
        let Some(upstream) = live.upstreams.get(&part.upstream) else {
            continue;
        };
        let headers = match part_headers(gw, Downstream { req, client, who }, part) {
            Ok(h) => h,
            Err(res) => return res,
        };
        if let Some(t) = &fixed
            && !t.available(mono_ms())
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
        let part = PartCall {
            name,
            upstream,
            fixed,
            path: &part.path,
            headers,
        };
        calls.push(futures_util::future::Either::Right(call(
            part,
            &composed.method,
            &body,
            composed.timeout,
            &gw.metrics,
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
