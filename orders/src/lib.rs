//! The orders service: orders owned by the user who placed them (the caller
//! the gateway vouches for), listed newest first; admins see every order and
//! confirm them. `pending` is the only state that changes, and each change is
//! one conditional UPDATE, so concurrent transitions cannot both win.

use std::net::TcpListener;

use actix_web::web;
use anyhow::Context;
use common::http::Running;

pub mod domain;
pub mod dto;
pub mod entity;
pub mod error;
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
/// database, applies migrations when configured and loads the gateway's
/// proof key.
pub async fn build_with_listener(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Orders,
    )
    .await?;
    let verifier = settings
        .gateway_proof
        .verifier(&settings.data_dir)
        .context("loading the gateway proof public key (gateway_proof.public_key_files)")?;
    let db = web::Data::new(db);
    let verifier = web::Data::new(verifier);
    let tracing =
        common::traces::Tracing::new("orders", &settings.tracing, Vec::new()).context("tracing")?;
    Ok(common::http::serve(
        listener,
        settings.workers,
        tracing,
        move |cfg| {
            cfg.app_data(db.clone()).app_data(verifier.clone());
            routes::configure(cfg);
        },
    )?)
}
