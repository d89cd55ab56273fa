//! What the owner-scoped list endpoints share (orders, scans): who may see
//! what, and the paging parameters, every bad one listed in one 422.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::FieldError;
use crate::identity::Caller;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// Which records a caller may see and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only the records this user owns.
    Owner(Uuid),
    /// Every record (admins).
    All,
}

impl Scope {
    /// An admin sees everything, anyone else their own.
    pub fn of(caller: &Caller) -> Self {
        if caller.is_admin() {
            Scope::All
        } else {
            Scope::Owner(caller.id)
        }
    }
}

/// `?limit=&offset=&user_id=` of a list endpoint. Unknown parameters are
/// refused (400) rather than ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// Records to skip (default 0).
    pub offset: Option<i64>,
    /// Admins only: just this user's records. Anyone else may pass only
    /// their own id (403 otherwise).
    #[param(value_type = Option<Uuid>)]
    pub user_id: Option<String>,
}

/// A checked list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub scope: Scope,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ListError {
    /// Every bad parameter (422).
    Invalid(Vec<FieldError>),
    /// A non-admin named another user (403).
    Forbidden,
}

impl ListQuery {
    /// Check the parameters and narrow the caller's scope to `user_id`.
    pub fn resolve(&self, caller: &Caller) -> Result<Listing, ListError> {
        let mut errors = Vec::new();
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as u64,
            Some(_) => {
                errors.push(FieldError::new(
                    "limit",
                    "range",
                    format!("must be 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        };
        let offset = match self.offset {
            None => 0,
            Some(o) if o >= 0 => o as u64,
            Some(_) => {
                errors.push(FieldError::new("offset", "range", "must be 0 or more"));
                0
            }
        };
        let user_id = match self.user_id.as_deref().map(Uuid::parse_str) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(FieldError::new("user_id", "uuid", "must be a UUID"));
                None
            }
        };
        if !errors.is_empty() {
            return Err(ListError::Invalid(errors));
        }
        let scope = match (Scope::of(caller), user_id) {
            (scope, None) => scope,
            (Scope::All, Some(id)) => Scope::Owner(id),
            (Scope::Owner(own), Some(id)) if id == own => Scope::Owner(own),
            (Scope::Owner(_), Some(_)) => return Err(ListError::Forbidden),
        };
        Ok(Listing {
            scope,
            limit,
            offset,
        })
    }
}
