//! Accounts linked to a trusted identity provider (`/internal/links`, the
//! gateway's call): their usernames are `fed.` and the provider's, so a
//! provider's user never takes a name a local account could want, and no
//! local account takes a `fed.` name (#30).

use common::identity::Principal;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::{Value, json};

use crate::helpers::*;

const ISSUER: &str = "https://idp.example";

/// Link `subject` of [`ISSUER`], who prefers `username`; asserts 200.
async fn link(app: &TestApp, subject: &str, username: &str) -> Value {
    let r = app
        .post(
            &Principal::Gateway,
            "/internal/links",
            json!({"issuer": ISSUER, "subject": subject, "username": username, "roles": ["user"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn create(app: &TestApp, username: &str) -> Resp {
    app.post(
        &app.admin,
        "/users",
        json!({"username": username, "email": format!("{}@example.com", uuid::Uuid::new_v4().simple()),
               "password": "a-local-password-1"}),
    )
    .await
}

#[actix_web::test]
async fn a_linked_account_is_prefixed_and_leaves_local_names_free() {
    let app = spawn_app().await;
    // Names an admin may want locally: the provider's users get them
    // prefixed, and the admin creates the bare ones afterwards.
    for name in ["support", "root", "admin-2"] {
        let linked = link(&app, &format!("sub-{name}"), name).await;
        assert_eq!(linked["username"], format!("fed.{name}"));
        let local = create(&app, name).await;
        assert_eq!(local.status, 201, "{}", local.text);
        assert_eq!(local.body["username"], name);
    }
    // The same subject again: the same account.
    let again = link(&app, "sub-support", "support").await;
    assert_eq!(again["username"], "fed.support");
    // A namesake (another subject, or another provider's) gets a suffix.
    assert_eq!(
        link(&app, "someone-else", "Support").await["username"],
        "fed.support-2"
    );
    // A name that has the prefix already keeps it once; one that is not
    // a username is made one, within the 32 characters with its suffix.
    assert_eq!(link(&app, "a", "Fed.Alice").await["username"], "fed.alice");
    assert_eq!(
        link(&app, "b", "Ünï Çode!").await["username"],
        "fed.n---ode"
    );
    assert_eq!(link(&app, "c", "!!!").await["username"], "fed.user");
    let long = "a".repeat(40);
    assert_eq!(
        link(&app, "d", &long).await["username"],
        format!("fed.{}", "a".repeat(21))
    );
    assert_eq!(
        link(&app, "e", &long).await["username"],
        format!("fed.{}-2", "a".repeat(21))
    );
}

#[actix_web::test]
async fn no_local_account_takes_the_linked_prefix() {
    let app = spawn_app().await;
    // Created: 422 naming the field, whatever the case or form.
    for name in ["fed.eve", "FED.eve", "ｆｅｄ.eve"] {
        let r = create(&app, name).await;
        assert_eq!(
            r.field_codes(),
            [("username".to_owned(), "reserved".to_owned())],
            "{name}"
        );
    }
    // Renamed: a local account cannot move into the prefix, a linked one
    // cannot move out of it (within it, it may be renamed).
    let (_, local) = app.create_user("eve", &["user"]).await;
    let r = app
        .patch(
            &app.admin,
            &format!("/users/{}", local.id()),
            json!({"username": "fed.eve"}),
        )
        .await;
    assert_eq!(
        r.field_codes(),
        [("username".to_owned(), "reserved".to_owned())]
    );
    let linked = link(&app, "sub-mallory", "mallory").await;
    let path = format!("/users/{}", linked["id"].as_str().unwrap());
    let r = app
        .patch(&app.admin, &path, json!({"username": "mallory"}))
        .await;
    assert_eq!(
        r.field_codes(),
        [("username".to_owned(), "reserved".to_owned())]
    );
    let r = app
        .patch(&app.admin, &path, json!({"username": "fed.mallory-x"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["username"], "fed.mallory-x");
    // Nothing else about the accounts changed.
    assert_eq!(
        app.get(&app.admin, &format!("/users/{}", local.id()))
            .await
            .body["username"],
        "eve"
    );
}

/// An account linked before #30 with a bare name gets its prefix the
/// next time its provider's user signs in, which frees the name.
#[actix_web::test]
async fn an_earlier_bare_linked_name_is_prefixed_on_next_use() {
    let app = spawn_app().await;
    let linked = link(&app, "sub-helpdesk", "helpdesk").await;
    let id = uuid::Uuid::parse_str(linked["id"].as_str().unwrap()).unwrap();
    // What the code before #30 wrote: the provider's name as it was.
    let db = sea_orm::Database::connect(app.db_url.as_str())
        .await
        .unwrap();
    users::entity::user::ActiveModel {
        id: Set(id),
        username: Set("helpdesk".into()),
        ..Default::default()
    }
    .update(&db)
    .await
    .unwrap();
    create(&app, "helpdesk").await.problem(409);

    let again = link(&app, "sub-helpdesk", "helpdesk").await;
    assert_eq!(again["id"], linked["id"]);
    assert_eq!(again["username"], "fed.helpdesk");
    assert_eq!(create(&app, "helpdesk").await.status, 201);
}
