use common::identity::Principal;
use serde_json::json;

use crate::helpers::*;

fn id_of(p: &Principal) -> uuid::Uuid {
    match p {
        Principal::User { id, .. } | Principal::Client { id, .. } => *id,
        Principal::Gateway => unreachable!(),
    }
}

#[actix_web::test]
async fn the_last_active_admin_stays() {
    let app = spawn_app().await;
    let me = id_of(&app.admin);
    let path = format!("/users/{me}");
    app.delete(&app.admin, &path).await.problem(409);
    app.patch(&app.admin, &path, json!({"roles": ["user"]}))
        .await
        .problem(409);
    app.patch(&app.admin, &path, json!({"is_active": false}))
        .await
        .problem(409);
    // Nothing changed.
    let g = app.get(&app.admin, &path).await;
    assert_eq!(g.body["roles"], json!(["admin", "user"]));
    assert_eq!(g.body["is_active"], true);

    // An inactive second admin does not count.
    let (second, _) = app.create_user("second", &["admin"]).await;
    app.patch(
        &app.admin,
        &format!("/users/{}", id_of(&second)),
        json!({"is_active": false}),
    )
    .await;
    app.delete(&app.admin, &path).await.problem(409);

    // An active one does: now the first can step down.
    app.patch(
        &app.admin,
        &format!("/users/{}", id_of(&second)),
        json!({"is_active": true}),
    )
    .await;
    let r = app
        .patch(&app.admin, &path, json!({"roles": ["user"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = user(id_of(&second), &["admin"]);
    app.delete(&second, &format!("/users/{}", id_of(&second)))
        .await
        .problem(409);
    assert_eq!(app.delete(&second, &path).await.status, 204);
}

#[actix_web::test]
async fn concurrent_demotions_leave_one_admin() {
    let app = spawn_app().await;
    let (b, _) = app.create_user("admin_b", &["admin"]).await;
    let a = id_of(&app.admin);
    let b = id_of(&b);
    for _ in 0..3 {
        let (pa, pb) = (format!("/users/{a}"), format!("/users/{b}"));
        let (x, y) = tokio::join!(
            app.patch(&app.admin, &pa, json!({"roles": ["user"]})),
            app.delete(&app.admin, &pb)
        );
        let ok = [x.status.as_u16(), y.status.as_u16()];
        let admins = app.get(&app.admin, "/users?role=admin&active=true").await;
        assert_eq!(
            admins.body["total"], 1,
            "statuses {ok:?}: {} / {}",
            x.text, y.text
        );
        assert!(ok.contains(&409), "{ok:?}");
        if ok != [409, 409] {
            break;
        }
    }
}
