//! The deny list across gateway replicas.
//!
//! The gateway database is the source of truth: a revocation (an access
//! token at logout, a whole session at logout, refresh-token reuse or an
//! account change) is written there first, and every replica keeps an
//! in-memory mirror that the hot path reads. Two ways bring another
//! replica's revocations into the mirror:
//! - with Redis, the replica that revoked announces `"<key> <exp> <nonce>"`
//!   on the `<key_prefix>revoked` channel; every replica's subscriber adds it
//!   and acknowledges the nonce on `<key_prefix>revoked-ack`. The announcer
//!   waits (up to [`ACK_BUDGET`]) until as many replicas as Redis delivered
//!   the message to have acknowledged it, so when the answer that revoked
//!   leaves, every subscribed replica already refuses the token;
//! - every `revocations.resync_secs`, and whenever the subscription
//!   (re)starts, each replica re-reads the live revocations from the
//!   database, so a message lost while Redis was away is caught up.
//!
//! The channel carries one more message, `"registry <nonce>"`: the service
//! registry changed in the database; each replica re-reads it (the hook
//! startup gives, [`Revocations::on_registry_change`]) and acknowledges the
//! same way, so a registration is routed by every replica before the admin
//! gets the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::identity::sessions::{Denied, Sessions};
use crate::redis_link::RedisLink;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    /// How often each replica re-reads the deny list from the database.
    pub resync_secs: u64,
}

/// How long an announcement waits for the replicas' acknowledgements.
pub const ACK_BUDGET: Duration = Duration::from_secs(1);

/// Announcements waiting for acknowledgements, by nonce.
#[derive(Default)]
struct Acks(Mutex<HashMap<String, (usize, Arc<Notify>)>>);

impl Acks {
    fn expect(&self, nonce: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        if let Ok(mut m) = self.0.lock() {
            m.insert(nonce.to_owned(), (0, notify.clone()));
        }
        notify
    }

    fn count(&self, nonce: &str) -> usize {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(nonce).map(|(n, _)| *n))
            .unwrap_or(0)
    }

    fn acknowledged(&self, nonce: &str) {
        if let Ok(mut m) = self.0.lock()
            && let Some((n, notify)) = m.get_mut(nonce)
        {
            *n += 1;
            notify.notify_waiters();
        }
    }

    fn forget(&self, nonce: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(nonce);
        }
    }
}

/// What a replica does when another announces a registry change.
pub type RegistryHook =
    Arc<dyn Fn() -> futures_util::future::LocalBoxFuture<'static, ()> + Send + Sync>;

/// Announces revocations to the other replicas and follows theirs.
pub struct Revocations {
    link: Option<Arc<RedisLink>>,
    acks: Acks,
    registry_hook: std::sync::OnceLock<RegistryHook>,
}

/// The registry message's first word.
const REGISTRY: &str = "registry";

fn channel(link: &RedisLink) -> String {
    link.key("revoked")
}

fn ack_channel(link: &RedisLink) -> String {
    link.key("revoked-ack")
}

impl Revocations {
    pub fn new(link: Option<Arc<RedisLink>>) -> Self {
        Self {
            link,
            acks: Acks::default(),
            registry_hook: std::sync::OnceLock::new(),
        }
    }

    /// What to do on another replica's registry change (set once, at
    /// startup).
    pub fn on_registry_change(&self, hook: RegistryHook) {
        let _ = self.registry_hook.set(hook);
    }

    /// Announce a registry change already written to the database, and wait
    /// until every replica Redis delivered it to has re-read the registry
    /// (as [`Self::announce`] waits).
    pub async fn announce_registry(&self) -> bool {
        let Some(link) = &self.link else { return true };
        self.publish(link, REGISTRY).await
    }

    /// Announce revocations already written to the database, and wait until
    /// every replica Redis delivered them to has applied them (at most
    /// [`ACK_BUDGET`]); `false` when some did not acknowledge in time (they
    /// catch up at their next resync). Without Redis, nothing to wait for.
    pub async fn announce(&self, denied: &[Denied]) -> bool {
        let Some(link) = &self.link else { return true };
        let mut all = true;
        for d in denied {
            all &= self
                .publish(link, &format!("{} {}", d.key, d.expires_at))
                .await;
        }
        all
    }

    /// Publish `message` with a nonce and wait for the acknowledgements.
    async fn publish(&self, link: &Arc<RedisLink>, message: &str) -> bool {
        let Some(mut conn) = link.conn() else {
            tracing::warn!("Redis is backing off; replicas will catch up from the database");
            return false;
        };
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let landed = self.acks.expect(&nonce);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel(link)).arg(format!("{message} {nonce}"));
        let budget = link.timeout().max(Duration::from_millis(200));
        let receivers = match link
            .call_within(budget, cmd.query_async::<usize>(&mut conn))
            .await
        {
            Ok(n) => n,
            Err(why) => {
                self.acks.forget(&nonce);
                tracing::warn!(reason = %why, "could not announce a change; replicas will catch up from the database");
                return false;
            }
        };
        let deadline = tokio::time::Instant::now() + ACK_BUDGET;
        let done = loop {
            let wait = landed.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if self.acks.count(&nonce) >= receivers {
                break true;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                break self.acks.count(&nonce) >= receivers;
            }
        };
        if !done {
            tracing::warn!(
                receivers,
                acknowledged = self.acks.count(&nonce),
                "not every replica acknowledged a change in time; they catch up from the database"
            );
        }
        self.acks.forget(&nonce);
        done
    }

    /// Start the periodic resync and, with Redis, the subscriber; both end
    /// when the sessions store is dropped.
    pub fn spawn(self: &Arc<Self>, sessions: Weak<Sessions>, every: Duration) {
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
        let Some(link) = self.link.clone() else {
            return;
        };
        let me = Arc::downgrade(self);
        actix_web::rt::spawn(async move { subscribe(me, link, sessions).await });
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

/// Apply a revocation message; its nonce, to acknowledge.
fn apply(sessions: &Sessions, payload: &str) -> Option<String> {
    let mut parts = payload.split(' ');
    let key = parts.next()?;
    let exp = parts.next()?.parse::<i64>().ok()?;
    sessions.deny_local(key, exp);
    parts.next().map(str::to_owned)
}

async fn subscribe(me: Weak<Revocations>, link: Arc<RedisLink>, sessions: Weak<Sessions>) {
    let (client, channel, acks) = (link.client().clone(), channel(&link), ack_channel(&link));
    let mut announced_down = false;
    loop {
        if sessions.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            pubsub.subscribe(&acks).await?;
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
                    if msg.get_channel_name() == acks {
                        if let Some(r) = me.upgrade() {
                            r.acks.acknowledged(&payload);
                        }
                        continue;
                    }
                    if let Some(nonce) = payload
                        .strip_prefix(REGISTRY)
                        .and_then(|rest| rest.strip_prefix(' '))
                    {
                        let hook = me.upgrade().and_then(|r| r.registry_hook.get().cloned());
                        if let Some(hook) = hook {
                            hook().await;
                        }
                        acknowledge(&link, &acks, nonce.to_owned()).await;
                        continue;
                    }
                    match apply(&s, &payload) {
                        Some(nonce) => acknowledge(&link, &acks, nonce).await,
                        None if payload.split(' ').count() == 2 => {}
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
}

async fn acknowledge(link: &Arc<RedisLink>, channel: &str, nonce: String) {
    let Some(mut conn) = link.conn() else { return };
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(nonce);
    let _ = link.call(cmd.query_async::<i64>(&mut conn)).await;
}
