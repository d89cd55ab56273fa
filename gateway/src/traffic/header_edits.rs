//! Header edits on routes (`request_headers`, `response_headers`): what a
//! route adds to or removes from the request it forwards and the answer it
//! returns, checked when the configuration loads so that no edit can touch
//! a header the gateway sets itself (the identity headers,
//! `Authorization`, `Host`).

use std::collections::BTreeMap;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// Header edits: `remove` first, then `add` (which replaces).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Resolved header edits.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub(crate) fn from_config(c: &HeaderRules, what: &str) -> Result<Self, String> {
        let name = |n: &str| {
            let lower = n.to_ascii_lowercase();
            if common::identity::IDENTITY_HEADERS.contains(&lower.as_str())
                || lower == "authorization"
                || lower == "host"
            {
                return Err(format!(
                    "{what}: `{n}` is set by the gateway itself and cannot be configured"
                ));
            }
            HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("{what}: `{n}` is not a header name"))
        };
        let mut edits = HeaderEdits::default();
        for n in &c.remove {
            edits.remove.push(name(n)?);
        }
        for (n, v) in &c.add {
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("{what}: the value of `{n}` is not a valid header value"))?;
            edits.add.push((name(n)?, value));
        }
        Ok(edits)
    }

    /// Apply to a header map.
    pub fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.add {
            h.insert(n.clone(), v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_edits_refuse_identity_headers() {
        let edits = |v: serde_json::Value| {
            HeaderEdits::from_config(
                &serde_json::from_value::<HeaderRules>(v).unwrap(),
                "request_headers",
            )
        };
        let e = edits(serde_json::json!({"add": {"request-user-id": "x"}}))
            .err()
            .unwrap_or_default();
        assert!(e.contains("set by the gateway"), "{e}");
        let r = edits(serde_json::json!({"add": {"x-a": "1"}, "remove": ["cookie"]})).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("cookie"),
            HeaderValue::from_static("c"),
        );
        r.apply(&mut h);
        assert!(h.get("cookie").is_none());
        assert_eq!(h.get("x-a").map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
}
