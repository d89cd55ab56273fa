//! pending -> cancelled (owner or admin) and pending -> confirmed (admin);
//! anything else is 409, and concurrent transitions have exactly one winner.

use chrono::DateTime;
use futures_util::future::join_all;
use uuid::Uuid;

use crate::helpers::*;

#[actix_web::test]
async fn owner_cancels_a_pending_order_once() {
    let app = spawn_app().await;
    let placed = app.create(&app.alice, "widget").await;
    let id = placed.id();
    let r = app.act(&app.alice, id, "cancel").await;
    let cancelled = r.ok(200).clone();
    assert_eq!(cancelled["status"], "cancelled");
    for field in ["id", "user_id", "item", "quantity", "address", "created_at"] {
        assert_eq!(cancelled[field], placed.body[field], "{field} unchanged");
    }
    let t = |v: &serde_json::Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(t(&cancelled["updated_at"]) >= t(&cancelled["created_at"]));
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200), &cancelled, "reads back as returned");

    // A final state does not change again.
    let again = app.act(&app.alice, id, "cancel").await;
    let p = again.problem(409);
    assert_eq!(p["type"], "urn:gatehouse:problem:order-not-pending");
    assert!(p["detail"].as_str().unwrap().contains("cancelled"), "{p}");
    app.act(&app.admin, id, "confirm").await.problem(409);
    app.act(&app.admin, id, "cancel").await.problem(409);
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200), &cancelled, "a 409 changes nothing");
}

#[actix_web::test]
async fn a_confirmed_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let id = app.create(&app.alice, "widget").await.id();
    let r = app.act(&app.admin, id, "confirm").await;
    let confirmed = r.ok(200).clone();
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["user_id"], id_of(&app.alice).to_string());

    let p = app.act(&app.alice, id, "cancel").await;
    assert!(
        p.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("confirmed")
    );
    app.act(&app.admin, id, "cancel").await.problem(409);
    app.act(&app.admin, id, "confirm").await.problem(409);
    // Bob still cannot learn it exists.
    app.act(&app.bob, id, "cancel").await.problem(404);
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200), &confirmed);
}

#[actix_web::test]
async fn missing_orders_are_404() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    app.act(&app.alice, id, "cancel").await.problem(404);
    app.act(&app.admin, id, "cancel").await.problem(404);
    app.act(&app.admin, id, "confirm").await.problem(404);
}

#[actix_web::test]
async fn two_concurrent_cancels_one_200_one_409() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let id = app.create(&app.alice, "widget").await.id();
        let (a, b) = tokio::join!(
            app.act(&app.alice, id, "cancel"),
            app.act(&app.alice, id, "cancel")
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "a: {} b: {}", a.text, b.text);
        let winner = if a.status == 200 { &a } else { &b };
        assert_eq!(winner.body["status"], "cancelled");
        let loser = if a.status == 200 { &b } else { &a };
        loser.problem(409);
    }
}

#[actix_web::test]
async fn a_race_of_many_transitions_has_one_winner() {
    let app = spawn_app().await;
    let id = app.create(&app.alice, "widget").await.id();
    let calls = (0..8).map(|i| match i % 3 {
        0 => app.act(&app.alice, id, "cancel"),
        1 => app.act(&app.admin, id, "cancel"),
        _ => app.act(&app.admin, id, "confirm"),
    });
    let results = join_all(calls).await;
    let winners: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.status != 200) {
        r.problem(409);
    }
    let g = app.get(&app.alice, &format!("/orders/{id}")).await;
    assert_eq!(g.ok(200)["status"], winners[0].body["status"]);
}
