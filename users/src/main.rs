//! The users service as its own process (how docker-compose runs it).

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = users::Settings::load()?;
    let app = users::build(settings).await?;
    tracing::info!(port = app.port(), "users service listening");
    app.run_until_stopped().await?;
    Ok(())
}
