//! The service registry every replica shares: a registration through one
//! replica is routed by the other on the next request (Redis pub/sub), a
//! removal through the other is gone on the first, both survive restarts,
//! the resync converges with Redis gone, and a bad registration stores
//! nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;

fn pool_routes(
    targets: Value,
    health: bool,
) -> impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static {
    move |l| {
        let mut pool = json!({"targets": targets.clone()});
        if health {
            pool["health_check"] = json!({"interval_secs": 1, "timeout_ms": 500,
                "healthy_threshold": 1, "unhealthy_threshold": 1});
            pool["passive"] = json!({"max_failures": 1, "cooldown_secs": 30});
        }
        l.set("upstreams.pool", pool)
            .set(
                "routes",
                base_routes(json!([{"prefix": "/pool", "upstream": "pool", "rewrite": "/", "access": "authenticated"}])),
            )
            .set("registry.resync_secs", 1)
    }
}

/// Which backends answered `n` requests to `/pool/x` on `base`.
async fn served_by(s: &Stack, base: &str, token: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = read(s.client.get(format!("{base}/pool/x")).bearer_auth(token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        *seen
            .entry(r.body["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

async fn register(s: &Stack, base: &str, token: &str, url: &str) -> Resp {
    read(
        s.client
            .post(format!("{base}/admin/upstreams/pool/targets"))
            .bearer_auth(token)
            .json(&json!({"url": url})),
    )
    .await
}

async fn deregister(s: &Stack, base: &str, token: &str, url: &str) -> Resp {
    read(
        s.client
            .delete(format!("{base}/admin/upstreams/pool/targets"))
            .bearer_auth(token)
            .json(&json!({"url": url})),
    )
    .await
}

async fn targets(s: &Stack, base: &str, token: &str) -> Vec<Value> {
    let r = read(
        s.client
            .get(format!("{base}/admin/upstreams"))
            .bearer_auth(token),
    )
    .await;
    r.body["upstreams"]["pool"]["targets"]
        .as_array()
        .unwrap()
        .clone()
}

async fn rows(s: &Stack) -> usize {
    let db = sea_orm::Database::connect(&s.gateway_db).await.unwrap();
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT url FROM upstream_registrations",
    ))
    .await
    .unwrap()
    .len()
}

#[actix_web::test]
async fn a_registration_is_routed_by_every_replica_at_once_and_outlives_restarts() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let prefix = format!("registry:{}:", uuid::Uuid::new_v4().simple());
    let config = {
        let (pool, redis) = (pool_routes(json!([a.url()]), false), with_redis(prefix));
        move |l| redis(pool(l))
    };
    let s = spawn_stack_with(config.clone()).await;
    let (replica, replica_handle) = s.another_gateway(&config).await;
    let admin = admin_token(&s).await;

    // Registered through this replica: the other routes to it at once.
    let r = register(&s, &s.gw, &admin, &b.url()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let seen = served_by(&s, &replica, &admin, 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b"], "{seen:?}");
    // Told apart: configured, or registered by whom and when.
    let listed = targets(&s, &replica, &admin).await;
    let of = |url: &str| listed.iter().find(|t| t["url"] == url).unwrap().clone();
    assert_eq!(of(&a.url())["source"], "config");
    let reg = of(&b.url());
    assert_eq!(reg["source"], "registered", "{reg}");
    let admin_id = read(s.client.get(s.url("/api/me")).bearer_auth(&admin))
        .await
        .body["id"]
        .clone();
    assert_eq!(reg["registered_by"], admin_id);
    assert!(reg["registered_at"].is_string());

    // Removed through the other replica: gone here at once; a configured
    // target can be taken out too.
    let r = deregister(&s, &replica, &admin, &b.url()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = served_by(&s, &s.gw, &admin, 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");
    assert_eq!(register(&s, &replica, &admin, &c.url()).await.status, 201);
    assert_eq!(deregister(&s, &s.gw, &admin, &a.url()).await.status, 200);
    let seen = served_by(&s, &replica, &admin, 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["c"], "{seen:?}");

    // Both replicas restarted: what was registered and removed holds.
    s.gw_handle.stop(true).await;
    replica_handle.stop(true).await;
    let (first, _h1) = s.another_gateway(&config).await;
    let (second, _h2) = s.another_gateway(&config).await;
    for base in [&first, &second] {
        let seen = served_by(&s, base, &admin, 4).await;
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["c"], "{base}: {seen:?}");
    }
    // And the configured one comes back when registered again.
    assert_eq!(register(&s, &first, &admin, &a.url()).await.status, 201);
    let seen = served_by(&s, &second, &admin, 6).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"], "{seen:?}");
    assert_eq!(
        targets(&s, &second, &admin)
            .await
            .iter()
            .find(|t| t["url"] == a.url())
            .unwrap()["source"],
        "config"
    );
}

#[actix_web::test]
async fn with_redis_gone_the_resync_converges() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let config = {
        let pool = pool_routes(json!([a.url()]), false);
        move |l: common::config::Loader| pool(l).pin("redis.url", url.clone())
    };
    let s = spawn_stack_with(config.clone()).await;
    let (replica, _h) = s.another_gateway(&config).await;
    let admin = admin_token(&s).await;
    drop(redis);
    let r = register(&s, &s.gw, &admin, &b.url()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The other replica reads the registry again within the resync (1 s).
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        seen = served_by(&s, &replica, &admin, 4).await;
        if seen.len() == 2 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b"], "{seen:?}");
}

#[actix_web::test]
async fn a_bad_registration_is_a_422_and_stores_nothing() {
    let a = Backend::start("a").await;
    let s = spawn_stack_with({
        let pool = pool_routes(json!([a.url()]), false);
        move |l| {
            pool(l).set(
                "registry.allowed_targets",
                json!(["127.0.0.0/8", "*.internal"]),
            )
        }
    })
    .await;
    let admin = admin_token(&s).await;
    for bad in [
        "ftp://127.0.0.1:21",
        "http://user:secret@127.0.0.1:8080",
        "http://127.0.0.1",
        "https://orders.internal",
        "http://:8080",
        "http://127.0.0.1:8080/?x=1",
        "http://192.0.2.1:8080",
        "http://evil.example:80",
        "nonsense",
        // A host the URL parser would read as another, the port 0, a URL
        // longer than the registry stores.
        "http://169.254.169.254\u{3002}svc.internal:80",
        "http://169.254.169.254%2esvc.internal:80",
        "http://127.0.0.1:0",
        &format!("http://127.0.0.1:8080/{}", "a".repeat(10_000)),
    ] {
        let r = register(&s, &s.gw, &admin, bad).await;
        assert_eq!(
            r.problem(422)["errors"][0]["field"],
            "url",
            "{bad}: {}",
            r.text
        );
    }
    assert_eq!(rows(&s).await, 0);
    // Allowed, but not answering its health check: nothing is stored.
    let r = register(&s, &s.gw, &admin, "http://orders.internal:8080").await;
    assert!(
        r.problem(422)["errors"][0]["message"]
            .as_str()
            .is_some_and(|d| d.contains("health check")),
        "{}",
        r.text
    );
    assert_eq!(rows(&s).await, 0);
    // The upstream that checks credentials takes no registration.
    let users = read(
        s.client
            .post(s.url("/admin/upstreams/users/targets"))
            .bearer_auth(&admin)
            .json(&json!({"url": a.url()})),
    )
    .await;
    users.problem(403);
    assert_eq!(rows(&s).await, 0);
    // Allowed and answering: stored.
    let b = Backend::start("b").await;
    assert_eq!(register(&s, &s.gw, &admin, &b.url()).await.status, 201);
    assert_eq!(rows(&s).await, 1);
    // Audited, with the admin as actor.
    audit_until(&s, &admin, "?event=admin.target.added", |items| {
        items.iter().any(|e| e["result"] == "success")
            && items.iter().any(|e| e["result"] == "failure")
    })
    .await;
}

#[actix_web::test]
async fn registered_targets_are_checked_and_drained_like_configured_ones() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let s = spawn_stack_with(pool_routes(json!([a.url()]), true)).await;
    let admin = admin_token(&s).await;
    assert_eq!(register(&s, &s.gw, &admin, &b.url()).await.status, 201);
    // Only b in rotation (the configured a taken out), a slow request on
    // it, b removed meanwhile: the request finishes.
    assert_eq!(deregister(&s, &s.gw, &admin, &a.url()).await.status, 200);
    let slow = {
        let (client, url, token) = (s.client.clone(), s.url("/pool/slow?ms=1500"), admin.clone());
        actix_web::rt::spawn(async move { read(client.get(&url).bearer_auth(&token)).await })
    };
    let mut removed = false;
    for _ in 0..40 {
        if targets(&s, &s.gw, &admin)
            .await
            .iter()
            .any(|t| t["url"] == b.url() && t["in_flight"].as_u64() == Some(1))
        {
            assert_eq!(deregister(&s, &s.gw, &admin, &b.url()).await.status, 200);
            removed = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(removed, "the slow request never reached b");
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "b");
    assert_eq!(register(&s, &s.gw, &admin, &a.url()).await.status, 201);

    // Health checks take a dead registered target out of rotation.
    let c = Backend::start("c").await;
    assert_eq!(register(&s, &s.gw, &admin, &c.url()).await.status, 201);
    c.kill().await;
    let mut health = String::new();
    for _ in 0..50 {
        let listed = targets(&s, &s.gw, &admin).await;
        health = listed
            .iter()
            .find(|t| t["url"] == c.url())
            .map(|t| t["health"].as_str().unwrap().to_owned())
            .unwrap_or_default();
        if health != "healthy" {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(health, "healthy");
    let seen = served_by(&s, &s.gw, &admin, 6).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");
}
