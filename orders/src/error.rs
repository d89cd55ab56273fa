//! The orders service's error kinds, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{FieldError, Problem};
use sea_orm::DbErr;

use crate::domain::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such order, or one the caller may not see: the two are
    /// indistinguishable on purpose.
    #[error("order not found")]
    NotFound,
    /// A transition from a state other than `pending`.
    #[error("the order is {status}; only a pending order can be {action}")]
    NotPending {
        status: &'static str,
        action: &'static str,
    },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl Error {
    pub fn not_pending(status: Status, action: &'static str) -> Self {
        Error::NotPending {
            status: status.as_str(),
            action,
        }
    }

    pub fn problem(&self) -> Problem {
        match self {
            Error::NotFound => Problem::not_found("no order with this id"),
            Error::NotPending { .. } => Problem::conflict("order-not-pending", self.to_string()),
            Error::Validation(errors) => Problem::validation(errors.clone()),
            Error::Forbidden(why) => Problem::forbidden(*why),
            Error::Db(e) => common::db::problem(e),
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
        if let Error::Db(e) = self {
            tracing::error!(error = %e, "internal error");
        }
        self.problem().to_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
