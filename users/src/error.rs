//! The users service's error kinds, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{FieldError, Problem};
use sea_orm::{DbErr, SqlErr};

use crate::password::HashError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("user not found")]
    NotFound,
    #[error("{0} is already taken")]
    Taken(&'static str),
    #[error("the last active admin cannot be removed, demoted or deactivated")]
    LastAdmin,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Enrolment asked for while a second factor is active.
    #[error("a second factor is already active for this account")]
    MfaAlreadyEnabled,
    /// A confirmation without an enrolment in progress.
    #[error("no second-factor enrolment is in progress; start one first")]
    MfaNotPending,
    /// A second-factor operation on an account without one.
    #[error("this account has no second factor")]
    MfaNotEnabled,
    /// A TOTP secret that does not open (another key, a damaged value).
    #[error("a second-factor secret could not be sealed or opened")]
    Sealing,
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for Error {
    /// Unique violations become 409s naming the field; anything else is internal.
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains("email") => {
                Error::Taken("email")
            }
            Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains("username") => {
                Error::Taken("username")
            }
            _ => Error::Db(e),
        }
    }
}

impl From<Vec<FieldError>> for Error {
    fn from(v: Vec<FieldError>) -> Self {
        Error::Validation(v)
    }
}

impl Error {
    pub fn problem(&self) -> Problem {
        match self {
            Error::NotFound => Problem::not_found("no user with this id"),
            Error::Taken(field) => Problem::conflict(
                &format!("{field}-taken"),
                format!("this {field} is already taken"),
            )
            .with_errors(vec![FieldError::new(*field, "unique", "is already taken")]),
            Error::LastAdmin => Problem::conflict("last-admin", self.to_string()),
            Error::Validation(errors) => Problem::validation(errors.clone()),
            Error::InvalidCredentials => Problem::unauthorized("invalid username or password"),
            Error::Forbidden(why) => Problem::forbidden(*why),
            Error::Hash(HashError::Busy) => Problem::service_unavailable(
                "too many password operations in progress; retry shortly",
            ),
            Error::Hash(HashError::Failed(_)) => Problem::internal(),
            Error::MfaAlreadyEnabled => Problem::conflict("mfa-already-enabled", self.to_string()),
            Error::MfaNotPending => Problem::conflict("mfa-not-pending", self.to_string()),
            Error::MfaNotEnabled => Problem::conflict("mfa-not-enabled", self.to_string()),
            Error::Sealing => Problem::internal(),
            Error::Db(e) => common::db::problem(e),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::Db(_) | Error::Hash(HashError::Failed(_)) | Error::Sealing = self {
            tracing::error!(error = %self, "internal error");
        }
        let mut res = self.problem().to_response();
        if let Error::Hash(HashError::Busy) = self {
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("1"),
            );
        }
        res
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
