//! sea-orm entities of the users schema (see `migrations::users`).

pub mod external_identity;
pub mod recovery_code;
pub mod totp_secret;
pub mod user;
pub mod user_role;
