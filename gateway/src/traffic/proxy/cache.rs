//! Phases: cache lookup and cache store, for routes marked `cache:`.
//!
//! Lookup runs after admission and the rate limit (the key holds the
//! caller's identity, so nothing is looked up before the caller is known);
//! a hit is the answer. Store runs on the upstream's answer: a storable one
//! is read whole and kept, anything else streams through untouched.

use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};

use super::context::Ctx;
use crate::ops::metrics::Metrics;
use crate::traffic::response_cache::{self, Cached, ResponseCache};
use crate::traffic::upstream::client::{Answer, UpstreamError};

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Phase: cache lookup. `Some` is the answer from the cache. On a miss
/// that may be stored, `ctx.cache_key` says where.
pub fn lookup(cache: &ResponseCache, metrics: &Metrics, ctx: &mut Ctx<'_>) -> Option<HttpResponse> {
    ctx.route.cache.as_ref()?;
    let head_only = ctx.req.method() == Method::HEAD;
    if ctx.req.method() != Method::GET && !head_only {
        return None;
    }
    let path_and_query = ctx
        .req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let who = ctx.caller.as_ref().map(|c| c.principal());
    let key = response_cache::key(&ctx.route.prefix, path_and_query, ctx.req.headers(), who);
    if response_cache::request_bypasses(ctx.req.headers()) {
        metrics.cache(&ctx.route.prefix, "bypass");
    } else if let Some(hit) = cache.get(&key) {
        metrics.cache(&ctx.route.prefix, "hit");
        return Some(from_cache(&hit, head_only, &ctx.limit_headers));
    } else {
        metrics.cache(&ctx.route.prefix, "miss");
    }
    // A HEAD is answered from a stored GET but never stores one.
    ctx.cache_key = (!head_only).then_some(key);
    None
}

fn from_cache(hit: &Cached, head_only: bool, extra: &[(HeaderName, HeaderValue)]) -> HttpResponse {
    let mut out = HttpResponse::build(StatusCode::from_u16(hit.status).unwrap_or(StatusCode::OK));
    for (name, value) in &hit.headers {
        out.append_header((name.clone(), value.clone()));
    }
    for (name, value) in extra {
        out.insert_header((name.clone(), value.clone()));
    }
    out.insert_header((X_CACHE, HeaderValue::from_static("HIT")));
    out.insert_header((header::AGE, hit.stored.elapsed().as_secs().to_string()));
    if head_only {
        out.no_chunking(hit.body.len() as u64);
        out.finish()
    } else {
        out.body(hit.body.clone())
    }
}

/// The `x-cache` header a route marked `cache:` adds to what it did not
/// answer from the cache.
pub fn mark_miss(ctx: &Ctx<'_>, head: &mut HeaderMap) {
    if ctx.route.cache.is_some() {
        head.insert(X_CACHE, HeaderValue::from_static("MISS"));
    }
}

/// Phase: cache store. Keeps a storable answer (200, allowed by its
/// `Cache-Control`, a known length within the route's entry limit) and
/// answers it from memory; gives every other answer back to stream.
pub async fn store(
    cache: &ResponseCache,
    ctx: &Ctx<'_>,
    mut answer: Answer,
    mut head: HeaderMap,
    length: Option<u64>,
) -> Result<HttpResponse, (Answer, HeaderMap)> {
    let (Some(key), Some(cfg)) = (ctx.cache_key.clone(), ctx.route.cache.as_ref()) else {
        return Err((answer, head));
    };
    let status = answer.response.status();
    let ttl = response_cache::storable_for(status.as_u16(), &head, cfg.ttl);
    let (Some(ttl), Some(len)) = (ttl, length) else {
        return Err((answer, head));
    };
    if len > cfg.max_entry_bytes {
        return Err((answer, head));
    }
    let started = Instant::now();
    let body = match answer
        .response
        .body()
        .limit(cfg.max_entry_bytes as usize)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "reading a cacheable answer failed");
            return Ok(
                UpstreamError::broken_answer(&ctx.route.upstream, e.to_string()).to_response(),
            );
        }
    };
    drop(answer);
    head.remove(header::CONTENT_LENGTH);
    let kept: Vec<(HeaderName, HeaderValue)> = head
        .iter()
        .filter(|(n, _)| *n != X_CACHE && !ctx.limit_headers.iter().any(|(l, _)| l == *n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    cache.put(
        key,
        Cached {
            status: status.as_u16(),
            headers: kept,
            body: body.clone(),
            stored: started,
            ttl,
        },
    );
    let mut out = HttpResponse::with_body(status, body).map_into_boxed_body();
    *out.headers_mut() = head;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::live_with;
    use serde_json::json;

    /// A snapshot with one cached public route `/c`, an empty cache and metrics.
    fn cached_route() -> (crate::live::Live, ResponseCache, Metrics) {
        let live = live_with(
            json!([{"prefix": "/c", "upstream": "users", "access": "public", "cache": {"ttl_secs": 60}}]),
            json!([]),
        );
        (live, ResponseCache::new(1 << 20), Metrics::new().unwrap())
    }

    #[test]
    fn a_stored_answer_is_found_by_the_same_caller_only() {
        let (live, cache, metrics) = cached_route();
        let route = &live.routes.routes()[0];
        let rule = route.rule_for(&Method::GET).unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/c/x?q=1")
            .to_http_request();
        let mut ctx = Ctx::new(&req, &live, route, rule);
        assert!(lookup(&cache, &metrics, &mut ctx).is_none(), "a miss");
        let key = ctx.cache_key.clone().unwrap();
        cache.put(
            key,
            Cached {
                status: 200,
                headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                body: "kept".into(),
                stored: Instant::now(),
                ttl: std::time::Duration::from_secs(60),
            },
        );
        let mut ctx = Ctx::new(&req, &live, route, rule);
        let hit = lookup(&cache, &metrics, &mut ctx).unwrap();
        assert_eq!(hit.headers().get("x-cache").unwrap(), "HIT");
        assert_eq!(
            hit.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain"
        );
        assert!(ctx.cache_key.is_none());
        // Another query is another entry; a client asking for fresh skips it.
        let other = actix_web::test::TestRequest::get()
            .uri("/c/x?q=2")
            .to_http_request();
        assert!(lookup(&cache, &metrics, &mut Ctx::new(&other, &live, route, rule)).is_none());
        let fresh = actix_web::test::TestRequest::get()
            .uri("/c/x?q=1")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .to_http_request();
        let mut ctx = Ctx::new(&fresh, &live, route, rule);
        assert!(lookup(&cache, &metrics, &mut ctx).is_none());
        assert!(ctx.cache_key.is_some(), "its answer may refresh the entry");
        // A POST is never looked up.
        let post = actix_web::test::TestRequest::post()
            .uri("/c/x?q=1")
            .to_http_request();
        let mut ctx = Ctx::new(&post, &live, route, rule);
        assert!(lookup(&cache, &metrics, &mut ctx).is_none());
        assert!(ctx.cache_key.is_none());
    }

    fn answer(headers: &[(&'static str, &'static str)], body: &'static str) -> Answer {
        let mut res = awc::test::TestResponse::default();
        for (n, v) in headers {
            res = res.insert_header((*n, *v));
        }
        Answer {
            response: res.set_payload(body).finish(),
            lease: None,
            target: std::sync::Arc::new(crate::traffic::upstream::pool::Target::new(
                "t".into(),
                "http://t".into(),
            )),
            attempts: 1,
        }
    }

    #[actix_web::test]
    async fn storable_answers_are_kept_and_the_rest_stream() {
        let (live, cache, metrics) = cached_route();
        let route = &live.routes.routes()[0];
        let rule = route.rule_for(&Method::GET).unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/c/x")
            .to_http_request();
        let mut ctx = Ctx::new(&req, &live, route, rule);
        assert!(lookup(&cache, &metrics, &mut ctx).is_none());
        // Not storable: handed back untouched, nothing kept.
        let a = answer(
            &[("cache-control", "no-store"), ("content-length", "2")],
            "no",
        );
        let head = a.response.headers().clone();
        assert!(store(&cache, &ctx, a, head, Some(2)).await.is_err());
        assert!(lookup(&cache, &metrics, &mut Ctx::new(&req, &live, route, rule)).is_none());
        // Storable: answered from memory, and the next caller hits it.
        let a = answer(
            &[("content-type", "text/plain"), ("content-length", "4")],
            "kept",
        );
        let mut head = a.response.headers().clone();
        mark_miss(&ctx, &mut head);
        let Ok(res) = store(&cache, &ctx, a, head, Some(4)).await else {
            panic!("stored")
        };
        assert_eq!(res.headers().get("x-cache").unwrap(), "MISS");
        let hit = lookup(&cache, &metrics, &mut Ctx::new(&req, &live, route, rule)).unwrap();
        assert_eq!(hit.headers().get("x-cache").unwrap(), "HIT");
        let body = actix_web::body::to_bytes(hit.into_body()).await.unwrap();
        assert_eq!(body, "kept");
        // Without a length, or larger than an entry may be: streamed.
        let a = answer(&[], "streamed");
        let head = a.response.headers().clone();
        assert!(store(&cache, &ctx, a, head, None).await.is_err());
    }
}
