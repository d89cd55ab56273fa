//! HTTP building blocks every service uses: extractor configs that answer bad
//! input with problem+json, the default 404/405, and health endpoints.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, web};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{PROBLEM_JSON, Problem};
use crate::telemetry::Shortcut;

/// Largest JSON body a service accepts.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// JSON bodies: wrong content type 415, too large 413, anything that does not
/// deserialize into the expected shape 422.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BODY)
        .error_handler(|err, _req| {
            let problem = match &err {
                JsonPayloadError::ContentType => {
                    Problem::unsupported_media_type("the body must be application/json")
                }
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => {
                    Problem::payload_too_large(format!("the body exceeds {MAX_JSON_BODY} bytes"))
                }
                JsonPayloadError::Deserialize(e) => Problem::malformed_body(e.to_string()),
                other => Problem::malformed_body(other.to_string()),
            };
            problem.into()
        })
}

/// Query strings that do not parse: 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        Problem::bad_request(format!("invalid query string: {err}")).into()
    })
}

/// Path parameters that do not parse (e.g. an id that is not a UUID) name no
/// resource: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, req| {
        Problem::not_found(format!("no resource at {}", req.path())).into()
    })
}

/// Mount `/healthz` and `/readyz` (the latter needs `web::Data<DatabaseConnection>`).
pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz));
}

/// Default service: 404 problem for any path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::not_found(format!("no resource at {}", req.path())).to_response()
}

/// Turns actix's empty 405 (known path, wrong method) into problem+json.
pub fn error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed::<B>)
}

fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, _) = res.into_parts();
    let response = Problem::method_not_allowed().to_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

/// Body of the health endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when healthy.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Database unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(db: web::Data<DatabaseConnection>) -> HttpResponse {
    match db.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ok" }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            Problem::service_unavailable("the database is unreachable").to_response()
        }
    }
}

/// Adds the `gateway_proof` security scheme (the `x-gateway-token` header) to
/// a service's OpenAPI document.
pub struct GatewayProofScheme;

impl utoipa::Modify for GatewayProofScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "gateway_proof",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::identity::PROOF_HEADER,
                "Short-lived EdDSA proof signed by the gateway; set only by the gateway.",
            ))),
        );
    }
}

/// Documents the 422 that [`crate::text`] answers for every operation taking
/// a query or a body, where the operation does not list a 422 of its own.
pub struct TextInputErrors;

impl utoipa::Modify for TextInputErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let takes_query = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
                if !(takes_query || op.request_body.is_some())
                    || op.responses.responses.contains_key("422")
                {
                    continue;
                }
                let response = ResponseBuilder::new()
                    .description(
                        "A query parameter or a string in the body is not text (not UTF-8, or holding NUL)",
                    )
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                op.responses
                    .responses
                    .insert("422".into(), RefOr::T(response));
            }
        }
    }
}

/// A started HTTP server and the port it listens on.
pub struct Running {
    port: u16,
    plain_port: Option<u16>,
    server: actix_web::dev::Server,
    tracing: crate::traces::Tracing,
}

impl Running {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the extra plain-HTTP listener, when there is one (the
    /// gateway's redirect to HTTPS).
    pub fn plain_port(&self) -> Option<u16> {
        self.plain_port
    }

    /// Stop it from elsewhere (`stop(true)` drains in-flight requests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serve until SIGINT/SIGTERM or the handle stops it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        // The last spans go out before the process ends (on the blocking
        // pool: a flush waits for the collector, within its time-out).
        if self.tracing.exporting() {
            let tracing = self.tracing.clone();
            let _ = tokio::task::spawn_blocking(move || tracing.flush()).await;
        }
        served
    }

    /// The service's tracing (its export counters).
    pub fn tracing(&self) -> &crate::traces::Tracing {
        &self.tracing
    }
}

/// The HTTP server every service runs: request id and access log, problem+json
/// for bad input, unknown paths and wrong methods, graceful shutdown (30 s).
/// `configure` mounts the routes and the service's app data.
pub fn serve<F>(
    listener: std::net::TcpListener,
    workers: usize,
    tracing: crate::traces::Tracing,
    configure: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    serve_on(
        Listeners::plain(listener),
        workers,
        30,
        true,
        tracing,
        None,
        configure,
    )
}

/// [`serve`] for the gateway: with the time in-flight requests get to finish
/// on shutdown, and no reading of bodies (it streams them to the services,
/// which refuse what is not text themselves).
pub fn serve_with<F>(
    listener: std::net::TcpListener,
    workers: usize,
    shutdown_timeout_secs: u64,
    tracing: crate::traces::Tracing,
    configure: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    serve_on(
        Listeners::plain(listener),
        workers,
        shutdown_timeout_secs,
        false,
        tracing,
        None,
        configure,
    )
}

/// The leaf certificate a TLS client presented and rustls verified (DER),
/// in the connection's data (`HttpRequest::conn_data`).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Vec<u8>);

fn capture_peer_certificate(conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>()
        && let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
    {
        data.insert(PeerCertificate(leaf.to_vec()));
    }
}

/// Where a server listens: its main listener (HTTPS when `tls` is set,
/// HTTP/2 and HTTP/1.1 by ALPN) and optionally a plain-HTTP one besides.
pub struct Listeners {
    pub main: std::net::TcpListener,
    pub tls: Option<rustls::ServerConfig>,
    pub plain: Option<std::net::TcpListener>,
}

impl Listeners {
    pub fn plain(main: std::net::TcpListener) -> Self {
        Self {
            main,
            tls: None,
            plain: None,
        }
    }
}

/// [`serve_with`] on several listeners (the gateway's HTTPS and redirect),
/// with a [`Shortcut`] past the App when one is given.
pub fn serve_listeners<F>(
    listeners: Listeners,
    workers: usize,
    shutdown_timeout_secs: u64,
    tracing: crate::traces::Tracing,
    shortcut: Option<std::sync::Arc<dyn Shortcut>>,
    configure: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    serve_on(
        listeners,
        workers,
        shutdown_timeout_secs,
        false,
        tracing,
        shortcut,
        configure,
    )
}

fn serve_on<F>(
    listeners: Listeners,
    workers: usize,
    shutdown_timeout_secs: u64,
    text_only: bool,
    tracing: crate::traces::Tracing,
    shortcut: Option<std::sync::Arc<dyn Shortcut>>,
    configure: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let Listeners { main, tls, plain } = listeners;
    let capture = tls.is_some();
    let port = main.local_addr()?.port();
    let plain_port = plain
        .as_ref()
        .map(|l| l.local_addr().map(|a| a.port()))
        .transpose()?;
    let app_tracing = tracing.clone();
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(error_handlers())
            // Inside the request context, so its 422 carries the request id.
            .wrap(actix_web::middleware::Condition::new(
                text_only,
                actix_web::middleware::from_fn(|req, next| {
                    crate::text::refuse_non_text(req, next, MAX_JSON_BODY)
                }),
            ))
            .wrap(actix_web::middleware::from_fn({
                let tracing = app_tracing.clone();
                let shortcut = shortcut.clone();
                move |req, next| {
                    crate::telemetry::request_context(tracing.clone(), shortcut.clone(), req, next)
                }
            }))
            .app_data(json_config())
            .app_data(query_config())
            .app_data(path_config())
            .configure(configure.clone())
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(shutdown_timeout_secs);
    if capture {
        server = server.on_connect(capture_peer_certificate);
    }
    server = match tls {
        Some(config) => server.listen_rustls_0_23(main, config)?,
        None => server.listen(main)?,
    };
    if let Some(p) = plain {
        server = server.listen(p)?;
    }
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(Running {
        port,
        plain_port,
        server: server.run(),
        tracing,
    })
}

/// Bind a configured listen address, naming it on failure.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
