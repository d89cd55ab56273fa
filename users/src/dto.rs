//! Request and response bodies of the users API. Responses never carry the
//! password hash; requests hold passwords as `SecretString` so they cannot be
//! printed by accident.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::Role;
use crate::service::User;

/// A user account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0b6f1f0e-6c1e-4b7a-9a53-3f1f0c1f6b2e", "username": "alice", "email": "alice@example.com",
    "full_name": "Alice Example", "roles": ["user"], "is_active": true,
    "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z"
}))]
pub struct UserResponse {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub roles: Vec<Role>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set for an account created by a trusted identity provider's token:
    /// who it is there. Such an account has no password; it signs in
    /// through its provider only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_identity: Option<LinkedIdentity>,
    /// A second factor (TOTP) is active: logins take a code after the
    /// password.
    #[serde(default)]
    pub mfa_enabled: bool,
}

/// The external identity a linked account signs in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkedIdentity {
    /// The provider's `iss`.
    pub issuer: String,
    /// The subject there (the configured subject claim).
    pub subject: String,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email,
            full_name: u.full_name,
            roles: u.roles,
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
            linked_identity: u
                .linked
                .map(|(issuer, subject)| LinkedIdentity { issuer, subject }),
            mfa_enabled: u.mfa,
        }
    }
}

/// One page of users.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserResponse>,
    /// Users matching the filter, over all pages.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// Query of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// Users to skip (default 0).
    pub offset: Option<i64>,
    /// Only usernames containing this text (case-insensitive).
    pub username: Option<String>,
    /// Only e-mails containing this text (case-insensitive).
    pub email: Option<String>,
    /// Only users holding this role (`admin` or `user`).
    pub role: Option<String>,
    /// Only active (`true`) or inactive (`false`) users.
    pub active: Option<bool>,
}

/// `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "email": "alice@example.com", "password": "correct horse battery", "roles": ["user"]}))]
pub struct CreateUserRequest {
    /// 3-32 characters of `a-z 0-9 _ . -` (lower-cased), not starting with
    /// `fed.` (the names of accounts linked to an identity provider: 422
    /// `reserved`).
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub full_name: Option<String>,
    /// 12 to 128 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Default `["user"]`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Default `true`.
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// `PATCH /users/{id}`: every field optional; `full_name: null` clears it,
/// `password` resets it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// As for a new account; a linked account's stays within `fed.`, a
    /// local one's outside it (422 `reserved`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub full_name: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// `PATCH /me`: a password change needs `current_password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub full_name: Option<Option<String>>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub current_password: Option<SecretString>,
}

/// Internal credential check (gateway only).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialsRequest {
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Who a user is, for the gateway: the credential check's answer and the
/// re-read at token refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserIdentity {
    pub id: Uuid,
    pub username: String,
    pub roles: Vec<Role>,
    pub is_active: bool,
    /// A second factor is active: the gateway asks for a code before it
    /// issues tokens.
    #[serde(default)]
    pub mfa_enabled: bool,
    /// The e-mail address and full name, for the OpenID Connect claims the
    /// gateway issues (`email`, `name`) when the user allows them.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

impl From<User> for UserIdentity {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            roles: u.roles,
            is_active: u.is_active,
            mfa_enabled: u.mfa,
            email: (!u.email.is_empty()).then_some(u.email),
            full_name: u.full_name,
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The gateway links an external identity (gateway only): who the trusted
/// provider says signs in, already mapped to local roles.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkRequest {
    /// The provider's `iss`, exactly as configured at the gateway.
    pub issuer: String,
    /// The subject at the provider.
    pub subject: String,
    /// The preferred username: a new account's is `fed.` and this, made
    /// valid and unique (`fed.alice`, `fed.alice-2`).
    pub username: String,
    /// An e-mail address, used for a new account when it is free.
    #[serde(default)]
    pub email: Option<String>,
    /// The account's roles from now on (from the gateway's role mapping).
    pub roles: Vec<String>,
}
