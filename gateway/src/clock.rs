//! The gateway's one clock.
//!
//! Two kinds of time and nothing else: a monotonic reading for durations
//! and deadlines inside the process (rate-limit arrival times, ejection
//! cool-downs, lease expiry), which never jumps when the wall clock is set;
//! and Unix seconds for what crosses the process boundary (token `exp`,
//! `iat`, revocations in the database), which must agree with other hosts.

use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Microseconds since the process first asked, on the monotonic clock;
/// never 0, so 0 can mean "never" in stored readings.
pub fn mono_us() -> u64 {
    start().elapsed().as_micros() as u64 + 1
}

/// Milliseconds on the same monotonic clock as [`mono_us`].
pub fn mono_ms() -> u64 {
    mono_us() / 1000
}

/// Seconds since the Unix epoch, on the wall clock.
pub fn unix_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_readings_agree_and_never_go_back() {
        let a = mono_us();
        let m = mono_ms();
        let b = mono_us();
        assert!(a >= 1 && b >= a);
        assert!(m * 1000 <= b && m * 1000 + 1000 >= a);
        assert!(unix_secs() > 1_700_000_000);
    }
}
