//! Phase: logging. Runs last, for every request that reached a route,
//! whatever ended it (an early refusal, an upstream failure or an answer):
//! one observation in the metrics and `/stats`, and a debug line with the
//! upstream's part.

use actix_web::HttpResponse;

use super::context::Ctx;
use crate::ops::metrics::Metrics;

pub fn phase(metrics: &Metrics, ctx: &Ctx<'_>, res: &HttpResponse) {
    let status = res.status().as_u16();
    let meters = ctx
        .route
        .meters
        .get_or_init(|| metrics.meters(&ctx.route.prefix));
    metrics.record_on(meters, ctx.req.method().as_str(), status, ctx.started);
    if let Some(target) = &ctx.target {
        tracing::debug!(
            route = %ctx.route.prefix,
            upstream = %ctx.route.upstream,
            target = %target.name,
            attempts = ctx.attempts,
            upstream_ms = ctx
                .upstream_done
                .map(|t| t.duration_since(ctx.started).as_secs_f64() * 1000.0),
            status,
            "proxied"
        );
    }
}
