//! The gateway's one connection to Redis, shared by everything replicas
//! share: rate-limit cells, login-failure counters and revocation
//! announcements. Each of those lends it; none opens its own.
//!
//! Redis only speeds sharing up, it is never needed to answer: when a call
//! fails or takes longer than `timeout_ms`, the caller falls back to what it
//! can decide alone (local counters, the database resync), the link backs off
//! for a second and logs the change once, and the next call after the
//! back-off tries Redis again, reconnecting in the background if needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::clock::mono_us;

/// `redis:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`, or `rediss://` for TLS; unset: every
    /// replica on its own.
    #[serde(default)]
    pub url: Option<String>,
    /// For `rediss://`: the PEM CA that signs the server's certificate
    /// (default: the public roots). The server's name is always checked.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Prepended to every key and channel.
    pub key_prefix: String,
    /// Budget of one Redis call before the local fallback answers.
    pub timeout_ms: u64,
    /// How long rate-limit cells reserved ahead may wait to be used (see
    /// `ratelimit::leases`); 0 makes every limited request one Redis call.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_lease_ms() -> u64 {
    50
}

/// How long the link rests after a failed call.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct RedisLink {
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    /// No call before this (`mono_us`), after a failure.
    retry_at: AtomicU64,
    degraded: AtomicBool,
    connecting: AtomicBool,
}

async fn connect(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

impl RedisLink {
    /// The link for `settings.url`, connected if Redis answers within a
    /// second; `None` when no URL is set or it cannot be used. Never fails
    /// startup: an unreachable Redis is tried again later.
    pub async fn open(settings: &RedisSettings) -> Option<Arc<Self>> {
        let url = settings.url.as_deref().filter(|u| !u.is_empty())?;
        let opened = match &settings.ca_file {
            Some(ca) => match std::fs::read(ca) {
                Ok(root) => redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    },
                ),
                Err(e) => {
                    tracing::error!(error = %e, path = %ca.display(), "redis.ca_file cannot be read; every replica keeps its own counters");
                    return None;
                }
            },
            None => redis::Client::open(url),
        };
        let client = match opened {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "redis.url is not usable; every replica keeps its own counters");
                return None;
            }
        };
        let link = Arc::new(Self {
            client,
            conn: ArcSwapOption::empty(),
            prefix: settings.key_prefix.clone(),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            retry_at: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            connecting: AtomicBool::new(false),
        });
        match tokio::time::timeout(Duration::from_secs(1), connect(&link.client)).await {
            Ok(Ok(conn)) => link.conn.store(Some(Arc::new(conn))),
            Ok(Err(e)) => link.failed(&e.to_string()),
            Err(_) => link.failed("connecting timed out"),
        }
        Some(link)
    }

    /// A connection to call Redis with, unless the link is backing off or
    /// not connected yet (then a connection is made in the background and
    /// the caller falls back for now).
    pub fn conn(self: &Arc<Self>) -> Option<ConnectionManager> {
        if mono_us() < self.retry_at.load(Ordering::Relaxed) {
            return None;
        }
        match self.conn.load_full() {
            Some(c) => Some(c.as_ref().clone()),
            None => {
                self.connect_later();
                None
            }
        }
    }

    /// Run one call within the budget; a failure or a timeout starts the
    /// back-off and is returned as its reason.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        self.call_within(self.timeout, call).await
    }

    /// [`RedisLink::call`] with a budget of its own (a publication that the
    /// answer waits for may take longer than a counter check).
    pub async fn call_within<T>(
        &self,
        budget: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(budget, call).await {
            Ok(Ok(v)) => {
                self.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                let why = e.to_string();
                self.failed(&why);
                Err(why)
            }
            Err(_) => {
                self.failed("timed out");
                Err("timed out".into())
            }
        }
    }

    /// A call failed: rest for [`BACKOFF`]; the first failure is logged.
    pub fn failed(&self, why: &str) {
        self.retry_at
            .store(mono_us() + BACKOFF.as_micros() as u64, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "Redis is not answering; rate limits and login counters are kept by this replica until it does"
            );
        }
    }

    fn answered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again; limits are shared again");
        }
    }

    /// Connect in the background, one attempt at a time.
    fn connect_later(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(1), connect(&me.client)).await {
                Ok(Ok(conn)) => me.conn.store(Some(Arc::new(conn))),
                Ok(Err(e)) => me.failed(&e.to_string()),
                Err(_) => me.failed("connecting timed out"),
            }
            me.connecting.store(false, Ordering::Release);
        });
    }

    /// Whether calls go to Redis now (connected, not backing off).
    pub fn is_up(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed) && self.conn.load().is_some()
    }

    /// `key` under the configured prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The budget of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client, for connections of their own (a subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}
