//! Quotas and the GCRA step: pure arithmetic, no store. A quota of N per
//! period with a burst B becomes one cell per emission interval
//! (period / N) and a tolerance of B cells; [`gcra`] turns a key's
//! theoretical arrival time (TAT) and the time now into a decision.

use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// `rate_limit:` on a route, e.g. `{rate: 10/s, burst: 20, by: user}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `N/s`, `N/m` or `N/h`.
    pub rate: String,
    /// Requests allowed at once; default N.
    #[serde(default)]
    pub burst: Option<u32>,
    /// `user` (the token's subject; the client IP on public routes) or `ip`.
    #[serde(default)]
    pub by: LimitBy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    #[default]
    User,
    Ip,
}

/// A parsed quota: one request per `emission_us`, `burst` at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    pub(super) emission_us: u64,
    pub(super) burst: u32,
    count: u32,
    unit: char,
}

impl Quota {
    pub fn from_config(c: &RateLimitConfig) -> Result<Quota, String> {
        let bad = || format!("rate `{}`: expected N/s, N/m or N/h", c.rate);
        let (n, unit) = c.rate.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let (unit, period_us): (char, u64) = match unit.trim() {
            "s" => ('s', 1_000_000),
            "m" => ('m', 60_000_000),
            "h" => ('h', 3_600_000_000),
            _ => return Err(bad()),
        };
        if count == 0 || count > 1_000_000 {
            return Err(format!("rate `{}`: N must be 1 to 1000000", c.rate));
        }
        let burst = c.burst.unwrap_or(count);
        if burst == 0 || burst > 1_000_000 {
            return Err(format!("burst {burst}: must be 1 to 1000000"));
        }
        Ok(Quota {
            emission_us: (period_us / u64::from(count)).max(1),
            burst,
            count,
            unit,
        })
    }

    /// e.g. `10/s burst 20`.
    pub fn describe(&self) -> String {
        format!("{}/{} burst {}", self.count, self.unit, self.burst)
    }

    pub(super) fn tolerance_us(&self) -> u64 {
        self.emission_us * u64::from(self.burst)
    }

    /// Seconds in which a full burst drains back.
    fn window_secs(&self) -> u64 {
        self.tolerance_us().div_ceil(1_000_000).max(1)
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow {
        remaining: u32,
        reset_after: Duration,
    },
    Deny {
        retry_after: Duration,
        reset_after: Duration,
    },
}

fn secs_up(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft, structured
    /// fields), plus `Retry-After` when denied.
    pub fn headers(&self, quota: &Quota, policy: &str) -> Vec<(HeaderName, HeaderValue)> {
        let (remaining, reset) = match self {
            Decision::Allow {
                remaining,
                reset_after,
            } => (*remaining, secs_up(*reset_after)),
            Decision::Deny { reset_after, .. } => (0, secs_up(*reset_after)),
        };
        let mut out = Vec::with_capacity(3);
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), v));
            }
        };
        put(
            "ratelimit-policy",
            format!("\"{policy}\";q={};w={}", quota.burst, quota.window_secs()),
        );
        put("ratelimit", format!("\"{policy}\";r={remaining};t={reset}"));
        if let Decision::Deny { retry_after, .. } = self {
            put("retry-after", secs_up(*retry_after).max(1).to_string());
        }
        out
    }
}

/// One GCRA step: the decision and, when allowed, the key's new TAT.
/// `tat` is 0 for an unknown key; times in microseconds.
pub(super) fn gcra(tat: u64, now: u64, q: &Quota) -> (Decision, Option<u64>) {
    let tat = tat.max(now);
    let new_tat = tat + q.emission_us;
    // Signed: early in the clock's life `new_tat - tolerance` is below zero.
    let allow_at = i128::from(new_tat) - i128::from(q.tolerance_us());
    let now_i = i128::from(now);
    if allow_at > now_i {
        return (
            Decision::Deny {
                retry_after: Duration::from_micros((allow_at - now_i) as u64),
                reset_after: Duration::from_micros(tat - now),
            },
            None,
        );
    }
    let remaining =
        ((now_i - allow_at) / i128::from(q.emission_us)).min(i128::from(q.burst - 1)) as u32;
    (
        Decision::Allow {
            remaining,
            reset_after: Duration::from_micros(new_tat - now),
        },
        Some(new_tat),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;

    /// A quota from its configured text (tests of the whole module use it).
    pub(in crate::traffic::ratelimit) fn quota(rate: &str, burst: Option<u32>) -> Quota {
        Quota::from_config(&RateLimitConfig {
            rate: rate.into(),
            burst,
            by: LimitBy::User,
        })
        .unwrap()
    }

    #[test]
    fn config_parsing() {
        let q = quota("10/s", Some(20));
        assert_eq!(q.describe(), "10/s burst 20");
        assert_eq!(q.emission_us, 100_000);
        assert_eq!(quota("3/m", None).describe(), "3/m burst 3");
        for bad in ["abc", "10", "10/d", "0/s", "-1/s", "1.5/s", "/s"] {
            let e = Quota::from_config(&RateLimitConfig {
                rate: bad.into(),
                burst: None,
                by: LimitBy::Ip,
            })
            .unwrap_err();
            assert!(e.contains("rate"), "{bad}: {e}");
        }
        assert!(
            Quota::from_config(&RateLimitConfig {
                rate: "1/s".into(),
                burst: Some(0),
                by: LimitBy::Ip
            })
            .is_err()
        );
    }

    #[test]
    fn gcra_is_right_at_the_start_of_the_clock() {
        let q = quota("3/m", None);
        let (d, _) = gcra(0, 5, &q);
        assert!(matches!(d, Decision::Allow { remaining: 2, .. }), "{d:?}");
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let q = quota("1/s", Some(3));
        let t0 = 1_000_000_000;
        let mut tat = 0;
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let (d, new) = gcra(tat, t0, &q);
            let Decision::Allow { remaining: r, .. } = d else {
                panic!("{d:?}")
            };
            remaining.push(r);
            tat = new.unwrap();
        }
        assert_eq!(remaining, [2, 1, 0]);
        let (d, new) = gcra(tat, t0, &q);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: Duration::from_secs(1),
                reset_after: Duration::from_secs(3)
            }
        );
        assert!(new.is_none(), "a denied request costs nothing");
        // 0.5 s later: still denied, half a second to wait.
        let (d, _) = gcra(tat, t0 + 500_000, &q);
        assert!(
            matches!(d, Decision::Deny { retry_after, .. } if retry_after == Duration::from_millis(500))
        );
        // 1 s later: exactly one more.
        let (d, new) = gcra(tat, t0 + 1_000_000, &q);
        assert!(matches!(d, Decision::Allow { remaining: 0, .. }), "{d:?}");
        tat = new.unwrap();
        assert!(!gcra(tat, t0 + 1_000_000, &q).0.is_allowed());
        // Idle long enough: the full burst again.
        let (d, _) = gcra(tat, t0 + 60_000_000, &q);
        assert!(matches!(d, Decision::Allow { remaining: 2, .. }), "{d:?}");
    }

    #[test]
    fn headers_follow_the_draft() {
        let q = quota("3/m", Some(3));
        let allow = Decision::Allow {
            remaining: 2,
            reset_after: Duration::from_secs(20),
        };
        let h: Vec<(String, String)> = allow
            .headers(&q, "route")
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            h,
            [
                (
                    "ratelimit-policy".to_owned(),
                    "\"route\";q=3;w=60".to_owned()
                ),
                ("ratelimit".to_owned(), "\"route\";r=2;t=20".to_owned())
            ]
        );
        let deny = Decision::Deny {
            retry_after: Duration::from_millis(19_200),
            reset_after: Duration::from_millis(59_200),
        };
        let h = deny.headers(&q, "route");
        assert_eq!(h[1].1, "\"route\";r=0;t=60");
        assert_eq!(h[2].0, "retry-after");
        assert_eq!(h[2].1, "20");
    }
}
