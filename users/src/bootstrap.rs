//! First start: create the administrator.

use anyhow::Context;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::domain::{Email, Password, Role, Username};
use crate::error::Error;
use crate::password::{PasswordHasher, generate_password};
use crate::service::{self, NewUser};
use crate::settings::AdminSettings;

/// When no account exists, create the admin from the settings
/// (`ADMIN_USERNAME`, `ADMIN_PASSWORD`, `ADMIN_EMAIL`). Without a configured
/// password a strong one is generated and printed once, here and never again.
pub async fn ensure_admin(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    admin: &AdminSettings,
) -> anyhow::Result<()> {
    if !service::is_empty(db).await.context("counting users")? {
        return Ok(());
    }
    let username = Username::parse_local("admin.username", &admin.username)
        .map_err(|e| anyhow::anyhow!("admin.username (ADMIN_USERNAME): {}", e.message))?;
    let email = Email::parse("admin.email", &admin.email)
        .map_err(|e| anyhow::anyhow!("admin.email (ADMIN_EMAIL): {}", e.message))?;
    let (password, generated) = match &admin.password {
        Some(p) => (p.clone(), false),
        None => (generate_password(), true),
    };
    Password::parse("admin.password", &password)
        .map_err(|e| anyhow::anyhow!("admin.password (ADMIN_PASSWORD): {}", e.message))?;
    let password_hash = hasher
        .hash(password.clone())
        .await
        .context("hashing the admin password")?;
    let new = NewUser {
        username: username.clone(),
        email,
        full_name: None,
        password_hash,
        roles: vec![Role::Admin, Role::User],
        is_active: true,
    };
    match service::create(db, new).await {
        Ok(_) => {
            tracing::info!(
                username = username.as_str(),
                "created the first administrator"
            );
            if generated {
                // Deliberately not through `tracing`: printed once to the console, never logged.
                eprintln!(
                    "\n=== first start: administrator created ===\n  username: {}\n  password: {}\n  (shown once; set ADMIN_PASSWORD to choose it)\n",
                    username.as_str(),
                    password.expose_secret()
                );
            }
            Ok(())
        }
        // Another replica created it at the same moment.
        Err(Error::Taken(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the first administrator: {e}")),
    }
}
