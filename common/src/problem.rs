//! RFC 9457 `application/problem+json`: the one error body of the workspace.
//!
//! Every crate maps its own error enum to a [`Problem`] exactly once. 5xx
//! problems are opaque to the client; the cause goes to the log, tagged with
//! the request id that the problem also carries.

use std::fmt;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:gatehouse:problem:validation",
    "title": "Validation failed",
    "status": 422,
    "detail": "the request body has 1 invalid field",
    "request_id": "5b0d6c0e-8a4e-4f53-9d0a-1f7f1d1fb7a1",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "errors": [{"field": "username", "code": "length", "message": "must be 3 to 32 characters"}]
}))]
pub struct Problem {
    /// A URI naming the problem type (`urn:gatehouse:problem:<slug>`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request id (also in the `x-request-id` response header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C trace id of the request (the `traceparent` the services
    /// received; the trace in the tracing backend when it was sampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Every field problem, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's name as it appears in the request.
    pub field: String,
    /// A stable machine-readable code (`length`, `email`, `pattern`, ...).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    /// A problem of the given status; `slug` names the type.
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:gatehouse:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            request_id: None,
            trace_id: None,
            errors: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").with_detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
        .with_detail("this resource does not support the request method")
    }

    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict").with_detail(detail)
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
        )
        .with_detail(detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .with_detail(detail)
    }

    /// 422 listing every field problem.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        let detail = if n == 1 {
            "the request has 1 invalid field".to_owned()
        } else {
            format!("the request has {n} invalid fields")
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Validation failed",
        )
        .with_detail(detail)
        .with_errors(errors)
    }

    /// 422 for a body that is not the expected JSON document.
    pub fn malformed_body(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed-body",
            "Malformed request body",
        )
        .with_detail(detail)
    }

    /// Opaque 500: the cause belongs in the log, never in the body.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .with_detail("an unexpected error occurred; quote the request id when reporting it")
    }

    pub fn service_unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Field problems from `validator`, flattened to one entry per failed rule.
    pub fn from_validation(errors: &validator::ValidationErrors) -> Self {
        let mut out = Vec::new();
        collect_validation(errors, "", &mut out);
        out.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(&b.code)));
        Self::validation(out)
    }

    /// 429: the client must wait (answer it with [`Problem::to_response_retry_after`]).
    pub fn too_many_requests(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, slug, "Too many requests").with_detail(detail)
    }

    /// [`Problem::to_response`] with `Retry-After: <secs>` (at least 1).
    pub fn to_response_retry_after(&self, secs: u64) -> HttpResponse {
        let mut res = self.to_response();
        if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }

    /// The HTTP response; fills the request id of the current request.
    /// The problem with the ids of the request it answers (the request id
    /// and the trace id), as every answer carries them; for bodies that
    /// extend a problem with members of their own.
    pub fn identified(mut self) -> Self {
        if self.request_id.is_none() {
            self.request_id = crate::telemetry::current_request_id();
        }
        if self.trace_id.is_none() {
            self.trace_id = crate::traces::current_ids().map(|(trace, _)| trace);
        }
        self
    }

    pub fn to_response(&self) -> HttpResponse {
        let body = self.clone().identified();
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .insert_header((header::CACHE_CONTROL, "no-store"));
        // A 503 always says when to come back (the caller may set a longer
        // `Retry-After` on the answer).
        if self.status == 503 {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        res.json(body)
    }
}

fn collect_validation(
    errors: &validator::ValidationErrors,
    prefix: &str,
    out: &mut Vec<FieldError>,
) {
    use validator::ValidationErrorsKind;
    for (field, kind) in errors.errors() {
        let name = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| format!("failed the `{}` check", e.code));
                    out.push(FieldError::new(&name, e.code.to_string(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_validation(inner, &name, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect_validation(inner, &format!("{name}[{i}]"), out);
                }
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format is a contract with every client: pin it.
    #[test]
    fn wire_format_is_rfc9457() {
        let p = Problem::validation(vec![FieldError::new("username", "length", "too short")]);
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:gatehouse:problem:validation",
                "title": "Validation failed",
                "status": 422,
                "detail": "the request has 1 invalid field",
                "errors": [{"field": "username", "code": "length", "message": "too short"}]
            })
        );
        let nf = serde_json::to_value(Problem::not_found("no user")).unwrap_or_default();
        assert_eq!(nf["status"], 404);
        assert!(nf.get("errors").is_none());
    }

    #[test]
    fn internal_is_opaque() {
        let p = Problem::internal();
        assert_eq!(p.status, 500);
        assert!(!p.detail.unwrap_or_default().contains("Db"));
    }
}
