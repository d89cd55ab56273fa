//! `cargo run --release`: the whole system in one process on the embedded
//! defaults — the gateway, users, orders and two scanner replicas, each on its
//! own loopback port, SQLite files under `DATA_DIR` (default `./data`).
//! Ctrl-C or SIGTERM stops every server gracefully.
//!
//! Each service reads its own settings exactly as its standalone binary does
//! (see `config/*.yaml`), so this is the same system docker-compose runs, in
//! one process.
//!
//! `gatehouse <gateway|users|orders|scanner>` runs one service alone, exactly
//! as its own binary does (one binary for tests that start the topology as
//! separate processes).

use std::net::SocketAddr;

use anyhow::Context;

/// One service alone, as its own binary runs it.
async fn single(service: &str) -> anyhow::Result<()> {
    let app = match service {
        "gateway" => gateway::build(gateway::Settings::load()?).await?,
        "users" => users::build(users::Settings::load()?).await?,
        "orders" => orders::build(orders::Settings::load()?).await?,
        "scanner" => scanner::build(scanner::Settings::load()?).await?,
        other => anyhow::bail!("unknown service `{other}`: gateway, users, orders or scanner"),
    };
    tracing::info!(service, port = app.port(), "listening");
    app.run_until_stopped().await?;
    Ok(())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    if let Some(service) = std::env::args().nth(1) {
        return single(&service).await;
    }

    let gateway_settings = gateway::Settings::load()?;
    // The gateway's proof key must exist before the services load its public half.
    gateway::proof_minter(&gateway_settings).context("preparing the gateway proof key")?;
    let users_settings = users::Settings::load()?;
    let orders_settings = orders::Settings::load()?;
    let scanner1 =
        scanner::Settings::replica("scanner1", SocketAddr::from(([127, 0, 0, 1], 8083)))?;
    let scanner2 =
        scanner::Settings::replica("scanner2", SocketAddr::from(([127, 0, 0, 1], 8084)))?;

    let users = users::build(users_settings)
        .await
        .context("starting users")?;
    let orders = orders::build(orders_settings)
        .await
        .context("starting orders")?;
    let scanner1 = scanner::build(scanner1)
        .await
        .context("starting scanner1")?;
    let scanner2 = scanner::build(scanner2)
        .await
        .context("starting scanner2")?;
    let gateway = gateway::build(gateway_settings)
        .await
        .context("starting the gateway")?;

    tracing::info!(
        gateway = gateway.port(),
        users = users.port(),
        orders = orders.port(),
        scanner1 = scanner1.port(),
        scanner2 = scanner2.port(),
        "gatehouse is up"
    );
    let (g, u, o, s1, s2) = tokio::join!(
        gateway.run_until_stopped(),
        users.run_until_stopped(),
        orders.run_until_stopped(),
        scanner1.run_until_stopped(),
        scanner2.run_until_stopped(),
    );
    for r in [g, u, o, s1, s2] {
        r?;
    }
    tracing::info!("gatehouse stopped");
    Ok(())
}
