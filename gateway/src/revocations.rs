//! The access-token deny list across gateway replicas.
//!
//! The gateway database is the source of truth: a logout writes the
//! revocation there first, and every replica keeps an in-memory mirror that
//! the hot path reads. Two ways bring another replica's logouts into the
//! mirror:
//! - with Redis, the replica that revoked publishes `"<jti> <exp>"` on the
//!   `<key_prefix>revoked` channel before it answers the logout, and every
//!   replica's subscriber adds it at once;
//! - every `revocations.resync_secs`, and whenever the subscription
//!   (re)starts, each replica re-reads the live revocations from the
//!   database, so a message lost while Redis was away is caught up.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::state::Gateway;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    /// How often each replica re-reads the deny list from the database.
    pub resync_secs: u64,
}

fn channel(prefix: &str) -> String {
    format!("{prefix}revoked")
}

/// Announce a revocation to the other replicas (best effort: they catch up
/// from the database anyway).
pub async fn publish(gw: &Gateway, jti: &str, expires_at: i64) {
    let Some(shared) = gw.limiter.shared() else {
        return;
    };
    let mut conn = shared.conn.clone();
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel(&shared.prefix))
        .arg(format!("{jti} {expires_at}"));
    let sent = cmd.query_async::<i64>(&mut conn);
    match tokio::time::timeout(shared.timeout.max(Duration::from_millis(200)), sent).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not announce a revocation; replicas will catch up from the database")
        }
        Err(_) => tracing::warn!(
            "announcing a revocation timed out; replicas will catch up from the database"
        ),
    }
}

async fn resync(gw: &Weak<Gateway>) {
    let Some(g) = gw.upgrade() else { return };
    match g.sessions.resync().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(added = n, "deny list caught up from the database"),
        Err(e) => tracing::warn!(error = %e, "could not re-read the deny list"),
    }
}

/// Start the periodic resync and, with Redis, the subscriber.
pub fn spawn(gw: Weak<Gateway>, every: Duration) {
    let periodic = gw.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(every).await;
            if periodic.strong_count() == 0 {
                return;
            }
            resync(&periodic).await;
        }
    });
    let Some((client, prefix)) = gw.upgrade().and_then(|g| g.limiter.redis_client()) else {
        return;
    };
    actix_web::rt::spawn(async move {
        let mut announced_down = false;
        loop {
            if gw.strong_count() == 0 {
                return;
            }
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel(&prefix)).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok(mut pubsub)) => {
                    if announced_down {
                        tracing::info!("revocation channel subscribed again");
                        announced_down = false;
                    }
                    // Whatever was announced while we were not listening.
                    resync(&gw).await;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(g) = gw.upgrade() else { return };
                        let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                        match payload
                            .split_once(' ')
                            .and_then(|(jti, exp)| Some((jti, exp.parse::<i64>().ok()?)))
                        {
                            Some((jti, exp)) => g.sessions.deny_local(jti, exp),
                            None => tracing::warn!(%payload, "malformed revocation message"),
                        }
                    }
                }
                Ok(Err(e)) if !announced_down => {
                    tracing::warn!(error = %e, "cannot subscribe to the revocation channel; relying on the database resync");
                    announced_down = true;
                }
                Err(_) if !announced_down => {
                    tracing::warn!(
                        "subscribing to the revocation channel timed out; relying on the database resync"
                    );
                    announced_down = true;
                }
                _ => {}
            }
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
