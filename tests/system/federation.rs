//! A trusted identity provider's users through the whole system: a token
//! from a real OpenID provider (oidc-provider from npm) reaches orders as a
//! linked local account, which owns its orders like any other account and
//! appears in the admin's user list with its issuer and subject.

use std::path::Path;

use serde_json::json;
use testkit::idp::Provider;

use crate::support::{Options, System};

#[actix_web::test]
async fn a_provider_token_reaches_orders_as_a_linked_account() {
    let p = Provider::start(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let trusted = p.trusted(30);
    let s = System::start_with(Options {
        gateway: Box::new(move |l| l.set("trusted_issuers", trusted.clone())),
        ..Options::default()
    })
    .await;
    let alice = p.token("alice", &[]).await;
    let r = s
        .call(
            "POST",
            "/api/orders",
            Some(&alice),
            Some(json!({"item": "widget", "quantity": 1, "address": "1 Main St"})),
        )
        .await;
    let order = r.ok(201).clone();
    let me = s.call("GET", "/api/me", Some(&alice), None).await;
    let me = me.ok(200).clone();
    assert_eq!(order["user_id"], me["id"]);
    assert_eq!(me["username"], "fed.alice");
    // A later token of the same person: the same account, the same orders.
    let again = p.token("alice", &[]).await;
    let list = s.call("GET", "/api/orders", Some(&again), None).await;
    assert_eq!(list.ok(200)["total"], 1);
    // Another provider user sees none of them; one the provider makes an
    // admin sees them all.
    let carol = p.token("carol", &[]).await;
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());
    s.call("GET", &path, Some(&carol), None).await.problem(404);
    assert_eq!(
        s.call("GET", "/api/orders", Some(&carol), None)
            .await
            .ok(200)["total"],
        0
    );
    let bob = p.token("bob", &[]).await;
    assert_eq!(
        s.call("GET", &path, Some(&bob), None).await.ok(200)["id"],
        order["id"]
    );
    // The admin sees alice as linked to the provider.
    let admin = s.admin().await;
    let users = s
        .call("GET", "/api/users?username=fed.alice", Some(&admin), None)
        .await;
    assert_eq!(
        users.ok(200)["items"][0]["linked_identity"],
        json!({"issuer": p.issuer, "subject": "alice"})
    );
}
