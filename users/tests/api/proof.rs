//! A request reaches a service only with the gateway's proof, and the proof
//! must match the identity headers exactly.

use common::identity::{PROOF_HEADER, ProofClaims, ProofMinter, USER_ID_HEADER, USER_ROLES_HEADER};
use reqwest::Method;

use crate::helpers::*;

fn claims(app: &TestApp, aud: &str, iat: i64, exp: i64) -> ProofClaims {
    let common::identity::Principal::User { id, roles } = &app.admin else {
        unreachable!()
    };
    ProofClaims {
        iss: "gateway".into(),
        aud: aud.into(),
        sub: id.to_string(),
        roles: roles.clone(),
        iat,
        nbf: iat,
        exp,
        kind: None,
        claims: Default::default(),
    }
}

async fn with_proof(app: &TestApp, proof: &str, user_id: &str, roles: &str) -> Resp {
    read(
        app.client
            .get(format!("{}/users", app.base))
            .header(PROOF_HEADER, proof)
            .header(USER_ID_HEADER, user_id)
            .header(USER_ROLES_HEADER, roles),
    )
    .await
}

#[actix_web::test]
async fn requests_without_valid_proof_are_refused() {
    let app = spawn_app().await;
    let common::identity::Principal::User { id, .. } = &app.admin else {
        unreachable!()
    };
    let id = id.to_string();
    let now = chrono::Utc::now().timestamp();

    // No proof, just the headers a client would spoof.
    let r = read(
        app.client
            .get(format!("{}/users", app.base))
            .header(USER_ID_HEADER, &id)
            .header(USER_ROLES_HEADER, "admin,user"),
    )
    .await;
    r.problem(401);
    app.send(None, Method::GET, "/me", None).await.problem(401);

    // Valid proof (control).
    let good = app.forged_claims(&claims(&app, "users", now, now + 60));
    assert_eq!(with_proof(&app, &good, &id, "admin,user").await.status, 200);

    // Expired; not yet valid; too long-lived; wrong audience; wrong issuer.
    let cases = [
        claims(&app, "users", now - 120, now - 60),
        claims(&app, "users", now + 300, now + 330),
        claims(&app, "users", now, now + 3600),
        claims(&app, "orders", now, now + 60),
        ProofClaims {
            iss: "someone-else".into(),
            ..claims(&app, "users", now, now + 60)
        },
    ];
    for c in cases {
        let t = app.forged_claims(&c);
        with_proof(&app, &t, &id, "admin,user").await.problem(401);
    }

    // Signed by another key (a forger without the gateway's private key).
    let other = testkit::TestEnv::new();
    let forged = other
        .minter
        .sign_claims(&claims(&app, "users", now, now + 60))
        .unwrap();
    with_proof(&app, &forged, &id, "admin,user")
        .await
        .problem(401);
    let _: &ProofMinter = &other.minter;

    // Tampered payload: the admin's proof with the signature of another.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = forged.split('.').nth(1).unwrap().to_owned();
    parts[1].push('A');
    with_proof(&app, &parts.join("."), &id, "admin,user")
        .await
        .problem(401);
    with_proof(&app, "garbage", &id, "admin,user")
        .await
        .problem(401);

    // Valid proof, spoofed headers: another user id, or extra roles.
    let (bob, _) = app.create_user("bob", &["user"]).await;
    let common::identity::Principal::User { id: bob_id, .. } = &bob else {
        unreachable!()
    };
    with_proof(&app, &good, &bob_id.to_string(), "admin,user")
        .await
        .problem(401);
    let bob_proof = app.minter.mint("users", &bob).unwrap();
    with_proof(&app, &bob_proof, &bob_id.to_string(), "admin,user")
        .await
        .problem(401);
    // Bob's real identity works and is not an admin.
    with_proof(&app, &bob_proof, &bob_id.to_string(), "user")
        .await
        .problem(403);
}
