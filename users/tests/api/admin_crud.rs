use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn create_get_list_update_delete() {
    let app = spawn_app().await;
    let r = app
        .post(
            &app.admin,
            "/users",
            json!({"username": "Alice", "email": "Alice@Example.com",
            "full_name": "Alice Liddell", "password": "alice-password-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.id();
    assert_eq!(r.headers["location"], format!("/users/{id}"));
    assert_eq!(r.body["username"], "alice", "usernames are lower-cased");
    assert_eq!(r.body["email"], "alice@example.com");
    assert_eq!(r.body["roles"], json!(["user"]), "default role");
    assert_eq!(r.body["is_active"], true);
    assert!(r.body.get("password").is_none());

    let g = app.get(&app.admin, &format!("/users/{id}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, r.body);

    let l = app.get(&app.admin, "/users").await;
    assert_eq!(l.status, 200);
    assert_eq!(l.body["total"], 2);
    assert_eq!(l.body["limit"], 20);
    assert_eq!(l.body["offset"], 0);
    assert_eq!(l.body["items"][0]["username"], "admin");
    assert_eq!(l.body["items"][1]["username"], "alice");

    let p = app
        .patch(
            &app.admin,
            &format!("/users/{id}"),
            json!({"username": "alice2", "email": "a2@example.com",
            "full_name": null, "roles": ["admin", "user"], "is_active": false}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["username"], "alice2");
    assert_eq!(p.body["email"], "a2@example.com");
    assert_eq!(p.body["full_name"], json!(null));
    assert_eq!(p.body["roles"], json!(["admin", "user"]));
    assert_eq!(p.body["is_active"], false);
    assert_ne!(p.body["updated_at"], r.body["updated_at"]);
    assert_eq!(p.body["created_at"], r.body["created_at"]);

    // Password reset by the admin takes effect at the credential check.
    let p = app
        .patch(
            &app.admin,
            &format!("/users/{id}"),
            json!({"password": "a-brand-new-secret", "is_active": true}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(app.verify("alice2", "a-brand-new-secret").await.status, 200);
    assert_eq!(app.verify("alice2", "alice-password-1").await.status, 401);

    let d = app.delete(&app.admin, &format!("/users/{id}")).await;
    assert_eq!(d.status, 204);
    assert!(d.text.is_empty());
    app.get(&app.admin, &format!("/users/{id}"))
        .await
        .problem(404);
    app.delete(&app.admin, &format!("/users/{id}"))
        .await
        .problem(404);
    app.patch(
        &app.admin,
        &format!("/users/{id}"),
        json!({"is_active": true}),
    )
    .await
    .problem(404);
}

#[actix_web::test]
async fn duplicates_are_409_case_insensitively() {
    let app = spawn_app().await;
    app.create_user("bob", &["user"]).await;
    let r = app
        .post(
            &app.admin,
            "/users",
            json!({"username": "BOB", "email": "other@example.com", "password": "bob-password-22"}),
        )
        .await;
    assert_eq!(r.problem(409)["errors"][0]["field"], "username");
    let r = app
        .post(
            &app.admin,
            "/users",
            json!({"username": "bobby", "email": "BOB@example.com", "password": "bob-password-22"}),
        )
        .await;
    assert_eq!(r.problem(409)["errors"][0]["field"], "email");
    // A patch onto a taken name is a conflict too.
    let (carol, _) = app.create_user("carol", &["user"]).await;
    let common::identity::Principal::User { id, .. } = carol else {
        unreachable!()
    };
    let r = app
        .patch(
            &app.admin,
            &format!("/users/{id}"),
            json!({"username": "Bob"}),
        )
        .await;
    r.problem(409);
    let l = app.get(&app.admin, "/users").await;
    assert_eq!(l.body["total"], 3, "nothing half-written");
}

#[actix_web::test]
async fn concurrent_creates_of_one_username() {
    let app = spawn_app().await;
    let body = |email: &str| json!({"username": "racer", "email": email, "password": "racer-password-1", "roles": ["user"]});
    let (a, b) = tokio::join!(
        app.post(&app.admin, "/users", body("r1@example.com")),
        app.post(&app.admin, "/users", body("r2@example.com"))
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "a: {} b: {}", a.text, b.text);
    let l = app.get(&app.admin, "/users?username=racer").await;
    assert_eq!(l.body["total"], 1);
    assert_eq!(
        l.body["items"][0]["roles"],
        json!(["user"]),
        "the winner has its roles"
    );
    // The loser left nothing behind: its e-mail is free.
    let loser_email = if a.status == 409 {
        "r1@example.com"
    } else {
        "r2@example.com"
    };
    let r = app
        .post(
            &app.admin,
            "/users",
            json!({"username": "racer2", "email": loser_email, "password": "racer-password-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[actix_web::test]
async fn every_field_problem_is_listed() {
    let app = spawn_app().await;
    let r = app
        .post(
            &app.admin,
            "/users",
            json!({"username": "x!", "email": "nope", "password": "short",
            "full_name": "", "roles": ["root", "user"]}),
        )
        .await;
    assert_eq!(
        r.fields(),
        ["email", "full_name", "password", "roles[0]", "username"]
    );

    let r = app.post(&app.admin, "/users", json!({"username": "a".repeat(33), "email": "a@example.com", "password": "p".repeat(129)})).await;
    assert_eq!(r.fields(), ["password", "username"]);
    let r = app.post(&app.admin, "/users", json!({"username": "abc", "email": "a@example.com", "password": "p".repeat(12), "roles": []})).await;
    assert_eq!(r.fields(), ["roles"]);

    // Shape problems.
    app.post(&app.admin, "/users", json!({"username": "abc"}))
        .await
        .problem(422);
    app.post(&app.admin, "/users", json!({"username": "abc", "email": "a@example.com", "password": "p".repeat(12), "admin": true}))
        .await
        .problem(422);
    let raw = app
        .client
        .post(format!("{}/users", app.base))
        .headers(headers(&app, &app.admin))
        .header("content-type", "application/json")
        .body("{not json");
    read(raw).await.problem(422);
    let raw = app
        .client
        .post(format!("{}/users", app.base))
        .headers(headers(&app, &app.admin))
        .body("username=abc");
    read(raw).await.problem(415);
    let raw = app
        .client
        .post(format!("{}/users", app.base))
        .headers(headers(&app, &app.admin))
        .header("content-type", "application/json")
        .body(format!("{{\"username\": \"{}\"}}", "a".repeat(70_000)));
    read(raw).await.problem(413);

    let (u, _) = app.create_user("dave", &["user"]).await;
    let common::identity::Principal::User { id, .. } = u else {
        unreachable!()
    };
    let r = app
        .patch(
            &app.admin,
            &format!("/users/{id}"),
            json!({"email": "bad", "roles": ["x"], "password": "short"}),
        )
        .await;
    assert_eq!(r.fields(), ["email", "password", "roles[0]"]);
}

fn headers(app: &TestApp, who: &common::identity::Principal) -> reqwest::header::HeaderMap {
    testkit::identity_headers(&app.minter, "users", who)
}

#[actix_web::test]
async fn non_admins_are_forbidden() {
    let app = spawn_app().await;
    let (u, _) = app.create_user("erin", &["user"]).await;
    let id = uuid::Uuid::new_v4();
    for (m, path) in [
        (Method::GET, "/users".to_owned()),
        (Method::POST, "/users".to_owned()),
        (Method::GET, format!("/users/{id}")),
        (Method::PATCH, format!("/users/{id}")),
        (Method::DELETE, format!("/users/{id}")),
    ] {
        let body = matches!(m, Method::POST | Method::PATCH).then(|| json!({}));
        app.send(Some(&u), m.clone(), &path, body)
            .await
            .problem(403);
    }
}

#[actix_web::test]
async fn pagination_and_filters() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_user(&format!("page{i}"), &["user"]).await;
    }
    let (_, inactive) = app.create_user("sleepy_1", &["user"]).await;
    app.patch(
        &app.admin,
        &format!("/users/{}", inactive.id()),
        json!({"is_active": false}),
    )
    .await;
    app.create_user("boss", &["admin", "user"]).await;

    let all = app.get(&app.admin, "/users?limit=100").await;
    assert_eq!(all.body["total"], 8);
    let names: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "admin", "page0", "page1", "page2", "page3", "page4", "sleepy_1", "boss"
        ],
        "creation order"
    );

    // Pages tile the whole list, in the same order.
    let mut paged = Vec::new();
    for offset in (0..8).step_by(3) {
        let p = app
            .get(&app.admin, &format!("/users?limit=3&offset={offset}"))
            .await;
        assert_eq!(p.body["total"], 8);
        assert_eq!(p.body["limit"], 3);
        paged.extend(
            p.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(paged, names);

    let past = app.get(&app.admin, "/users?offset=8").await;
    assert_eq!(past.body["items"], json!([]));
    assert_eq!(past.body["total"], 8);
    let one = app.get(&app.admin, "/users?limit=1&offset=7").await;
    assert_eq!(one.body["items"][0]["username"], "boss");
    let max = app.get(&app.admin, "/users?limit=100").await;
    assert_eq!(max.status, 200);

    assert_eq!(
        app.get(&app.admin, "/users?limit=0").await.fields(),
        ["limit"]
    );
    assert_eq!(
        app.get(&app.admin, "/users?limit=101").await.fields(),
        ["limit"]
    );
    assert_eq!(
        app.get(&app.admin, "/users?offset=-1&role=root")
            .await
            .fields(),
        ["offset", "role"]
    );
    app.get(&app.admin, "/users?limit=abc").await.problem(400);

    let f = app.get(&app.admin, "/users?username=PAGE").await;
    assert_eq!(f.body["total"], 5);
    let f = app.get(&app.admin, "/users?email=page3@").await;
    assert_eq!(f.body["total"], 1);
    let f = app.get(&app.admin, "/users?role=admin").await;
    assert_eq!(f.body["total"], 2);
    let f = app.get(&app.admin, "/users?active=false").await;
    assert_eq!(f.body["items"][0]["username"], "sleepy_1");
    assert_eq!(f.body["total"], 1);
    let f = app
        .get(&app.admin, "/users?role=user&active=true&username=p")
        .await;
    assert_eq!(f.body["total"], 5);
    // LIKE wildcards are literal.
    let f = app.get(&app.admin, "/users?username=_").await;
    assert_eq!(f.body["total"], 1, "only sleepy_1 contains an underscore");
    let f = app.get(&app.admin, "/users?username=%25").await;
    assert_eq!(f.body["total"], 0);
}
