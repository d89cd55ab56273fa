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

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::redis_link::RedisLink;
use crate::sessions::Sessions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    /// How often each replica re-reads the deny list from the database.
    pub resync_secs: u64,
}

fn channel(link: &RedisLink) -> String {
    link.key("revoked")
}

/// Announce a revocation to the other replicas (best effort: they catch up
/// from the database anyway).
pub async fn publish(link: Option<&Arc<RedisLink>>, jti: &str, expires_at: i64) {
    let Some(link) = link else { return };
    let Some(mut conn) = link.conn() else {
        tracing::warn!("Redis is backing off; replicas will catch up from the database");
        return;
    };
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel(link)).arg(format!("{jti} {expires_at}"));
    let budget = link.timeout().max(Duration::from_millis(200));
    if let Err(why) = link
        .call_within(budget, cmd.query_async::<i64>(&mut conn))
        .await
    {
        tracing::warn!(reason = %why, "could not announce a revocation; replicas will catch up from the database");
    }
}

async fn resync(sessions: &Weak<Sessions>) {
    let Some(s) = sessions.upgrade() else { return };
    match s.resync().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(added = n, "deny list caught up from the database"),
        Err(e) => tracing::warn!(error = %e, "could not re-read the deny list"),
    }
}

/// Start the periodic resync and, with Redis, the subscriber; both end when
/// the sessions store is dropped.
pub fn spawn(sessions: Weak<Sessions>, link: Option<Arc<RedisLink>>, every: Duration) {
    let periodic = sessions.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(every).await;
            if periodic.strong_count() == 0 {
                return;
            }
            resync(&periodic).await;
        }
    });
    let Some(link) = link else { return };
    let (client, channel) = (link.client().clone(), channel(&link));
    drop(link);
    actix_web::rt::spawn(async move {
        let mut announced_down = false;
        loop {
            if sessions.strong_count() == 0 {
                return;
            }
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok(mut pubsub)) => {
                    if announced_down {
                        tracing::info!("revocation channel subscribed again");
                        announced_down = false;
                    }
                    // Whatever was announced while we were not listening.
                    resync(&sessions).await;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(s) = sessions.upgrade() else { return };
                        let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                        match payload
                            .split_once(' ')
                            .and_then(|(jti, exp)| Some((jti, exp.parse::<i64>().ok()?)))
                        {
                            Some((jti, exp)) => s.deny_local(jti, exp),
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
