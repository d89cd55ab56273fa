//! `cargo run --release`: the whole system in one process on the embedded
//! defaults — the gateway, users, orders and two scanner replicas, each on its
//! own loopback port, SQLite files under `DATA_DIR` (default `./data`).
//! Ctrl-C or SIGTERM stops every server gracefully.
//!
//! Each service reads its own settings exactly as its standalone binary does
//! (see `config/*.yaml`), so this is the same system docker-compose runs, in
//! one process.
//!
//! Every port is configurable (see `main`), and the gateway always reaches
//! the services at the addresses they bound.
//!
//! `gatehouse <gateway|users|orders|scanner>` runs one service alone, exactly
//! as its own binary does (one binary for tests that start the topology as
//! separate processes).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

/// Where the launcher starts the second scanner unless `SCANNER2__LISTEN`
/// says otherwise (the first takes `scanner.yaml`'s `listen`, 8083, or
/// `SCANNER1__LISTEN`).
const SCANNER2_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8084);

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    if let Some(service) = std::env::args().nth(1) {
        return single(&service).await;
    }

    // Every service's address comes from its own settings (`USERS__LISTEN`,
    // `ORDERS__LISTEN`, `SCANNER1__LISTEN`, `SCANNER2__LISTEN`,
    // `GATEWAY_LISTEN`; port 0 takes a free one). Each is bound first, and
    // the gateway is pointed at the addresses actually bound, so no port is
    // fixed and two copies can run side by side.
    let users_settings = users::Settings::load()?;
    let orders_settings = orders::Settings::load()?;
    let scanner1 = scanner::Settings::replica("scanner1", scanner::Settings::load()?.listen)?;
    let scanner2 = scanner::Settings::replica("scanner2", SCANNER2_LISTEN)?;
    let bind = |what: &str, addr: SocketAddr| {
        let listener = common::http::bind(addr).with_context(|| format!("starting {what}"))?;
        let bound = listener.local_addr()?;
        Ok::<_, anyhow::Error>((listener, bound))
    };
    let (users_l, users_at) = bind("users", users_settings.listen)?;
    let (orders_l, orders_at) = bind("orders", orders_settings.listen)?;
    let (s1_l, s1_at) = bind("scanner1", scanner1.listen)?;
    let (s2_l, s2_at) = bind("scanner2", scanner2.listen)?;
    // The addresses bound here are the program's, not the file's: a reload
    // (SIGHUP, `POST /admin/reload`) reads the same layers with them again.
    let gateway_layers = move || {
        gateway::Settings::loader()
            .set("upstreams.users", [url(users_at)])
            .set("upstreams.orders", [url(orders_at)])
            .set(
                "upstreams.scanner",
                serde_json::json!({
                    "targets": [
                        {"name": "scanner1", "url": url(s1_at)},
                        {"name": "scanner2", "url": url(s2_at)},
                    ],
                    "balance": "least_connections",
                }),
            )
    };
    let gateway_settings = gateway::Settings::from_loader(gateway_layers())?;
    // The gateway's proof key must exist before the services load its public half.
    gateway::proof_minter(&gateway_settings).context("preparing the gateway proof key")?;

    let users = users::build_with_listener(users_settings, users_l)
        .await
        .context("starting users")?;
    let orders = orders::build_with_listener(orders_settings, orders_l)
        .await
        .context("starting orders")?;
    let scanner1 = scanner::build_with_listener(scanner1, s1_l)
        .await
        .context("starting scanner1")?;
    let scanner2 = scanner::build_with_listener(scanner2, s2_l)
        .await
        .context("starting scanner2")?;
    let gateway_listener =
        common::http::bind(gateway_settings.listen).context("starting the gateway")?;
    let gateway = gateway::build_with_source(
        gateway_settings,
        gateway_listener,
        Box::new(move || gateway::Settings::from_loader(gateway_layers())),
    )
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
