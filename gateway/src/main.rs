//! The gateway as its own process (how docker-compose runs it).

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = gateway::Settings::load()?;
    let app = gateway::build(settings).await?;
    tracing::info!(port = app.port(), "gateway listening");
    app.run_until_stopped().await?;
    Ok(())
}
