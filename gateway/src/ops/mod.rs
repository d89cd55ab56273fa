//! Operations: running the gateway. The admin API, the audit trail's
//! endpoint, metrics and probes, the HTTPS listener's certificate, and the
//! merged API description.

pub mod admin;
pub mod audit_api;
pub mod certificates;
pub mod metrics;
pub mod openapi;
pub mod status;

use actix_web::web;

use crate::mount::{Endpoint, mount};

use std::sync::Arc;

use arc_swap::ArcSwap;
use common::audit::AuditLog;
use secrecy::SecretString;

use crate::live::{Live, SettingsSource};
use crate::redis_link::RedisLink;
use crate::traffic::Traffic;

/// What the operations room's endpoints use.
pub struct Ops {
    /// This gateway's traces: its tracer, the `traceparent` policy at the
    /// edge, the export counters for `/metrics`.
    pub tracing: common::traces::Tracing,
    pub live: Arc<ArcSwap<Live>>,
    pub metrics: Arc<metrics::Metrics>,
    pub metrics_token: Option<SecretString>,
    /// The security events, read by `/api/audit`; its failures are metrics.
    pub audit: AuditLog,
    /// For `/readyz` and the Redis gauge.
    pub redis: Option<Arc<RedisLink>>,
    /// Where a reload reads settings from.
    pub source: SettingsSource,
    /// The services' OpenAPI documents, last good ones.
    pub docs: Arc<openapi::fetch::ServiceDocs>,
    /// The HTTPS listener's certificate, when TLS is on.
    pub tls: Option<Arc<certificates::CertStore>>,
}

impl Ops {
    /// Re-read the settings and swap in the new keys, routes and upstreams
    /// (see [`Traffic::swap`]). A certificate that does not load refuses
    /// the whole reload: the old one keeps serving, and so does the old
    /// configuration. Blocking: call it off the reactor.
    pub fn reload(&self, traffic: &Traffic) -> Result<Arc<Live>, String> {
        let settings = (self.source)().map_err(|e| e.to_string())?;
        if let Some(store) = &self.tls {
            store.reload().map_err(|e| format!("tls: {e}"))?;
        }
        traffic.swap(&settings)
    }
}

/// The operations room's endpoints (see [`Endpoint`]). The resources with
/// path parameters sit in scopes, so a proxied path pays one prefix
/// comparison for them, not a pattern match each (what the profile
/// showed); anything else under a scope's prefix is still proxied.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::Exact("/api/audit", |r| r.get(audit_api::list)),
    Endpoint::Scope("/admin", |s| {
        s.service(web::resource("/reload").post(admin::reload))
            .service(web::resource("/routes").get(admin::routes))
            .service(web::resource("/upstreams").get(admin::upstreams))
            .service(
                web::resource("/upstreams/{name}/targets")
                    .post(admin::add_target)
                    .delete(admin::remove_target),
            )
    }),
    Endpoint::Exact("/stats", |r| r.get(status::stats)),
    Endpoint::Exact("/metrics", |r| r.get(status::endpoint)),
    Endpoint::Exact("/openapi.json", |r| r.get(openapi::handlers::openapi_json)),
    Endpoint::Scope("/docs", |s| {
        s.service(web::resource("").get(openapi::handlers::docs_redirect))
            .service(web::resource("/{tail:.*}").get(openapi::handlers::docs_file))
    }),
    Endpoint::Exact("/redoc", |r| r.get(openapi::handlers::redoc_page)),
    Endpoint::Exact("/redoc/redoc.js", |r| r.get(openapi::handlers::redoc_js)),
    Endpoint::Exact("/healthz", |r| r.get(common::http::healthz)),
    Endpoint::Exact("/readyz", |r| r.get(status::readyz)),
];

/// Mount the operations room's endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    mount(cfg, ENDPOINTS);
}
