//! Proxying and traffic control against real upstream servers on port 0:
//! balancing, failover, health, error mapping, body limits, forwarding
//! headers, the admin API, caching, CORS, metrics and statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A stack with an upstream `pool` of the given targets and `extra` routes.
async fn stack_with_pool(pool: Value, extra: Value) -> Stack {
    spawn_stack_with(move |l| {
        l.set("upstreams.pool", pool.clone())
            .set("routes", base_routes(extra.clone()))
    })
    .await
}

fn fast_checks(targets: &[String], more: Value) -> Value {
    let mut v = json!({
        "targets": targets,
        "health_check": {"interval_secs": 1, "timeout_ms": 500, "healthy_threshold": 1, "unhealthy_threshold": 1},
        "passive": {"max_failures": 1, "cooldown_secs": 30},
    });
    if let (Some(o), Some(m)) = (v.as_object_mut(), more.as_object()) {
        for (k, x) in m {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

async fn names(s: &Stack, token: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = s.get(token, path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        *seen
            .entry(r.body["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

#[actix_web::test]
async fn balancing_spreads_load_by_policy() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let targets = vec![a.url(), b.url(), c.url()];
    let s = spawn_stack_with(move |l| {
        l.set("upstreams.rr", json!({"targets": targets.clone()}))
            .set(
                "upstreams.rnd",
                json!({"targets": targets.clone(), "balance": "random"}),
            )
            .set(
                "upstreams.lc",
                json!({"targets": targets.clone(), "balance": "least_connections"}),
            )
            .set(
                "routes",
                base_routes(json!([
                    {"prefix": "/rr", "upstream": "rr", "access": "authenticated"},
                    {"prefix": "/rnd", "upstream": "rnd", "access": "authenticated"},
                    {"prefix": "/lc", "upstream": "lc", "rewrite": "/", "access": "authenticated"},
                ])),
            )
    })
    .await;
    let t = admin_token(&s).await;
    let rr = names(&s, &t, "/rr/x", 30).await;
    assert_eq!(
        rr.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{rr:?}"
    );
    let rnd = names(&s, &t, "/rnd/x", 90).await;
    assert_eq!(rnd.len(), 3, "{rnd:?}");
    assert!(rnd.values().all(|n| *n >= 10), "{rnd:?}");
    // Least connections: with one slow request holding `a`..., sequential
    // requests (nothing in flight) rotate over all three.
    let lc = names(&s, &t, "/lc/x", 30).await;
    assert_eq!(lc.len(), 3, "{lc:?}");
    // A long request holds its target: the concurrent ones avoid it.
    let slow = s
        .client
        .get(s.url("/lc/slow?ms=1500"))
        .bearer_auth(&t)
        .send();
    let (slow_res, during) = futures_util::future::join(slow, async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        names(&s, &t, "/lc/x", 20).await
    })
    .await;
    let held: Value = slow_res.unwrap().json().await.unwrap();
    let held = held["name"].as_str().unwrap();
    assert!(!during.contains_key(held), "{held} was busy: {during:?}");
}

#[actix_web::test]
async fn a_target_that_dies_is_ejected_without_client_errors_and_rejoins() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let s = stack_with_pool(
        fast_checks(
            &[a.url(), b.url()],
            json!({"passive": {"max_failures": 2, "cooldown_secs": 1}}),
        ),
        json!([{"prefix": "/pool", "upstream": "pool", "rewrite": "/", "access": "authenticated"}]),
    )
    .await;
    let t = admin_token(&s).await;
    assert_eq!(names(&s, &t, "/pool/x", 10).await.len(), 2);
    a.kill().await;
    // Until its worker is gone, a stopped server may still answer on a
    // connection the gateway keeps alive: let it go first (on a loaded
    // machine that takes a moment).
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    // A refused connection never reached the target: even a POST (without a
    // body) is safe to send to the other one.
    for _ in 0..4 {
        let r = read(s.client.post(s.url("/pool/x")).bearer_auth(&t)).await;
        assert_eq!(
            (r.status.as_u16(), r.body["name"].as_str()),
            (200, Some("b")),
            "{}",
            r.text
        );
    }
    // Every idempotent request still succeeds: a failed connection is
    // retried on the other target.
    let during = names(&s, &t, "/pool/x", 40).await;
    assert_eq!(during.get("b"), Some(&40), "{during:?}");
    let ups = s.get(&t, "/admin/upstreams").await;
    let targets = ups.body["upstreams"]["pool"]["targets"]
        .as_array()
        .unwrap()
        .clone();
    let dead = targets.iter().find(|x| x["url"] == a.url()).unwrap();
    assert_ne!(dead["health"], "healthy", "{dead}");
    // Back on its port: the health checks bring it into rotation again.
    let a2 = Backend::start_on("a", a.port).await;
    eventually("the target rejoins", async || {
        names(&s, &t, "/pool/x", 6).await.contains_key("a")
    })
    .await;
    drop(a2);
}

#[actix_web::test]
async fn connections_to_a_target_are_bounded_and_requests_beyond_wait_their_turn() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (a_url, b_url) = (a.url(), b.url());
    let s = spawn_stack_with(move |l| {
        l.set(
            "upstreams.two",
            json!({"targets": [a_url], "max_connections": 2, "timeout_secs": 5}),
        )
        .set(
            "upstreams.one",
            json!({"targets": [b_url], "max_connections": 1, "timeout_secs": 1}),
        )
        .set(
            "routes",
            base_routes(json!([
                {"prefix": "/two", "upstream": "two", "rewrite": "/", "access": "public"},
                {"prefix": "/one", "upstream": "one", "rewrite": "/", "access": "public"},
            ])),
        )
    })
    .await;
    let client = testkit::client();
    // Six at once on a bound of two: three waves, never three at the target.
    let started = std::time::Instant::now();
    let all =
        futures_util::future::join_all((0..6).map(|_| read(client.get(s.url("/two/slow?ms=300")))))
            .await;
    for r in &all {
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body["peak"].as_u64().unwrap() <= 2, "{}", r.text);
    }
    assert!(
        all.iter().any(|r| r.body["peak"] == 2),
        "they ran two at a time"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "three waves of 300 ms"
    );
    let admin = admin_token(&s).await;
    let ups = s.get(&admin, "/admin/upstreams").await;
    assert_eq!(
        ups.body["upstreams"]["two"]["targets"][0]["max_connections"], 2,
        "{}",
        ups.text
    );
    // A bound of one held by an answer still streaming: the next request
    // waits its budget (1 s) and gets a 503 it may retry, never sent.
    let held = read(client.get(s.url("/one/drip?ms=2500")));
    let (held, refused) = futures_util::future::join(held, async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        read(client.get(s.url("/one/slow?ms=10"))).await
    })
    .await;
    assert_eq!((held.status.as_u16(), held.text.as_str()), (200, "done"));
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.body["type"],
        "urn:gatehouse:problem:upstream-saturated"
    );
    assert_eq!(refused.headers["retry-after"], "1");
    // The bound is free again.
    assert_eq!(read(client.get(s.url("/one/slow?ms=10"))).await.status, 200);
}

#[actix_web::test]
async fn upstream_failures_map_to_502_503_504_and_upstream_errors_pass_through() {
    let ok = Backend::start("ok").await;
    let ok_url = ok.url();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let s = spawn_stack_with(move |l| {
        l.set(
            "upstreams.dead",
            json!({"targets": [closed.clone()], "health_check": {"enabled": false}, "passive": {"max_failures": 2, "cooldown_secs": 60}}),
        )
        .set("upstreams.slow", json!({"targets": [ok_url.clone()], "timeout_secs": 1}))
        .set(
            "routes",
            base_routes(json!([
                {"prefix": "/dead", "upstream": "dead", "access": "authenticated"},
                {"prefix": "/slow", "upstream": "slow", "rewrite": "/", "access": "authenticated"},
            ])),
        )
    })
    .await;
    let t = admin_token(&s).await;
    // Connection refused: 502 (after one retry on the same lone target),
    // until passive checks eject it: then 503, no healthy target.
    let r = s.get(&t, "/dead/x").await;
    assert_eq!(r.problem(502)["type"], "urn:gatehouse:problem:bad-gateway");
    let r = s.get(&t, "/dead/x").await;
    let p = r.problem(503);
    assert_eq!(
        p["type"], "urn:gatehouse:problem:no-healthy-upstream",
        "{p}"
    );
    assert!(r.headers.contains_key("retry-after"));
    // Slow: 504.
    let r = s.get(&t, "/slow/slow?ms=2500").await;
    assert_eq!(
        r.problem(504)["type"],
        "urn:gatehouse:problem:upstream-timeout"
    );
    // The upstream's own errors pass through as they are.
    for code in [400u16, 404, 409, 503] {
        let r = s.get(&t, &format!("/slow/status/{code}")).await;
        assert_eq!(r.status.as_u16(), code);
        assert_eq!(
            r.text,
            format!(
                "upstream says {code} {}",
                reqwest::StatusCode::from_u16(code)
                    .unwrap()
                    .canonical_reason()
                    .unwrap()
            )
        );
        assert_eq!(r.headers["x-upstream"], "yes");
    }
    let raw = s
        .client
        .get(s.url("/slow/status/500"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 500);
    assert_eq!(raw.headers()["x-upstream"], "yes");
}

#[actix_web::test]
async fn request_bodies_are_limited() {
    let s = spawn_stack_with(|l| {
        l.set(
            "routes",
            base_routes(json!([
                {"prefix": "/small", "upstream": "echo", "access": "public", "max_body_bytes": 100},
            ])),
        )
    })
    .await;
    let t = admin_token(&s).await;
    // Default limit: 1 MiB.
    let ok = read(
        s.client
            .post(s.url("/public/x"))
            .body(vec![b'a'; 1024 * 1024]),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["body_len"], 1024 * 1024);
    let r = read(
        s.client
            .post(s.url("/public/x"))
            .body(vec![b'a'; 1024 * 1024 + 1]),
    )
    .await;
    r.problem(413);
    // A route's own limit, declared or streamed (chunked, no length).
    read(s.client.post(s.url("/small")).body(vec![b'a'; 101]))
        .await
        .problem(413);
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(b"28\r\n");
        chunked.extend_from_slice(&[b'a'; 40]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_request(
        &s.gw,
        "POST /small HTTP/1.1",
        &["Transfer-Encoding: chunked"],
        &chunked,
    );
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");
    let r = read(
        s.client
            .post(s.url("/small"))
            .bearer_auth(&t)
            .body(vec![b'a'; 100]),
    )
    .await;
    assert_eq!(r.body["body_len"], 100);
}

#[actix_web::test]
async fn forwarding_headers_and_paths_cannot_be_spoofed() {
    let s = spawn_stack_with(|l| {
        l.set(
            "routes",
            base_routes(json!([{
                "prefix": "/edited", "upstream": "echo", "access": "public",
                "request_headers": {"add": {"x-added": "by-gateway"}, "remove": ["cookie"]},
                "response_headers": {"add": {"x-frame-options": "DENY"}, "remove": ["content-type"]},
            }])),
        )
    })
    .await;
    let r = read(
        s.client
            .get(s.url("/edited/x"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .header("forwarded", "for=6.6.6.6;host=evil.example")
            .header("x-real-ip", "6.6.6.6")
            .header("cookie", "session=1")
            .header("x-added", "by-client"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.body["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], s.gw.trim_start_matches("http://"));
    assert!(
        h.get("forwarded").is_none() && h.get("x-real-ip").is_none(),
        "{h}"
    );
    assert!(h.get("cookie").is_none());
    assert_eq!(h["x-added"], "by-gateway");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert!(!r.headers.contains_key("content-type"));

    // Dot segments and encoded slashes never reach an upstream.
    // (Sent raw: an HTTP client library would resolve them itself.)
    for path in [
        "/public/../api/users",
        "/public/./x",
        "/public/%2e%2e/api/users",
        "/public/a%2fb",
    ] {
        let raw = raw_request(&s.gw, &format!("GET {path} HTTP/1.1"), &[], b"");
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("application/problem+json"), "{raw}");
    }
}

#[actix_web::test]
async fn hosts_and_methods_select_routes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (ua, ub) = (a.url(), b.url());
    let s = spawn_stack_with(move |l| {
        l.set("upstreams.a", json!([ua.clone()]))
            .set("upstreams.b", json!([ub.clone()]))
            .set(
                "routes",
                base_routes(json!([
                    {"prefix": "/site", "upstream": "a", "access": "public"},
                    {"prefix": "/site", "host": "b.example", "upstream": "b", "access": "public"},
                    {"prefix": "/rw", "upstream": "a", "methods": ["GET"], "access": "public"},
                    {"prefix": "/rw", "upstream": "b", "methods": ["POST", "PUT"], "access": "public"},
                    {"prefix": "/ro", "upstream": "a", "methods": ["GET"], "access": "public"},
                ])),
            )
    })
    .await;
    let get = |host: Option<&'static str>, m: Method, p: &'static str| {
        let mut rb = s.client.request(m, s.url(p));
        if let Some(h) = host {
            rb = rb.header("host", h);
        }
        read(rb)
    };
    assert_eq!(get(None, Method::GET, "/site/1").await.body["name"], "a");
    assert_eq!(
        get(Some("B.example:8080"), Method::GET, "/site/1")
            .await
            .body["name"],
        "b"
    );
    assert_eq!(get(None, Method::GET, "/rw").await.body["name"], "a");
    assert_eq!(get(None, Method::PUT, "/rw").await.body["name"], "b");
    get(None, Method::DELETE, "/rw").await.problem(405);
    get(None, Method::POST, "/ro").await.problem(405);
}

#[actix_web::test]
async fn admin_api_lists_routes_and_registers_targets_at_run_time() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let s = stack_with_pool(
        fast_checks(&[a.url()], json!({})),
        json!([{"prefix": "/pool", "upstream": "pool", "access": "authenticated", "rate_limit": {"rate": "100/s", "burst": 100}}]),
    )
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "bob", &["user"]).await;
    let (bob, _) = s.tokens("bob", "bob-password-1").await;
    for path in ["/admin/routes", "/admin/upstreams", "/stats"] {
        s.get(&bob, path).await.problem(403);
        read(s.client.get(s.url(path))).await.invalid_token();
    }
    let routes = s.get(&admin, "/admin/routes").await;
    let pool = routes.body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "/pool")
        .unwrap()
        .clone();
    assert_eq!(pool["upstream"], "pool");
    assert_eq!(pool["access"]["*"], "authenticated");
    assert_eq!(pool["max_body_bytes"], 1048576);
    assert!(
        pool["rate_limit"].as_str().unwrap().contains("by user"),
        "{pool}"
    );

    assert_eq!(names(&s, &admin, "/pool/x", 4).await.len(), 1);
    let add = |body: Value| {
        read(
            s.client
                .post(s.url("/admin/upstreams/pool/targets"))
                .bearer_auth(&admin)
                .json(&body),
        )
    };
    // Anonymous and non-admin callers are refused before the body is read.
    read(
        s.client
            .post(s.url("/admin/upstreams/pool/targets"))
            .body("{"),
    )
    .await
    .invalid_token();
    add(json!({"url": "ftp://x"})).await.problem(422);
    add(json!({"nope": 1})).await.problem(422);
    read(
        s.client
            .post(s.url("/admin/upstreams/ghost/targets"))
            .bearer_auth(&admin)
            .json(&json!({"url": b.url()})),
    )
    .await
    .problem(404);
    let r = add(json!({"url": b.url()})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    add(json!({"url": b.url()})).await.problem(409);
    assert_eq!(names(&s, &admin, "/pool/x", 4).await.len(), 2);

    // A reload keeps the registration.
    let r = read(s.client.post(s.url("/admin/reload")).bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&s, &admin, "/pool/x", 4).await.len(), 2);
    let ups = s.get(&admin, "/admin/upstreams").await;
    let targets = &ups.body["upstreams"]["pool"]["targets"];
    assert_eq!(targets.as_array().unwrap().len(), 2, "{}", ups.text);
    assert!(targets[0]["requests"].as_u64().unwrap() >= 4, "{targets}");

    // Removing the configured one leaves only the registered one.
    let r = read(
        s.client
            .delete(s.url(&format!("/admin/upstreams/pool/targets?url={}", a.url())))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = names(&s, &admin, "/pool/x", 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["b"]);
    read(
        s.client
            .delete(s.url("/admin/upstreams/pool/targets"))
            .bearer_auth(&admin)
            .json(&json!({"url": a.url()})),
    )
    .await
    .problem(404);
}

#[actix_web::test]
async fn the_cache_never_crosses_callers_and_honours_the_upstream() {
    let a = Backend::start("a").await;
    let s = stack_with_pool(
        json!([a.url()]),
        json!([
            {"prefix": "/cached", "upstream": "echo", "access": "authenticated", "cache": {"ttl_secs": 60}},
            {"prefix": "/nostore", "upstream": "pool", "rewrite": "/nostore", "access": "authenticated", "cache": {"ttl_secs": 60}},
        ]),
    )
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "carol", &["user"]).await;
    let (carol, _) = s.tokens("carol", "carol-password-1").await;
    let first = s.get(&admin, "/cached/a?q=1").await;
    assert_eq!(first.headers["x-cache"], "MISS");
    let again = s.get(&admin, "/cached/a?q=1").await;
    assert_eq!(again.headers["x-cache"], "HIT");
    assert_eq!(again.body, first.body);
    // The same URL for another caller: never the admin's answer.
    let other = s.get(&carol, "/cached/a?q=1").await;
    assert_eq!(other.headers["x-cache"], "MISS");
    let admin_id = first.body["headers"]["request-user-id"].clone();
    assert_ne!(other.body["headers"]["request-user-id"], admin_id);
    assert_eq!(
        s.get(&carol, "/cached/a?q=1").await.headers["x-cache"],
        "HIT"
    );
    // Another query is another entry; the client can ask for a fresh answer.
    assert_eq!(
        s.get(&admin, "/cached/a?q=2").await.headers["x-cache"],
        "MISS"
    );
    let fresh = read(
        s.client
            .get(s.url("/cached/a?q=1"))
            .bearer_auth(&admin)
            .header("cache-control", "no-cache"),
    )
    .await;
    assert_eq!(fresh.headers["x-cache"], "MISS");
    // HEAD is answered from the stored GET.
    let head = s
        .client
        .head(s.url("/cached/a?q=1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["x-cache"], "HIT");
    // A revoked token gets no cached answer.
    let (tok, refresh) = s.tokens("carol", "carol-password-1").await;
    assert_eq!(s.get(&tok, "/cached/a?q=1").await.headers["x-cache"], "HIT");
    read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&tok)
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    s.get(&tok, "/cached/a?q=1").await.invalid_token();
    // An answer with `Cache-Control: no-store` (or private) is never kept.
    for _ in 0..2 {
        let me = s.get(&admin, "/nostore").await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.headers["x-cache"], "MISS");
    }
}

#[actix_web::test]
async fn cors_preflight_is_answered_by_the_gateway() {
    let s = spawn_stack_with(|l| l.set("cors.allowed_origins", vec!["https://app.example"])).await;
    let pre = s
        .client
        .request(Method::OPTIONS, s.url("/api/echo/x"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 200);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = pre.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let t = admin_token(&s).await;
    let r = s
        .client
        .get(s.url("/api/echo/x"))
        .header("origin", "https://app.example")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // Another origin gets no grant.
    let r = s
        .client
        .get(s.url("/api/echo/x"))
        .header("origin", "https://evil.example")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[actix_web::test]
async fn metrics_and_stats_count_what_happened() {
    let a = Backend::start("a").await;
    let s = stack_with_pool(
        json!([a.url()]),
        json!([{"prefix": "/pool", "upstream": "pool", "rewrite": "/", "access": "authenticated"}]),
    )
    .await;
    let t = admin_token(&s).await;
    // 19 fast answers and one of 400 ms: p95 stays fast, p99 sees the slow one.
    for _ in 0..19 {
        assert_eq!(s.get(&t, "/pool/x").await.status, 200);
    }
    assert_eq!(s.get(&t, "/pool/slow?ms=400").await.status, 200);
    for _ in 0..4 {
        assert_eq!(s.get(&t, "/pool/status/404").await.status, 404);
    }
    // Refused before any upstream call: still the route's, counted once.
    let anonymous = s.client.get(s.url("/pool/x")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // No route, on a path of its own and under one of the gateway's own
    // scopes (which the router hands to the proxy): each counted once.
    assert_eq!(s.get(&t, "/nowhere").await.status, 404);
    assert_eq!(s.get(&t, "/admin/nowhere").await.status, 404);
    let stats = s.get(&t, "/stats").await;
    let pool = &stats.body["routes"]["/pool"];
    assert_eq!(pool["requests"], 25, "{}", stats.text);
    assert_eq!(pool["success"], 20);
    assert_eq!(pool["error"], 5);
    assert_eq!(pool["client_error"], 5);
    assert_eq!(
        stats.body["routes"]["unmatched"]["requests"], 2,
        "{}",
        stats.text
    );
    let lat = &pool["latency_ms"];
    let (p95, p99, avg) = (
        lat["p95"].as_f64().unwrap(),
        lat["p99"].as_f64().unwrap(),
        lat["avg"].as_f64().unwrap(),
    );
    assert!(p95 < 300.0, "{lat}");
    assert!(p99 >= 400.0, "{lat}");
    assert!((400.0 / 25.0..400.0).contains(&avg), "{lat}");
    assert!(
        stats.body["routes"]["/api/login"]["requests"]
            .as_u64()
            .unwrap()
            >= 1
    );

    let m = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 200);
    let text = m.text().await.unwrap();
    for needle in [
        "gatehouse_requests_total{method=\"GET\",route=\"/pool\",status=\"2xx\"} 20",
        "gatehouse_requests_total{method=\"GET\",route=\"/pool\",status=\"4xx\"} 5",
        "gatehouse_requests_total{method=\"GET\",route=\"unmatched\",status=\"4xx\"} 2",
        "gatehouse_request_duration_seconds_bucket{method=\"GET\",route=\"/pool\",le=\"0.5\"} 25",
        &format!(
            "gatehouse_upstream_target_up{{upstream=\"pool\",target=\"{}\"}} 1",
            a.url()
        ),
        &format!(
            "gatehouse_upstream_target_requests_total{{upstream=\"pool\",target=\"{}\"}} 24",
            a.url()
        ),
        "gatehouse_rate_limit_fallbacks_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[actix_web::test]
async fn metrics_can_require_a_token() {
    let s = spawn_stack_with(|l| l.set("metrics.bearer_token", "scrape-secret-123")).await;
    read(s.client.get(s.url("/metrics"))).await.problem(401);
    read(
        s.client
            .get(s.url("/metrics"))
            .bearer_auth("scrape-secret-12"),
    )
    .await
    .problem(401);
    let ok = s
        .client
        .get(s.url("/metrics"))
        .bearer_auth("scrape-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// Send a request over a raw connection, exactly as written; returns the
/// whole answer as text.
fn raw_request(base: &str, line: &str, headers: &[&str], body: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{line}\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let _ = c.write_all(&bytes);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_web::test]
async fn a_reload_lets_requests_in_flight_finish() {
    let a = Backend::start("a").await;
    let s = stack_with_pool(
        json!([a.url()]),
        json!([{"prefix": "/pool", "upstream": "pool", "rewrite": "/", "access": "authenticated"}]),
    )
    .await;
    let admin = admin_token(&s).await;
    let slow = s
        .client
        .get(s.url("/pool/slow?ms=1200"))
        .bearer_auth(&admin)
        .send();
    let (done, reloaded) = futures_util::future::join(slow, async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        // Drop the route the slow request is on.
        s.overrides
            .lock()
            .unwrap()
            .push(("routes".into(), base_routes(json!([]))));
        read(s.client.post(s.url("/admin/reload")).bearer_auth(&admin)).await
    })
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    let done = done.unwrap();
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["slept_ms"], 1200);
    // New requests see the new table.
    s.get(&admin, "/pool/x").await.problem(404);
}

#[actix_web::test]
async fn composed_routes_fan_out_and_survive_a_failed_part() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (ua, ub) = (a.url(), b.url());
    let s = spawn_stack_with(move |l| {
        l.set(
            "upstreams.pool",
            json!({"targets": [{"name": "one", "url": ua.clone()}, {"name": "two", "url": ub.clone()}],
                   "health_check": {"enabled": false}, "passive": {"max_failures": 100}}),
        )
        .set(
            "composed",
            json!([
                {"path": "/api/fan", "method": "POST", "access": "authenticated", "fan_out": {"upstream": "pool", "path": "/scans"}},
                {"path": "/api/both", "method": "GET", "access": "authenticated", "timeout_ms": 500,
                 "parts": {"profile": {"upstream": "users", "path": "/me"}, "slow": {"upstream": "pool", "path": "/slow?ms=2000"}, "echo": {"upstream": "echo", "path": "/x?y=1"}}},
                {"path": "/api/fan-users", "method": "GET", "access": "authenticated", "fan_out": {"upstream": "users", "path": "/users"}},
            ]),
        )
    })
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "erin", &["user"]).await;
    let (erin, _) = s.tokens("erin", "erin-password-1").await;

    let r = s
        .send(
            &erin,
            Method::POST,
            "/api/fan",
            json!({"url": "http://example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["one"]["name"], "a");
    assert_eq!(r.body["two"]["name"], "b");
    for part in ["one", "two"] {
        let got = &r.body[part];
        assert_eq!(got["method"], "POST");
        assert_eq!(got["path"], "/scans");
        assert_eq!(got["body_len"], 28);
        assert!(got["headers"]["x-gateway-token"].is_string());
        assert_eq!(got["headers"]["request-user-roles"], "user");
    }
    // One part down: its error, the others' answers, status partial.
    b.kill().await;
    let r = s
        .send(
            &erin,
            Method::POST,
            "/api/fan",
            json!({"url": "http://example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "partial");
    assert_eq!(r.body["one"]["name"], "a");
    assert_eq!(r.body["two"]["error"]["status"], 502, "{}", r.text);

    // Named parts; the slow one runs out of time.
    let r = s.get(&erin, "/api/both").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "partial");
    assert_eq!(r.body["profile"]["username"], "erin");
    assert_eq!(r.body["echo"]["query"], "y=1");
    assert_eq!(r.body["slow"]["error"]["status"], 504);

    // Every part refuses the caller the same way: that answer, as it is.
    let r = s.get(&erin, "/api/fan-users").await;
    assert_eq!(r.problem(403)["type"], "urn:gatehouse:problem:forbidden");
    let r = s.get(&admin, "/api/fan-users").await;
    assert_eq!(r.body["status"], "success", "{}", r.text);

    read(s.client.post(s.url("/api/fan"))).await.invalid_token();
    s.get(&erin, "/api/fan").await.problem(405);
}
