//! The admin API (admin role, through the [`AdminBearer`] extractor):
//! reload, routes, upstreams with their targets' health and counters, and
//! run-time target registration.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::audit::Event;

use super::Ops;
use crate::identity::admission::AdminBearer;
use crate::traffic::Traffic;
use crate::traffic::upstream::pool::{Target, TargetView, Upstream};
use crate::traffic::upstream::spec::{TargetConfig, UpstreamSpec};

#[derive(Debug, Serialize)]
struct RouteView {
    prefix: String,
    host: Option<String>,
    methods: Option<Vec<String>>,
    upstream: String,
    rewrite: Option<String>,
    access: BTreeMap<String, String>,
    max_body_bytes: u64,
    rate_limit: Option<String>,
    cache_ttl_secs: Option<u64>,
    /// Upgrade requests are relayed as WebSockets.
    websocket: bool,
    /// `None`: no client certificate needed; `[]`: any verified one;
    /// otherwise the subjects admitted.
    client_cert_subjects: Option<Vec<String>>,
}

/// `GET /admin/routes`.
#[utoipa::path(get, path = "/admin/routes", summary = "The route table as loaded", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The route table as loaded", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn routes(_: AdminBearer, gw: web::Data<Traffic>) -> HttpResponse {
    let live = gw.live.load();
    let routes: Vec<RouteView> = live
        .routes
        .routes()
        .iter()
        .map(|r| RouteView {
            prefix: r.prefix.clone(),
            host: r.host.clone(),
            methods: r
                .methods
                .as_ref()
                .map(|ms| ms.iter().map(ToString::to_string).collect()),
            upstream: r.upstream.clone(),
            rewrite: r.rewrite.clone(),
            access: r.access_summary(),
            max_body_bytes: r.max_body_bytes.unwrap_or(live.max_body_bytes),
            rate_limit: r
                .rate_limit
                .as_ref()
                .map(|(q, by)| format!("{} by {}", q.describe(), by_name(*by))),
            cache_ttl_secs: r.cache.as_ref().map(|c| c.ttl.as_secs()),
            websocket: r.websocket,
            client_cert_subjects: r.client_cert.as_ref().map(|c| c.subjects()),
        })
        .collect();
    HttpResponse::Ok().json(json!({ "routes": routes }))
}

fn by_name(by: crate::traffic::ratelimit::LimitBy) -> &'static str {
    match by {
        crate::traffic::ratelimit::LimitBy::User => "user",
        crate::traffic::ratelimit::LimitBy::Ip => "ip",
    }
}

#[derive(Debug, Serialize)]
struct UpstreamView {
    balance: crate::traffic::upstream::spec::Balance,
    healthy_targets: usize,
    targets: Vec<TargetView>,
    config: UpstreamSpec,
}

/// `GET /admin/upstreams`: each upstream with its targets' health and counters.
#[utoipa::path(get, path = "/admin/upstreams", summary = "Upstreams and their targets' health", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Each upstream with its targets' health and counters", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upstreams(_: AdminBearer, gw: web::Data<Traffic>) -> HttpResponse {
    let live = gw.live.load();
    let out: BTreeMap<String, UpstreamView> = live
        .upstreams
        .iter()
        .map(|(name, up)| {
            let targets: Vec<TargetView> = up.targets().iter().map(|t| t.view()).collect();
            (
                name.clone(),
                UpstreamView {
                    balance: up.spec.balance,
                    healthy_targets: targets.iter().filter(|t| t.health == "healthy").count(),
                    targets,
                    config: up.spec.clone(),
                },
            )
        })
        .collect();
    HttpResponse::Ok().json(json!({ "upstreams": out }))
}

/// `POST /admin/upstreams/{name}/targets` and `DELETE` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    pub url: String,
    /// Default: the URL's host and port.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}

/// A 422 naming the field.
fn invalid(field: &str, message: String) -> HttpResponse {
    Problem::validation(vec![common::FieldError {
        field: field.into(),
        code: "invalid".into(),
        message,
    }])
    .to_response()
}

/// The upstream's targets, for the answer.
fn targets_of(name: &str, up: &crate::traffic::upstream::pool::Upstream) -> serde_json::Value {
    json!({
        "upstream": name,
        "targets": up.targets().iter().map(|t| t.view()).collect::<Vec<_>>(),
    })
}

/// The (name, URL) to register, allowed and new to `up`; `Err`: the 422 or 409 to answer.
fn target_to_add(
    gw: &Traffic,
    name: &str,
    up: &Upstream,
    t: &TargetRequest,
) -> Result<(String, String), HttpResponse> {
    if !gw.allowed_targets.takes(name) {
        return Err(Problem::forbidden(format!(
            "`{name}` checks credentials: its targets receive users' passwords, so it takes no registration (registry.allow_credential_upstream)"
        ))
        .to_response());
    }
    let url = crate::traffic::upstream::registry::check_url(
        &t.url,
        &gw.allowed_targets,
        &up.configured_hosts(),
    )
    .map_err(|e| invalid("url", e))?;
    if t.name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(invalid("name", "at most 128 bytes".into()));
    }
    let config = match t.name.clone() {
        Some(n) => TargetConfig::Named { name: n, url },
        None => TargetConfig::Url(url),
    };
    let (target_name, url) = config.resolve().map_err(|e| invalid("name", e))?;
    if up
        .targets()
        .iter()
        .any(|x| x.url == url || x.name == target_name)
    {
        return Err(Problem::conflict(
            "target-exists",
            format!("`{url}` or the name `{target_name}` is already a target of `{name}`"),
        )
        .to_response());
    }
    Ok((target_name, url))
}

/// The target to remove: `up`'s, and not a DNS-discovered one; `Err`: the 422, 404 or 409.
fn target_to_remove(
    name: &str,
    up: &Upstream,
    t: &TargetRequest,
) -> Result<Arc<Target>, HttpResponse> {
    let url =
        crate::traffic::upstream::spec::target_url(t.url.trim()).map_err(|e| invalid("url", e))?;
    let Some(target) = up.targets().into_iter().find(|x| x.url == url) else {
        return Err(
            Problem::not_found(format!("`{url}` is not a target of `{name}`")).to_response(),
        );
    };
    if let crate::traffic::upstream::pool::TargetSource::Discovered { discovered_from } =
        target.source()
    {
        return Err(Problem::conflict(
            "target-discovered",
            format!(
                "`{url}` is an address of `{discovered_from}`, which DNS discovery follows: \
                 change the name's records"
            ),
        )
        .to_response());
    }
    Ok(target)
}

/// Register or remove a target: checked, written to the registry in the
/// database (nothing is stored for a refused one), applied here, and
/// announced to the other replicas, which have applied it when this
/// answers (with Redis; otherwise within `registry.resync_secs`).
async fn change_target(
    gw: &Traffic,
    actor: String,
    name: &str,
    t: TargetRequest,
    change: Change,
) -> HttpResponse {
    let live = gw.live.load_full();
    let Some(up) = live.upstreams.get(name).cloned() else {
        return Problem::not_found(format!("no upstream named `{name}`")).to_response();
    };
    let stored = match change {
        Change::Add => {
            let (target_name, url) = match target_to_add(gw, name, &up, &t) {
                Ok(r) => r,
                Err(res) => return res,
            };
            // A registration is no proof the target answers: where active
            // checks run, it must pass one before it is stored (and then
            // takes traffic on every replica at once).
            let candidate = Arc::new(Target::new(target_name.clone(), url.clone()));
            if up.spec.health_check.enabled
                && !crate::traffic::upstream::health::probe(&up, candidate).await
            {
                return invalid(
                    "url",
                    format!(
                        "`{url}` did not pass the upstream's health check (GET {}); nothing is stored",
                        up.spec.health_check.path
                    ),
                );
            }
            let configured = up.is_configured(&url);
            gw.registrations
                .add(name, &url, &target_name, configured, Some(actor))
                .await
        }
        Change::Remove => {
            let target = match target_to_remove(name, &up, &t) {
                Ok(target) => target,
                Err(res) => return res,
            };
            let configured = up.is_configured(&target.url);
            gw.registrations
                .remove(name, &target.url, &target.name, configured, Some(actor))
                .await
        }
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "writing the service registry");
        return common::db::problem(&e).to_response();
    }
    gw.sync_registry().await;
    gw.announcer.announce_registry().await;
    tracing::info!(upstream = name, target_url = %t.url, "service registry changed");
    let body = targets_of(name, &up);
    match change {
        Change::Add => HttpResponse::Created().json(body),
        Change::Remove => HttpResponse::Ok().json(body),
    }
}

/// The target URL from a JSON body `{"url": ...}` or `?url=`. Parsed after
/// the admin check (the extractor runs first), so an anonymous caller learns
/// nothing from a bad body.
fn target_of(req: &HttpRequest, body: &[u8]) -> Result<TargetRequest, HttpResponse> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        if !common::text::is_json(req.headers()) {
            return Err(
                Problem::unsupported_media_type("the body must be application/json").to_response(),
            );
        }
        return serde_json::from_slice::<TargetRequest>(body).map_err(|e| {
            Problem::malformed_body(format!("expected {{\"url\": \"http://host:port\"}}: {e}"))
                .to_response()
        });
    }
    web::Query::<TargetRequest>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|_| {
            Problem::validation(vec![common::FieldError {
                field: "url".into(),
                code: "required".into(),
                message: "the target url is required (JSON body or ?url=)".into(),
            }])
            .to_response()
        })
}

async fn target_request(
    admin: &AdminBearer,
    req: &HttpRequest,
    gw: &Traffic,
    name: &str,
    body: &[u8],
    change: Change,
) -> HttpResponse {
    let event = match change {
        Change::Add => "admin.target.added",
        Change::Remove => "admin.target.removed",
    };
    let (res, url) = match target_of(req, body) {
        Ok(t) => {
            let url = t.url.clone();
            let actor = admin.0.id().to_string();
            (change_target(gw, actor, name, t, change).await, Some(url))
        }
        Err(res) => (res, None),
    };
    let result = if res.status().is_success() {
        "success"
    } else {
        "failure"
    };
    gw.audit.record(
        Event::new(event, result)
            .actor(Some(admin.0.id()))
            .subject(format!("upstream {name}"))
            .client(crate::identity::caller::client_ip(req).map(|a| a.to_string()))
            .detail(format!(
                "{} -> {}",
                url.unwrap_or_default(),
                res.status().as_u16()
            )),
    );
    res
}

/// `POST /admin/upstreams/{name}/targets` `{"url": ...}`: register a target
/// at run time, in the service registry every replica shares (stored in
/// the gateway's database, kept across restarts, routed by every replica
/// when this answers with Redis, within `registry.resync_secs` without);
/// it is health-checked and ejected like the others.
#[utoipa::path(post, path = "/admin/upstreams/{name}/targets", summary = "Register a target at run time", tag = "admin",
    params(("name" = String, Path, description = "Upstream name")), request_body = TargetRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; health-checked like the others", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upstream", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The URL or the name is already a target of the upstream", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The upstream checks credentials and takes no registration (`registry.allow_credential_upstream`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid URL (http or https, at most 512 bytes, no user info, a host as written and an explicit port, a host of the upstream's own configuration or one `registry.allowed_targets` allows), a target that fails the upstream's health check, or an invalid name; nothing is stored", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The registry's database is unavailable; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_target(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Traffic>,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    target_request(&admin, &req, &gw, &name, &body, Change::Add).await
}

/// `DELETE /admin/upstreams/{name}/targets` `{"url": ...}` (or `?url=`).
#[utoipa::path(delete, path = "/admin/upstreams/{name}/targets", summary = "Remove a target at run time", tag = "admin",
    params(("name" = String, Path, description = "Upstream name"), ("url" = Option<String>, Query, description = "Target URL, instead of a body")), request_body(content = Option<TargetRequest>),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed; the remaining targets", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upstream or target", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The target is an address DNS discovery found (change the name's records instead)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid URL", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_target(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Traffic>,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    target_request(&admin, &req, &gw, &name, &body, Change::Remove).await
}

/// `POST /admin/reload` (admin): re-read the configuration and swap in keys,
/// routes and upstreams. An invalid configuration is refused (422, with the
/// reason) and the running one keeps serving.
#[utoipa::path(post, path = "/admin/reload", summary = "Reload the configuration", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reloaded: `{status, routes, active_kid}`", body = Object),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new configuration is invalid (the reason is in `detail`); the running one keeps serving", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reload(
    admin: AdminBearer,
    req: HttpRequest,
    ops: web::Data<Ops>,
    traffic: web::Data<Traffic>,
) -> HttpResponse {
    let audit = |result: &'static str, detail: String| {
        ops.audit.record(
            Event::new("admin.reload", result)
                .actor(Some(admin.0.id()))
                .subject("configuration")
                .client(crate::identity::caller::client_ip(&req).map(|a| a.to_string()))
                .detail(detail),
        );
    };
    let (reloading, traffic) = (ops.clone().into_inner(), traffic.into_inner());
    let outcome = web::block(move || reloading.reload(&traffic)).await;
    match &outcome {
        Ok(Ok(live)) => audit("success", format!("{} routes", live.routes.routes().len())),
        Ok(Err(reason)) => audit("failure", reason.clone()),
        Err(_) => audit("failure", "internal error".into()),
    }
    match outcome {
        Ok(Ok(live)) => HttpResponse::Ok().json(json!({
            "status": "reloaded",
            "routes": live.routes.routes().len(),
            "active_kid": live.tokens.active_kid(),
        })),
        Ok(Err(reason)) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-config",
            "Invalid configuration",
        )
        .with_detail(format!(
            "{reason}; the previous configuration keeps serving"
        ))
        .to_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            Problem::internal().to_response()
        }
    }
}
