//! `migrations` CLI: apply, roll back or inspect a service's schema. Run once
//! per deploy (compose step / Kubernetes Job) before the services start.

use clap::{Parser, Subcommand};
use migrations::Service;
use sea_orm_migration::sea_orm::Database;

#[derive(Parser)]
#[command(about = "Apply the gatehouse services' database migrations")]
struct Cli {
    /// Database URL (sqlite://path?mode=rwc or postgres://...).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Service whose schema to migrate: users, orders, scanner, gateway or all.
    #[arg(long, default_value = "all")]
    service: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// Roll back the last N migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let services: Vec<Service> = if cli.service == "all" {
        Service::ALL.to_vec()
    } else {
        vec![cli.service.parse().map_err(anyhow::Error::msg)?]
    };
    let db = Database::connect(&cli.database_url).await?;
    for service in services {
        match cli.command {
            Command::Up => {
                migrations::up(service, &db).await?;
                println!("{service}: up to date");
            }
            Command::Down { steps } => {
                migrations::down(service, &db, steps).await?;
                println!("{service}: rolled back {steps}");
            }
            Command::Status => {
                for (name, applied) in migrations::status(service, &db).await? {
                    println!(
                        "{service}\t{name}\t{}",
                        if applied { "applied" } else { "pending" }
                    );
                }
            }
        }
    }
    Ok(())
}
