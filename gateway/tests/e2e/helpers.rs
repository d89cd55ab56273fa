use std::net::TcpListener;

use actix_web::{HttpRequest, HttpResponse, web};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;

pub const ADMIN_PASSWORD: &str = "admin-password-0123";

pub struct Stack {
    pub gw: String,
    pub client: reqwest::Client,
    pub env: TestEnv,
    pub users_port: u16,
    pub echo_port: u16,
    pub users_db: String,
    pub gateway_db: String,
    pub gw_handle: actix_web::dev::ServerHandle,
    pub overrides: Overrides,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.text
        );
        assert!(self.body["request_id"].is_string(), "{}", self.text);
        &self.body
    }

    /// A 401 with the RFC 6750 challenge.
    pub fn invalid_token(&self) {
        self.problem(401);
        let www = self.headers["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("Bearer") && www.contains("error=\"invalid_token\""),
            "{www}"
        );
    }
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(|l| l).await
}

pub async fn spawn_stack_with(
    f: impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static,
) -> Stack {
    spawn_stack_on(TcpListener::bind("127.0.0.1:0").unwrap(), f).await
}

/// The same, with the gateway on `listener` (for settings that name its
/// own address, like the issuer URL).
pub async fn spawn_stack_on(
    listener: TcpListener,
    f: impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static,
) -> Stack {
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init();
    }
    let mut env = TestEnv::new();
    let users_db = env.database("users").await;
    let us: users::Settings = users::Settings::loader()
        .set("data_dir", env.data_dir())
        .set("database.url", users_db.clone())
        .set("workers", 1)
        .set("admin.password", ADMIN_PASSWORD)
        .extract()
        .unwrap();
    let users = users::build_with_listener(us, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let users_port = users.port();
    actix_web::rt::spawn(users.run_until_stopped());

    // Echoes what a service receives (method, path, query, headers, body length).
    let echo_port = Backend::start("echo").await.port;

    let gateway_db = env.database("gateway").await;
    let overrides = Overrides::default();
    let (gw, gw_handle) = start_gateway_on(
        listener,
        &env.data_dir(),
        &gateway_db,
        users_port,
        echo_port,
        &f,
        overrides.clone(),
    )
    .await;
    let client = testkit::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Stack {
        gw,
        client,
        env,
        users_port,
        echo_port,
        users_db,
        gateway_db,
        gw_handle,
        overrides,
    }
}

/// The stack's routes, followed by `extra` (a JSON array).
pub fn base_routes(extra: Value) -> Value {
    let mut routes = json!([
        {"prefix": "/api/users", "upstream": "users", "rewrite": "/users", "access": ["admin"]},
        {"prefix": "/api/me", "upstream": "users", "rewrite": "/me", "access": "authenticated", "credential_check": true},
        {"prefix": "/api/echo/admin", "upstream": "echo", "access": {"GET": ["user", "admin"], "DELETE": ["admin"]}},
        {"prefix": "/api/echo", "upstream": "echo", "rewrite": "/echoed", "access": "authenticated"},
        {"prefix": "/public", "upstream": "echo", "access": "public"},
    ]);
    if let (Some(r), Some(e)) = (routes.as_array_mut(), extra.as_array()) {
        r.extend(e.iter().cloned());
    }
    routes
}

/// A test upstream on its own port, named so answers show which one served:
/// `GET /healthz`; `/slow?ms=N` answers after N ms (with `peak`, the most
/// slow requests it ran at once); `/drip?ms=N` sends its head at once and
/// its body after N ms; `/big?mib=N` streams N MiB; `/status/{code}` answers that status; `/ws` is a WebSocket echo
/// (see [`ws_echo`]) and `/ws/hits` counts its handshakes; anything else
/// echoes like the echo upstream, plus `"name"`.
pub struct Backend {
    pub port: u16,
    pub handle: actix_web::dev::ServerHandle,
}

impl Backend {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, 0).await
    }

    /// Start (again) on a given port (0: any).
    pub async fn start_on(name: &str, port: u16) -> Backend {
        Self::start_at(name, "127.0.0.1", port).await
    }

    /// On a loopback address of its own (`127.0.0.2`, ...), so several
    /// backends can share a port, as the addresses of one name do.
    pub async fn start_at(name: &str, ip: &str, port: u16) -> Backend {
        let listener = TcpListener::bind((ip, port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let n = name.to_owned();
        let hits = web::Data::new(std::sync::atomic::AtomicUsize::new(0));
        let running = web::Data::new(Concurrency::default());
        let server = actix_web::HttpServer::new(move || {
            let n = n.clone();
            actix_web::App::new()
                .app_data(web::Data::new(n))
                .app_data(hits.clone())
                .app_data(running.clone())
                .route("/ws", web::get().to(ws_echo))
                .route("/ws-huge", web::get().to(ws_huge))
                .route(
                    "/ws/hits",
                    web::get().to(|h: web::Data<std::sync::atomic::AtomicUsize>| async move {
                        HttpResponse::Ok().json(h.load(std::sync::atomic::Ordering::SeqCst))
                    }),
                )
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(
                    "/healthz",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                )
                .route("/slow", web::to(slow))
                .route("/big", web::get().to(big))
                .route("/drip", web::get().to(drip))
                .route(
                    "/nostore",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .insert_header(("cache-control", "no-store"))
                            .json(json!({"fresh": rand08::random::<u64>()}))
                    }),
                )
                .route("/status/{code}", web::to(status))
                // An upstream that tries to set the gateway's own cookies.
                .route(
                    "/set-cookie",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .append_header((
                                "set-cookie",
                                "gatehouse-session=fixed-by-upstream; Path=/",
                            ))
                            .append_header((
                                "set-cookie",
                                "__Host-gatehouse-csrf=x; Path=/; Secure",
                            ))
                            .append_header(("set-cookie", "app=1; Path=/"))
                            .finish()
                    }),
                )
                .default_service(web::to(named_echo))
        })
        .workers(1)
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Backend { port, handle }
    }

    /// Stop it now (open connections are dropped).
    pub async fn kill(&self) {
        self.handle.stop(false).await;
    }
}

async fn named_echo(req: HttpRequest, body: web::Bytes, name: web::Data<String>) -> HttpResponse {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
        .collect();
    HttpResponse::Ok().json(json!({
        "name": name.as_str(), "method": req.method().as_str(), "path": req.path(),
        "query": req.query_string(), "headers": headers, "body_len": body.len()
    }))
}

/// A WebSocket echo: text and binary frames (and fragments) come back as
/// they were sent, a ping gets its pong, a close gets the same close. The
/// text `headers` answers with the handshake's headers and query as JSON;
/// `close <code>` makes it close with that code. It offers the `chat`
/// protocol.
pub async fn ws_echo(
    req: HttpRequest,
    body: web::Payload,
    hits: web::Data<std::sync::atomic::AtomicUsize>,
) -> actix_web::Result<HttpResponse> {
    use actix_ws::{CloseCode, CloseReason, Message};
    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut seen: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
        .collect();
    seen.insert("?query".into(), json!(req.query_string()));
    let (res, mut session, stream) = actix_ws::handle_with_protocols(&req, body, &["chat"])?;
    let mut stream = stream.max_frame_size(4 * 1024 * 1024);
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            let sent = match msg {
                Message::Text(t) if &*t == "headers" => {
                    session.text(Value::Object(seen.clone()).to_string()).await
                }
                Message::Text(t) if t.starts_with("close ") => {
                    let code: u16 = t[6..].parse().unwrap();
                    let _ = session
                        .close(Some(CloseReason {
                            code: CloseCode::from(code),
                            description: Some("asked".into()),
                        }))
                        .await;
                    return;
                }
                Message::Text(t) => session.text(t).await,
                Message::Binary(b) => session.binary(b).await,
                Message::Continuation(item) => session.continuation(item).await,
                Message::Ping(b) => session.pong(&b).await,
                Message::Pong(_) | Message::Nop => Ok(()),
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(res)
}

/// A WebSocket service that, once upgraded, declares a binary frame of
/// 2^40 bytes and streams zeros as its payload (64 MiB at most, so the
/// test ends): what a hostile upstream does to a gateway that buffers a
/// frame before looking at its length.
pub async fn ws_huge(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (res, _session, _stream) = actix_ws::handle(&req, body)?;
    let mut head = vec![0x82u8, 127];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let chunk = web::Bytes::from(vec![0u8; 64 * 1024]);
    let frames = futures_util::stream::iter(
        std::iter::once(web::Bytes::from(head))
            .chain(std::iter::repeat_n(chunk, 1024))
            .map(Ok::<_, actix_web::Error>),
    );
    Ok(res
        .set_body(actix_web::body::BodyStream::new(frames))
        .map_into_boxed_body())
}

/// Slow requests running on a backend now, and the most at once.
#[derive(Default)]
struct Concurrency {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

async fn slow(
    req: HttpRequest,
    name: web::Data<String>,
    running: web::Data<Concurrency>,
) -> HttpResponse {
    use std::sync::atomic::Ordering::SeqCst;
    let ms = query_number(&req, "ms=", 1000);
    let now = running.now.fetch_add(1, SeqCst) + 1;
    running.peak.fetch_max(now, SeqCst);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(ms)).await;
    running.now.fetch_sub(1, SeqCst);
    HttpResponse::Ok()
        .json(json!({"name": name.as_str(), "slept_ms": ms, "peak": running.peak.load(SeqCst)}))
}

/// The head at once, the body after `ms`.
async fn drip(req: HttpRequest) -> HttpResponse {
    let ms = query_number(&req, "ms=", 1000);
    HttpResponse::Ok().streaming(futures_util::stream::once(async move {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(ms)).await;
        Ok::<_, actix_web::Error>(web::Bytes::from_static(b"done"))
    }))
}

/// `?<key><n>` (the query is that one pair), else `default`.
fn query_number(req: &HttpRequest, key: &str, default: u64) -> u64 {
    req.query_string()
        .strip_prefix(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn big(req: HttpRequest) -> HttpResponse {
    let mib = usize::try_from(query_number(&req, "mib=", 1)).unwrap();
    let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..mib * 16).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())),
    );
    HttpResponse::Ok()
        .no_chunking((mib * 1024 * 1024) as u64)
        .content_type("application/octet-stream")
        .streaming(stream)
}

async fn status(path: web::Path<u16>) -> HttpResponse {
    let code = reqwest::StatusCode::from_u16(*path).unwrap();
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code.as_u16()).unwrap())
        .insert_header(("x-upstream", "yes"))
        .body(format!("upstream says {code}"))
}

/// The Redis the shared-state tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Settings for a gateway on the test Redis under a key prefix of its own
/// (replicas built with the same prefix share their state).
pub fn with_redis(
    prefix: String,
) -> impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static {
    move |l| {
        l.pin("redis.url", redis_url())
            .pin("redis.key_prefix", prefix.clone())
    }
}

/// An admin token for a stack.
pub async fn admin_token(s: &Stack) -> String {
    s.tokens("admin", ADMIN_PASSWORD).await.0
}

/// Settings changes a test applies before a reload: `(key, value)` pairs set
/// on top of the stack's settings whenever the gateway (re)reads them.
pub type Overrides = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

pub async fn start_gateway(
    data_dir: &std::path::Path,
    db: &str,
    users_port: u16,
    echo_port: u16,
    f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
) -> (String, actix_web::dev::ServerHandle) {
    start_gateway_with(data_dir, db, users_port, echo_port, f, Overrides::default()).await
}

pub async fn start_gateway_with(
    data_dir: &std::path::Path,
    db: &str,
    users_port: u16,
    echo_port: u16,
    f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
    overrides: Overrides,
) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    start_gateway_on(listener, data_dir, db, users_port, echo_port, f, overrides).await
}

pub async fn start_gateway_on(
    listener: TcpListener,
    data_dir: &std::path::Path,
    db: &str,
    users_port: u16,
    echo_port: u16,
    f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
    overrides: Overrides,
) -> (String, actix_web::dev::ServerHandle) {
    let users = format!("http://127.0.0.1:{users_port}");
    let echo = format!("http://127.0.0.1:{echo_port}");
    let (data_dir, db, f) = (data_dir.to_path_buf(), db.to_owned(), f.clone());
    let source = move || {
        let mut loader = gateway::Settings::loader()
            .set("data_dir", &data_dir)
            .set("database.url", &db)
            .set("workers", 1)
            .set("upstreams", json!({"users": [users], "orders": [echo.clone()], "scanner": [echo.clone()], "echo": [echo]}))
            .set("routes", base_routes(json!([])))
            // Redis only where a test asks for it (with its own key prefix):
            // shared login counters would otherwise leak between tests.
            .pin("redis.url", Value::Null);
        loader = f(loader);
        for (k, v) in overrides.lock().unwrap().iter() {
            loader = loader.set(k, v.clone());
        }
        gateway::Settings::from_loader(loader)
    };
    let settings = source().unwrap();
    let app = gateway::build_with_source(settings, listener, Box::new(source))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    (base, handle)
}

pub async fn read(rb: reqwest::RequestBuilder) -> Resp {
    let res = rb.send().await.expect("sent");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert_ne!(status.as_u16(), 500, "never a 500: {text}");
    assert!(!text.contains("$argon2"), "{text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

impl Stack {
    /// Another gateway replica on this stack's data directory, database
    /// and services, configured by `f`.
    pub async fn another_gateway(
        &self,
        f: &(impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static),
    ) -> (String, actix_web::dev::ServerHandle) {
        start_gateway(
            &self.env.data_dir(),
            &self.gateway_db,
            self.users_port,
            self.echo_port,
            f,
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw)
    }

    pub async fn login(&self, username: &str, password: &str) -> Resp {
        read(
            self.client
                .post(self.url("/api/login"))
                .json(&json!({"username": username, "password": password})),
        )
        .await
    }

    /// Log in and return (access, refresh).
    pub async fn tokens(&self, username: &str, password: &str) -> (String, String) {
        let r = self.login(username, password).await;
        assert_eq!(r.status, 200, "{}", r.text);
        (
            r.body["access_token"].as_str().unwrap().into(),
            r.body["refresh_token"].as_str().unwrap().into(),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        read(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn send(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Resp {
        read(
            self.client
                .request(method, self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn refresh(&self, refresh: &str) -> Resp {
        read(
            self.client
                .post(self.url("/api/refresh"))
                .json(&json!({"refresh_token": refresh})),
        )
        .await
    }

    /// Create a user through the gateway as the admin; returns its id.
    pub async fn create_user(&self, admin: &str, name: &str, roles: &[&str]) -> String {
        let r = self
            .send(admin, reqwest::Method::POST, "/api/users",
                json!({"username": name, "email": format!("{name}@example.com"), "password": format!("{name}-password-1"), "roles": roles}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }
}

/// The headers an echo upstream reports (`{"name": "value"}`), verified as
/// the service `audience` would verify them: the forwarded claims (header
/// -> value) the gateway's proof covers. Panics when the proof refuses them.
pub fn proof_covered(
    s: &Stack,
    audience: &str,
    echoed: &Value,
) -> std::collections::BTreeMap<String, String> {
    let pub_pem =
        std::fs::read_to_string(s.env.data_dir().join("keys/gateway-proof.pub.pem")).unwrap();
    let v = common::identity::ProofVerifier::new(&[pub_pem], "gateway", audience).unwrap();
    let mut h = actix_web::http::header::HeaderMap::new();
    for (k, val) in echoed.as_object().unwrap() {
        h.insert(
            actix_web::http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(val.as_str().unwrap()).unwrap(),
        );
    }
    v.identity(&h).unwrap().1
}

/// The audit trail as `admin` sees it with `query` (`?event=...`), once
/// `ready` holds for its items: records are written beside the requests,
/// by the audit log's batch writer, so a test reading right after an
/// action waits for them (up to 3 s).
pub async fn audit_until(
    s: &Stack,
    admin: &str,
    query: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        let r = s.get(admin, &format!("/api/audit{query}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if ready(r.body["items"].as_array().map_or(&[][..], Vec::as_slice)) {
            return r.body;
        }
        last = r.body;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the records for {query} never came: {last}");
}

/// A private redis-server on a free port, killed on drop.
pub struct OwnRedis {
    child: std::process::Child,
    pub port: u16,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        Self::start_with(port, &[])
    }

    /// TLS only, on `port`, with this certificate and key.
    pub fn start_tls(port: u16, cert: &std::path::Path, key: &std::path::Path) -> OwnRedis {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let port_text = port.to_string();
        let mut r = Self::start_with(
            0,
            &[
                "--tls-port",
                &port_text,
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-auth-clients",
                "no",
            ],
        );
        r.port = port;
        r
    }

    pub fn start_with(port: u16, extra: &[&str]) -> OwnRedis {
        let listening = extra
            .iter()
            .position(|a| *a == "--tls-port")
            .and_then(|i| extra.get(i + 1))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(port);
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", listening)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        OwnRedis { child, port }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
