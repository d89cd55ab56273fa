//! Several replicas on one database: each result names the replica that ran
//! it, and every replica serves every result.

use crate::helpers::*;
use crate::targets;

#[actix_web::test]
async fn replicas_share_one_database_and_name_themselves() {
    let target = targets::start();
    let mut app = spawn_with(Config {
        instance: "scanner1",
        ..Config::loopback()
    })
    .await;
    let url = app.env.database("scanner").await;
    // Both replicas on one (fresh) database.
    let one = start(
        &app.env,
        &url,
        &Config {
            instance: "scanner1",
            ..Config::loopback()
        },
    )
    .await;
    let two = start(
        &app.env,
        &url,
        &Config {
            instance: "scanner2",
            ..Config::loopback()
        },
    )
    .await;

    app.base = one.clone();
    let first = app.scanned(&app.alice, &target.url("/good")).await;
    assert_eq!(first.body["instance"], "scanner1");
    app.base = two.clone();
    let second = app.scanned(&app.alice, &target.url("/bare")).await;
    assert_eq!(second.body["instance"], "scanner2");

    for base in [&one, &two] {
        app.base = base.clone();
        let g = app.get(&app.alice, &format!("/scans/{}", first.id())).await;
        assert_eq!(g.ok(200), &first.body, "{base}");
        let g = app
            .get(&app.alice, &format!("/scans/{}", second.id()))
            .await;
        assert_eq!(g.ok(200), &second.body, "{base}");
        let l = app.get(&app.alice, "/scans").await;
        let instances: Vec<&str> = l.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["instance"].as_str().unwrap())
            .collect();
        assert_eq!(instances, ["scanner2", "scanner1"], "{base}");
    }
}
