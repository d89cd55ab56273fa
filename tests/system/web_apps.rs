//! People in front of web apps: an app behind a route that admits the
//! browser session (README "Protect a web app"), driven by headless
//! Chromium, and an app behind a real nginx that asks gatehouse's
//! `/auth/verify` with `auth_request` (README "Use gatehouse behind nginx /
//! Traefik / Envoy", `deploy/forward-auth/nginx.conf` as it is), and the
//! same app reached by signing in with the company's provider (a real
//! oidc-provider and its own sign-in page).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::browser::chromium;
use crate::signin::{axe, fill, shows, submit};
use crate::support::{ADMIN_PASSWORD, Options, System, eventually};

/// What the app received: each request's method, path and headers.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A web app that records every request and shows who it is for: `GET` a
/// page with the user id the gateway vouched for and a same-site form;
/// `POST /app/notes` saves; `/evil` (reached as `localhost`, another site
/// than `127.0.0.1`) is a page whose form posts to the app through the
/// gateway (`?to=`). The gateway's fetches of `/openapi.json` are not
/// recorded.
struct App {
    port: u16,
    seen: Seen,
    _handle: actix_web::dev::ServerHandle,
}

async fn app_page(req: HttpRequest, seen: web::Data<Seen>, q: web::Query<Value>) -> HttpResponse {
    if req.path() == "/openapi.json" {
        // The gateway asking for the app's API document (it has none): not
        // a request of the browser's.
        return HttpResponse::NotFound().finish();
    }
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    seen.lock()
        .unwrap()
        .push(json!({"method": req.method().as_str(), "path": req.path(), "headers": headers}));
    let html = |body: String| {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(format!(
                "<!doctype html><html lang=en><head><title>app</title></head><body>{body}</body></html>"
            ))
    };
    let user = req
        .headers()
        .get("request-user-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("nobody")
        .to_owned();
    match (req.method().as_str(), req.path()) {
        ("POST", "/app/notes") => html(format!("<p id=saved>saved for {user}</p>")),
        ("GET", "/evil") => {
            let to = q.get("to").and_then(Value::as_str).unwrap_or("").to_owned();
            html(format!(
                "<form method=post action=\"{to}\"><input type=hidden name=n value=1><button id=go>Go</button></form>"
            ))
        }
        _ => html(format!(
            "<h1 id=who>Hello {user}</h1><form method=post action=/app/notes><input type=hidden name=n value=1><button id=save>Save</button></form>"
        )),
    }
}

impl App {
    async fn start() -> App {
        let seen: Seen = Arc::default();
        let data = web::Data::new(seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .app_data(web::QueryConfig::default())
                .default_service(web::to(app_page))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        App {
            port,
            seen,
            _handle: handle,
        }
    }

    fn last(&self) -> Value {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// A YAML block of a document, after `marker`.
fn yaml_block(path: &str, marker: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    let after = text
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{path} has no {marker}"));
    let body = after.split("```yaml\n").nth(1).unwrap();
    serde_yaml::from_str(body.split("\n```").next().unwrap()).unwrap()
}

/// The README's web-app configuration with the app on `port`, on top of
/// the shipped routes: `(upstreams.webapp, routes)`.
fn readme_config(port: u16) -> (Value, Value) {
    let block = yaml_block("README.md", "<!-- web-app-config -->");
    let block: Value = serde_json::to_value(block).unwrap();
    let text = block
        .to_string()
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{port}"));
    let block: Value = serde_json::from_str(&text).unwrap();
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut routes = block["routes"].as_array().unwrap().clone();
    routes.extend(
        serde_json::to_value(&shipped["routes"])
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    (block["upstreams"]["webapp"].clone(), Value::Array(routes))
}

#[actix_web::test]
async fn a_web_app_behind_a_session_route_in_chromium() {
    let app = App::start().await;
    let (webapp, routes) = readme_config(app.port);
    let sys = System::start_with(Options {
        gateway: Box::new(move |l| {
            l.set("upstreams.webapp", webapp.clone())
                .set("routes", routes.clone())
        }),
        ..Options::default()
    })
    .await;
    let admin = sys.admin().await;
    let (alice_id, _) = sys.user(&admin, "alice").await;
    let (_driver, c) = chromium().await;

    // Not signed in: the login page, then back to the exact page asked for.
    c.goto(&format!("{}/app/reports?month=12", sys.gw))
        .await
        .unwrap();
    shows(&c, "h1", "Sign in to gatehouse").await;
    fill(&c, "#username", "alice").await;
    fill(&c, "#password", "alice-password-0123").await;
    submit(&c, "button[type=submit]").await;
    shows(&c, "#who", &format!("Hello {alice_id}")).await;
    assert_eq!(
        c.current_url().await.unwrap().as_str(),
        format!("{}/app/reports?month=12", sys.gw)
    );
    let seen = app.last();
    assert_eq!(seen["path"], "/app/reports");
    let cookie = seen["headers"]["cookie"].as_str().unwrap_or("");
    assert!(
        !cookie.contains("gatehouse-"),
        "the app never sees the session: {cookie}"
    );
    assert!(seen["headers"]["x-gateway-token"].is_string(), "{seen}");

    // The app's own form (same site) saves.
    submit(&c, "#save").await;
    shows(&c, "#saved", &format!("saved for {alice_id}")).await;

    // Another site's form posting into the app: refused with 403.
    let saves = || {
        app.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == "POST")
            .count()
    };
    let before = saves();
    let to = format!("{}/app/notes", sys.gw);
    c.goto(&format!(
        "http://localhost:{}/evil?to={}",
        app.port,
        form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()
    ))
    .await
    .unwrap();
    submit(&c, "#go").await;
    shows(&c, "body", "must come from this site").await;
    assert_eq!(saves(), before, "the cross-site post never reached the app");

    // Signed out: the app's page is the login page again.
    c.goto(&format!("{}/login", sys.gw)).await.unwrap();
    submit(&c, "form[action$='/logout'] button").await;
    shows(&c, "main", "signed out").await;
    c.goto(&format!("{}/app/reports", sys.gw)).await.unwrap();
    shows(&c, "h1", "Sign in to gatehouse").await;

    // A deactivated account does not come back: signed in again, then
    // deactivated by the admin, the next page is the login page.
    fill(&c, "#username", "alice").await;
    fill(&c, "#password", "alice-password-0123").await;
    submit(&c, "button[type=submit]").await;
    shows(&c, "#who", "Hello").await;
    let r = sys
        .call(
            "PATCH",
            &format!("/api/users/{alice_id}"),
            Some(&admin),
            Some(json!({"is_active": false})),
        )
        .await;
    r.ok(200);
    c.goto(&format!("{}/app/reports", sys.gw)).await.unwrap();
    shows(&c, "h1", "Sign in to gatehouse").await;
    c.close().await.unwrap();
}

#[actix_web::test]
async fn signing_in_with_the_company_provider_in_chromium() {
    let app = App::start().await;
    let (webapp, routes) = readme_config(app.port);
    let idp = testkit::idp::Provider::start(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let secret = tempfile::NamedTempFile::new().unwrap();
    let entry = idp.sign_in_option(&gw, "Acme SSO", secret.path()).await;
    let public = gw.clone();
    let sys = System::start_with(Options {
        gateway: Box::new(move |l| {
            l.set("upstreams.webapp", webapp.clone())
                .set("routes", routes.clone())
                .set("trusted_issuers", json!([entry]))
                .set("tokens.public_url", public.clone())
        }),
        gateway_listener: Some(listener),
        ..Options::default()
    })
    .await;
    let axe_js = crate::signin::axe_script(&crate::signin::rp_folder());
    let (_driver, c) = chromium().await;

    // The app's page: the login page, with the provider's button.
    c.goto(&format!("{gw}/app/reports?month=12")).await.unwrap();
    shows(&c, "section.providers", "Sign in with Acme SSO").await;
    axe(&c, &axe_js, "login with a provider").await;
    submit(&c, "section.providers button").await;
    // The provider's own sign-in page, then back to the exact page asked
    // for, as the linked account.
    shows(&c, "h1", "Test provider").await;
    fill(&c, "#login", "alice").await;
    fill(&c, "#password", "alice-password").await;
    submit(&c, "button[type=submit]").await;
    let who = shows(&c, "#who", "Hello ").await;
    let id = who.trim_start_matches("Hello ").trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{who}");
    assert_eq!(
        c.current_url().await.unwrap().as_str(),
        format!("{gw}/app/reports?month=12")
    );
    let seen = app.last();
    assert_eq!(seen["headers"]["request-user-id"], id.as_str(), "{seen}");
    assert!(
        !seen["headers"]["cookie"]
            .as_str()
            .unwrap_or("")
            .contains("gatehouse-"),
        "{seen}"
    );

    // Deactivated by the admin: the session ends, and the provider (where
    // alice is still signed in) cannot bring her back.
    let admin = sys.admin().await;
    sys.call(
        "PATCH",
        &format!("/api/users/{id}"),
        Some(&admin),
        Some(json!({"is_active": false})),
    )
    .await
    .ok(200);
    c.goto(&format!("{gw}/app/reports")).await.unwrap();
    shows(&c, "section.providers", "Sign in with Acme SSO").await;
    submit(&c, "section.providers button").await;
    shows(&c, "main", "This account is deactivated").await;
    axe(&c, &axe_js, "a refused provider sign-in").await;
    c.goto(&format!("{gw}/app/reports")).await.unwrap();
    shows(&c, "h1", "Sign in to gatehouse").await;
    c.close().await.unwrap();
}

/// nginx, run as a process with a configuration of its own.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

#[actix_web::test]
async fn nginx_auth_request_in_front_of_an_app_asks_gatehouse() {
    let app = App::start().await;
    let nginx_port = testkit::free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_port = listener.local_addr().unwrap().port();
    let gw = format!("http://127.0.0.1:{gw_port}");
    let (webapp, routes) = readme_config(app.port);
    let public = gw.clone();
    let sys = System::start_with(Options {
        gateway: Box::new(move |l| {
            l.set("upstreams.webapp", webapp.clone())
                .set("routes", routes.clone())
                .set("trusted_proxies", json!(["127.0.0.1/32"]))
                .set("tokens.public_url", public.clone())
        }),
        gateway_listener: Some(listener),
        ..Options::default()
    })
    .await;
    let admin = sys.admin().await;
    let (alice_id, alice) = sys.user(&admin, "alice").await;

    // deploy/forward-auth/nginx.conf as it is, with free ports.
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth/nginx.conf"),
    )
    .unwrap();
    for addr in ["127.0.0.1:8000", "127.0.0.1:9000", "127.0.0.1:8080"] {
        assert!(conf.contains(addr), "{addr}");
    }
    let conf = conf
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{gw_port}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", app.port))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{nginx_port}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let prefix = dir.path().to_str().unwrap().to_owned();
    let _nginx = Nginx(
        Command::new("/usr/sbin/nginx")
            .args([
                "-p",
                &prefix,
                "-c",
                &format!("{prefix}/nginx.conf"),
                "-e",
                "stderr",
                "-g",
                &format!("daemon off; pid {prefix}/nginx.pid;"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-test-deps installs nginx-light)"),
    );
    let site = format!("http://127.0.0.1:{nginx_port}");
    let http = testkit::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    eventually("nginx listening", || async {
        std::net::TcpStream::connect(("127.0.0.1", nginx_port)).is_ok()
    })
    .await;
    let spoofed = uuid::Uuid::new_v4().to_string();

    // A browser without a session: to the login page, coming back here.
    let r = http
        .get(format!("{site}/app/reports?month=12"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    let back = format!("{site}/app/reports?month=12");
    assert_eq!(
        login,
        format!(
            "{gw}/login?return_to={}",
            form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        )
    );
    // An API client without a token: 401, and the app heard nothing.
    let before = app.seen.lock().unwrap().len();
    let r = http
        .get(format!("{site}/app/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.seen.lock().unwrap().len(), before);

    // A bearer token: allowed, with the identity gatehouse vouched for (the
    // client's own identity headers gone) and no token.
    let r = http
        .get(format!("{site}/app/reports"))
        .bearer_auth(&alice)
        .header("request-user-id", &spoofed)
        .header("request-user-roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    let h = &seen["headers"];
    assert_eq!(h["request-user-id"], alice_id.as_str(), "{seen}");
    assert_eq!(h["request-user-roles"], "user", "{seen}");
    assert!(
        h["x-gateway-token"].as_str().is_some_and(|t| t.len() > 20),
        "{seen}"
    );
    assert!(h.get("authorization").is_none(), "{seen}");
    let pub_pem =
        std::fs::read_to_string(sys.env.data_dir().join("keys/gateway-proof.pub.pem")).unwrap();
    let verifier = common::identity::ProofVerifier::new(&[pub_pem], "gateway", "webapp").unwrap();
    let mut proof = actix_web::http::header::HeaderMap::new();
    for name in ["request-user-id", "request-user-roles", "x-gateway-token"] {
        proof.insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_str(h[name].as_str().unwrap()).unwrap(),
        );
    }
    verifier
        .identity(&proof)
        .expect("the app can verify the proof");

    // A route the user may not use: 403, and the app heard nothing.
    let before = app.seen.lock().unwrap().len();
    let r = http
        .get(format!("{site}/app-admin/x"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.seen.lock().unwrap().len(), before);

    // A session cookie from the login page (same host, another port: the
    // cookie is the host's): allowed; the app gets its own cookies only.
    let page = http.get(format!("{gw}/login")).send().await.unwrap();
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("gatehouse-csrf="))
        .unwrap();
    let text = page.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = text.find(marker).unwrap() + marker.len();
    let csrf = &text[start..start + text[start..].find('"').unwrap()];
    let r = http
        .post(format!("{gw}/login"))
        .header("cookie", &csrf_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf),
            ("username", "alice"),
            ("password", "alice-password-0123"),
            ("return_to", back.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"].to_str().unwrap(), back);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("gatehouse-session="))
        .unwrap();
    let cookies = format!("{session}; theme=dark");
    let r = http
        .get(format!("{site}/app/reports"))
        .header("cookie", &cookies)
        .header("request-user-id", &spoofed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert_eq!(
        seen["headers"]["request-user-id"],
        alice_id.as_str(),
        "{seen}"
    );
    assert_eq!(seen["headers"]["cookie"], "theme=dark", "{seen}");

    // A public path: no identity at all reaches the app, spoofed or not.
    let r = http
        .get(format!("{site}/app-public/x"))
        .header("request-user-id", &spoofed)
        .header("x-gateway-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert!(seen["headers"].get("request-user-id").is_none(), "{seen}");
    assert!(seen["headers"].get("x-gateway-token").is_none(), "{seen}");

    // Signed out on gatehouse: refused on the very next request.
    let page = http
        .get(format!("{gw}/login"))
        .header("cookie", format!("{session}; {csrf_cookie}"))
        .send()
        .await
        .unwrap();
    let text = page.text().await.unwrap();
    let start = text.find(marker).unwrap() + marker.len();
    let csrf = text[start..start + text[start..].find('"').unwrap()].to_owned();
    let r = http
        .post(format!("{gw}/login/logout"))
        .header("cookie", format!("{session}; {csrf_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{site}/app/reports"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = ADMIN_PASSWORD;
}
