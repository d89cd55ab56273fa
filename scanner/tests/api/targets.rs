//! A real HTTP server on 127.0.0.1:0 for the scans to hit: one path per
//! behaviour (good or bad headers, cookies, redirects, slow, endless).

use std::net::TcpListener;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::stream;

/// A running target; `url(path)` names one of its pages.
pub struct Target {
    pub ip: String,
    pub port: u16,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

/// Every security header, well set.
async fn good() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Strict-Transport-Security", "max-age=31536000"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Permissions-Policy", "geolocation=(), camera=()"))
        .insert_header(("Server", "target"))
        .append_header(("Set-Cookie", "sid=1; Secure; HttpOnly; SameSite=Strict"))
        .body("good")
}

/// Each security header present but wrong, and banners.
async fn bad() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Strict-Transport-Security", "max-age=60"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'",
        ))
        .insert_header(("X-Content-Type-Options", "sniff"))
        .insert_header(("X-Frame-Options", "ALLOW-FROM https://evil.example"))
        .insert_header(("Referrer-Policy", "unsafe-url"))
        .insert_header(("Server", "Apache/2.4.41 (Ubuntu)"))
        .insert_header(("X-Powered-By", "PHP/7.4.3"))
        .insert_header(("X-AspNet-Version", "4.0.30319"))
        .body("bad")
}

/// No security header at all.
async fn bare() -> HttpResponse {
    HttpResponse::Ok().body("bare")
}

/// Cookies with every flag problem.
async fn cookies() -> HttpResponse {
    HttpResponse::Ok()
        .append_header(("Set-Cookie", "plain=1"))
        .append_header(("Set-Cookie", "tracker=2; SameSite=None"))
        .append_header(("Set-Cookie", "script=3; Secure; SameSite=Lax"))
        .append_header((
            "Set-Cookie",
            "session=4; Path=/; Secure; HttpOnly; SameSite=Strict",
        ))
        .body("cookies")
}

/// `/hop/{n}` redirects to `/hop/{n-1}` with a different status each time;
/// `/hop/0` is the good page.
async fn hop(n: web::Path<u32>) -> HttpResponse {
    let n = n.into_inner();
    if n == 0 {
        return good().await;
    }
    let status = [301u16, 302, 303, 307, 308][(n as usize) % 5];
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header((header::LOCATION, format!("/hop/{}", n - 1)))
        .finish()
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

/// A redirect to anywhere (`/to?to=URL`).
async fn to(q: web::Query<To>) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, q.into_inner().to))
        .finish()
}

/// The head only after 30 s.
async fn slow() -> HttpResponse {
    actix_web::rt::time::sleep(Duration::from_secs(30)).await;
    good().await
}

/// An endless body, 64 KiB at a time.
async fn endless() -> HttpResponse {
    let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
    good_headers(HttpResponse::Ok()).streaming(stream::repeat_with(move || {
        Ok::<_, actix_web::Error>(chunk.clone())
    }))
}

/// A body that never ends and hardly moves: one byte every 50 ms.
async fn trickle() -> HttpResponse {
    let s = stream::unfold((), |()| async {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from_static(b"x")), ()))
    });
    good_headers(HttpResponse::Ok()).streaming(s)
}

fn good_headers(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header(("Content-Security-Policy", "default-src 'self'"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "SAMEORIGIN"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header(("Permissions-Policy", "camera=()"));
    b
}

/// Start a target on `ip`:0 (a loopback address: 127.0.0.1, 127.0.0.2, ...).
pub fn start_on(ip: &str) -> Target {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new()
            .route("/good", web::get().to(good))
            .route("/bad", web::get().to(bad))
            .route("/bare", web::get().to(bare))
            .route("/cookies", web::get().to(cookies))
            .route("/hop/{n}", web::get().to(hop))
            .route("/to", web::get().to(to))
            .route("/slow", web::get().to(slow))
            .route("/endless", web::get().to(endless))
            .route("/trickle", web::get().to(trickle))
    })
    .workers(1)
    .shutdown_timeout(0)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    Target {
        ip: ip.to_owned(),
        port,
    }
}

pub fn start() -> Target {
    start_on("127.0.0.1")
}

/// A loopback port where nothing listens.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
