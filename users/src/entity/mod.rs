//! sea-orm entities of the users schema (see `migrations::users`).

pub mod external_identity;
pub mod user;
pub mod user_role;
