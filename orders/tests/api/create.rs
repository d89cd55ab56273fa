//! Placing orders: the happy path, and every validation edge answered with a
//! problem that names the field.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn create_returns_201_location_and_the_pending_order() {
    let app = spawn_app().await;
    let r = app
        .post(
            &app.alice,
            "/orders",
            json!({"item": "  Blue widget  ", "quantity": 3, "address": " 1 Main Street\nSpringfield "}),
        )
        .await;
    let body = r.ok(201).clone();
    let id = r.id();
    assert_eq!(r.headers["location"], format!("/orders/{id}"));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        body["user_id"],
        id_of(&app.alice).to_string(),
        "owner = caller"
    );
    assert_eq!(body["item"], "Blue widget", "trimmed");
    assert_eq!(body["quantity"], 3);
    assert_eq!(body["address"], "1 Main Street\nSpringfield");
    assert_eq!(body["status"], "pending");
    let created = body["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z'), "UTC: {created}");
    let t: DateTime<Utc> = DateTime::parse_from_rfc3339(created).unwrap().into();
    assert!((Utc::now() - t).num_seconds().abs() < 60);
    assert_eq!(body["updated_at"], body["created_at"]);
    assert_eq!(
        body.as_object().unwrap().len(),
        8,
        "exactly the documented fields: {body}"
    );

    // It reads back exactly as it was returned.
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200), &body);
}

/// POST an order with one field replaced; the answer.
async fn with(app: &TestApp, field: &str, value: Value) -> Resp {
    let mut body = order_body("widget");
    body[field] = value;
    app.post(&app.alice, "/orders", body).await
}

#[actix_web::test]
async fn item_length_edges() {
    let app = spawn_app().await;
    for ok in ["a".to_owned(), "a".repeat(200), "é".repeat(200)] {
        let r = with(&app, "item", json!(ok)).await;
        assert_eq!(r.ok(201)["item"], ok.as_str());
    }
    for (bad, code) in [
        (String::new(), "length"),
        ("   ".to_owned(), "length"),
        ("a".repeat(201), "length"),
        ("tab\there".to_owned(), "pattern"),
        // Refused before the service reads the body, as every body string
        // holding NUL is (common::text), naming the field.
        ("nul\u{0}".to_owned(), "text"),
    ] {
        let r = with(&app, "item", json!(bad)).await;
        assert_eq!(r.field_codes(), [("item".into(), code.into())], "{bad:?}");
    }
    // Surrounding spaces do not count towards the 200.
    let r = with(&app, "item", json!(format!("  {}  ", "a".repeat(200)))).await;
    r.ok(201);
    assert_eq!(app.total(&app.alice).await, 4, "only the valid ones exist");
}

#[actix_web::test]
async fn quantity_edges() {
    let app = spawn_app().await;
    for ok in [1, 1000] {
        assert_eq!(
            with(&app, "quantity", json!(ok)).await.ok(201)["quantity"],
            ok
        );
    }
    for (bad, code) in [
        (json!(0), "range"),
        (json!(1001), "range"),
        (json!(-1), "range"),
        (json!(u64::MAX), "range"),
        (json!("3"), "type"),
        (json!(3.5), "type"),
        (json!(3.0), "type"),
        (json!(null), "required"),
        (json!([3]), "type"),
    ] {
        let r = with(&app, "quantity", bad.clone()).await;
        assert_eq!(r.field_codes(), [("quantity".into(), code.into())], "{bad}");
    }
    // A number too large for any integer type is a problem, not a failure.
    let r = app
        .post_raw(
            &app.alice,
            "application/json",
            r#"{"item": "x", "quantity": 1e400, "address": "y"}"#.to_owned(),
        )
        .await;
    r.problem(422);
    assert_eq!(app.total(&app.alice).await, 2);
}

#[actix_web::test]
async fn address_length_edges() {
    let app = spawn_app().await;
    for ok in ["x".repeat(500), "line 1\r\nline 2\tbox 3".to_owned()] {
        assert_eq!(
            with(&app, "address", json!(ok)).await.ok(201)["address"],
            ok.as_str()
        );
    }
    for (bad, code) in [
        ("x".repeat(501), "length"),
        (String::new(), "length"),
        ("bell\u{7}".to_owned(), "pattern"),
    ] {
        let r = with(&app, "address", json!(bad)).await;
        assert_eq!(
            r.field_codes(),
            [("address".into(), code.into())],
            "{bad:?}"
        );
    }
}

#[actix_web::test]
async fn every_field_problem_is_listed() {
    let app = spawn_app().await;
    // Missing fields.
    let r = app.post(&app.alice, "/orders", json!({})).await;
    assert_eq!(r.fields(), ["address", "item", "quantity"]);
    assert_eq!(r.body["detail"], "the request has 3 invalid fields");
    let r = app.post(&app.alice, "/orders", json!({"item": "x"})).await;
    assert_eq!(r.fields(), ["address", "quantity"]);

    // Wrong types and values together.
    let r = app
        .post(
            &app.alice,
            "/orders",
            json!({"item": 7, "quantity": "3", "address": "y".repeat(501)}),
        )
        .await;
    assert_eq!(
        r.field_codes(),
        [
            ("address".into(), "length".into()),
            ("item".into(), "type".into()),
            ("quantity".into(), "type".into()),
        ]
    );

    // Unknown fields (an owner or a status cannot be smuggled in), listed with
    // the others.
    let mut body = order_body("widget");
    body["user_id"] = json!(id_of(&app.bob));
    body["status"] = json!("confirmed");
    let r = app.post(&app.alice, "/orders", body).await;
    assert_eq!(
        r.field_codes(),
        [
            ("status".into(), "unknown".into()),
            ("user_id".into(), "unknown".into()),
        ]
    );
    let r = app
        .post(
            &app.alice,
            "/orders",
            json!({"quantity": 0, "colour": "red"}),
        )
        .await;
    assert_eq!(r.fields(), ["address", "colour", "item", "quantity"]);
    assert_eq!(app.total(&app.alice).await, 0);
    assert_eq!(app.total(&app.admin).await, 0, "nothing was written");
}

#[actix_web::test]
async fn body_shape_problems() {
    let app = spawn_app().await;
    let valid = order_body("widget").to_string();
    // Not JSON: 415.
    app.post_raw(&app.alice, "text/plain", valid.clone())
        .await
        .problem(415);
    app.post_raw(
        &app.alice,
        "application/x-www-form-urlencoded",
        "item=x".into(),
    )
    .await
    .problem(415);
    // JSON that does not parse, or is not an object: 422 (common::http).
    let r = app
        .post_raw(&app.alice, "application/json", "{not json".into())
        .await;
    assert_eq!(
        r.problem(422)["type"],
        "urn:gatehouse:problem:malformed-body"
    );
    for doc in ["[]", "\"order\"", "null", "", "{\"item\": \"x\",}"] {
        app.post_raw(&app.alice, "application/json", doc.into())
            .await
            .problem(422);
    }
    // Over 64 KiB: 413.
    let big = json!({"item": "x", "quantity": 1, "address": "a".repeat(70_000)}).to_string();
    app.post_raw(&app.alice, "application/json", big)
        .await
        .problem(413);
    // The control: the same body with the right type is accepted.
    app.post_raw(&app.alice, "application/json", valid)
        .await
        .ok(201);
    assert_eq!(app.total(&app.alice).await, 1);
}
