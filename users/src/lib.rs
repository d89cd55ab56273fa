//! The users service: accounts with argon2id password hashes and roles,
//! administered through `/users` (admin), self-service at `/me`, and the
//! gateway's internal credential check.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub mod bootstrap;
pub mod domain;
pub mod dto;
pub mod entity;
pub mod error;
pub mod password;
pub mod routes;
pub mod service;
pub mod settings;

pub use settings::Settings;

/// A built, listening users service.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Bind `settings.listen` and build.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Build on an already-bound listener (tests bind port 0). Connects to the
    /// database, applies migrations when configured, loads the gateway's proof
    /// key and creates the first admin.
    pub async fn build_with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let db = common::db::connect(&settings.database_url(), settings.database.max_connections)
            .await
            .context("connecting to the users database")?;
        if settings.database.auto_migrate {
            migrations::up(migrations::Service::Users, &db).await.context("applying the users migrations")?;
        }
        let verifier = settings
            .gateway_proof
            .verifier(&settings.data_dir)
            .context("loading the gateway proof public key (gateway_proof.public_key_files)")?;
        let max = settings.password.max_concurrent_hashes;
        let timeout = Duration::from_millis(settings.password.queue_timeout_ms);
        let hasher = tokio::task::spawn_blocking(move || password::PasswordHasher::new(max, timeout))
            .await
            .context("starting the password hasher")??;
        bootstrap::ensure_admin(&db, &hasher, &settings.admin).await?;

        let port = listener.local_addr()?.port();
        let db = web::Data::new(db);
        let hasher = web::Data::new(hasher);
        let verifier = web::Data::new(verifier);
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(common::http::error_handlers())
                .wrap(from_fn(common::telemetry::request_context))
                .app_data(common::http::json_config())
                .app_data(common::http::query_config())
                .app_data(common::http::path_config())
                .app_data(db.clone())
                .app_data(hasher.clone())
                .app_data(verifier.clone())
                .configure(routes::configure)
                .default_service(web::to(common::http::not_found))
        })
        .shutdown_timeout(30)
        .listen(listener)?;
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        Ok(Self { port, server: server.run() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop it from elsewhere (graceful with `stop(true)`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serve until stopped (SIGINT/SIGTERM or the handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
