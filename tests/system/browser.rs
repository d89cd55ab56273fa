//! Swagger UI in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) opens `/docs` (and `/redoc`), finds every service's operations, authorizes
//! with a token from `/api/login`, runs `GET /api/me` through "Try it out"
//! and sees 200 with the admin's username. Debian's `chromium` and
//! `chromium-driver` are installed by `scripts/install-test-deps` (run by
//! `scripts/test` and CI); the screenshot's path is printed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{System, eventually};

pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run scripts/install-test-deps (installs Debian's chromium and chromium-driver), or set {var}"
    );
    path
}

/// Headless Chromium under chromedriver, on a free port: the driver (kept
/// alive while it is held) and a WebDriver session.
pub async fn chromium() -> (Driver, fantoccini::Client) {
    let chromium = tool("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("CHROMEDRIVER", "/usr/bin/chromedriver");
    let http = testkit::client_builder().build().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    eventually("chromedriver ready", || async {
        http.get(format!("{webdriver}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,2400"],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .unwrap();
    (driver, c)
}

#[actix_web::test]
async fn swagger_ui_authorizes_and_runs_get_api_me_in_chromium() {
    let s = System::start().await;
    eventually("the services' documents", || async {
        let d: Value = s
            .client
            .get(format!("{}/openapi.json", s.gw))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ["users", "orders", "scanner"]
            .iter()
            .all(|u| d["x-service-documents"][u]["state"] == "current")
    })
    .await;

    let (_driver, c) = chromium().await;
    let wait = |sel: &'static str| {
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(sel))
    };

    // /docs redirects to the UI, which lists every service's operations.
    c.goto(&format!("{}/docs", s.gw)).await.unwrap();
    wait(".opblock").await.unwrap();
    let mut paths = Vec::new();
    for e in c
        .find_all(Locator::Css(".opblock-summary-path"))
        .await
        .unwrap()
    {
        paths.push(e.attr("data-path").await.unwrap().unwrap_or_default());
    }
    for p in [
        "/api/login",
        "/api/refresh",
        "/api/users",
        "/api/me",
        "/api/orders",
        "/api/scans",
        "/api/scan",
    ] {
        assert!(
            paths.iter().any(|x| x == p),
            "{p} not listed in Swagger UI: {paths:?}"
        );
    }

    // Authorize with a real token.
    let token = s.admin().await;
    c.find(Locator::Css(".auth-wrapper .authorize"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait(".modal-ux input")
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    c.find(Locator::Css(".modal-ux .auth-btn-wrapper .authorize"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css(".modal-ux .close-modal"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // GET /api/me through "Try it out".
    let op = "#operations-me-get_me";
    c.find(Locator::Css(&format!("{op} .opblock-summary")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let button = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&format!("{op} .try-out__btn")))
        .await
        .unwrap();
    button.click().await.unwrap();
    c.find(Locator::Css(&format!("{op} .execute")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!(
            "{op} .live-responses-table tbody .response-col_status"
        )))
        .await
        .unwrap();
    assert_eq!(status.text().await.unwrap().trim(), "200");
    let body = c
        .find(Locator::Css(&format!(
            "{op} .live-responses-table tbody .response-col_description pre"
        )))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"username\": \"admin\""), "{body}");

    let png = c.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("swagger-ui-try-it-out.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    // The same document in Redoc, from the gateway's own copy of it (the
    // page's policy lets it load nothing from elsewhere): the operations of
    // the gateway and of every service are rendered.
    c.goto(&format!("{}/redoc", s.gw)).await.unwrap();
    for summary in [
        "Log in: a token pair",
        "Log in, second step: a code for the challenge",
    ] {
        c.wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::XPath(&format!(
                "//h2[contains(normalize-space(.), '{summary}')]"
            )))
            .await
            .unwrap_or_else(|e| panic!("{summary} not rendered by Redoc: {e}"));
    }
    let text = c
        .find(Locator::Css("redoc"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for path in [
        "/api/users",
        "/api/orders",
        "/api/scans",
        "/api/me/mfa/totp",
    ] {
        assert!(text.contains(path), "{path} not in Redoc's page");
    }
    let png = c.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("redoc.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());
    c.close().await.unwrap();
}

/// Swagger UI's "Authorize" signs in with the code flow and PKCE as the
/// shipped public client `gatehouse-docs`: the login page opens in a popup,
/// the code comes back to `/docs/oauth2-redirect.html`, Swagger UI
/// exchanges it, and "Try it out" on `GET /api/me` answers 200 with that
/// token.
#[actix_web::test]
async fn swagger_ui_signs_in_with_the_code_flow_in_chromium() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let public = gw.clone();
    // Held to the end: the whole system runs while it lives.
    let _system = System::start_with(crate::support::Options {
        gateway: Box::new(move |l| l.set("tokens.public_url", public.clone())),
        gateway_listener: Some(listener),
        ..Default::default()
    })
    .await;
    let (_driver, c) = chromium().await;
    c.goto(&format!("{gw}/docs/")).await.unwrap();
    let wait = |sel: &'static str| {
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(sel))
    };
    wait(".opblock").await.unwrap();
    wait(".auth-wrapper .authorize")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The code-flow scheme's own "Authorize" (the bearer field has its own).
    let main = c.window().await.unwrap();
    let button = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//div[contains(@class,'auth-container')][.//h4[contains(., 'oidc')]]//button[contains(@class,'authorize')]",
        ))
        .await
        .unwrap();
    button.click().await.unwrap();
    // The login page, in the popup.
    let mut popup = None;
    for _ in 0..100 {
        let windows = c.windows().await.unwrap();
        if let Some(w) = windows.into_iter().find(|w| *w != main) {
            popup = Some(w);
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    c.switch_to_window(popup.expect("a popup with the login page"))
        .await
        .unwrap();
    wait("#username")
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(crate::support::ADMIN_PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The popup closes itself once it has handed the code back.
    for _ in 0..100 {
        if c.windows().await.unwrap().len() == 1 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    c.switch_to_window(main).await.unwrap();
    // Signed in: the scheme now offers "Logout".
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//div[contains(@class,'auth-container')][.//h4[contains(., 'oidc')]]//button[contains(., 'Logout')]",
        ))
        .await
        .unwrap_or_else(|e| panic!("not signed in through the code flow: {e}"));
    c.close().await.unwrap();
}
