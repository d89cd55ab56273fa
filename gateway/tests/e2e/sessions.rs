//! Sessions that end when they should: logout and refresh-token reuse end
//! every access token of the session; account changes (deactivation,
//! deletion, a role taken away, a new password) end the account's sessions
//! at once, on every replica; a token holder cannot guess the current
//! password without limit.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn logout_ends_every_access_token_of_the_session() {
    let s = spawn_stack().await;
    let (first, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    let r = s.refresh(&refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    // Another session of the same user is not touched.
    let (other, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let out = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&second)
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    s.get(&first, "/api/me").await.invalid_token();
    s.get(&second, "/api/me").await.invalid_token();
    s.refresh(&refresh).await.problem(401);
    assert_eq!(s.get(&other, "/api/me").await.status, 200);
}

#[actix_web::test]
async fn refresh_token_reuse_ends_every_access_token_of_the_session() {
    let s = spawn_stack().await;
    let (first, r1) = s.tokens("admin", ADMIN_PASSWORD).await;
    let r = s.refresh(&r1).await;
    let second = r.body["access_token"].as_str().unwrap().to_owned();
    // A stolen, already spent refresh token is presented again.
    s.refresh(&r1).await.problem(401);
    s.get(&first, "/api/me").await.invalid_token();
    s.get(&second, "/api/me").await.invalid_token();
}

#[actix_web::test]
async fn account_changes_end_its_sessions_at_once() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    // Deactivated, demoted, reset, deleted: each refuses the token it had.
    let cases: [(&str, serde_json::Value); 3] = [
        ("deactivated", json!({"is_active": false})),
        ("demoted", json!({"roles": ["user"]})),
        ("reset", json!({"password": "a-brand-new-password-1"})),
    ];
    for (name, change) in cases {
        let id = s.create_user(&admin, name, &["user", "admin"]).await;
        let (token, refresh) = s.tokens(name, &format!("{name}-password-1")).await;
        assert_eq!(s.get(&token, "/api/users").await.status, 200);
        let r = s
            .send(&admin, Method::PATCH, &format!("/api/users/{id}"), change)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            !r.headers.contains_key("x-gatehouse-revoke-sessions"),
            "the services' words to the gateway never reach a client"
        );
        s.get(&token, "/api/me").await.invalid_token();
        s.refresh(&refresh).await.problem(401);
    }
    let id = s.create_user(&admin, "deleted", &["user"]).await;
    let (token, _) = s.tokens("deleted", "deleted-password-1").await;
    let r = s
        .send(
            &admin,
            Method::DELETE,
            &format!("/api/users/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.get(&token, "/api/me").await.invalid_token();
    // A change that takes nothing away ends nothing.
    let id = s.create_user(&admin, "renamed", &["user"]).await;
    let (token, _) = s.tokens("renamed", "renamed-password-1").await;
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{id}"),
            json!({"full_name": "R", "roles": ["user", "admin"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get(&token, "/api/me").await.status, 200);
}

/// A cutoff is to the millisecond: a role taken away and a login in the
/// same second give a token that works (it was refused as revoked while
/// its refresh token worked, when cutoffs were whole seconds).
#[actix_web::test]
async fn a_login_just_after_an_account_change_is_not_cut_off() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let mut same_second = 0;
    for round in 0..6 {
        let name = format!("quick{round}");
        let id = s.create_user(&admin, &name, &["user", "admin"]).await;
        let (old, _) = s.tokens(&name, &format!("{name}-password-1")).await;
        // Start just after a second begins, so both steps fit in it.
        let wait = 1000 - (unix_ms() % 1000) as u64 + 20;
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let started = unix_ms() / 1000;
        let r = s
            .send(
                &admin,
                Method::PATCH,
                &format!("/api/users/{id}"),
                json!({"roles": ["user"]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let (new, refresh) = s.tokens(&name, &format!("{name}-password-1")).await;
        let ended = unix_ms() / 1000;
        s.get(&old, "/api/me").await.invalid_token();
        let me = s.get(&new, "/api/me").await;
        assert_eq!(
            me.status, 200,
            "a token issued after the change: {}",
            me.text
        );
        assert_eq!(me.body["roles"], json!(["user"]));
        assert_eq!(s.refresh(&refresh).await.status, 200);
        if started == ended {
            same_second += 1;
        }
        if same_second >= 2 {
            break;
        }
    }
    assert!(
        same_second >= 2,
        "the change and the login never fell in one second"
    );
}

#[actix_web::test]
async fn a_new_password_ends_every_other_session_of_the_account() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "alice", &["user"]).await;
    let (here, here_refresh) = s.tokens("alice", "alice-password-1").await;
    let (there, there_refresh) = s.tokens("alice", "alice-password-1").await;
    let r = s
        .send(
            &here,
            Method::PATCH,
            "/api/me",
            json!({"password": "alice-password-2", "current_password": "alice-password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.headers.contains_key("x-gatehouse-credential-check"));
    assert_eq!(
        s.get(&here, "/api/me").await.status,
        200,
        "the caller's session stays"
    );
    assert_eq!(s.refresh(&here_refresh).await.status, 200);
    s.get(&there, "/api/me").await.invalid_token();
    s.refresh(&there_refresh).await.problem(401);
}

#[actix_web::test]
async fn the_current_password_cannot_be_guessed_without_limit() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    s.create_user(&admin, "alice", &["user"]).await;
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    // A new e-mail needs the current password too.
    let r = s
        .send(
            &token,
            Method::PATCH,
            "/api/me",
            json!({"email": "new@example.com"}),
        )
        .await;
    r.problem(422);
    assert!(r.text.contains("current_password"), "{}", r.text);
    for _ in 0..5 {
        s.send(
            &token,
            Method::PATCH,
            "/api/me",
            json!({"email": "new@example.com", "current_password": "guess-password-00"}),
        )
        .await
        .problem(403);
    }
    // The budget is the login's: spent here, refused there too.
    let r = s
        .send(
            &token,
            Method::PATCH,
            "/api/me",
            json!({"email": "new@example.com", "current_password": "alice-password-1"}),
        )
        .await;
    r.problem(429);
    assert!(r.headers.contains_key("retry-after"));
    s.login("Alice", "alice-password-1").await.problem(429);
    // A change that checks no password is not held back.
    let r = s
        .send(
            &token,
            Method::PATCH,
            "/api/me",
            json!({"full_name": "Alice"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_web::test]
async fn revocations_bite_on_the_other_replica_on_the_very_next_request() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    // Only the announcement can make it in time, not the resync.
    let f = move |l| shared(l).set("revocations.resync_secs", 3600);
    let s = spawn_stack_with(f.clone()).await;
    let (b, _handle) = s.another_gateway(&f).await;
    let on_b = |token: String| {
        let url = format!("{b}/api/me");
        let client = s.client.clone();
        async move { read(client.get(url).bearer_auth(token)).await }
    };
    // Give both subscriptions a moment to start.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..30 {
        let (token, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
        assert_eq!(on_b(token.clone()).await.status, 200);
        let out = read(
            s.client
                .post(s.url("/api/logout"))
                .bearer_auth(&token)
                .json(&json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(out.status, 204, "{}", out.text);
        on_b(token).await.invalid_token();
    }
    // An account change answered by A is refused by B at once.
    let admin = admin_token(&s).await;
    let id = s.create_user(&admin, "alice", &["user"]).await;
    let (alice, _) = s.tokens("alice", "alice-password-1").await;
    assert_eq!(on_b(alice.clone()).await.status, 200);
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{id}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    on_b(alice).await.invalid_token();
}

/// The refresh tables and the deny list hold the live sessions, not every
/// login there ever was (#33): a gateway sweeps what ended when it starts
/// (and every hour): families past their absolute end with their refresh
/// tokens, and deny-list entries past theirs. Live ones stay and work.
#[actix_web::test]
async fn ended_sessions_are_swept_and_live_ones_stay() {
    use gateway::identity::sessions::entity::{family, refresh, revoked};
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let s = spawn_stack().await;
    let (_, live_refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    let db = sea_orm::Database::connect(&s.gateway_db).await.unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(3);
    let mut ended = Vec::new();
    for _ in 0..3 {
        let id = uuid::Uuid::new_v4();
        family::ActiveModel {
            id: Set(id),
            user_id: Set(uuid::Uuid::new_v4()),
            created_at: Set(long_ago - chrono::Duration::days(1)),
            expires_at: Set(long_ago),
            revoked_at: Set(None),
            amr: Set("pwd".into()),
            client_id: Set(None),
            scope: Set(None),
            browser_session_id: Set(None),
            auth_time: Set(None),
        }
        .insert(&db)
        .await
        .unwrap();
        refresh::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            family_id: Set(id),
            token_hash: Set(format!("{:064}", ended.len())),
            created_at: Set(long_ago - chrono::Duration::days(1)),
            expires_at: Set(long_ago),
            used_at: Set(None),
        }
        .insert(&db)
        .await
        .unwrap();
        ended.push(id);
    }
    revoked::ActiveModel {
        jti: Set("ended-long-ago".into()),
        expires_at: Set(long_ago),
    }
    .insert(&db)
    .await
    .unwrap();
    let families = family::Entity::find().all(&db).await.unwrap().len();
    assert_eq!(families, 4);

    // Another replica starts: it sweeps.
    let (_other, _h) = s.another_gateway(&|l: common::config::Loader| l).await;
    let left: Vec<uuid::Uuid> = family::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(ended.iter().all(|id| !left.contains(id)));
    let tokens = refresh::Entity::find().all(&db).await.unwrap();
    assert!(
        tokens.iter().all(|t| left.contains(&t.family_id)),
        "{tokens:?}"
    );
    assert!(
        revoked::Entity::find_by_id("ended-long-ago".to_owned())
            .one(&db)
            .await
            .unwrap()
            .is_none()
    );
    // The live session still refreshes.
    let r = s.refresh(&live_refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
