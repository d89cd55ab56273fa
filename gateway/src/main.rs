//! The gateway as its own process (how docker-compose runs it).

// The proxy path allocates per request (actix-http and awc messages, header
// maps); mimalloc's thread-local free lists cut glibc malloc's share of the
// profile (see bench/README.md). Built with `no_thp`: with transparent huge
// pages its arenas made the gateway's RSS at 1,000 connections ~80 MiB
// instead of ~63 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = gateway::Settings::load()?;
    let app = gateway::build(settings).await?;
    tracing::info!(port = app.port(), "gateway listening");
    app.run_until_stopped().await?;
    Ok(())
}
