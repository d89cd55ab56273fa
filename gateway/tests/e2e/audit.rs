//! The audit trail: every security event the gateway and the users service
//! see is recorded (time, event, actor, subject, client, request id,
//! result; no secret), readable by admins at `GET /api/audit` with filters
//! and pages; a record that cannot be written fails nothing.

use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::*;

/// The audit trail as `admin` sees it with `query`, once it holds at least
/// `at_least` records (they are written beside the requests).
async fn audit(s: &Stack, admin: &str, query: &str, at_least: usize) -> Value {
    audit_until(s, admin, query, |items| items.len() >= at_least).await
}

fn events(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn security_events_are_recorded_and_read_back_by_admins() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let alice_id = s.create_user(&admin, "alice", &["user", "admin"]).await;
    // A failed login, with a request id of the client's.
    let r = read(
        s.client
            .post(s.url("/api/login"))
            .header("x-request-id", "audit-test-1")
            .json(&json!({"username": "alice", "password": "wrong-password-000"})),
    )
    .await;
    r.problem(401);
    let (alice, refresh) = s.tokens("alice", "alice-password-1").await;
    let r = s.refresh(&refresh).await;
    assert_eq!(r.status, 200);
    s.refresh(&refresh).await.problem(401); // reuse
    let (alice, _) = {
        let _ = alice;
        s.tokens("alice", "alice-password-1").await
    };
    let out = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&alice)
            .json(&json!({"refresh_token": "none"})),
    )
    .await;
    assert_eq!(out.status, 204);
    // Account changes, by the admin.
    let path = format!("/api/users/{alice_id}");
    for change in [
        json!({"roles": ["user"]}),
        json!({"password": "alice-password-2"}),
        json!({"is_active": false}),
    ] {
        assert_eq!(
            s.send(&admin, Method::PATCH, &path, change).await.status,
            200
        );
    }
    assert_eq!(
        s.send(&admin, Method::DELETE, &path, json!({}))
            .await
            .status,
        204
    );
    // An admin API change (a target that answers its health check).
    let extra = Backend::start("extra").await;
    let r = s
        .send(
            &admin,
            Method::POST,
            "/admin/upstreams/echo/targets",
            json!({"url": extra.url()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let expected = [
        "login.success",
        "login.failure",
        "refresh.success",
        "refresh.reuse",
        "logout",
        "user.roles_changed",
        "user.password_reset",
        "user.deactivated",
        "user.deleted",
        "sessions.ended",
        "admin.target.added",
    ];
    let has = |items: &[Value], e: &str| items.iter().any(|i| i["event"] == e);
    let page = audit_until(&s, &admin, "?limit=200", |items| {
        expected.iter().all(|e| has(items, e))
    })
    .await;
    let all = events(&page);
    assert!(all.len() >= 13, "{all:?}");
    // Newest first, across both services.
    let items = page["items"].as_array().unwrap();
    let times: Vec<&str> = items.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    let services: std::collections::BTreeSet<&str> = items
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["gateway", "users"].into());
    assert_eq!(page["missing"], json!([]));
    // Who, what, from where, which request; never a secret.
    let failure = items
        .iter()
        .find(|e| e["event"] == "login.failure")
        .unwrap();
    assert_eq!(failure["subject"], "alice");
    assert_eq!(failure["actor"], Value::Null, "anonymous");
    assert_eq!(failure["client"], "127.0.0.1");
    assert_eq!(failure["request_id"], "audit-test-1");
    assert_eq!(failure["result"], "failure");
    let deactivated = items
        .iter()
        .find(|e| e["event"] == "user.deactivated")
        .unwrap();
    assert_eq!(deactivated["subject"], alice_id.as_str());
    assert!(deactivated["actor"].is_string(), "the admin did it");
    assert_eq!(deactivated["client"], "127.0.0.1");
    let text = page.to_string();
    for secret in [
        "alice-password-1",
        "alice-password-2",
        "wrong-password-000",
        &alice,
        &refresh,
    ] {
        assert!(!text.contains(secret), "a secret in the audit trail");
    }

    // Filters: event, actor, subject, time range.
    let only = audit(&s, &admin, "?event=login.failure", 1).await;
    assert_eq!(events(&only), ["login.failure"]);
    let admin_id = deactivated["actor"].as_str().unwrap();
    let by_admin = audit(&s, &admin, &format!("?actor={admin_id}&limit=200"), 1).await;
    assert!(
        by_admin["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == admin_id),
        "{by_admin}"
    );
    let about = audit(&s, &admin, &format!("?subject={alice_id}&limit=200"), 4).await;
    assert!(
        about["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["subject"] == alice_id.as_str())
    );
    let none = s.get(&admin, "/api/audit?until=2000-01-01T00:00:00Z").await;
    assert_eq!(none.body["items"], json!([]));
    // Pages follow on from each other with no gap and no overlap.
    let mut seen = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let page = s.get(&admin, &format!("/api/audit{query}")).await;
        let ids: Vec<String> = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(ids);
        match page.body["next"].as_str() {
            Some(next) => query = format!("?limit=4&before={next}"),
            None => break,
        }
    }
    let all_ids: Vec<String> = items
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen[..all_ids.len()],
        all_ids[..],
        "the same records, in order"
    );
}

#[actix_web::test]
async fn only_admins_read_the_trail_and_bad_filters_are_named() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "bob", &["user"]).await;
    let (bob, _) = s.tokens("bob", "bob-password-1").await;
    s.get(&bob, "/api/audit").await.problem(403);
    read(s.client.get(s.url("/api/audit")))
        .await
        .invalid_token();
    let r = s.get(&admin, "/api/audit?limit=0&before=garbage").await;
    r.problem(422);
    assert!(
        r.text.contains("limit") && r.text.contains("before"),
        "{}",
        r.text
    );
    s.get(&admin, "/api/audit?nonsense=1").await.problem(400);
    s.get(&admin, "/api/audit?event=%00").await.problem(422);
}

#[actix_web::test]
async fn an_unwritable_trail_fails_no_request_and_is_counted() {
    let s = spawn_stack().await;
    let db = sea_orm::Database::connect(&s.gateway_db).await.unwrap();
    db.execute_unprepared("DROP TABLE audit_events")
        .await
        .unwrap();
    // Logins still answer as they would.
    let (admin, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    s.login("admin", "wrong-password-000").await.problem(401);
    let mut failures = 0;
    for _ in 0..40 {
        let text = read(s.client.get(s.url("/metrics"))).await.text;
        failures = text
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_audit_write_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if failures >= 2 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(failures >= 2, "{failures} failed writes counted");
    assert_eq!(s.get(&admin, "/api/me").await.status, 200);
}

#[actix_web::test]
async fn a_record_whose_subject_holds_nul_is_written_escaped() {
    // The path parameter is decoded: the audited subject holds a NUL, which
    // PostgreSQL refuses in text (the record, and its batch, were lost).
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let r = read(
        s.client
            .post(s.url("/admin/upstreams/a%00b/targets"))
            .bearer_auth(&admin)
            .json(&json!({"url": "http://127.0.0.1:9"})),
    )
    .await;
    assert!(
        r.status == 404 || r.status == 422,
        "{} {}",
        r.status,
        r.text
    );
    let page = audit(&s, &admin, "?event=admin.target.added", 1).await;
    assert_eq!(page["items"][0]["subject"], "upstream a\\u{0}b", "{page}");
    assert_eq!(page["items"][0]["result"], "failure");
}
