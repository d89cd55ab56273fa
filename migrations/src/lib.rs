//! Every service's schema, one migrator per service (each owns its tables; no
//! service reads another's). Migrator tables are named per service, so several
//! services can even share one physical database.
//!
//! [`up`] is what services call at startup in development and what the CLI
//! runs once per deploy in production; it holds a database-wide lock so
//! replicas starting together never race.

use std::fmt;
use std::str::FromStr;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    DatabaseBackend, DatabaseConnection, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

pub mod gateway;
pub mod orders;
pub mod scanner;
pub mod shared;
pub mod users;

/// A service that owns a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Users,
    Orders,
    Scanner,
    Gateway,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Users,
        Service::Orders,
        Service::Scanner,
        Service::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders => "orders",
            Service::Scanner => "scanner",
            Service::Gateway => "gateway",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!("unknown service `{s}` (expected users, orders, scanner or gateway)")
            })
    }
}

/// Key of the PostgreSQL advisory lock that serializes migrations.
const PG_LOCK_KEY: i64 = 0x6761_7465_686f_7573; // "gatehous"

/// Apply the service's pending migrations under a database-wide lock.
pub async fn up(service: Service, db: &DatabaseConnection) -> Result<(), DbErr> {
    // IMMEDIATE on SQLite: the write lock is taken (waiting on busy_timeout)
    // before anything is read, so two replicas apply migrations one after the other.
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
            .await?;
    }
    match service {
        Service::Users => users::Migrator::up(&txn, None).await?,
        Service::Orders => orders::Migrator::up(&txn, None).await?,
        Service::Scanner => scanner::Migrator::up(&txn, None).await?,
        Service::Gateway => gateway::Migrator::up(&txn, None).await?,
    }
    txn.commit().await
}

/// Roll back the last `steps` migrations of a service.
pub async fn down(service: Service, db: &DatabaseConnection, steps: u32) -> Result<(), DbErr> {
    match service {
        Service::Users => users::Migrator::down(db, Some(steps)).await,
        Service::Orders => orders::Migrator::down(db, Some(steps)).await,
        Service::Scanner => scanner::Migrator::down(db, Some(steps)).await,
        Service::Gateway => gateway::Migrator::down(db, Some(steps)).await,
    }
}

/// `(migration name, applied?)` for each of the service's migrations.
pub async fn status(
    service: Service,
    db: &DatabaseConnection,
) -> Result<Vec<(String, bool)>, DbErr> {
    async fn of<M: MigratorTrait>(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
        M::install(db).await?;
        let applied: Vec<String> = M::get_applied_migrations(db)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(M::migrations()
            .iter()
            .map(|m| (m.name().to_owned(), applied.iter().any(|a| a == m.name())))
            .collect())
    }
    match service {
        Service::Users => of::<users::Migrator>(db).await,
        Service::Orders => of::<orders::Migrator>(db).await,
        Service::Scanner => of::<scanner::Migrator>(db).await,
        Service::Gateway => of::<gateway::Migrator>(db).await,
    }
}

/// Declares a service migrator whose bookkeeping table is
/// `seaql_migrations_<service>`.
macro_rules! migrator {
    ($table:literal, [$($m:path),* $(,)?]) => {
        pub struct Migrator;

        #[async_trait::async_trait]
        impl MigratorTrait for Migrator {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                vec![$(Box::new($m)),*]
            }

            fn migration_table_name() -> DynIden {
                Alias::new($table).into_iden()
            }
        }
    };
}
pub(crate) use migrator;
