//! The users service: accounts with argon2id password hashes and roles,
//! administered through `/users` (admin), self-service at `/me`, and the
//! gateway's internal credential check.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use common::http::Running;

pub mod bootstrap;
pub mod domain;
pub mod dto;
pub mod entity;
pub mod error;
pub mod mfa;
pub mod mfa_routes;
pub mod password;
pub mod routes;
pub mod service;
pub mod settings;

pub use routes::ApiDoc;
pub use settings::Settings;

/// Bind `settings.listen` and build.
pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let listener = common::http::bind(settings.listen)?;
    build_with_listener(settings, listener).await
}

/// Build on an already-bound listener (tests bind port 0). Connects to the
/// database, applies migrations when configured, loads the gateway's proof
/// key and creates the first admin.
pub async fn build_with_listener(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Users,
    )
    .await?;
    let verifier = settings
        .gateway_proof
        .verifier(&settings.data_dir)
        .context("loading the gateway proof public key (gateway_proof.public_key_files)")?;
    let max = settings.password.max_concurrent_hashes;
    let timeout = Duration::from_millis(settings.password.queue_timeout_ms);
    let low_priority = settings.password.low_priority;
    let hasher = tokio::task::spawn_blocking(move || {
        password::PasswordHasher::new(max, timeout, low_priority)
    })
    .await
    .context("starting the password hasher")??;
    bootstrap::ensure_admin(&db, &hasher, &settings.admin).await?;
    let sealer = web::Data::new(
        mfa::SecretBox::load(&settings.mfa, &settings.data_dir)
            .context("loading the MFA key (mfa.key_file, MFA_SECRET_KEY)")?,
    );

    let audit = web::Data::new(common::audit::AuditLog::new(db.clone(), "users"));
    let db = web::Data::new(db);
    let hasher = web::Data::new(hasher);
    let verifier = web::Data::new(verifier);
    let tracing =
        common::traces::Tracing::new("users", &settings.tracing, Vec::new()).context("tracing")?;
    Ok(common::http::serve(
        listener,
        settings.workers,
        tracing,
        move |cfg| {
            cfg.app_data(db.clone())
                .app_data(hasher.clone())
                .app_data(verifier.clone())
                .app_data(audit.clone())
                .app_data(sealer.clone());
            routes::configure(cfg);
        },
    )?)
}
