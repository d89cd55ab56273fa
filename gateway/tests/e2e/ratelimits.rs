//! Route rate limits: in memory, shared by two gateways through one Redis,
//! and with Redis unreachable or dying mid-run (local limiting, never a 500).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Routes with limits: per user on `/limited`, per IP on the public `/open`.
fn limited_routes() -> Value {
    base_routes(json!([
        {"prefix": "/limited", "upstream": "echo", "access": "authenticated", "rate_limit": {"rate": "3/m", "burst": 3}},
        {"prefix": "/open", "upstream": "echo", "access": "public", "rate_limit": {"rate": "2/m", "by": "ip"}},
    ]))
}

async fn statuses(s: &Stack, base: &str, token: &str, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = read(s.client.get(format!("{base}{path}")).bearer_auth(token)).await;
        out.push(r.status.as_u16());
    }
    out
}

#[actix_web::test]
async fn limits_answer_429_with_the_ratelimit_headers() {
    let s = spawn_stack_with(|l| {
        l.set("routes", limited_routes())
            .pin("redis.url", Option::<String>::None)
    })
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "dave", &["user"]).await;
    let (dave, _) = s.tokens("dave", "dave-password-1").await;

    let first = s.get(&dave, "/limited/x").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["ratelimit-policy"], "\"route\";q=3;w=60");
    assert_eq!(first.headers["ratelimit"], "\"route\";r=2;t=20");
    assert_eq!(
        statuses(&s, &s.gw, &dave, "/limited/x", 2).await,
        [200, 200]
    );
    let r = s.get(&dave, "/limited/x").await;
    let p = r.problem(429);
    assert_eq!(p["type"], "urn:gatehouse:problem:rate-limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(r.headers["ratelimit"].to_str().unwrap().contains("r=0"));
    // Per user: another caller has its own budget.
    assert_eq!(
        statuses(&s, &s.gw, &admin, "/limited/x", 3).await,
        [200, 200, 200]
    );
    // Per IP on a public route.
    assert_eq!(statuses(&s, &s.gw, "", "/open/x", 3).await, [200, 200, 429]);
    // Counted in the metrics.
    let m = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("gatehouse_rate_limited_total{route=\"/limited\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_rate_limited_total{route=\"/open\"} 1"),
        "{m}"
    );
}

#[actix_web::test]
async fn two_gateways_share_one_limit_through_redis() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    let f = move |l: common::config::Loader| shared(l.set("routes", limited_routes()));
    let s = spawn_stack_with(f.clone()).await;
    let (b, _handle) = s.another_gateway(&f).await;
    let admin = admin_token(&s).await;
    let ready: Value = s
        .client
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["rate_limits"], "redis", "{ready}");
    // One budget of 3 across both gateways, whichever is asked.
    let mut seen = statuses(&s, &s.gw, &admin, "/limited/x", 2).await;
    seen.extend(statuses(&s, &b, &admin, "/limited/x", 2).await);
    seen.extend(statuses(&s, &s.gw, &admin, "/limited/x", 1).await);
    assert_eq!(seen, [200, 200, 200, 429, 429]);
}

#[actix_web::test]
async fn unreachable_redis_falls_back_to_local_limits() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("redis://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let s = spawn_stack_with(move |l| {
        l.set("routes", limited_routes())
            .pin("redis.url", closed.clone())
    })
    .await;
    let admin = admin_token(&s).await;
    // Still limited (never an open door), never a 500.
    assert_eq!(
        statuses(&s, &s.gw, &admin, "/limited/x", 5).await,
        [200, 200, 200, 429, 429]
    );
    let ready: Value = s
        .client
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["rate_limits"], "local (redis unreachable)", "{ready}");
    let m = testkit::http::scrape(s.client.get(s.url("/metrics"))).await;
    let fallbacks = testkit::http::sample(&m, "gatehouse_rate_limit_fallbacks_total");
    assert!(fallbacks >= 5.0, "{fallbacks}");
}

/// Where `/readyz` says the rate limits live (`redis`, or local and why).
async fn rate_limit_state(s: &Stack) -> String {
    let v: Value = s
        .client
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["rate_limits"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn redis_dying_mid_run_degrades_to_local_limits_and_comes_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let s = spawn_stack_with(move |l| {
        l.set("routes", limited_routes())
            .pin("redis.url", url.clone())
    })
    .await;
    let admin = admin_token(&s).await;
    let state = async || rate_limit_state(&s).await;
    assert_eq!(state().await, "redis");
    assert_eq!(
        statuses(&s, &s.gw, &admin, "/limited/x", 4).await,
        [200, 200, 200, 429]
    );
    drop(redis);
    // Redis gone. The refusal Redis gave is remembered until its
    // Retry-After (no cell can free up sooner), so that key stays refused
    // without asking anyone.
    assert_eq!(
        statuses(&s, &s.gw, &admin, "/limited/x", 3).await,
        [429, 429, 429]
    );
    // A key that needs Redis finds it gone: the local limiter starts its
    // own count; still limited.
    let after = statuses(&s, &s.gw, &admin, "/open/x", 5).await;
    assert!(after.iter().all(|c| *c == 200 || *c == 429), "{after:?}");
    assert!(
        after.iter().filter(|c| **c == 200).count() <= 2,
        "{after:?}"
    );
    assert_eq!(after.last(), Some(&429), "{after:?}");
    assert_eq!(state().await, "local (redis unreachable)");
    // Back on its port: the gateway returns to Redis by itself.
    let _redis = OwnRedis::start(port);
    let mut back = false;
    for _ in 0..50 {
        let _ = statuses(&s, &s.gw, &admin, "/open/x", 1).await;
        if state().await == "redis" {
            back = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the gateway never went back to Redis");
}

/// The same calls against another replica of the stack's gateway.
struct Replica<'a> {
    base: String,
    s: &'a Stack,
}

impl Replica<'_> {
    async fn me(&self, token: &str) -> Resp {
        read(
            self.s
                .client
                .get(format!("{}/api/me", self.base))
                .bearer_auth(token),
        )
        .await
    }
    async fn refresh(&self, refresh: &str) -> Resp {
        read(
            self.s
                .client
                .post(format!("{}/api/refresh", self.base))
                .json(&json!({"refresh_token": refresh})),
        )
        .await
    }
    async fn login(&self, username: &str, password: &str) -> Resp {
        read(
            self.s
                .client
                .post(format!("{}/api/login", self.base))
                .json(&json!({"username": username, "password": password})),
        )
        .await
    }
    async fn logout(&self, access: &str, refresh: &str) -> Resp {
        read(
            self.s
                .client
                .post(format!("{}/api/logout", self.base))
                .bearer_auth(access)
                .json(&json!({"refresh_token": refresh})),
        )
        .await
    }
}

/// Two gateway replicas on one database and one Redis: a session started on
/// A refreshes on B, a logout on A is refused on B at once (announced
/// through Redis), and login failures count across both.
#[actix_web::test]
async fn replicas_share_sessions_revocations_and_login_lockouts_through_redis() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    // Long enough that only Redis can explain what B knows.
    let f = move |l| shared(l).set("revocations.resync_secs", 3600);
    let s = spawn_stack_with(f.clone()).await;
    let (b_url, _handle) = s.another_gateway(&f).await;
    let a = Replica {
        base: s.gw.clone(),
        s: &s,
    };
    let b = Replica { base: b_url, s: &s };
    let admin = admin_token(&s).await;
    s.create_user(&admin, "carol", &["user"]).await;

    // Login on A, refresh on B.
    let (access, refresh) = s.tokens("carol", "carol-password-1").await;
    let r = b.refresh(&refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access2 = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(b.me(&access).await.status, 200);
    assert_eq!(b.me(&access2).await.status, 200);
    // Logout on A: B refuses the token on the very next request.
    let out = a.logout(&access2, &refresh2).await;
    assert_eq!(out.status, 204, "{}", out.text);
    b.me(&access2).await.invalid_token();
    assert_eq!(b.refresh(&refresh2).await.status, 401);

    // Five failures spread over both replicas lock the username on both.
    for (i, r) in [&a, &b, &a, &b, &a].iter().enumerate() {
        let res = r.login("carol", "wrong-password-xx").await;
        assert_eq!(res.status, 401, "failure {i}: {}", res.text);
    }
    for r in [&a, &b] {
        let res = r.login("carol", "carol-password-1").await;
        res.problem(429);
        assert!(res.headers.contains_key("retry-after"));
    }
}

/// Without Redis, replicas on one database still converge: B re-reads the
/// deny list every `revocations.resync_secs`.
#[actix_web::test]
async fn without_redis_a_logout_reaches_other_replicas_by_resync() {
    let f = |l: common::config::Loader| {
        l.pin("redis.url", Value::Null)
            .set("revocations.resync_secs", 1)
    };
    let s = spawn_stack_with(f).await;
    let (b_url, _handle) = s.another_gateway(&f).await;
    let a = Replica {
        base: s.gw.clone(),
        s: &s,
    };
    let b = Replica { base: b_url, s: &s };
    let (access, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(b.me(&access).await.status, 200);
    assert_eq!(a.logout(&access, &refresh).await.status, 204);
    let started = std::time::Instant::now();
    while b.me(&access).await.status != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B never caught up"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Login attempts per client IP are limited whatever their outcome: each
/// one costs an argon2 verify.
#[actix_web::test]
async fn logins_from_one_address_are_rate_limited() {
    let s =
        spawn_stack_with(|l| l.set("login_limits.rate", json!({"rate": "2/m", "burst": 3}))).await;
    for i in 0..3 {
        let r = s.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status, 200, "login {i}: {}", r.text);
    }
    let r = s.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.problem(429)["type"], "urn:gatehouse:problem:rate-limited");
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.headers.contains_key("ratelimit-policy"));
}

#[actix_web::test]
async fn redis_over_tls_is_verified_against_the_configured_ca() {
    let ca = testkit::pki::TestCa::new("redis CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "redis");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = OwnRedis::start_tls(port, &cert, &key);
    let state = rate_limit_state;
    let url = format!("rediss://localhost:{port}");
    let (u, ca_path) = (url.clone(), ca_file.clone());
    let s = spawn_stack_with(move |l| {
        l.set("routes", limited_routes())
            .pin("redis.url", u.clone())
            .set("redis.ca_file", ca_path.clone())
    })
    .await;
    assert_eq!(state(&s).await, "redis");
    let admin = admin_token(&s).await;
    assert_eq!(
        statuses(&s, &s.gw, &admin, "/limited/x", 4).await,
        [200, 200, 200, 429]
    );
    // A gateway that trusts another CA does not talk to it: local limits.
    let other = testkit::pki::TestCa::new("someone else");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other.pem()).unwrap();
    let s2 = spawn_stack_with(move |l| {
        l.set("routes", limited_routes())
            .pin("redis.url", url.clone())
            .set("redis.ca_file", other_file.clone())
    })
    .await;
    assert_eq!(state(&s2).await, "local (redis unreachable)");
}
