//! Phase: rate limit. Runs after admission, so a limit `by: user` counts the
//! verified caller (a public route counts by client address). `Err` is the
//! 429; an admitted request carries the `RateLimit*` headers to its answer.

use actix_web::http::header::{HeaderName, HeaderValue};
use std::net::IpAddr;

use actix_web::HttpResponse;

use crate::identity::caller::Caller;
use crate::ops::metrics::Metrics;
use crate::traffic::ratelimit::{self, LimitBy, Quota, RateLimiter};

/// The key a request is counted under: the route, and the caller or the
/// client address.
pub fn key(label: &str, by: LimitBy, caller: Option<&Caller>, client: Option<IpAddr>) -> String {
    match (by, caller, client) {
        (LimitBy::User, Some(c), _) => format!("{label}|user:{}", c.id()),
        (_, _, Some(ip)) => format!("{label}|ip:{ip}"),
        (_, _, None) => format!("{label}|ip:"),
    }
}

/// Count one request under `label` against `quota`: the `RateLimit*`
/// headers for its answer, or the 429.
pub async fn check(
    limiter: &RateLimiter,
    metrics: &Metrics,
    label: &str,
    (quota, by): &(Quota, LimitBy),
    caller: Option<&Caller>,
    client: Option<IpAddr>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HttpResponse> {
    let decision = limiter.check(&key(label, *by, caller, client), quota).await;
    if decision.is_allowed() {
        Ok(decision.headers(quota, "route"))
    } else {
        metrics.rate_limited(label);
        Err(ratelimit::refused(
            &decision,
            quota,
            "route",
            "this route allows",
        ))
    }
}

/// Count the request against the route's quota, if it has one.
pub async fn phase(
    limiter: &RateLimiter,
    metrics: &Metrics,
    ctx: &mut super::context::Ctx<'_>,
) -> Result<(), HttpResponse> {
    let Some(limit) = &ctx.route.rate_limit else {
        return Ok(());
    };
    ctx.limit_headers = check(
        limiter,
        metrics,
        &ctx.route.prefix,
        limit,
        ctx.caller.as_ref(),
        ctx.client,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::live_with;
    use crate::traffic::proxy::context::Ctx;
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
        let metrics = crate::ops::metrics::Metrics::new().unwrap();
        let req = actix_web::test::TestRequest::get()
            .uri("/limited/x")
            .peer_addr("10.0.0.7:4000".parse().unwrap())
            .to_http_request();
        let (route, rule) = match crate::traffic::proxy::request_filter::find(
            &live,
            req.method(),
            req.path(),
            req.headers(),
            req.uri(),
        )
        .1
        {
            Ok(crate::traffic::proxy::request_filter::Routed::Route(r, rule)) => (r, rule),
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
