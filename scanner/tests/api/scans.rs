//! Scans of real servers on loopback (allowed by `allowed_targets` for these
//! tests): what a scan reports for good and bad headers, cookies, redirects,
//! unreachable, slow and endless targets.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::targets;

fn states(body: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = body["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, c)| (k.clone(), c["state"].as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[actix_web::test]
async fn good_headers_grade_a_and_the_result_reads_back() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let url = target.url("/good#fragment");
    let r = app.scanned(&app.alice, &url).await;
    let id = r.id();
    assert_eq!(r.headers["location"], format!("/scans/{id}"));
    let b = r.body.clone();
    assert_eq!(b["url"], target.url("/good"), "fragment dropped");
    assert_eq!(b["final_url"], target.url("/good"));
    assert_eq!(b["status_code"], 200);
    assert_eq!(b["tls"], false);
    assert_eq!(b["redirects"], json!([]));
    assert_eq!(b["error"], Value::Null);
    assert_eq!(b["instance"], "scanner1");
    assert_eq!(b["user_id"], id_of(&app.alice).to_string());
    assert!(b["response_time_ms"].as_u64().unwrap() < 5_000);
    assert_eq!(b["body_bytes"], 4);
    assert_eq!(b["body_truncated"], false);
    assert_eq!(
        states(&b),
        pairs(&[
            ("content_security_policy", "present"),
            ("framing", "present"),
            ("permissions_policy", "present"),
            ("referrer_policy", "present"),
            ("strict_transport_security", "not_applicable"),
            ("x_content_type_options", "present"),
        ])
    );
    assert_eq!(
        b["headers"]["x_content_type_options"]["value"], "nosniff",
        "the value as sent"
    );
    assert_eq!(b["banners"], json!([]), "`Server: target` has no version");
    assert_eq!(
        b["cookies"],
        json!([{"name": "sid", "secure": true, "http_only": true, "same_site": "Strict", "issues": []}])
    );
    // Plain HTTP costs 10: the best a plain-HTTP site can do, still an A.
    assert_eq!(b["score"], 90);
    assert_eq!(b["grade"], "A");

    let g = app.get(&app.alice, &format!("/scans/{id}")).await;
    assert_eq!(g.ok(200), &b, "reads back exactly as returned");
}

#[actix_web::test]
async fn bad_and_missing_headers_grade_low_with_reasons() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;

    let b = app.scanned(&app.alice, &target.url("/bad")).await.body;
    assert_eq!(
        states(&b),
        pairs(&[
            ("content_security_policy", "misconfigured"),
            ("framing", "misconfigured"),
            ("permissions_policy", "missing"),
            ("referrer_policy", "misconfigured"),
            ("strict_transport_security", "not_applicable"),
            ("x_content_type_options", "misconfigured"),
        ])
    );
    let h = &b["headers"];
    assert!(
        h["content_security_policy"]["reason"]
            .as_str()
            .unwrap()
            .contains("'unsafe-inline'"),
        "{h}"
    );
    assert!(
        h["referrer_policy"]["reason"]
            .as_str()
            .unwrap()
            .contains("unsafe-url")
    );
    assert!(
        h["framing"]["reason"]
            .as_str()
            .unwrap()
            .contains("DENY or SAMEORIGIN")
    );
    assert!(
        h["strict_transport_security"]["reason"]
            .as_str()
            .unwrap()
            .contains("plain HTTP")
    );
    assert_eq!(
        b["banners"],
        json!([
            {"header": "Server", "value": "Apache/2.4.41 (Ubuntu)"},
            {"header": "X-Powered-By", "value": "PHP/7.4.3"},
            {"header": "X-AspNet-Version", "value": "4.0.30319"},
        ])
    );
    // 100 - 10 (http) - 8 (csp) - 5 (framing) - 5 (nosniff) - 3 (referrer)
    // - 5 (permissions) - 10 (banners, capped)
    assert_eq!(b["score"], 54);
    assert_eq!(b["grade"], "F");

    let b = app.scanned(&app.alice, &target.url("/bare")).await.body;
    assert!(
        states(&b)
            .iter()
            .all(|(k, s)| s == "missing" || k == "strict_transport_security"),
        "{b}"
    );
    assert_eq!(b["score"], 45);
    assert_eq!(b["grade"], "F");
}

#[actix_web::test]
async fn cookie_flags_are_reported() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let b = app.scanned(&app.alice, &target.url("/cookies")).await.body;
    let cookies = b["cookies"].as_array().unwrap();
    let by_name = |n: &str| cookies.iter().find(|c| c["name"] == n).unwrap().clone();
    let plain = by_name("plain");
    assert_eq!(
        (&plain["secure"], &plain["http_only"], &plain["same_site"]),
        (&json!(false), &json!(false), &Value::Null)
    );
    assert_eq!(plain["issues"].as_array().unwrap().len(), 2);
    let tracker = by_name("tracker");
    assert_eq!(tracker["same_site"], "None");
    assert!(
        tracker["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().contains("SameSite=None without Secure")),
        "{tracker}"
    );
    let script = by_name("script");
    assert_eq!(
        (&script["secure"], &script["http_only"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(script["issues"].as_array().unwrap().len(), 1);
    assert_eq!(by_name("session")["issues"], json!([]));
    // Headers all missing (45), and three bad cookies cost the 15 cap.
    assert_eq!(b["score"], 30);
}

#[actix_web::test]
async fn a_redirect_chain_is_recorded_hop_by_hop() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let b = app.scanned(&app.alice, &target.url("/hop/3")).await.body;
    assert_eq!(
        b["redirects"],
        json!([
            {"url": target.url("/hop/3"), "status": 307},
            {"url": target.url("/hop/2"), "status": 303},
            {"url": target.url("/hop/1"), "status": 302},
        ])
    );
    assert_eq!(b["url"], target.url("/hop/3"));
    assert_eq!(b["final_url"], target.url("/hop/0"));
    assert_eq!(b["status_code"], 200);
    assert_eq!(b["grade"], "A");

    // Five redirects are followed; a sixth is an error, recorded.
    let b = app.scanned(&app.alice, &target.url("/hop/5")).await.body;
    assert_eq!(b["redirects"].as_array().unwrap().len(), 5);
    assert_eq!(b["status_code"], 200);
    let b = app.scanned(&app.alice, &target.url("/hop/6")).await.body;
    assert_eq!(b["error"], "too many redirects (more than 5)");
    assert_eq!(b["redirects"].as_array().unwrap().len(), 5);
    assert_eq!(b["status_code"], Value::Null);
    assert_eq!(b["headers"], Value::Null);
    assert_eq!((&b["score"], &b["grade"]), (&json!(0), &json!("F")));
}

#[actix_web::test]
async fn a_redirect_to_a_refused_address_is_refused_naming_the_hop() {
    let target = targets::start();
    let other = targets::start_on("127.0.0.2");
    // Only the target's own address is allowed.
    let app = spawn_with(Config {
        allowed_targets: vec!["127.0.0.1/32"],
        ..Config::default()
    })
    .await;
    for (to, why) in [
        (other.url("/good"), "target address 127.0.0.2 is loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "target address 169.254.169.254 is link-local",
        ),
        (
            "http://10.0.0.1/".to_owned(),
            "target address 10.0.0.1 is private",
        ),
        (
            "http://[::1]:1/".to_owned(),
            "target address ::1 is loopback",
        ),
        ("ftp://example.com/".to_owned(), "only http and https"),
        ("http://user:pw@127.0.0.1/".to_owned(), "credentials"),
    ] {
        let from = format!("{}?to={}", target.url("/to"), urlencode(&to));
        let r = app.scan(&app.alice, &from).await;
        let detail = r.refused();
        assert!(detail.starts_with("redirect 1 to "), "{detail}");
        assert!(detail.contains(why), "{to}: {detail}");
    }
    // A redirect to an allowed address is followed.
    let from = format!(
        "{}?to={}",
        target.url("/to"),
        urlencode(&target.url("/good"))
    );
    let b = app.scanned(&app.alice, &from).await.body;
    assert_eq!(b["final_url"], target.url("/good"));
    assert_eq!(app.total(&app.alice).await, 1, "refusals leave no record");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[actix_web::test]
async fn an_unreachable_target_is_recorded_with_its_error() {
    let app = spawn_with(Config::loopback()).await;
    let url = format!("http://127.0.0.1:{}/", targets::closed_port());
    let r = app.scanned(&app.alice, &url).await;
    let b = &r.body;
    assert_eq!(b["error"], "connection refused");
    assert_eq!(b["status_code"], Value::Null);
    assert_eq!(b["headers"], Value::Null);
    assert_eq!(b["final_url"], url);
    assert_eq!((&b["score"], &b["grade"]), (&json!(0), &json!("F")));
    let g = app.get(&app.alice, &format!("/scans/{}", r.id())).await;
    assert_eq!(g.ok(200), b);
}

#[actix_web::test]
async fn a_name_that_does_not_resolve_is_recorded_with_its_error() {
    let app = spawn_with(Config {
        timeout_ms: 3_000,
        ..Config::default()
    })
    .await;
    let b = app
        .scanned(&app.alice, "http://no-such-host.invalid/")
        .await
        .body;
    let e = b["error"].as_str().unwrap();
    assert!(
        e.contains("DNS lookup of no-such-host.invalid") || e.starts_with("timed out"),
        "{e}"
    );
    assert_eq!(b["grade"], "F");
}

#[actix_web::test]
async fn a_slow_target_times_out_on_time() {
    let target = targets::start();
    let app = spawn_with(Config {
        timeout_ms: 700,
        ..Config::loopback()
    })
    .await;
    let started = Instant::now();
    let b = app.scanned(&app.alice, &target.url("/slow")).await.body;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(
        took < Duration::from_millis(700 + 1_500),
        "bounded: {took:?}"
    );
    assert_eq!(b["error"], "timed out after 700 ms");
    assert_eq!(b["status_code"], Value::Null);
    assert_eq!(b["grade"], "F");
}

#[actix_web::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let target = targets::start();
    let app = spawn_with(Config {
        max_body_bytes: 256 * 1024,
        ..Config::loopback()
    })
    .await;
    let started = Instant::now();
    let b = app.scanned(&app.alice, &target.url("/endless")).await.body;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b["status_code"], 200);
    assert_eq!(b["body_bytes"], 256 * 1024);
    assert_eq!(b["body_truncated"], true);
    assert_eq!(b["error"], Value::Null);
    assert_eq!(b["grade"], "A");
}

#[actix_web::test]
async fn a_trickling_body_ends_at_the_deadline_with_its_head_scored() {
    let target = targets::start();
    let app = spawn_with(Config {
        timeout_ms: 800,
        ..Config::loopback()
    })
    .await;
    let started = Instant::now();
    let b = app.scanned(&app.alice, &target.url("/trickle")).await.body;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800 + 1_500),
        "bounded: {took:?}"
    );
    assert_eq!(b["status_code"], 200);
    assert_eq!(b["body_truncated"], true);
    assert!(b["body_bytes"].as_u64().unwrap() < 100, "{b}");
    assert_eq!(b["error"], Value::Null);
    assert_eq!(b["grade"], "A");
}

#[actix_web::test]
async fn https_to_a_server_that_does_not_speak_tls_is_recorded_as_failed() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let url = target.url("/good").replace("http://", "https://");
    let b = app.scanned(&app.alice, &url).await.body;
    let e = b["error"].as_str().unwrap();
    assert!(e.starts_with("connection failed"), "{e}");
    assert_eq!(b["tls"], false);
    assert_eq!(b["status_code"], Value::Null);
    assert_eq!(b["grade"], "F");
}

#[actix_web::test]
async fn one_caller_cannot_hold_every_scan_slot() {
    let app = spawn_with(Config {
        timeout_ms: 1_500,
        ..Config::loopback()
    })
    .await;
    let target = targets::start();
    let slow = target.url("/slow");
    // Three of alice's scans at once on a slow target: two run, one is
    // refused at once; bob is not held back by alice.
    let alice = (0..3).map(|_| app.scan(&app.alice, &slow));
    let (alice, bob) = tokio::join!(
        futures_util::future::join_all(alice),
        app.scan(&app.bob, &slow)
    );
    let mut codes: Vec<u16> = alice.iter().map(|r| r.status.as_u16()).collect();
    codes.sort();
    assert_eq!(codes, [201, 201, 429], "{alice:?}");
    let refused = alice.iter().find(|r| r.status == 429).unwrap();
    refused.problem(429);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(bob.status, 201, "{}", bob.text);
    // Once they end, alice scans again.
    assert_eq!(app.scan(&app.alice, &slow).await.status, 201);
}
