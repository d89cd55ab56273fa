//! "Sign in with gatehouse", checked by implementations nobody here wrote:
//! openid-client (the certified Node.js relying party) runs the whole code
//! flow against the whole system (discovery, PKCE, the callback with every
//! check it makes on the ID token, userinfo, refresh, revocation,
//! end-session), while headless Chromium signs in on the login page (the
//! password, then the second step with a code from oathtool) and allows the
//! application on the consent page; axe-core checks every page it sees.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::chromium;
use crate::support::{Options, System};

/// Run axe-core (from the npm registry) on the page Chromium shows: no
/// violation of WCAG 2 A/AA rules.
pub(crate) async fn axe(c: &Client, axe_js: &str, page: &str) {
    c.execute(axe_js, vec![]).await.unwrap();
    let out = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']})
                .then(r => done(r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.html).join(' | '))))
                .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    let violations: Vec<String> = serde_json::from_value(out).unwrap();
    assert!(violations.is_empty(), "{page}: {violations:#?}");
}

/// The relying party's folder (openid-client, axe-core), installed.
pub(crate) fn rp_folder() -> std::path::PathBuf {
    testkit::node::install(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "rp",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("testkit/rp"),
    )
}

/// axe-core's script, from the npm registry (installed with the relying
/// party's packages in `folder`, see [`rp_folder`]).
pub(crate) fn axe_script(folder: &Path) -> String {
    std::fs::read_to_string(folder.join("node_modules/axe-core/axe.min.js")).unwrap()
}

pub(crate) async fn fill(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

pub(crate) async fn submit(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Wait until the element `css` shows `text` (a page may still be the old
/// one right after a click): its whole text.
pub(crate) async fn shows(c: &Client, css: &str, text: &str) -> String {
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && t.contains(text)
        {
            return t;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let page = c.source().await.unwrap_or_default();
    panic!("{css} never showed {text:?}: {page}");
}

fn totp(secret: &str, when: &str) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret, "--now", when])
        .output()
        .expect("oathtool (scripts/install-test-deps)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[actix_web::test]
async fn openid_client_signs_a_user_in_through_the_page_in_chromium() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let issuer = gw.clone();
    let sys = System::start_with(Options {
        gateway: Box::new(move |l| {
            l.set("tokens.issuer", issuer.clone())
                .set("tokens.public_url", issuer.clone())
                .set("login.product_name", "Acme sign-in")
        }),
        gateway_listener: Some(listener),
        ..Options::default()
    })
    .await;
    let folder = rp_folder();
    let axe_js = axe_script(&folder);
    let rp = testkit::node::Program::start(&folder, "rp.mjs");
    let rp_url = format!("http://127.0.0.1:{}", rp.port);

    // A user with a second factor, and a third-party application.
    let admin = sys.admin().await;
    let (_, alice) = sys.user(&admin, "alice").await;
    let r = sys
        .call(
            "POST",
            "/api/me/mfa/totp",
            Some(&alice),
            Some(json!({"current_password": "alice-password-0123"})),
        )
        .await;
    let secret = r.ok(201)["secret"].as_str().unwrap().to_owned();
    let r = sys
        .call(
            "POST",
            "/api/me/mfa/totp/confirm",
            Some(&alice),
            Some(json!({"code": totp(&secret, "now")})),
        )
        .await;
    r.ok(200);
    let r = sys
        .call(
            "POST",
            "/api/clients",
            Some(&admin),
            Some(json!({
                "name": "Acme Notes",
                "public": true,
                "redirect_uris": [format!("{rp_url}/callback")],
                "post_logout_redirect_uris": [format!("{rp_url}/bye")],
            })),
        )
        .await;
    let client_id = r.ok(201)["client_id"].as_str().unwrap().to_owned();

    let start: Value = sys
        .client
        .get(format!(
            "{rp_url}/start?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("issuer", &gw)
                .append_pair("client_id", &client_id)
                .finish()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = start["url"].as_str().unwrap_or_else(|| panic!("{start}"));

    let (_driver, c) = chromium().await;
    c.goto(url).await.unwrap();
    shows(&c, "h1", "Sign in to Acme sign-in").await;
    axe(&c, &axe_js, "login").await;
    // By keyboard: the username field has the focus, Tab moves on.
    let focused = c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("username")
    );
    focused.send_keys("alice").await.unwrap();
    focused.send_keys("\u{E004}").await.unwrap(); // Tab
    let focused = c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("password")
    );
    // A wrong password first: the page says so, in an alert, and keeps the name.
    focused
        .send_keys("not-the-password-1\u{E007}")
        .await
        .unwrap(); // Enter
    shows(&c, "[role=alert]", "not right").await;
    // The username is kept.
    let kept = c
        .find(Locator::Css("#username"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("alice"));
    axe(&c, &axe_js, "login with an error").await;
    fill(&c, "#password", "alice-password-0123").await;
    submit(&c, "button[type=submit]").await;
    shows(&c, "h1", "Second step").await;
    axe(&c, &axe_js, "second step").await;
    fill(&c, "#code", &totp(&secret, "now + 30 seconds")).await;
    submit(&c, "button[type=submit]").await;
    shows(&c, "h1", "Allow access?").await;
    let consent = shows(&c, "main", "Acme Notes").await;
    assert!(consent.contains("Stay connected"), "{consent}");
    axe(&c, &axe_js, "consent").await;
    submit(&c, "button[value=allow]").await;
    shows(&c, "#outcome", "done").await;

    let result: Value = sys
        .client
        .get(format!("{rp_url}/result"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["state"], "done", "{result:#}");
    let claims = &result["claims"];
    assert_eq!(claims["iss"], gw.as_str());
    assert_eq!(claims["aud"], client_id.as_str());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["acr"], "urn:gatehouse:acr:mfa");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(result["userinfo"]["email"], "alice@example.com");
    assert_eq!(result["refreshed"], true);
    assert_eq!(
        result["refreshAfterRevocation"], "invalid_grant",
        "{result:#}"
    );

    // RP-initiated logout, with the ID token as the hint: back to the app.
    let end = result["endSession"].as_str().unwrap();
    c.goto(end).await.unwrap();
    shows(&c, "#bye", "signed out").await;
    let bye: Value = sys
        .client
        .get(format!("{rp_url}/logged-out"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bye["loggedOut"]["state"], "bye-state", "{bye}");
    // Signed out: the login page asks again, and its own page passes axe.
    c.goto(&format!("{gw}/login")).await.unwrap();
    shows(&c, "h1", "Sign in to Acme sign-in").await;
    c.close().await.unwrap();
}

/// The README's "Sign in from your web app", as written (only the app's
/// port is a free one instead of 5000): the registration block, then the
/// ten-line app (the README's copy is `examples/signin/app.py`), then a
/// person signing in with Chromium and being greeted by name.
#[actix_web::test]
async fn the_readme_sign_in_example_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let app_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signin/app.py");
    let app = std::fs::read_to_string(&app_path).unwrap();
    let shown = readme
        .split("<!-- sign-in-app-code -->\n```python\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .unwrap();
    assert_eq!(
        shown, app,
        "the README shows examples/signin/app.py as it is"
    );
    assert!(
        app.lines().count() <= 12,
        "a ten-line app (with its two comment lines)"
    );

    let sys = System::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let block = crate::documents::fenced_block("README.md", "<!-- sign-in-app -->")
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{port}"));
    // Off the reactor: the services answer on this very thread.
    let gw = sys.gw.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .env("GATEWAY", gw)
            .env("PASSWORD", crate::support::ADMIN_PASSWORD)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(client_id.starts_with("gh_"), "{client_id}");

    let python = testkit::python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "oauth-venv",
        &["authlib==1.9.10", "joserfc==1.8.0", "requests==2.34.2"],
    )
    .join("python");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _app = Killed(
        Command::new(python)
            .arg(&app_path)
            .env("AUTHLIB_INSECURE_TRANSPORT", "1")
            .env("CLIENT_ID", &client_id)
            .env("GATEHOUSE", &sys.gw)
            .env("PORT", port.to_string())
            .spawn()
            .unwrap(),
    );
    let app_url = format!("http://127.0.0.1:{port}/");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (_driver, c) = chromium().await;
    c.goto(&app_url).await.unwrap();
    shows(&c, "h1", "Sign in to gatehouse").await;
    fill(&c, "#username", "admin").await;
    fill(&c, "#password", crate::support::ADMIN_PASSWORD).await;
    submit(&c, "button[type=submit]").await;
    shows(&c, "body", "Hello, admin").await;
    c.close().await.unwrap();
}
