//! Listing: own scans newest first in stable pages; admins see all and filter
//! by owner; bad query values are problems.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::targets;

fn urls(r: &Resp) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["url"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn own_scans_newest_first_in_stable_pages() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    for i in 0..5 {
        app.scanned(&app.alice, &target.url(&format!("/bare?a{i}")))
            .await;
    }
    app.scanned(&app.bob, &target.url("/bare?b0")).await;

    let all = app.get(&app.alice, "/scans").await;
    assert_eq!(all.ok(200)["total"], 5);
    assert_eq!(all.body["limit"], 20);
    assert_eq!(all.body["offset"], 0);
    let want: Vec<String> = (0..5)
        .rev()
        .map(|i| target.url(&format!("/bare?a{i}")))
        .collect();
    assert_eq!(urls(&all), want, "newest first");
    assert!(
        all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["user_id"] == id_of(&app.alice).to_string() && o["grade"] == "F")
    );

    let mut paged = Vec::new();
    for offset in (0..5).step_by(2) {
        let p = app
            .get(&app.alice, &format!("/scans?limit=2&offset={offset}"))
            .await;
        assert_eq!(p.ok(200)["total"], 5);
        assert_eq!(p.body["limit"], 2);
        assert_eq!(p.body["offset"], offset);
        paged.extend(urls(&p));
    }
    assert_eq!(paged, want);
    let past = app.get(&app.alice, "/scans?offset=5").await;
    assert_eq!(past.ok(200)["items"], json!([]));
    assert_eq!(past.body["total"], 5);
    assert_eq!(
        urls(&app.get(&app.alice, "/scans?limit=100").await).len(),
        5
    );

    let b = app.get(&app.bob, "/scans").await;
    assert_eq!(urls(&b), [target.url("/bare?b0")]);
}

#[actix_web::test]
async fn bad_query_values_are_problems() {
    let app = spawn_app().await;
    let fields = |r: Resp| -> Vec<String> { r.field_codes().into_iter().map(|(f, _)| f).collect() };
    assert_eq!(
        fields(app.get(&app.alice, "/scans?limit=0").await),
        ["limit"]
    );
    assert_eq!(
        fields(app.get(&app.alice, "/scans?limit=101").await),
        ["limit"]
    );
    assert_eq!(
        fields(
            app.get(&app.alice, "/scans?limit=-5&offset=-1&user_id=nope")
                .await
        ),
        ["limit", "offset", "user_id"]
    );
    for q in ["limit=abc", "offset=1.5", "page=2", "limit=1&limit=2"] {
        app.get(&app.alice, &format!("/scans?{q}"))
            .await
            .problem(400);
    }
}

#[actix_web::test]
async fn admins_list_everyone_and_filter_by_user() {
    let target = targets::start();
    let app = spawn_with(Config::loopback()).await;
    for i in 0..3 {
        app.scanned(&app.alice, &target.url(&format!("/bare?a{i}")))
            .await;
    }
    app.scanned(&app.bob, &target.url("/bare?b0")).await;
    app.scanned(&app.bob, &target.url("/bare?b1")).await;
    let (alice, bob) = (id_of(&app.alice), id_of(&app.bob));

    let all = app.get(&app.admin, "/scans").await;
    assert_eq!(all.ok(200)["total"], 5);
    assert_eq!(urls(&all)[0], target.url("/bare?b1"));
    let a = app
        .get(&app.admin, &format!("/scans?user_id={alice}"))
        .await;
    assert_eq!(a.ok(200)["total"], 3);
    assert!(urls(&a).iter().all(|u| u.contains("?a")));
    let b = app
        .get(
            &app.admin,
            &format!("/scans?user_id={bob}&limit=1&offset=1"),
        )
        .await;
    assert_eq!(b.ok(200)["total"], 2);
    assert_eq!(urls(&b), [target.url("/bare?b0")]);
    let nobody = app
        .get(&app.admin, &format!("/scans?user_id={}", Uuid::new_v4()))
        .await;
    assert_eq!(nobody.ok(200)["total"], 0);

    // A non-admin may name only themselves.
    let p = app.get(&app.bob, &format!("/scans?user_id={alice}")).await;
    assert!(p.problem(403)["detail"].as_str().unwrap().contains("admin"));
    let own = app.get(&app.bob, &format!("/scans?user_id={bob}")).await;
    assert_eq!(own.ok(200)["total"], 2);
}
