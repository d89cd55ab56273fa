use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn login_then_role_checked_crud_through_the_gateway() {
    let s = spawn_stack().await;
    let r = s.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["refresh_expires_in"], 604800);
    assert_eq!(r.headers["cache-control"], "no-store");
    let admin = r.body["access_token"].as_str().unwrap().to_owned();
    assert!(
        r.body["refresh_token"].as_str().unwrap().len() >= 43,
        "256 bits"
    );

    let list = s.get(&admin, "/api/users").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["total"], 1);
    let id = s.create_user(&admin, "alice", &["user"]).await;
    let got = s.get(&admin, &format!("/api/users/{id}?x=1")).await;
    assert_eq!(got.body["username"], "alice");

    let (alice, _) = s.tokens("alice", "alice-password-1").await;
    s.get(&alice, "/api/users").await.problem(403);
    s.send(
        &alice,
        Method::DELETE,
        &format!("/api/users/{id}"),
        json!({}),
    )
    .await
    .problem(403);
    let me = s.get(&alice, "/api/me").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["username"], "alice");
    let p = s
        .send(
            &alice,
            Method::PATCH,
            "/api/me",
            json!({"full_name": "Alice A."}),
        )
        .await;
    assert_eq!(p.body["full_name"], "Alice A.");

    // Per-method roles.
    assert_eq!(s.get(&alice, "/api/echo/admin").await.status, 200);
    s.send(&alice, Method::DELETE, "/api/echo/admin", json!({}))
        .await
        .problem(403);
    assert_eq!(
        s.send(&admin, Method::DELETE, "/api/echo/admin", json!({}))
            .await
            .status,
        200
    );
    s.send(&admin, Method::POST, "/api/echo/admin", json!({}))
        .await
        .problem(405);

    // No route: 404 problem; public route needs no token.
    let nf = read(s.client.get(s.url("/nowhere"))).await;
    assert_eq!(nf.problem(404)["type"], "urn:gatehouse:problem:no-route");
    // A public route carries no identity, not even with a token or spoofed headers.
    let p = read(
        s.client
            .get(s.url("/public/x"))
            .bearer_auth(&admin)
            .header("x-gateway-token", "forged"),
    )
    .await;
    assert_eq!(p.status, 200);
    for h in [
        "x-gateway-token",
        "request-user-id",
        "request-user-roles",
        "authorization",
    ] {
        assert!(
            p.body["headers"].get(h).is_none(),
            "{h} forwarded on a public route"
        );
    }
}

#[actix_web::test]
async fn the_no_route_answer_is_configurable() {
    let s = spawn_stack_with(|l| {
        l.set(
            "no_route",
            json!({"status": 410, "detail": "gone for good"}),
        )
    })
    .await;
    let r = read(s.client.get(s.url("/old/api"))).await;
    assert_eq!(r.problem(410)["detail"], "gone for good");
}

#[actix_web::test]
async fn login_errors() {
    let s = spawn_stack().await;
    s.login("admin", "wrong-password-000").await.problem(401);
    s.login("nobody", "wrong-password-000").await.problem(401);
    read(
        s.client
            .post(s.url("/api/login"))
            .json(&json!({"username": "admin"})),
    )
    .await
    .problem(422);
    read(
        s.client
            .post(s.url("/api/login"))
            .header("content-type", "application/json")
            .body("{"),
    )
    .await
    .problem(422);
    read(s.client.post(s.url("/api/login")).body("username=admin"))
        .await
        .problem(415);
}

/// Every operation of the merged document that takes a JSON body answers
/// 415 to a body sent as text, and documents it (#30: the registry's
/// `POST`/`DELETE /admin/upstreams/{name}/targets` read any body as JSON).
#[actix_web::test]
async fn every_operation_with_a_json_body_answers_and_documents_415() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let doc = read(s.client.get(s.url("/openapi.json"))).await;
    assert_eq!(doc.status, 200);
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"]["content"]
                .get("application/json")
                .is_none()
            {
                continue;
            }
            let name = format!("{} {path}", method.to_uppercase());
            if op["responses"].get("415").is_none() {
                wrong.push(format!("{name}: 415 not documented"));
            }
            let url = path
                .replace("{name}", "users")
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{client_id}", "no-such-client");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = read(
                s.client
                    .request(method, s.url(&url))
                    .bearer_auth(&admin)
                    .header("content-type", "text/plain")
                    .body("{\"url\": \"http://127.0.0.1:1\"}"),
            )
            .await;
            if r.status != 415 {
                wrong.push(format!("{name}: {} {}", r.status, r.text));
            }
            checked.push(name);
        }
    }
    assert!(checked.len() >= 10, "{checked:?}");
    for op in [
        "POST /admin/upstreams/{name}/targets",
        "DELETE /admin/upstreams/{name}/targets",
    ] {
        assert!(checked.iter().any(|c| c == op), "{op} checked: {checked:?}");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[actix_web::test]
async fn repeated_failures_are_slowed_down() {
    let s = spawn_stack().await;
    for _ in 0..5 {
        s.login("admin", "wrong-password-000").await.problem(401);
    }
    let r = s.login("admin", ADMIN_PASSWORD).await;
    r.problem(429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The lockout is per username: another name from the same address is
    // still answered (401, not 429), until the per-address budget runs out.
    s.login("nobody", "x-password-0000").await.problem(401);
}

#[actix_web::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = spawn_stack().await;
    let (_, r1) = s.tokens("admin", ADMIN_PASSWORD).await;
    let first = s.refresh(&r1).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let r2 = first.body["refresh_token"].as_str().unwrap().to_owned();
    let a2 = first.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(s.get(&a2, "/api/me").await.status, 200);
    // r1 is spent: presenting it again is theft; the whole family dies.
    s.refresh(&r1).await.problem(401);
    s.refresh(&r2).await.problem(401);
    s.refresh("not-a-token").await.problem(401);
    read(s.client.post(s.url("/api/refresh")).json(&json!({})))
        .await
        .problem(422);
}

#[actix_web::test]
async fn logout_kills_the_access_token_at_once() {
    let s = spawn_stack().await;
    let (access, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    let (other_access, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(s.get(&access, "/api/me").await.status, 200);
    let r = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&access)
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.get(&access, "/api/me").await.invalid_token();
    s.refresh(&refresh).await.problem(401);
    assert_eq!(
        s.get(&other_access, "/api/me").await.status,
        200,
        "another session is untouched"
    );
    read(
        s.client
            .post(s.url("/api/logout"))
            .json(&json!({"refresh_token": refresh})),
    )
    .await
    .invalid_token();
}

#[actix_web::test]
async fn deactivation_and_role_changes_apply_at_refresh() {
    let s = spawn_stack().await;
    let (admin, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let bob = s.create_user(&admin, "bob", &["user"]).await;
    let carol = s.create_user(&admin, "carol", &["user"]).await;
    let (bob_access, bob_refresh) = s.tokens("bob", "bob-password-1").await;
    let (_, carol_refresh) = s.tokens("carol", "carol-password-1").await;
    s.get(&bob_access, "/api/users").await.problem(403);

    s.send(
        &admin,
        Method::PATCH,
        &format!("/api/users/{bob}"),
        json!({"roles": ["admin", "user"]}),
    )
    .await;
    s.send(
        &admin,
        Method::PATCH,
        &format!("/api/users/{carol}"),
        json!({"is_active": false}),
    )
    .await;

    let r = s.refresh(&bob_refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let promoted = r.body["access_token"].as_str().unwrap();
    assert_eq!(s.get(promoted, "/api/users").await.status, 200);
    s.refresh(&carol_refresh).await.problem(401);
    s.login("carol", "carol-password-1").await.problem(401);
}

#[actix_web::test]
async fn identity_headers_are_the_gateways_not_the_clients() {
    let s = spawn_stack().await;
    let (admin, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    let r = read(
        s.client
            .get(s.url("/api/echo/things?q=1"))
            .bearer_auth(&token)
            .header("request-user-id", "00000000-0000-0000-0000-000000000001")
            .header("request-user-roles", "admin")
            .header("x-gateway-token", "forged")
            .header("x-user-id", "someone")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-request-id", "trace-42"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.body["headers"];
    assert_eq!(r.body["path"], "/echoed/things");
    assert_eq!(r.body["query"], "q=1");
    assert_eq!(h["request-user-id"], alice);
    assert_eq!(h["request-user-roles"], "user");
    assert!(
        h.get("authorization").is_none(),
        "the client's token stays at the gateway"
    );
    assert!(
        h.get("x-user-id").is_none(),
        "configured identity headers are stripped"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-request-id"], "trace-42");
    assert_eq!(r.headers["x-request-id"], "trace-42");
    // The proof is the gateway's and matches the forwarded identity.
    let pub_pem =
        std::fs::read_to_string(s.env.data_dir().join("keys/gateway-proof.pub.pem")).unwrap();
    let v = common::identity::ProofVerifier::new(&[pub_pem], "gateway", "echo").unwrap();
    let claims = v.verify(h["x-gateway-token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, alice);

    // Spoofed identity on a real service: the caller still gets only their own profile.
    let me = read(
        s.client
            .get(s.url("/api/me"))
            .bearer_auth(&token)
            .header("request-user-id", claims.sub.replace('-', "0")),
    )
    .await;
    assert_eq!(me.body["username"], "alice");
}

#[actix_web::test]
async fn services_refuse_direct_access() {
    let s = spawn_stack().await;
    let r = read(
        s.client
            .get(format!("http://127.0.0.1:{}/users", s.users_port))
            .header("request-user-id", "x"),
    )
    .await;
    r.problem(401);
    let _ = s.echo_port;
}

#[actix_web::test]
async fn sessions_and_revocations_survive_a_restart() {
    let s = spawn_stack().await;
    let (revoked, refresh_a) = s.tokens("admin", ADMIN_PASSWORD).await;
    let (live, refresh_b) = s.tokens("admin", ADMIN_PASSWORD).await;
    let r = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&revoked)
            .json(&json!({"refresh_token": refresh_a})),
    )
    .await;
    assert_eq!(r.status, 204);
    s.gw_handle.stop(true).await;

    let (gw2, _h) = s.another_gateway(&|l| l).await;
    let get = |t: &str| {
        read(
            s.client
                .get(format!("{gw2}/api/me"))
                .bearer_auth(t.to_owned()),
        )
    };
    get(&revoked).await.invalid_token();
    assert_eq!(get(&live).await.status, 200);
    let r = read(
        s.client
            .post(format!("{gw2}/api/refresh"))
            .json(&json!({"refresh_token": refresh_b})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = read(
        s.client
            .post(format!("{gw2}/api/refresh"))
            .json(&json!({"refresh_token": refresh_a})),
    )
    .await;
    r.problem(401);
}
