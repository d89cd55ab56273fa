//! The scanner service as its own process (how docker-compose runs it).

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = scanner::Settings::load()?;
    let app = scanner::build(settings).await?;
    tracing::info!(port = app.port(), "scanner service listening");
    app.run_until_stopped().await?;
    Ok(())
}
