//! `POST /scans` input: every validation edge answered with a 422 that lists
//! each field problem.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn every_field_problem_is_listed() {
    let app = spawn_app().await;
    let r = app.post(&app.alice, "/scans", json!({})).await;
    assert_eq!(r.field_codes(), [fc("url", "required")]);
    assert_eq!(r.body["detail"], "the request has 1 invalid field");
    for (v, code) in [
        (json!(null), "required"),
        (json!(5), "type"),
        (json!(true), "type"),
        (json!(["http://example.com"]), "type"),
        (json!({"href": "http://example.com"}), "type"),
        (json!(""), "length"),
        (json!("   "), "length"),
        (json!("not a url"), "url"),
        (json!("example.com"), "url"),
        (json!("http://"), "url"),
        (json!("http://exa mple.com/"), "url"),
        (json!("http://[::1/"), "url"),
        (json!("http://example.com:99999/"), "url"),
        (json!("ftp://example.com/"), "scheme"),
    ] {
        let r = app.post(&app.alice, "/scans", json!({ "url": v })).await;
        assert_eq!(r.field_codes(), [fc("url", code)], "{v}");
    }
    // Unknown fields (an owner cannot be smuggled in), listed with the rest.
    let r = app
        .post(
            &app.alice,
            "/scans",
            json!({"url": 7, "user_id": id_of(&app.bob), "instance": "x"}),
        )
        .await;
    assert_eq!(
        r.field_codes(),
        [
            fc("instance", "unknown"),
            fc("url", "type"),
            fc("user_id", "unknown")
        ]
    );
    assert_eq!(r.body["detail"], "the request has 3 invalid fields");
    let r = app
        .post(
            &app.alice,
            "/scans",
            json!({"url": "https://example.com/", "extra": 1}),
        )
        .await;
    assert_eq!(r.field_codes(), [fc("extra", "unknown")]);
    assert_eq!(app.total(&app.admin).await, 0, "nothing was written");
}

#[actix_web::test]
async fn url_length_edges() {
    let app = spawn_app().await;
    // 2048 characters, refused only by the SSRF policy (so it was accepted
    // as input); 2049 is a length problem.
    let base = "http://127.0.0.1/";
    let at_max = format!("{base}{}", "a".repeat(2048 - base.len()));
    assert_eq!(at_max.chars().count(), 2048);
    app.scan(&app.alice, &at_max).await.refused();
    let over = format!("{at_max}a");
    let r = app.scan(&app.alice, &over).await;
    assert_eq!(r.field_codes(), [fc("url", "length")]);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("2048")
    );
}

#[actix_web::test]
async fn body_shape_problems() {
    let app = spawn_app().await;
    app.post_raw(&app.alice, "text/plain", json!({"url": "x"}).to_string())
        .await
        .problem(415);
    let r = app
        .post_raw(&app.alice, "application/json", "{not json".into())
        .await;
    assert_eq!(
        r.problem(422)["type"],
        "urn:gatehouse:problem:malformed-body"
    );
    for doc in ["[]", "\"http://example.com\"", "null", ""] {
        app.post_raw(&app.alice, "application/json", doc.into())
            .await
            .problem(422);
    }
    let big = json!({"url": "a".repeat(70_000)}).to_string();
    app.post_raw(&app.alice, "application/json", big)
        .await
        .problem(413);
}
