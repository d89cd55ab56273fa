//! The gateway's attempt spans, read back by the OTLP receiver on the
//! official protobuf definitions (testkit::otlp): a retried request shows
//! both attempts, each with its target and number, the first one failed.

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn a_retry_shows_two_attempt_spans() {
    let otlp = testkit::otlp::Receiver::start(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let live = Backend::start("live").await;
    let live_url = live.url();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let dead = closed.clone();
    let endpoint = otlp.http.clone();
    let s = spawn_stack_with(move |l| {
        l.set(
            "upstreams.pair",
            json!({"targets": [dead.clone(), live_url.clone()], "retries": 1,
                   "health_check": {"enabled": false},
                   "passive": {"max_failures": 100, "cooldown_secs": 1}}),
        )
        .set(
            "routes",
            base_routes(json!([{"prefix": "/pair", "upstream": "pair", "access": "public"}])),
        )
        .set(
            "tracing.export",
            json!({"endpoint": endpoint.clone(), "batch_delay_ms": 100}),
        )
    })
    .await;
    // Round robin: at least one of two requests goes to the closed target
    // first.
    let ids: Vec<String> = (0..2)
        .map(|i| format!("retry-{i}-{}", uuid::Uuid::new_v4()))
        .collect();
    for id in &ids {
        let r = read(s.client.get(s.url("/pair/x")).header("x-request-id", id)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["name"], "live");
    }
    let attempts_of = |spans: &[Value], root: &Value| -> Vec<Value> {
        let mut a: Vec<Value> = spans
            .iter()
            .filter(|s| {
                s["trace_id"] == root["trace_id"]
                    && s["kind"] == "SPAN_KIND_CLIENT"
                    && s["parent_span_id"] == root["span_id"]
            })
            .cloned()
            .collect();
        a.sort_by_key(|s| s["attributes"]["gatehouse.attempt"].as_i64());
        a
    };
    let root_of = |spans: &[Value], id: &str| -> Option<Value> {
        spans
            .iter()
            .find(|s| s["attributes"]["gatehouse.request_id"] == id)
            .cloned()
    };
    let spans = otlp
        .wait_for("a request with two attempts", |spans| {
            ids.iter().any(|id| {
                root_of(spans, id).is_some_and(|root| attempts_of(spans, &root).len() == 2)
            })
        })
        .await;
    let root = ids
        .iter()
        .filter_map(|id| root_of(&spans, id))
        .find(|root| attempts_of(&spans, root).len() == 2)
        .unwrap();
    assert_eq!(root["name"], "GET /pair");
    let attempts = attempts_of(&spans, &root);
    let (first, second) = (&attempts[0]["attributes"], &attempts[1]["attributes"]);
    assert_eq!(first["gatehouse.attempt"], 1);
    assert_eq!(first["gatehouse.target"], closed.as_str());
    assert_eq!(first["error.type"], "connect");
    assert_eq!(attempts[0]["status"], "STATUS_CODE_ERROR");
    assert_eq!(second["gatehouse.attempt"], 2);
    assert_eq!(second["http.request.resend_count"], 1);
    assert_eq!(second["gatehouse.target"], live.url().as_str());
    assert_eq!(second["http.response.status_code"], 200);
    assert_eq!(attempts[1]["status"], "STATUS_CODE_UNSET");
}

#[actix_web::test]
async fn the_upstream_gets_the_gateways_traceparent_not_the_clients() {
    let s = spawn_stack().await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = read(
        s.client
            .get(s.url("/public/x"))
            .header(
                "traceparent",
                format!("00-{client_trace}-00f067aa0ba902b7-01"),
            )
            .header("tracestate", "evil=1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = r.body["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {}", r.text));
    // Default `incoming: trusted`, no trusted proxy: a new trace, not
    // sampled (no export), W3C version 00.
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!(parts[0], "00");
    assert_ne!(parts[1], client_trace);
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "00");
    assert!(r.body["headers"]["tracestate"].is_null(), "{}", r.text);
}
