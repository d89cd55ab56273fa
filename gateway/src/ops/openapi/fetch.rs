//! The services' own documents, fetched from the running services through
//! the upstream client, the last good one of each kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::clock::mono_ms;
use crate::traffic::compose::table::ComposedTable;
use crate::traffic::routes::RouteTable;
use crate::traffic::upstream::client::{self, Accounting, Body, Call, Peer, RetryPolicy};
use crate::traffic::upstream::pool::Upstream;

/// `openapi:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSettings {
    /// How often the services' documents are fetched again.
    pub refresh_secs: u64,
    /// Budget of one fetch.
    pub fetch_timeout_ms: u64,
}

/// The last good document of each upstream, and how the last fetch went.
#[derive(Default)]
pub struct ServiceDocs(RwLock<BTreeMap<String, Fetched>>);

#[derive(Clone, Default)]
struct Fetched {
    doc: Option<Arc<Value>>,
    fetched_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl ServiceDocs {
    fn record(&self, upstream: &str, outcome: Result<Value, String>) {
        let Ok(mut all) = self.0.write() else { return };
        let entry = all.entry(upstream.to_owned()).or_default();
        match outcome {
            Ok(doc) => {
                if entry.error.is_some() || entry.doc.is_none() {
                    tracing::info!(upstream, "service OpenAPI document fetched");
                }
                entry.doc = Some(Arc::new(doc));
                entry.fetched_at = Some(Utc::now());
                entry.error = None;
            }
            Err(e) => {
                if entry.error.is_none() {
                    tracing::warn!(upstream, error = %e, "cannot fetch the service's OpenAPI document; keeping the last good one");
                }
                entry.error = Some(e);
            }
        }
    }

    /// The documents, and a status line per upstream.
    pub fn snapshot(&self) -> (BTreeMap<String, Arc<Value>>, Value) {
        let Ok(all) = self.0.read() else {
            return (BTreeMap::new(), json!({}));
        };
        let docs = all
            .iter()
            .filter_map(|(n, f)| f.doc.clone().map(|d| (n.clone(), d)))
            .collect();
        let status = all
            .iter()
            .map(|(n, f)| {
                let state = match (&f.doc, &f.error) {
                    (Some(_), None) => "current",
                    (Some(_), Some(_)) => "stale",
                    (None, _) => "missing",
                };
                (
                    n.clone(),
                    json!({"state": state, "fetched_at": f.fetched_at, "error": f.error}),
                )
            })
            .collect::<Map<_, _>>();
        (docs, Value::Object(status))
    }
}

/// Upstreams the public API reaches (routes and composed parts).
pub fn published_upstreams(routes: &RouteTable, composed: &ComposedTable) -> BTreeSet<String> {
    routes
        .routes()
        .iter()
        .map(|r| r.upstream.clone())
        .chain(
            composed
                .all()
                .flat_map(|c| c.parts.iter().map(|(_, p)| p).chain(c.fan_out.iter()))
                .map(|p| p.upstream.clone()),
        )
        .collect()
}

/// One upstream's document, from the first target in rotation that serves
/// a valid one.
async fn fetch(up: &Upstream, timeout: Duration) -> Result<Value, String> {
    let mut last = "no target in rotation".to_owned();
    let now = mono_ms();
    for target in up.targets().into_iter().filter(|t| t.available(now)) {
        let base = target.url.clone();
        let call = Call {
            upstream: up,
            peer: Peer::Fixed(target),
            method: Method::GET,
            path: "/openapi.json",
            timeout,
            retry: RetryPolicy::never(),
            accounting: Accounting::Untracked,
            body: Body::Empty,
        };
        let accept = || {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            Ok(h)
        };
        let mut answer = match client::send(call, &accept).await {
            Ok(a) => a,
            Err(e) => {
                last = format!("{base}: {}", e.cause);
                continue;
            }
        };
        let res = &mut answer.response;
        if !res.status().is_success() {
            last = format!("{base}: status {}", res.status());
            continue;
        }
        let doc = match res.body().limit(8 * 1024 * 1024).await {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match doc {
            Ok(d) if d["openapi"].is_string() && d["paths"].is_object() => return Ok(d),
            Ok(_) => last = format!("{base}: not an OpenAPI document"),
            Err(e) => last = format!("{base}: {e}"),
        }
    }
    Err(last)
}

/// Fetch the documents of the upstreams `published` returns now, and then
/// every `refresh_secs`, into `docs`, for as long as `published` returns
/// any (`None`: the gateway is gone).
pub fn spawn(
    docs: Arc<ServiceDocs>,
    settings: OpenApiSettings,
    published: impl Fn() -> Option<Vec<Arc<Upstream>>> + 'static,
) {
    actix_web::rt::spawn(async move {
        let timeout = Duration::from_millis(settings.fetch_timeout_ms);
        loop {
            let Some(upstreams) = published() else { return };
            let results = futures_util::future::join_all(
                upstreams
                    .iter()
                    .map(|up| async move { (up.name.clone(), fetch(up, timeout).await) }),
            )
            .await;
            for (name, outcome) in results {
                docs.record(&name, outcome);
            }
            actix_web::rt::time::sleep(Duration::from_secs(settings.refresh_secs)).await;
        }
    });
}
