//! How a call to an upstream failed: where ([`Source`]), whether sending
//! it again was safe, and the one mapping of that to problem+json
//! ([`UpstreamError::to_response`]).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use common::Problem;

/// Where a failed call went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's own request body: over the limit, or cut short. The
    /// upstream did nothing wrong.
    Client(ClientFault),
    /// No target of the upstream is in rotation; nothing was sent.
    NoTarget,
    /// The target had no room (`max_connections` requests in flight) for
    /// the whole budget; nothing was sent.
    Saturated,
    /// The connection could not be opened (refused, connect timeout, name
    /// not resolved): the request never left.
    Connect,
    /// No answer head within the call's budget; the request may have
    /// reached the upstream and be running there.
    Timeout,
    /// The connection broke or the answer was not HTTP; the request may
    /// have reached the upstream.
    BrokenAnswer,
    /// The gateway's own failure (a proof could not be minted).
    Internal,
}

impl Source {
    /// The `error.type` of an attempt that ended so.
    pub fn name(self) -> &'static str {
        match self {
            Source::Client(_) => "client_body",
            Source::NoTarget => "no_target",
            Source::Saturated => "saturated",
            Source::Connect => "connect",
            Source::Timeout => "timeout",
            Source::BrokenAnswer => "broken_answer",
            Source::Internal => "internal",
        }
    }
}

/// What was wrong with the client's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// More than this many bytes.
    TooLarge(u64),
    /// The client stopped sending before the body was complete.
    BodyBroken,
}

/// Why a call gave no answer.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub source: Source,
    /// The upstream's name.
    pub upstream: String,
    /// Whether the policy would have allowed one more attempt (there was
    /// none left): the request is known not to have run, or running it
    /// again is harmless.
    pub retry_safe: bool,
    /// For the log; never sent to clients.
    pub cause: String,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.upstream, self.source, self.cause)
    }
}

impl UpstreamError {
    pub fn internal(upstream: &str, cause: impl Into<String>) -> Self {
        Self {
            source: Source::Internal,
            upstream: upstream.to_owned(),
            retry_safe: false,
            cause: cause.into(),
        }
    }

    /// The answer's body broke off after its head arrived.
    pub fn broken_answer(upstream: &str, cause: impl Into<String>) -> Self {
        Self {
            source: Source::BrokenAnswer,
            upstream: upstream.to_owned(),
            retry_safe: false,
            cause: cause.into(),
        }
    }

    /// The status a client gets for this failure of a proxied call.
    pub fn status(&self) -> StatusCode {
        match self.source {
            Source::Client(ClientFault::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Source::Client(ClientFault::BodyBroken) => StatusCode::BAD_REQUEST,
            Source::NoTarget | Source::Saturated => StatusCode::SERVICE_UNAVAILABLE,
            Source::Connect | Source::BrokenAnswer => StatusCode::BAD_GATEWAY,
            Source::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Source::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A sentence for the client (no addresses, no causes).
    pub fn detail(&self) -> String {
        match self.source {
            Source::Client(ClientFault::TooLarge(limit)) => {
                format!("the request body exceeds {limit} bytes")
            }
            Source::Client(ClientFault::BodyBroken) => "the request body was cut short".into(),
            Source::NoTarget => format!("upstream `{}` has no healthy target", self.upstream),
            Source::Saturated => format!(
                "upstream `{}` is at its connection limit; retry shortly",
                self.upstream
            ),
            Source::Connect | Source::BrokenAnswer => {
                "the upstream could not be reached or sent a broken response".into()
            }
            Source::Timeout => "the upstream did not answer in time".into(),
            Source::Internal => "internal error".into(),
        }
    }

    /// The problem+json answer for a proxied request that got no answer:
    /// 413/400 for the client's body, 503 (with `Retry-After`) when no
    /// target is in rotation, 502 for a failed connection or a broken
    /// answer, 504 for a timeout, an opaque 500 for our own failure.
    pub fn to_response(&self) -> HttpResponse {
        match self.source {
            Source::Client(ClientFault::TooLarge(_)) => {
                return Problem::payload_too_large(self.detail()).to_response();
            }
            Source::Client(ClientFault::BodyBroken) => {
                return Problem::bad_request(self.detail()).to_response();
            }
            Source::Internal => {
                tracing::error!(error = %self, "calling an upstream failed");
                return Problem::internal().to_response();
            }
            Source::Connect | Source::BrokenAnswer | Source::Timeout | Source::Saturated => {
                tracing::warn!(error = %self, "upstream request failed");
            }
            Source::NoTarget => {}
        }
        let (slug, title) = match self.source {
            Source::NoTarget => ("no-healthy-upstream", "Service unavailable"),
            Source::Saturated => ("upstream-saturated", "Service unavailable"),
            Source::Timeout => ("upstream-timeout", "Gateway timeout"),
            _ => ("bad-gateway", "Bad gateway"),
        };
        let mut res = Problem::new(self.status(), slug, title)
            .with_detail(self.detail())
            .to_response();
        match self.source {
            Source::NoTarget => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Source::Saturated => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }

    /// The answer when a call the gateway makes on its own behalf (the
    /// credential check, the user re-read) fails: the service it depends on
    /// is unavailable, 503 with `Retry-After`, whatever the cause.
    pub fn dependency_unavailable(&self) -> HttpResponse {
        if self.source == Source::Internal {
            return self.to_response();
        }
        tracing::warn!(error = %self, "a service the gateway depends on is unavailable");
        unavailable(&self.upstream)
    }
}

/// 503 with `Retry-After` for a service the gateway's own endpoints need.
pub fn unavailable(service: &str) -> HttpResponse {
    let mut res = Problem::service_unavailable(format!(
        "the {service} service is unavailable; retry shortly"
    ))
    .to_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_status_once() {
        let e = |source| UpstreamError {
            source,
            upstream: "users".into(),
            retry_safe: false,
            cause: "SECRET-CAUSE".into(),
        };
        let cases = [
            (Source::Client(ClientFault::TooLarge(10)), 413),
            (Source::Client(ClientFault::BodyBroken), 400),
            (Source::NoTarget, 503),
            (Source::Connect, 502),
            (Source::BrokenAnswer, 502),
            (Source::Timeout, 504),
            (Source::Internal, 500),
        ];
        for (source, status) in cases {
            let err = e(source);
            assert_eq!(err.status().as_u16(), status, "{source:?}");
            let res = err.to_response();
            assert_eq!(res.status().as_u16(), status, "{source:?}");
            assert_eq!(
                res.headers().contains_key(header::RETRY_AFTER),
                source == Source::NoTarget,
                "{source:?}"
            );
            assert!(
                !err.detail().contains("SECRET"),
                "no cause reaches the client"
            );
        }
        let dep = e(Source::Connect).dependency_unavailable();
        assert_eq!(dep.status().as_u16(), 503);
        assert_eq!(dep.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            e(Source::Internal)
                .dependency_unavailable()
                .status()
                .as_u16(),
            500
        );
    }
}
