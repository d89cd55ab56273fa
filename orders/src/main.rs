//! The orders service as its own process (how docker-compose runs it).

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = orders::Settings::load()?;
    let app = orders::build(settings).await?;
    tracing::info!(port = app.port(), "orders service listening");
    app.run_until_stopped().await?;
    Ok(())
}
