//! Login failure limits: per username and per client IP, a fixed window of
//! failures followed by a short lockout. Short enough that an attacker cannot
//! keep a real user out for long; strict enough to make guessing slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

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
    settings: LimitSettings,
    entries: Mutex<HashMap<String, Entry>>,
}

const MAX_KEYS: usize = 100_000;

impl FailureLimiter {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
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
        let l = FailureLimiter::new(LimitSettings {
            max_failures: 3,
            window_secs: 60,
            lockout_secs: 30,
        });
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
