//! Scans in progress per caller, capped (`scan.max_concurrent_per_user`):
//! one caller cannot keep a replica's scan capacity busy. A scan over the
//! cap is refused with 429 at once; the count is this replica's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

#[derive(Debug)]
pub struct InFlight {
    cap: usize,
    running: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// A scan's place; frees it when dropped.
#[derive(Debug)]
pub struct Slot {
    user: Uuid,
    running: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.running.lock()
            && let Some(n) = m.get_mut(&self.user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

impl InFlight {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A place for one more of `user`'s scans, if the cap allows it.
    pub fn enter(&self, user: Uuid) -> Option<Slot> {
        let mut m = self.running.lock().ok()?;
        let n = m.entry(user).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            user,
            running: self.running.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_cap() {
        let f = InFlight::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let one = f.enter(a);
        let two = f.enter(a);
        assert!(one.is_some() && two.is_some());
        assert!(f.enter(a).is_none());
        assert!(f.enter(b).is_some(), "another caller is not held back");
        drop(one);
        assert!(f.enter(a).is_some(), "a finished scan frees its place");
    }
}
