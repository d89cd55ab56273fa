//! The per-request context every phase reads and fills in.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, HeaderValue};

use crate::identity::caller::{Caller, client_ip};
use crate::live::Live;
use crate::traffic::routes::{Route, Rule};
use crate::traffic::upstream::pool::Target;

/// One proxied request on its way through the phases. Created once the
/// request filter has found its route; each phase adds what it decided.
pub struct Ctx<'a> {
    pub req: &'a HttpRequest,
    /// The client's address (behind a trusted proxy, the one it reports),
    /// computed once for every phase that needs it.
    pub client: Option<IpAddr>,
    /// The configuration snapshot the request was routed with: a reload
    /// mid-request changes nothing for it.
    pub live: &'a Live,
    pub route: &'a Route,
    /// The route's rule for this method.
    pub rule: &'a Rule,
    /// Admission: the caller (`None` on a public route).
    pub caller: Option<Caller>,
    /// Rate limit: the `RateLimit*` headers every answer carries.
    pub limit_headers: Vec<(HeaderName, HeaderValue)>,
    /// Cache lookup: where to keep the answer, when it may be kept.
    pub cache_key: Option<String>,
    /// Upstream: the target that answered and the attempts it took.
    pub target: Option<Arc<Target>>,
    pub attempts: u32,
    /// When the handler started, and when the upstream's head arrived.
    pub started: Instant,
    pub upstream_done: Option<Instant>,
}

impl<'a> Ctx<'a> {
    pub fn new(req: &'a HttpRequest, live: &'a Live, route: &'a Route, rule: &'a Rule) -> Self {
        Self {
            req,
            client: client_ip(req),
            live,
            route,
            rule,
            caller: None,
            limit_headers: Vec::new(),
            cache_key: None,
            target: None,
            attempts: 0,
            started: Instant::now(),
            upstream_done: None,
        }
    }
}
