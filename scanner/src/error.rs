//! The scanner service's error kinds, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{FieldError, Problem};
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such scan, or one the caller may not see: the two are
    /// indistinguishable on purpose.
    #[error("scan not found")]
    NotFound,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The SSRF policy refuses the target or one of its redirects.
    #[error("{0}")]
    TargetRefused(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A stored result that does not read back (a bug, or a manual edit).
    #[error("stored result unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl Error {
    pub fn problem(&self) -> Problem {
        match self {
            Error::NotFound => Problem::not_found("no scan with this id"),
            Error::Validation(errors) => Problem::validation(errors.clone()),
            Error::TargetRefused(why) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "target-refused",
                "Target refused",
            )
            .with_detail(why.clone())
            .with_errors(vec![FieldError::new("url", "refused", why.clone())]),
            Error::Forbidden(why) => Problem::forbidden(*why),
            Error::Db(e) => common::db::problem(e),
            Error::Corrupt(_) => Problem::internal(),
        }
    }
}

impl From<Vec<FieldError>> for Error {
    fn from(v: Vec<FieldError>) -> Self {
        Error::Validation(v)
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, Error::Db(_) | Error::Corrupt(_)) {
            tracing::error!(error = %self, "internal error");
        }
        self.problem().to_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_422_naming_the_url_field() {
        let p = Error::TargetRefused("target address 127.0.0.1 is loopback".into()).problem();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:gatehouse:problem:target-refused",
                "title": "Target refused",
                "status": 422,
                "detail": "target address 127.0.0.1 is loopback",
                "errors": [{"field": "url", "code": "refused",
                    "message": "target address 127.0.0.1 is loopback"}]
            })
        );
    }
}
