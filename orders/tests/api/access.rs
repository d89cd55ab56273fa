//! Who may do what: no proof is 401; another user's order is indistinguishable
//! from one that does not exist; confirming needs the admin role.

use common::identity::{USER_ID_HEADER, USER_ROLES_HEADER};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// The parts of a problem that do not vary per request.
fn shape(p: &Value) -> Value {
    json!([p["type"], p["title"], p["status"], p["detail"], p["errors"]])
}

#[actix_web::test]
async fn every_endpoint_needs_a_gateway_proof() {
    let app = spawn_app().await;
    let id = app.create(&app.alice, "widget").await.id();
    let alice = id_of(&app.alice).to_string();
    let endpoints = [
        (Method::GET, "/orders".to_owned(), None),
        (Method::POST, "/orders".to_owned(), Some(order_body("x"))),
        (Method::GET, format!("/orders/{id}"), None),
        (Method::POST, format!("/orders/{id}/cancel"), None),
        (Method::POST, format!("/orders/{id}/confirm"), None),
        // Input is not looked at before the caller is known.
        (Method::POST, "/orders".to_owned(), Some(json!({"bad": 1}))),
        (Method::GET, "/orders/not-a-uuid".to_owned(), None),
    ];
    for (method, path, body) in endpoints {
        let r = app.send(None, method.clone(), &path, body.clone()).await;
        r.problem(401);
        // Identity headers a client made up, without a proof: still 401.
        let mut rb = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .header(USER_ID_HEADER, &alice)
            .header(USER_ROLES_HEADER, "admin,user");
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        read(rb).await.problem(401);
        // A proof addressed to another service: 401.
        let mut rb = app.client.request(method, format!("{}{path}", app.base));
        rb = rb.headers(testkit::identity_headers(&app.minter, "users", &app.alice));
        read(rb).await.problem(401);
    }
    // A proof whose headers claim more roles than it was signed for: 401.
    let mut h = app.identity(&app.alice);
    h.insert(USER_ROLES_HEADER, "admin,user".parse().unwrap());
    let r = read(app.client.get(format!("{}/orders", app.base)).headers(h)).await;
    r.problem(401);
    // The gateway's own principal is not an end user.
    let mut rb = app.client.get(format!("{}/orders", app.base));
    rb = rb.headers(testkit::identity_headers(
        &app.minter,
        "orders",
        &common::identity::Principal::Gateway,
    ));
    read(rb).await.problem(401);
    // Nothing changed.
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200)["status"], "pending");
    assert_eq!(app.total(&app.admin).await, 1);
}

#[actix_web::test]
async fn another_users_order_is_a_404_like_a_missing_one() {
    let app = spawn_app().await;
    let order = app.create(&app.alice, "alice's widget").await;
    let id = order.id();
    let missing = Uuid::new_v4();

    for path in [format!("/orders/{id}"), format!("/orders/{missing}")] {
        let r = app.get(&app.bob, &path).await;
        r.problem(404);
    }
    let theirs = app.get(&app.bob, &format!("/orders/{id}")).await;
    let none = app.get(&app.bob, &format!("/orders/{missing}")).await;
    assert_eq!(shape(&theirs.body), shape(&none.body), "{}", theirs.text);
    assert!(!theirs.text.contains(&id.to_string()));

    let theirs = app.act(&app.bob, id, "cancel").await;
    let none = app.act(&app.bob, missing, "cancel").await;
    theirs.problem(404);
    none.problem(404);
    assert_eq!(shape(&theirs.body), shape(&none.body));

    // Bob's list does not include it.
    let l = app.get(&app.bob, "/orders").await;
    assert_eq!(l.ok(200)["total"], 0);
    assert_eq!(l.body["items"], json!([]));

    // Untouched by Bob's attempts; the owner and an admin can read it.
    let mine = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(mine.ok(200), &order.body);
    let admin = app.get(&app.admin, &format!("/orders/{id}")).await;
    assert_eq!(admin.ok(200), &order.body);
}

#[actix_web::test]
async fn confirm_is_for_admins_whatever_the_id() {
    let app = spawn_app().await;
    let id = app.create(&app.alice, "widget").await.id();
    let bobs = app.create(&app.bob, "gadget").await.id();
    // Own order, another's, a missing one, a malformed id: the same 403.
    let mut shapes = Vec::new();
    for target in [id, bobs, Uuid::new_v4()] {
        let r = app.act(&app.alice, target, "confirm").await;
        r.problem(403);
        shapes.push(shape(&r.body));
    }
    let r = app
        .send(Some(&app.alice), Method::POST, "/orders/nope/confirm", None)
        .await;
    r.problem(403);
    shapes.push(shape(&r.body));
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");

    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200)["status"], "pending", "not confirmed");

    let r = app.act(&app.admin, id, "confirm").await;
    assert_eq!(r.ok(200)["status"], "confirmed");
    app.act(&app.admin, Uuid::new_v4(), "confirm")
        .await
        .problem(404);
}

#[actix_web::test]
async fn admins_read_and_cancel_anyones_orders() {
    let app = spawn_app().await;
    let id = app.create(&app.alice, "widget").await.id();
    let r = app.get(&app.admin, &format!("/orders/{id}")).await;
    assert_eq!(r.ok(200)["user_id"], id_of(&app.alice).to_string());
    let r = app.act(&app.admin, id, "cancel").await;
    assert_eq!(r.ok(200)["status"], "cancelled");
    assert_eq!(
        r.body["user_id"],
        id_of(&app.alice).to_string(),
        "owner kept"
    );
    // An admin's own order is owned by the admin.
    let own = app.create(&app.admin, "admin's").await;
    assert_eq!(own.body["user_id"], id_of(&app.admin).to_string());
}

#[actix_web::test]
async fn an_id_that_is_not_a_uuid_is_404() {
    let app = spawn_app().await;
    for path in ["/orders/not-a-uuid", "/orders/123"] {
        app.get(&app.alice, path).await.problem(404);
    }
    app.send(Some(&app.alice), Method::POST, "/orders/x/cancel", None)
        .await
        .problem(404);
    app.send(Some(&app.admin), Method::POST, "/orders/x/confirm", None)
        .await
        .problem(404);
}
