//! Listing: own orders newest first in stable pages; admins see all and filter
//! by owner; bad query values are problems.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

fn items(r: &Resp) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["item"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn own_orders_newest_first_in_stable_pages() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create(&app.alice, &format!("a{i}")).await;
    }
    app.create(&app.bob, "b0").await;

    let all = app.get(&app.alice, "/orders").await;
    assert_eq!(all.ok(200)["total"], 5);
    assert_eq!(all.body["limit"], 20);
    assert_eq!(all.body["offset"], 0);
    assert_eq!(items(&all), ["a4", "a3", "a2", "a1", "a0"], "newest first");
    let times: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["created_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert!(
        all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["user_id"] == id_of(&app.alice).to_string())
    );

    // Pages tile the list in the same order.
    let mut paged = Vec::new();
    for offset in (0..5).step_by(2) {
        let p = app
            .get(&app.alice, &format!("/orders?limit=2&offset={offset}"))
            .await;
        assert_eq!(p.ok(200)["total"], 5);
        assert_eq!(p.body["limit"], 2);
        assert_eq!(p.body["offset"], offset);
        paged.extend(items(&p));
    }
    assert_eq!(paged, items(&all));
    let past = app.get(&app.alice, "/orders?offset=5").await;
    assert_eq!(past.ok(200)["items"], json!([]));
    assert_eq!(past.body["total"], 5);
    let max = app.get(&app.alice, "/orders?limit=100&offset=0").await;
    assert_eq!(items(&max).len(), 5);

    // Bob sees only his.
    let b = app.get(&app.bob, "/orders").await;
    assert_eq!(b.ok(200)["total"], 1);
    assert_eq!(items(&b), ["b0"]);
}

#[actix_web::test]
async fn bad_query_values_are_problems() {
    let app = spawn_app().await;
    assert_eq!(
        app.get(&app.alice, "/orders?limit=0").await.fields(),
        ["limit"]
    );
    assert_eq!(
        app.get(&app.alice, "/orders?limit=101").await.fields(),
        ["limit"]
    );
    assert_eq!(
        app.get(&app.alice, "/orders?limit=-5&offset=-1&user_id=nope")
            .await
            .fields(),
        ["limit", "offset", "user_id"]
    );
    assert_eq!(
        app.get(&app.admin, "/orders?user_id=123").await.fields(),
        ["user_id"]
    );
    // Unparsable values, unknown parameters: 400.
    for q in [
        "limit=abc",
        "offset=1.5",
        "limit=",
        "limit=99999999999999999999",
        "page=2",
        "per_page=10",
        "limit=1&limit=2",
    ] {
        app.get(&app.alice, &format!("/orders?{q}"))
            .await
            .problem(400);
    }
}

#[actix_web::test]
async fn admins_list_everyone_and_filter_by_user() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.create(&app.alice, &format!("a{i}")).await;
    }
    app.create(&app.bob, "b0").await;
    app.create(&app.bob, "b1").await;
    let alice = id_of(&app.alice);
    let bob = id_of(&app.bob);

    let all = app.get(&app.admin, "/orders").await;
    assert_eq!(all.ok(200)["total"], 5);
    assert_eq!(items(&all), ["b1", "b0", "a2", "a1", "a0"]);

    let a = app
        .get(&app.admin, &format!("/orders?user_id={alice}"))
        .await;
    assert_eq!(a.ok(200)["total"], 3);
    assert_eq!(items(&a), ["a2", "a1", "a0"]);
    let b = app
        .get(
            &app.admin,
            &format!("/orders?user_id={bob}&limit=1&offset=1"),
        )
        .await;
    assert_eq!(b.ok(200)["total"], 2);
    assert_eq!(items(&b), ["b0"]);
    let nobody = app
        .get(&app.admin, &format!("/orders?user_id={}", Uuid::new_v4()))
        .await;
    assert_eq!(nobody.ok(200)["total"], 0);

    // A non-admin may name only themselves.
    let r = app.get(&app.bob, &format!("/orders?user_id={alice}")).await;
    let p = r.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("admin"), "{p}");
    let own = app.get(&app.bob, &format!("/orders?user_id={bob}")).await;
    assert_eq!(own.ok(200)["total"], 2);
    // The 403 does not depend on whether that user has orders.
    app.get(&app.bob, &format!("/orders?user_id={}", Uuid::new_v4()))
        .await
        .problem(403);
}
