//! Input that is not text never reaches a database: NUL or invalid UTF-8 in
//! any list filter, and NUL in any body string, of every service, through
//! the gateway, is a 422 (PostgreSQL would fail on NUL with a 500; SQLite
//! would store it). Run on both databases by the suite's two passes.

use serde_json::json;

use crate::support::System;

/// Values no filter may take: NUL, bytes that are not UTF-8, an overlong
/// encoding of `/`, a lone surrogate, NUL among text.
const NOT_TEXT: [&str; 5] = ["%00", "%FF", "%C0%AF", "%ED%A0%80", "ab%00cd"];

#[actix_web::test]
async fn every_list_filter_refuses_what_is_not_text() {
    let s = System::start().await;
    let admin = s.admin().await;
    let lists: [(&str, &[&str]); 3] = [
        (
            "/api/users",
            &["username", "email", "role", "active", "limit", "offset"],
        ),
        ("/api/orders", &["user_id", "limit", "offset"]),
        ("/api/scans", &["user_id", "limit", "offset"]),
    ];
    for (path, filters) in lists {
        // The filters work with text (the baseline the refusals contrast with).
        s.call("GET", &format!("{path}?limit=1"), Some(&admin), None)
            .await
            .ok(200);
        for filter in filters {
            for value in NOT_TEXT {
                let q = format!("{path}?{filter}={value}");
                let r = s.call("GET", &q, Some(&admin), None).await;
                r.problem(422);
                assert!(r.text.contains(filter), "{q}: {}", r.text);
            }
        }
        // A parameter name that is not text either.
        s.call("GET", &format!("{path}?x%00=1"), Some(&admin), None)
            .await
            .problem(422);
    }
}

#[actix_web::test]
async fn no_body_string_may_hold_nul() {
    let s = System::start().await;
    let admin = s.admin().await;
    let (_, alice) = s.user(&admin, "alice").await;
    let bodies = [
        (
            "POST",
            "/api/users",
            &admin,
            json!({"username": "nul\u{0}name", "email": "n@example.com",
            "password": "a-long-password-1", "roles": ["user"]}),
        ),
        (
            "POST",
            "/api/users",
            &admin,
            json!({"username": "nulname", "email": "n@example.com",
            "full_name": "Nul\u{0}", "password": "a-long-password-1", "roles": ["user"]}),
        ),
        ("PATCH", "/api/me", &alice, json!({"full_name": "A\u{0}"})),
        (
            "POST",
            "/api/orders",
            &alice,
            json!({"item": "widget\u{0}", "quantity": 1, "address": "1 Main St"}),
        ),
        (
            "POST",
            "/api/orders",
            &alice,
            json!({"item": "widget", "quantity": 1, "address": "\u{0}"}),
        ),
        (
            "POST",
            "/api/scans",
            &alice,
            json!({"url": "http://example.com/\u{0}"}),
        ),
        (
            "POST",
            "/api/login",
            &alice,
            json!({"username": "admin\u{0}", "password": "x"}),
        ),
    ];
    for (method, path, token, body) in bodies {
        let r = s.call(method, path, Some(token), Some(body.clone())).await;
        assert!(
            r.status == 422 || (path == "/api/login" && r.status == 401),
            "{method} {path} {body}: {} {}",
            r.status,
            r.text
        );
        assert_ne!(r.status.as_u16(), 500);
    }
    // Nothing of it was stored.
    let r = s.call("GET", "/api/users", Some(&admin), None).await;
    assert_eq!(r.ok(200)["total"], 2, "{}", r.text);
    let r = s.call("GET", "/api/orders", Some(&alice), None).await;
    assert_eq!(r.ok(200)["total"], 0);
}
