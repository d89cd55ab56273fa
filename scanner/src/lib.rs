//! The scanner service, run as several replicas: HTTP security scans of a URL
//! (headers, cookies, banners, redirects, TLS, a score and a grade), recorded
//! with their owner (the caller the gateway vouches for) and the replica that
//! ran them. Scans are SSRF-safe: see [`policy`] and [`probe`].

use std::net::TcpListener;

use actix_web::web;
use anyhow::Context;
use common::http::Running;

pub mod analysis;
pub mod domain;
pub mod dto;
pub mod entity;
pub mod error;
pub mod inflight;
pub mod policy;
pub mod probe;
pub mod report;
pub mod routes;
pub mod service;
pub mod settings;

pub use routes::ApiDoc;
pub use settings::{ENV_ALIASES, Settings};

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
    common::tls::install_crypto_provider();
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Scanner,
    )
    .await?;
    let verifier = settings
        .gateway_proof
        .verifier(&settings.data_dir)
        .context("loading the gateway proof public key (gateway_proof.public_key_files)")?;
    if !settings.scan.allowed_targets.is_empty() {
        tracing::warn!(
            instance = %settings.instance,
            allowed = ?settings.scan.allowed_targets,
            "scans may reach these otherwise refused address ranges"
        );
    }
    let db = web::Data::new(db);
    let verifier = web::Data::new(verifier);
    let prober = web::Data::new(probe::Prober::new(&settings.scan));
    let instance = web::Data::new(routes::Instance(settings.instance.clone()));
    let in_flight = web::Data::new(inflight::InFlight::new(
        settings.scan.max_concurrent_per_user,
    ));
    let tracing = common::traces::Tracing::new("scanner", &settings.tracing, Vec::new())
        .context("tracing")?;
    Ok(common::http::serve(
        listener,
        settings.workers,
        tracing,
        move |cfg| {
            cfg.app_data(db.clone())
                .app_data(verifier.clone())
                .app_data(prober.clone())
                .app_data(instance.clone())
                .app_data(in_flight.clone());
            routes::configure(cfg);
        },
    )?)
}
