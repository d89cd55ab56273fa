//! Database connection shared by the services: SQLite by default (a file under
//! `DATA_DIR`), PostgreSQL when the URL says so.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use serde::Deserialize;

/// The `database` section of every service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://...`; when absent, a SQLite
    /// file named after the service under `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// Apply this service's migrations at startup (dev); production runs the
    /// `migrations` CLI once per deploy instead.
    pub auto_migrate: bool,
}

impl DatabaseSettings {
    /// The effective URL.
    pub fn url_or_default(&self, data_dir: &Path, service: &str) -> String {
        match &self.url {
            Some(u) if !u.trim().is_empty() => u.clone(),
            _ => format!("sqlite://{}/{service}.db?mode=rwc", data_dir.display()),
        }
    }
}

/// Open a pool. For SQLite: creates the parent directory, WAL, a busy timeout
/// so concurrent writers wait instead of failing, and foreign keys on.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", parent.display())))?;
        }
    }
    // SQLite waits for the writer (busy timeout); a server that is down
    // should be reported quickly instead (503 from `unavailable`).
    let acquire = if url.starts_with("sqlite:") { 10 } else { 3 };
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections.max(1))
        .min_connections(0)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(acquire))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let mut db = Database::connect(opts).await?;
    // A span per query when the request is traced (crate::traces).
    let system = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgresql"
    };
    db.set_metric_callback(move |info| crate::traces::record_query(system, info));
    Ok(db)
}

/// Begin a transaction that holds the write lock from its first statement:
/// `BEGIN IMMEDIATE` on SQLite (so a read-then-write never fails on a stale
/// snapshot), a plain `BEGIN` elsewhere (use row locks there).
pub async fn write_txn<C: sea_orm::TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Open a service's database: connect (creating a SQLite file under
/// `data_dir` when no URL is set) and, when `auto_migrate` is on, apply the
/// service's migrations under the cross-replica lock.
pub async fn open(
    settings: &DatabaseSettings,
    data_dir: &Path,
    service: migrations::Service,
) -> anyhow::Result<DatabaseConnection> {
    use anyhow::Context;
    let url = settings.url_or_default(data_dir, service.name());
    let db = connect(&url, settings.max_connections)
        .await
        .with_context(|| format!("connecting to the {service} database"))?;
    if settings.auto_migrate {
        migrations::up(service, &db)
            .await
            .with_context(|| format!("applying the {service} migrations"))?;
    }
    Ok(db)
}

/// Whether a database error means the database cannot be reached (down,
/// restarting, pool exhausted), as opposed to a failed statement. Such an
/// error is a 503 (retry later), not a 500.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(x)) | DbErr::Exec(RuntimeErr::SqlxError(x)) => matches!(
            x.as_ref(),
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
        ),
        _ => false,
    }
}

/// The problem for a database error: 503 when it cannot be reached, 500
/// (without the cause) otherwise. The caller logs the cause.
pub fn problem(e: &DbErr) -> crate::Problem {
    if is_unavailable(e) {
        crate::Problem::service_unavailable("the database is unavailable; retry shortly")
    } else {
        crate::Problem::internal()
    }
}
