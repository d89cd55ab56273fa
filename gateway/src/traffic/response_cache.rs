//! Response cache for routes marked `cache:`. Only GET answers are kept (a
//! HEAD is answered from them); the key holds the caller's identity, so one
//! user's answer is never served to another. An answer is kept only when the
//! upstream allows it (no `no-store`, `private` or `no-cache`, no
//! `Set-Cookie`, no `Vary: *`), for the route's TTL or the upstream's
//! `max-age` when shorter. Memory is bounded by weight (body + headers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use common::identity::Principal;

/// One stored answer.
#[derive(Debug)]
pub struct Cached {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub stored: Instant,
    pub ttl: Duration,
}

impl Cached {
    fn weight(&self) -> u32 {
        let h: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        u32::try_from(self.body.len() + h + 128).unwrap_or(u32::MAX)
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct ResponseCache {
    entries: moka::sync::Cache<String, Arc<Cached>>,
}

impl ResponseCache {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &String, v: &Arc<Cached>| v.weight())
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.entries.get(key).filter(|c| c.stored.elapsed() < c.ttl)
    }

    pub fn put(&self, key: String, value: Cached) {
        self.entries.insert(key, Arc::new(value));
    }

    /// Approximate bytes held.
    pub fn weight(&self) -> u64 {
        self.entries.weighted_size()
    }
}

/// The cache key: route, path and query, the content negotiation headers
/// and who asks (subject and roles; `-` for an anonymous caller).
pub fn key(
    route: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    who: Option<&Principal>,
) -> String {
    let h = |n: HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let identity = match who {
        Some(Principal::User { id, roles }) => {
            let mut r = roles.clone();
            r.sort();
            format!("{id}:{}", r.join(","))
        }
        Some(Principal::Client { id, roles }) => {
            let mut r = roles.clone();
            r.sort();
            format!("client:{id}:{}", r.join(","))
        }
        Some(Principal::Gateway) => "gateway".to_owned(),
        None => "-".to_owned(),
    };
    format!(
        "{route}\n{path_and_query}\n{}\n{}\n{identity}",
        h(header::ACCEPT),
        h(header::ACCEPT_ENCODING)
    )
}

fn directives(v: Option<&HeaderValue>) -> Vec<String> {
    v.and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The client asked for a fresh answer (`Cache-Control: no-cache|no-store`,
/// `Pragma: no-cache`).
pub fn request_bypasses(headers: &HeaderMap) -> bool {
    directives(headers.get(header::CACHE_CONTROL))
        .iter()
        .any(|d| d == "no-cache" || d == "no-store")
        || directives(headers.get(header::PRAGMA))
            .iter()
            .any(|d| d == "no-cache")
}

/// How long an upstream answer may be kept; `None` when it must not be.
pub fn storable_for(status: u16, headers: &HeaderMap, route_ttl: Duration) -> Option<Duration> {
    if status != 200 || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let vary = directives(headers.get(header::VARY));
    if vary.iter().any(|v| v != "accept" && v != "accept-encoding") {
        return None;
    }
    let mut ttl = route_ttl;
    for d in directives(headers.get(header::CACHE_CONTROL)) {
        if d == "no-store" || d == "private" || d == "no-cache" {
            return None;
        }
        let age = d
            .strip_prefix("s-maxage=")
            .or_else(|| d.strip_prefix("max-age="))
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok());
        if let Some(secs) = age {
            ttl = ttl.min(Duration::from_secs(secs));
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn storable_follows_the_upstream() {
        let ttl = Duration::from_secs(60);
        assert_eq!(storable_for(200, &map(&[]), ttl), Some(ttl));
        assert_eq!(
            storable_for(200, &map(&[("cache-control", "public, max-age=5")]), ttl),
            Some(Duration::from_secs(5))
        );
        for cc in [
            "no-store",
            "private",
            "no-cache",
            "max-age=0",
            "Private, max-age=9",
        ] {
            let h = {
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
                h
            };
            assert_eq!(storable_for(200, &h, ttl), None, "{cc}");
        }
        assert_eq!(storable_for(200, &map(&[("set-cookie", "a=b")]), ttl), None);
        assert_eq!(storable_for(200, &map(&[("vary", "*")]), ttl), None);
        assert_eq!(
            storable_for(200, &map(&[("vary", "Accept-Encoding")]), ttl),
            Some(ttl)
        );
        assert_eq!(storable_for(404, &map(&[]), ttl), None);
        assert!(request_bypasses(&map(&[("cache-control", "no-cache")])));
        assert!(request_bypasses(&map(&[("pragma", "no-cache")])));
        assert!(!request_bypasses(&map(&[("cache-control", "max-age=3")])));
    }

    #[test]
    fn keys_separate_callers_and_memory_is_bounded() {
        let a = Principal::User {
            id: Uuid::new_v4(),
            roles: vec!["user".into()],
        };
        let b = Principal::User {
            id: Uuid::new_v4(),
            roles: vec!["user".into()],
        };
        let h = HeaderMap::new();
        assert_ne!(key("/r", "/p", &h, Some(&a)), key("/r", "/p", &h, Some(&b)));
        assert_ne!(key("/r", "/p", &h, Some(&a)), key("/r", "/p", &h, None));
        assert_ne!(key("/r", "/p?x", &h, None), key("/r", "/p", &h, None));

        let cache = ResponseCache::new(64 * 1024);
        for i in 0..200 {
            cache.put(
                format!("k{i}"),
                Cached {
                    status: 200,
                    headers: Vec::new(),
                    body: Bytes::from(vec![0u8; 4096]),
                    stored: Instant::now(),
                    ttl: Duration::from_secs(60),
                },
            );
        }
        cache.entries.run_pending_tasks();
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        cache.put(
            "short".into(),
            Cached {
                status: 200,
                headers: Vec::new(),
                body: Bytes::new(),
                stored: Instant::now() - Duration::from_secs(2),
                ttl: Duration::from_secs(1),
            },
        );
        assert!(
            cache.get("short").is_none(),
            "expired entries are never served"
        );
    }
}
