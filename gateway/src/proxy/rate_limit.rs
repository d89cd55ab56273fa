//! Phase: rate limit. Runs after admission, so a limit `by: user` counts the
//! verified caller (a public route counts by client address). `Err` is the
//! 429; an admitted request carries the `RateLimit*` headers to its answer.

use crate::admission::{Caller, client_ip};
use crate::ratelimit::{self, Decision, LimitBy, Quota, RateLimiter};
use crate::routes::Route;

/// The key a request is counted under: the route, and the caller or the
/// client address.
pub fn key(route: &Route, by: LimitBy, caller: Option<&Caller>, ip: &str) -> String {
    match (by, caller) {
        (LimitBy::User, Some(c)) => format!("{}|user:{}", route.prefix, c.id()),
        _ => format!("{}|ip:{ip}", route.prefix),
    }
}

/// Count the request against the route's quota, if it has one.
pub async fn phase(
    limiter: &RateLimiter,
    metrics: &crate::metrics::Metrics,
    ctx: &mut super::context::Ctx<'_>,
) -> Result<(), actix_web::HttpResponse> {
    let Some((quota, by)) = &ctx.route.rate_limit else {
        return Ok(());
    };
    let ip = client_ip(ctx.req)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let key = key(ctx.route, *by, ctx.caller.as_ref(), &ip);
    let decision = limiter.check(&key, quota).await;
    decide(ctx, quota, &decision).inspect_err(|_| metrics.rate_limited(&ctx.route.prefix))
}

fn decide(
    ctx: &mut super::context::Ctx<'_>,
    quota: &Quota,
    decision: &Decision,
) -> Result<(), actix_web::HttpResponse> {
    if decision.is_allowed() {
        ctx.limit_headers = decision.headers(quota, "route");
        Ok(())
    } else {
        Err(ratelimit::refused(
            decision,
            quota,
            "route",
            "this route allows",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proxy::context::Ctx;
    use crate::tests_support::live_with;
    use serde_json::json;

    #[actix_web::test]
    async fn a_route_quota_counts_per_caller_and_refuses_with_429() {
        let live = live_with(
            json!([
                {"prefix": "/limited", "upstream": "users", "access": "public",
                 "rate_limit": {"rate": "2/m", "by": "ip"}},
                {"prefix": "/free", "upstream": "users", "access": "public"},
            ]),
            json!([]),
        );
        let limiter = RateLimiter::local();
        let metrics = crate::metrics::Metrics::new().unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/limited/x")
            .peer_addr("10.0.0.7:4000".parse().unwrap())
            .to_http_request();
        let (route, rule) = match crate::proxy::request_filter::find(
            &live,
            req.method(),
            req.path(),
            req.headers(),
            req.uri(),
        )
        .1
        {
            Ok(crate::proxy::request_filter::Routed::Route(r, rule)) => (r, rule),
            _ => panic!("routed"),
        };
        for remaining in ["1", "0"] {
            let mut ctx = Ctx::new(&req, &live, route, rule);
            phase(&limiter, &metrics, &mut ctx).await.unwrap();
            let ratelimit = ctx
                .limit_headers
                .iter()
                .find(|(n, _)| n == "ratelimit")
                .map(|(_, v)| v.to_str().unwrap().to_owned())
                .unwrap();
            assert!(ratelimit.contains(&format!("r={remaining}")), "{ratelimit}");
        }
        let mut ctx = Ctx::new(&req, &live, route, rule);
        let res = phase(&limiter, &metrics, &mut ctx).await.unwrap_err();
        assert_eq!(res.status().as_u16(), 429);
        assert!(res.headers().contains_key("retry-after"));
        assert!(res.headers().contains_key("ratelimit-policy"));
        // Another address has its own count.
        let other = actix_web::test::TestRequest::get()
            .uri("/limited/x")
            .peer_addr("10.0.0.8:4000".parse().unwrap())
            .to_http_request();
        let mut ctx = Ctx::new(&other, &live, route, rule);
        assert!(phase(&limiter, &metrics, &mut ctx).await.is_ok());
        // A route without a quota adds nothing.
        let free = live
            .routes
            .routes()
            .iter()
            .find(|r| r.prefix == "/free")
            .unwrap();
        let mut ctx = Ctx::new(&req, &live, free, rule);
        phase(&limiter, &metrics, &mut ctx).await.unwrap();
        assert!(ctx.limit_headers.is_empty());
    }
}
