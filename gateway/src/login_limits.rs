//! Login failure limits: per username and per client IP, a fixed window of
//! failures followed by a short lockout. Short enough that an attacker cannot
//! keep a real user out for long; strict enough to make guessing slow.
//!
//! With Redis (the gateway's [`RedisLink`]), failures count across every
//! replica. They are always counted locally too, so a Redis outage falls
//! back to this replica's own counters, never to no limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::redis_link::RedisLink;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
}

struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

pub struct FailureLimiter {
    /// `user` or `ip`: part of the shared keys.
    name: &'static str,
    /// [`FAILURE_SCRIPT`], hashed once.
    script: redis::Script,
    settings: LimitSettings,
    entries: Mutex<HashMap<String, Entry>>,
}

/// One failure in the shared window: the first starts the window, the
/// budget's last locks the key for the lockout.
const FAILURE_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
return n
";

const MAX_KEYS: usize = 100_000;

impl FailureLimiter {
    pub fn new(name: &'static str, settings: LimitSettings) -> Self {
        Self {
            name,
            script: redis::Script::new(FAILURE_SCRIPT),
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn shared_keys(&self, link: &RedisLink, key: &str) -> [String; 2] {
        // Usernames come from request bodies: long ones are hashed.
        let hashed;
        let key = if key.len() > 128 {
            use sha2::Digest;
            hashed = format!("sha256-{:x}", sha2::Sha256::digest(key.as_bytes()));
            hashed.as_str()
        } else {
            key
        };
        [
            link.key(&format!("login:{}:{key}:failures", self.name)),
            link.key(&format!("login:{}:{key}:locked", self.name)),
        ]
    }

    /// [`FailureLimiter::check`] across replicas when `link` is given.
    pub async fn check_in(&self, link: Option<&Arc<RedisLink>>, key: &str) -> Result<(), u64> {
        if let Some(link) = link
            && let Some(mut conn) = link.conn()
        {
            let [_, locked] = self.shared_keys(link, key);
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(locked);
            match link.call(cmd.query_async::<i64>(&mut conn)).await {
                Ok(ms) if ms > 0 => return Err((ms as u64).div_ceil(1000)),
                Ok(_) => return Ok(()),
                Err(why) => {
                    tracing::warn!(reason = %why, "login limits: Redis failed; counting locally")
                }
            }
        }
        self.check(key)
    }

    /// [`FailureLimiter::failure`], and in Redis when `link` is given.
    pub async fn failure_in(&self, link: Option<&Arc<RedisLink>>, key: &str) {
        self.failure(key);
        if let Some(link) = link
            && let Some(mut conn) = link.conn()
        {
            let [failures, locked] = self.shared_keys(link, key);
            let mut call = self.script.key(failures);
            call.key(locked)
                .arg(self.settings.window_secs * 1000)
                .arg(self.settings.max_failures)
                .arg(self.settings.lockout_secs * 1000);
            if link
                .call(call.invoke_async::<i64>(&mut conn))
                .await
                .is_err()
            {
                tracing::warn!("login limits: a failure could not be counted in Redis");
            }
        }
    }

    /// [`FailureLimiter::reset`], and in Redis when `link` is given.
    pub async fn reset_in(&self, link: Option<&Arc<RedisLink>>, key: &str) {
        self.reset(key);
        if let Some(link) = link
            && let Some(mut conn) = link.conn()
        {
            let [failures, _] = self.shared_keys(link, key);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(failures);
            let _ = link.call(cmd.query_async::<i64>(&mut conn)).await;
        }
    }

    /// `Err(seconds)` while the key is locked out.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(entries) = self.entries.lock() else {
            return Err(self.settings.lockout_secs);
        };
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err((until - now).as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Count a failure; locks the key when the window's budget is spent.
    pub fn failure(&self, key: &str) {
        let now = Instant::now();
        let window = Duration::from_secs(self.settings.window_secs);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_KEYS {
            entries.retain(|_, e| {
                now.duration_since(e.window_start) < window
                    || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        });
        if now.duration_since(e.window_start) >= window || e.locked_until.is_some_and(|u| u <= now)
        {
            *e = Entry {
                failures: 0,
                window_start: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.settings.max_failures {
            e.locked_until = Some(now + Duration::from_secs(self.settings.lockout_secs));
        }
    }

    /// A success clears the key.
    pub fn reset(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_budget_and_resets_on_success() {
        let l = FailureLimiter::new(
            "user",
            LimitSettings {
                max_failures: 3,
                window_secs: 60,
                lockout_secs: 30,
            },
        );
        for _ in 0..2 {
            l.failure("a");
            assert!(l.check("a").is_ok());
        }
        l.failure("a");
        let retry = l.check("a").err();
        assert!(retry.is_some_and(|s| (1..=30).contains(&s)), "{retry:?}");
        assert!(l.check("b").is_ok(), "keys are independent");
        l.reset("a");
        assert!(l.check("a").is_ok());
    }
}
