//! What the phases' unit tests share: a resolved configuration from a few
//! lines of JSON, with no server, database or file behind it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::identity::tokens::TokenKeys;
use crate::live::Live;
use crate::settings::NoRoute;
use crate::traffic::compose::table::{ComposedConfig, ComposedTable};
use crate::traffic::routes::{RouteConfig, RouteTable};
use crate::traffic::upstream::pool::{UpstreamConfig, build_all};

/// A snapshot with these routes and composed routes, every one of them on
/// the upstream `users` (one target that nothing listens on).
pub fn live_with(routes: Value, composed: Value) -> Live {
    let routes: Vec<RouteConfig> = serde_json::from_value(routes).unwrap();
    let composed: Vec<ComposedConfig> = serde_json::from_value(composed).unwrap();
    let upstreams = BTreeMap::from([(
        "users".to_owned(),
        UpstreamConfig::Targets(vec!["http://127.0.0.1:9".into()]),
    )]);
    let pair = common::keys::generate_ed25519().unwrap();
    Live {
        tokens: TokenKeys::new(&[], Some(&pair.private_pem), "gatehouse", "api", 5).unwrap(),
        issuers: crate::identity::issuers::Issuers::new(
            &[],
            None,
            crate::traffic::upstream::client::fetch_provider_document,
            5,
        ),
        routes: RouteTable::new(&routes, |u| upstreams.contains_key(u)).unwrap(),
        composed: ComposedTable::new(&composed, |u| upstreams.contains_key(u)).unwrap(),
        upstreams: build_all(&upstreams, &BTreeMap::new(), None).unwrap(),
        no_route: NoRoute {
            status: 404,
            detail: "no route".into(),
        },
        max_body_bytes: 1024,
        forward_claims: Vec::new(),
        claim_headers: Vec::new(),
        claim_names: Vec::new(),
        websocket: Default::default(),
    }
}

/// A header map of these (name, value) pairs, in order (repeats appended).
pub fn headers(pairs: &[(&str, &str)]) -> actix_web::http::header::HeaderMap {
    use actix_web::http::header::{HeaderName, HeaderValue};
    let mut h = actix_web::http::header::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}
