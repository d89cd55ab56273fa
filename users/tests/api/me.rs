use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn read_and_change_own_account() {
    let app = spawn_app().await;
    let (frank, created) = app.create_user("frank", &["user"]).await;
    let me = app.get(&frank, "/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body, created.body);

    // A new e-mail needs the current password, and the answer tells the
    // gateway how the check went (it counts failures toward the lockout).
    let r = app
        .patch(&frank, "/me", json!({"email": "FRANK@elsewhere.org"}))
        .await;
    assert_eq!(r.fields(), ["current_password"]);
    let r = app
        .patch(
            &frank,
            "/me",
            json!({"email": "FRANK@elsewhere.org", "current_password": "wrong-password-9"}),
        )
        .await;
    r.problem(403);
    assert_eq!(r.headers["x-gatehouse-credential-check"], "failed");
    let r = app
        .patch(
            &frank,
            "/me",
            json!({"full_name": "Frank N. Stein", "email": "FRANK@elsewhere.org",
                   "current_password": "frank-password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["x-gatehouse-credential-check"], "passed");
    assert!(
        !r.headers.contains_key("x-gatehouse-revoke-sessions"),
        "a new e-mail ends no session"
    );
    assert_eq!(r.body["full_name"], "Frank N. Stein");
    assert_eq!(r.body["email"], "frank@elsewhere.org");
    let r = app.patch(&frank, "/me", json!({"full_name": null})).await;
    assert_eq!(r.body["full_name"], json!(null));

    // Users cannot change what only admins may.
    app.patch(&frank, "/me", json!({"roles": ["admin"]}))
        .await
        .problem(422);
    app.patch(&frank, "/me", json!({"is_active": false}))
        .await
        .problem(422);
    app.patch(&frank, "/me", json!({"email": "not-an-email"}))
        .await
        .problem(422);
    app.patch(
        &frank,
        "/me",
        json!({"email": "admin@example.com", "current_password": "frank-password-1"}),
    )
    .await
    .problem(409);
    // Past its budget (the gateway says so), no password is checked.
    let r = app
        .patch_with(
            &frank,
            "/me",
            json!({"email": "new@example.org", "current_password": "frank-password-1"}),
            &[("x-gatehouse-credential-locked", "42")],
        )
        .await;
    r.problem(429);
    assert_eq!(r.headers["retry-after"], "42");
}

#[actix_web::test]
async fn password_change_needs_the_current_password() {
    let app = spawn_app().await;
    let (gina, _) = app.create_user("gina", &["user"]).await;
    let r = app
        .patch(&gina, "/me", json!({"password": "gina-new-secret-1"}))
        .await;
    assert_eq!(r.fields(), ["current_password"]);
    let r = app
        .patch(
            &gina,
            "/me",
            json!({"password": "short", "current_password": "whatever"}),
        )
        .await;
    assert_eq!(r.fields(), ["password"]);
    app.patch(
        &gina,
        "/me",
        json!({"password": "gina-new-secret-1", "current_password": "wrong-password-9"}),
    )
    .await
    .problem(403);
    assert_eq!(
        app.verify("gina", "gina-password-1").await.status,
        200,
        "unchanged after a refusal"
    );

    let r = app
        .patch(
            &gina,
            "/me",
            json!({"password": "gina-new-secret-1", "current_password": "gina-password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Every other session of gina's ends (the gateway keeps the caller's).
    assert_eq!(
        r.headers["x-gatehouse-revoke-sessions"],
        format!("{}; keep=current", r.body["id"].as_str().unwrap()).as_str()
    );
    assert_eq!(app.verify("gina", "gina-new-secret-1").await.status, 200);
    app.verify("gina", "gina-password-1").await.problem(401);
}

#[actix_web::test]
async fn deleted_account_has_no_me() {
    let app = spawn_app().await;
    let (hank, r) = app.create_user("hank", &["user"]).await;
    app.delete(&app.admin, &format!("/users/{}", r.id())).await;
    app.get(&hank, "/me").await.problem(404);
}
