//! Test support: a fresh database per test (a temp SQLite file, or a freshly
//! created PostgreSQL database when `TEST_DATABASE_URL` is set), and the
//! gateway's proof keys in a temp data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod http;
pub mod idp;
pub mod node;
pub mod otlp;
pub mod pki;
pub mod python;

pub use http::Resp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::identity::{PROOF_KEY_NAME, Principal, ProofMinter};
use common::keys;
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;

/// A temp data directory holding the gateway's proof key pair (as the
/// gateway would generate it on first start) and, for SQLite, the databases.
pub struct TestEnv {
    pub dir: TempDir,
    pub minter: Arc<ProofMinter>,
    dbs: Vec<TestDb>,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pair =
            keys::ensure_ed25519(&dir.path().join("keys"), PROOF_KEY_NAME).expect("proof key");
        let minter =
            Arc::new(ProofMinter::from_pem(&pair.private_pem, "gateway", 60).expect("minter"));
        Self {
            dir,
            minter,
            dbs: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A fresh, empty database for one service of this test.
    pub async fn database(&mut self, service: &str) -> String {
        let db = TestDb::fresh(self.dir.path(), service).await;
        let url = db.url.clone();
        self.dbs.push(db);
        url
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh database, dropped with the guard when it is a PostgreSQL one.
pub struct TestDb {
    pub url: String,
    pg_admin_url: Option<String>,
    name: String,
}

fn split_db_url(url: &str) -> (&str, &str) {
    let (main, query) = url.split_once('?').map_or((url, ""), |(m, q)| (m, q));
    let base = main.rsplit_once('/').map_or(main, |(b, _)| b);
    (base, query)
}

impl TestDb {
    pub async fn fresh(dir: &Path, service: &str) -> Self {
        let name = format!("gh_{}_{}", service, uuid::Uuid::new_v4().simple());
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                let conn = Database::connect(&admin)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create database");
                conn.close().await.ok();
                let (base, query) = split_db_url(&admin);
                let url = if query.is_empty() {
                    format!("{base}/{name}")
                } else {
                    format!("{base}/{name}?{query}")
                };
                Self {
                    url,
                    pg_admin_url: Some(admin),
                    name,
                }
            }
            _ => Self {
                url: format!("sqlite://{}/{name}.db?mode=rwc", dir.display()),
                pg_admin_url: None,
                name,
            },
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.pg_admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(conn) = Database::connect(&admin).await {
                    let _ = conn
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A reqwest client builder for tests. The workspace's reqwest has no
/// crypto provider of its own (the tree has one, ring, installed at startup
/// by every service), so tests install it before building a client.
pub fn client_builder() -> reqwest::ClientBuilder {
    common::tls::install_crypto_provider();
    // A connection idle for longer is not reused: the servers close theirs
    // after 5 s (actix's keep-alive), and a request sent on one as it closes
    // fails with `IncompleteMessage` (seen once after a test's 4 s pause).
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(2))
}

/// A loopback port free right now (for a process the test starts that
/// must be told its port: nginx, a replica, a private database).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reqwest client for tests (see [`client_builder`]).
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .unwrap_or_else(|e| panic!("building the test client: {e}"))
}

/// The identity headers the gateway would send to `audience` on behalf of
/// `who`, for a test client (reqwest) to send to a service directly.
pub fn identity_headers(
    minter: &ProofMinter,
    audience: &str,
    who: &Principal,
) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    let headers = minter
        .headers(audience, who)
        .unwrap_or_else(|e| panic!("minting a test proof: {e}"));
    for (name, value) in headers.pairs() {
        let value = value
            .to_str()
            .unwrap_or_else(|e| panic!("{e}"))
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let name: reqwest::header::HeaderName =
            name.as_str().parse().unwrap_or_else(|e| panic!("{e}"));
        out.insert(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_url_split() {
        assert_eq!(
            split_db_url("postgres://u@h:5432/postgres"),
            ("postgres://u@h:5432", "")
        );
        assert_eq!(
            split_db_url("postgres://u@h/db?sslmode=disable"),
            ("postgres://u@h", "sslmode=disable")
        );
    }
}
