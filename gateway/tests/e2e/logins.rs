//! Login limits that concurrency, many addresses and several replicas cannot
//! outrun; usernames compared as the users service compares them; client
//! addresses believed only from trusted proxies; a NAT not locked out by one
//! guesser.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::helpers::*;

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is
/// this host's), so the gateway sees distinct peers.
fn client_from(ip: &str) -> reqwest::Client {
    testkit::client_builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_at(client: &reqwest::Client, gw: &str, username: &str, password: &str) -> Resp {
    read(
        client
            .post(format!("{gw}/api/login"))
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

fn statuses(rs: &[Resp]) -> (usize, usize) {
    let checked = rs.iter().filter(|r| r.status == 401).count();
    let refused = rs.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + refused, rs.len(), "only 401 or 429");
    (checked, refused)
}

#[actix_web::test]
async fn concurrent_wrong_passwords_are_checked_at_most_max_failures_times() {
    let s = spawn_stack().await;
    // Twenty at once from one address (within its login rate of 20).
    let all = futures_util::future::join_all(
        (0..20).map(|_| login_at(&s.client, &s.gw, "admin", "wrong-password-000")),
    )
    .await;
    let (checked, refused) = statuses(&all);
    assert_eq!(checked, 5, "{checked} wrong passwords were checked");
    assert_eq!(refused, 15);
    for r in all.iter().filter(|r| r.status == 429) {
        r.problem(429);
        assert!(r.headers.contains_key("retry-after"), "{}", r.text);
    }
    // And the right password is refused too until the lockout ends.
    s.login("admin", ADMIN_PASSWORD).await.problem(429);
}

#[actix_web::test]
async fn many_addresses_and_two_replicas_share_one_budget() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    let s = spawn_stack_with(shared.clone()).await;
    let (b, _handle) = s.another_gateway(&shared).await;
    let gateways = [s.gw.clone(), b];
    // 100 wrong passwords at once from five addresses over both replicas.
    let clients: Vec<reqwest::Client> = (2..7)
        .map(|i| client_from(&format!("127.0.0.{i}")))
        .collect();
    let all = futures_util::future::join_all((0..100).map(|i| {
        login_at(
            &clients[i % 5],
            &gateways[i % 2],
            "admin",
            "wrong-password-000",
        )
    }))
    .await;
    let (checked, _) = statuses(&all);
    assert_eq!(checked, 5, "{checked} wrong passwords were checked");
    // Locked on both replicas, from any address.
    for gw in &gateways {
        login_at(&client_from("127.0.0.9"), gw, "admin", ADMIN_PASSWORD)
            .await
            .problem(429);
    }
}

#[actix_web::test]
async fn spellings_of_one_username_share_one_counter() {
    let s = spawn_stack().await;
    for name in [
        "Admin",
        " admin",
        "ADMIN",
        "admin\t",
        "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
    ] {
        s.login(name, "wrong-password-000").await.problem(401);
    }
    s.login("admin", ADMIN_PASSWORD).await.problem(429);
}

#[actix_web::test]
async fn a_guesser_behind_a_nat_locks_out_one_user_not_the_address() {
    let s = spawn_stack_with(|l| {
        l.set("login_limits.rate", Value::Null).set(
            "login_limits.per_ip",
            json!({"max_failures": 30, "window_secs": 900, "lockout_secs": 300}),
        )
    })
    .await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "bob", &["user"]).await;
    let nat = client_from("127.0.0.20");
    // Twenty guesses at alice's account: five checked, the rest refused.
    for _ in 0..20 {
        let r = login_at(&nat, &s.gw, "alice", "wrong-password-000").await;
        assert!(r.status == 401 || r.status == 429, "{}", r.text);
    }
    // Bob, behind the same address, logs in.
    let r = login_at(&nat, &s.gw, "bob", "bob-password-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A guesser spreading over usernames runs out of the address's budget.
    let mut refused = 0;
    for i in 0..40 {
        let r = login_at(&nat, &s.gw, &format!("user{i:03}"), "wrong-password-000").await;
        if r.status == 429 {
            refused += 1;
        } else {
            r.problem(401);
        }
    }
    assert!(refused >= 14, "{refused} of 40 refused");
    // Now the address is locked for everyone behind it; another one is not.
    login_at(&nat, &s.gw, "bob", "bob-password-1")
        .await
        .problem(429);
    let r = login_at(&client_from("127.0.0.21"), &s.gw, "bob", "bob-password-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_web::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let s = spawn_stack_with(|l| l.set("trusted_proxies", "127.0.0.30")).await;
    let echo = |client: reqwest::Client, xff: &'static str| {
        let url = s.url("/public/x");
        async move {
            read(client.get(url).header("x-forwarded-for", xff))
                .await
                .body["headers"]["x-forwarded-for"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // From the trusted proxy: the client it names.
    assert_eq!(
        echo(client_from("127.0.0.30"), "6.6.6.6, 203.0.113.5").await,
        "203.0.113.5"
    );
    // From anyone else: the peer, whatever it claims.
    assert_eq!(
        echo(client_from("127.0.0.31"), "203.0.113.5").await,
        "127.0.0.31"
    );
    // The login limits follow the believed address: one guesser behind the
    // proxy does not lock out another client behind it.
    let proxy = client_from("127.0.0.30");
    let behind = |ip: &'static str, name: &'static str, password: &'static str| {
        read(
            proxy
                .post(s.url("/api/login"))
                .header("x-forwarded-for", ip)
                .json(&json!({"username": name, "password": password})),
        )
    };
    // At once, so that a slow machine cannot refill the rate (10/s) between
    // them: 203.0.113.5 uses up its burst of 20; 203.0.113.6 has its own.
    let answers = futures_util::future::join_all(
        (0..40).map(|_| behind("203.0.113.5", "nobody", "wrong-password-000")),
    )
    .await;
    assert!(answers.iter().all(|r| r.status == 401 || r.status == 429));
    let limited = answers
        .iter()
        .filter(|r| r.body["type"] == "urn:gatehouse:problem:rate-limited")
        .count();
    assert!(
        limited >= 10,
        "{limited} of 40 over the burst of 20 refused"
    );
    behind("203.0.113.6", "somebody-else", "wrong-password-000")
        .await
        .problem(401);
}

#[actix_web::test]
async fn login_and_refresh_say_when_to_come_back_when_users_cannot_answer() {
    let s = spawn_stack().await;
    let (_, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    // A replica whose users service is out of reach.
    let (gw, _handle) = s
        .another_gateway(&|l: common::config::Loader| {
            l.set("upstreams.users", json!(["http://127.0.0.1:9"]))
        })
        .await;
    let login = login_at(&s.client, &gw, "admin", ADMIN_PASSWORD).await;
    login.problem(503);
    assert_eq!(login.headers["retry-after"], "1");
    let r = read(
        s.client
            .post(format!("{gw}/api/refresh"))
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    r.problem(503);
    assert_eq!(r.headers["retry-after"], "1");
    // No verdict, no failure counted: the right password works elsewhere.
    assert_eq!(s.login("admin", ADMIN_PASSWORD).await.status, 200);
}
