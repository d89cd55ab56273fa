//! Who may see what: no proof is 401; another user's scan is
//! indistinguishable from one that does not exist.

use common::identity::{USER_ID_HEADER, USER_ROLES_HEADER};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::targets;

fn shape(p: &Value) -> Value {
    json!([p["type"], p["title"], p["status"], p["detail"], p["errors"]])
}

#[actix_web::test]
async fn every_endpoint_needs_a_gateway_proof() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let id = app.scanned(&app.alice, &target.url("/bare")).await.id();
    let endpoints = [
        (Method::GET, "/scans".to_owned(), None),
        (
            Method::POST,
            "/scans".to_owned(),
            Some(json!({"url": target.url("/good")})),
        ),
        (Method::GET, format!("/scans/{id}"), None),
        // Input is not looked at before the caller is known.
        (Method::POST, "/scans".to_owned(), Some(json!({"bad": 1}))),
        (Method::GET, "/scans/not-a-uuid".to_owned(), None),
    ];
    for (method, path, body) in endpoints {
        app.send(None, method.clone(), &path, body.clone())
            .await
            .problem(401);
        // Identity headers a client made up, without a proof: still 401.
        let mut rb = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .header(USER_ID_HEADER, id_of(&app.alice).to_string())
            .header(USER_ROLES_HEADER, "admin,user");
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        read(rb).await.problem(401);
        // A proof addressed to another service: 401.
        let mut rb = app.client.request(method, format!("{}{path}", app.base));
        rb = rb.headers(testkit::identity_headers(&app.minter, "orders", &app.alice));
        read(rb).await.problem(401);
    }
    assert_eq!(
        app.total(&app.admin).await,
        1,
        "no scan was made without a proof"
    );
}

#[actix_web::test]
async fn another_users_scan_is_a_404_like_a_missing_one() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    let scan = app.scanned(&app.alice, &target.url("/good")).await;
    let id = scan.id();
    let missing = Uuid::new_v4();
    let theirs = app.get(&app.bob, &format!("/scans/{id}")).await;
    let none = app.get(&app.bob, &format!("/scans/{missing}")).await;
    theirs.problem(404);
    none.problem(404);
    assert_eq!(shape(&theirs.body), shape(&none.body));
    assert!(!theirs.text.contains(&id.to_string()));
    app.get(&app.bob, "/scans/not-a-uuid").await.problem(404);

    let l = app.get(&app.bob, "/scans").await;
    assert_eq!(l.ok(200)["total"], 0);
    assert_eq!(l.body["items"], json!([]));

    // The owner and an admin read it.
    let mine = app.get(&app.alice, &format!("/scans/{id}")).await;
    assert_eq!(mine.ok(200), &scan.body);
    let admin = app.get(&app.admin, &format!("/scans/{id}")).await;
    assert_eq!(admin.ok(200), &scan.body);
    // An admin's own scan is owned by the admin.
    let own = app.scanned(&app.admin, &target.url("/bare")).await;
    assert_eq!(own.body["user_id"], id_of(&app.admin).to_string());
}
