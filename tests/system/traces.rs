//! Distributed traces, read back by an OTLP receiver on the official
//! OpenTelemetry protobuf definitions (testkit::otlp): one request through
//! the gateway is one connected trace across the gateway's phases, the
//! service's handler and its database queries; an incoming `traceparent`
//! is continued; gRPC export works like HTTP; a collector that never
//! answers costs requests nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn receiver() -> testkit::otlp::Receiver {
    testkit::otlp::Receiver::start(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// A system whose every service exports to `endpoint` over `protocol`,
/// sampling everything, with `gateway` applied to the gateway's settings.
async fn traced(
    endpoint: &str,
    protocol: &'static str,
    gateway: impl Fn(common::config::Loader) -> common::config::Loader + 'static,
) -> System {
    let export = json!({"endpoint": endpoint, "protocol": protocol, "batch_delay_ms": 100});
    let for_services = export.clone();
    System::start_with(Options {
        gateway: Box::new(move |l| gateway(l.set("tracing.export", export.clone()))),
        services: Box::new(move |l| l.set("tracing.export", for_services.clone())),
        ..Options::default()
    })
    .await
}

fn by_service<'a>(spans: &'a [Value], service: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["service"] == service).collect()
}

fn the<'a>(spans: &'a [Value], what: impl Fn(&Value) -> bool, name: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| what(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {name} in {}",
        serde_json::to_string_pretty(spans).unwrap()
    );
    found[0]
}

/// The gateway's server span of the request with this id.
fn request_span<'a>(spans: &'a [Value], request_id: &str) -> Option<&'a Value> {
    spans.iter().find(|s| {
        s["service"] == "gateway"
            && s["kind"] == "SPAN_KIND_SERVER"
            && s["attributes"]["gatehouse.request_id"] == request_id
    })
}

#[actix_web::test]
async fn one_request_through_the_gateway_is_one_connected_trace() {
    let otlp = receiver();
    let s = traced(&otlp.http, "http/protobuf", |l| l).await;
    let admin = s.admin().await;
    let (alice_id, alice) = s.user(&admin, "alice").await;
    let request_id = format!("trace-test-{}", uuid::Uuid::new_v4());
    let r = testkit::http::read(
        s.client
            .post(format!("{}/api/orders", s.gw))
            .bearer_auth(&alice)
            .header("x-request-id", &request_id)
            .json(&json!({"item": "widget", "quantity": 2, "address": "1 Main St"})),
    )
    .await;
    r.ok(201);
    let spans = otlp
        .wait_for("the order's trace", |spans| {
            // Each service exports in its own batches: wait for the last
            // span of each (the gateway's attempt, orders' handler).
            request_span(spans, &request_id).is_some_and(|root| {
                let of = |service: &str, kind: &str| {
                    spans.iter().any(|s| {
                        s["trace_id"] == root["trace_id"]
                            && s["service"] == service
                            && s["kind"] == kind
                    })
                };
                of("gateway", "SPAN_KIND_CLIENT") && of("orders", "SPAN_KIND_SERVER")
            })
        })
        .await;
    let root = request_span(&spans, &request_id).unwrap().clone();
    let trace_id = root["trace_id"].as_str().unwrap().to_owned();
    // Spans that ended earlier have gone out in earlier batches; a last
    // moment for any straggler.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let trace = otlp.trace(&trace_id);

    // The gateway: its server span is the root, named after the route.
    assert_eq!(root["parent_span_id"], "", "{root}");
    assert_eq!(root["name"], "POST /api/orders");
    assert_eq!(root["protocol"], "http/protobuf");
    let a = &root["attributes"];
    assert_eq!(a["http.request.method"], "POST");
    assert_eq!(a["http.route"], "/api/orders");
    assert_eq!(a["http.response.status_code"], 201);
    assert_eq!(a["url.path"], "/api/orders");
    assert!(a["server.address"].is_string(), "{a}");
    // user.id is hashed, never the id itself.
    let user = a["user.id"].as_str().unwrap();
    assert_eq!(user.len(), 32);
    assert!(!user.contains(&alice_id[..8]), "{user}");
    let text = serde_json::to_string(&trace).unwrap();
    for secret in [alice.as_str(), "alice-password-0123", "1 Main St"] {
        assert!(!text.contains(secret), "a span carries {secret}");
    }

    // Its phases, children of the root.
    let gateway = by_service(&trace, "gateway");
    let root_id = root["span_id"].as_str().unwrap();
    for phase in ["admission", "rate_limit", "response"] {
        let span = the(
            &trace,
            |s| s["service"] == "gateway" && s["name"] == phase,
            phase,
        );
        assert_eq!(span["parent_span_id"], root_id, "{phase}: {span}");
    }
    // One attempt, a client span under the root, to the orders target.
    let attempts: Vec<&&Value> = gateway
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_CLIENT")
        .collect();
    assert_eq!(attempts.len(), 1, "{gateway:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt["parent_span_id"], root_id);
    assert_eq!(attempt["name"], "POST");
    let aa = &attempt["attributes"];
    assert_eq!(aa["gatehouse.upstream"], "orders");
    assert_eq!(aa["gatehouse.attempt"], 1);
    assert_eq!(aa["http.response.status_code"], 201);
    assert_eq!(aa["server.address"], "127.0.0.1");
    assert!(
        aa["url.full"].as_str().unwrap().ends_with("/orders"),
        "{aa}"
    );

    // Orders continued the trace: its server span is the attempt's child,
    // and its database queries are the handler's.
    let orders = by_service(&trace, "orders");
    let handler = the(
        &trace,
        |s| s["service"] == "orders" && s["kind"] == "SPAN_KIND_SERVER",
        "orders handler",
    );
    assert_eq!(handler["parent_span_id"], attempt["span_id"]);
    assert_eq!(handler["name"], "POST /orders");
    assert_eq!(handler["attributes"]["http.route"], "/orders");
    let queries: Vec<&&Value> = orders
        .iter()
        .filter(|s| s["attributes"]["db.system.name"].is_string())
        .collect();
    assert!(!queries.is_empty(), "{orders:#?}");
    let insert = queries
        .iter()
        .find(|q| q["attributes"]["db.operation.name"] == "INSERT")
        .unwrap_or_else(|| panic!("no INSERT among {queries:#?}"));
    assert_eq!(insert["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(insert["parent_span_id"], handler["span_id"]);
    let system = insert["attributes"]["db.system.name"].as_str().unwrap();
    assert!(matches!(system, "sqlite" | "postgresql"), "{system}");
    let sql = insert["attributes"]["db.query.text"].as_str().unwrap();
    assert!(sql.contains("INSERT INTO"), "{sql}");
    assert!(!sql.contains("widget"), "values stay out: {sql}");

    // Connected: every span but the root has its parent in the trace.
    let ids: Vec<&str> = trace
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    for span in &trace {
        let parent = span["parent_span_id"].as_str().unwrap();
        assert!(
            parent.is_empty() && span["span_id"] == root_id || ids.contains(&parent),
            "{span} hangs loose"
        );
    }
    assert!(
        trace.iter().all(|s| s["trace_id"] == trace_id.as_str()),
        "one trace"
    );

    // A login: the users service's argon2 verify is in the login's trace.
    let login_id = format!("login-{}", uuid::Uuid::new_v4());
    let r = testkit::http::read(
        s.client
            .post(format!("{}/api/login", s.gw))
            .header("x-request-id", &login_id)
            .json(&json!({"username": "alice", "password": "alice-password-0123"})),
    )
    .await;
    r.ok(200);
    let spans = otlp
        .wait_for("the login's argon2 span", |spans| {
            request_span(spans, &login_id).is_some_and(|root| {
                spans.iter().any(|s| {
                    s["trace_id"] == root["trace_id"]
                        && s["service"] == "users"
                        && s["name"] == "argon2 verify"
                })
            })
        })
        .await;
    let login = request_span(&spans, &login_id).unwrap();
    assert_eq!(login["name"], "POST /api/login");
}

#[actix_web::test]
async fn an_incoming_traceparent_is_continued_and_named_in_problems() {
    let otlp = receiver();
    let s = traced(&otlp.http, "http/protobuf", |l| {
        l.set("tracing.incoming", "continue")
    })
    .await;
    let admin = s.admin().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = testkit::http::read(
        s.client
            .get(format!("{}/api/orders", s.gw))
            .bearer_auth(&admin)
            .header("traceparent", format!("00-{trace_id}-{parent}-01"))
            .header("tracestate", "vendor=opaque"),
    )
    .await;
    r.ok(200);
    let spans = otlp
        .wait_for("the continued trace", |spans| {
            let of = |service: &str| {
                spans.iter().any(|s| {
                    s["trace_id"] == trace_id
                        && s["service"] == service
                        && s["kind"] == "SPAN_KIND_SERVER"
                })
            };
            of("gateway") && of("orders")
        })
        .await;
    let root = the(
        &spans,
        |s| {
            s["trace_id"] == trace_id
                && s["service"] == "gateway"
                && s["kind"] == "SPAN_KIND_SERVER"
        },
        "gateway server span",
    );
    assert_eq!(root["parent_span_id"], parent, "{root}");
    assert_eq!(root["trace_state"], "vendor=opaque", "{root}");

    // A problem names the trace next to the request id.
    let r = testkit::http::read(
        s.client
            .get(format!("{}/api/orders/not-a-uuid", s.gw))
            .bearer_auth(&admin)
            .header("traceparent", format!("00-{trace_id}-{parent}-01")),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert_eq!(r.body["trace_id"], trace_id, "{}", r.text);
    assert!(r.body["request_id"].is_string());
    // And one the gateway answers itself.
    let r = testkit::http::read(
        s.client
            .get(format!("{}/no/such/route", s.gw))
            .header("traceparent", format!("00-{trace_id}-{parent}-00")),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["trace_id"], trace_id, "{}", r.text);
}

#[actix_web::test]
async fn by_default_a_clients_traceparent_starts_a_new_linked_trace() {
    let otlp = receiver();
    let s = traced(&otlp.http, "http/protobuf", |l| l).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let request_id = format!("untrusted-{}", uuid::Uuid::new_v4());
    let r = testkit::http::read(
        s.client
            .get(format!("{}/readyz", s.gw))
            .header("x-request-id", &request_id)
            .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let spans = otlp
        .wait_for("the request's span", |spans| {
            request_span(spans, &request_id).is_some()
        })
        .await;
    let root = request_span(&spans, &request_id).unwrap();
    assert_ne!(root["trace_id"], trace_id, "{root}");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(
        root["links"],
        json!([{"trace_id": trace_id, "span_id": "b7ad6b7169203331"}])
    );
}

#[actix_web::test]
async fn spans_go_out_over_grpc_too() {
    let otlp = receiver();
    let s = traced(&otlp.grpc, "grpc", |l| l).await;
    let request_id = format!("grpc-{}", uuid::Uuid::new_v4());
    let r = testkit::http::read(
        s.client
            .get(format!("{}/api/orders", s.gw))
            .header("x-request-id", &request_id),
    )
    .await;
    assert_eq!(r.status, 401);
    let spans = otlp
        .wait_for("the request over gRPC", |spans| {
            request_span(spans, &request_id).is_some()
        })
        .await;
    let root = request_span(&spans, &request_id).unwrap();
    assert_eq!(root["protocol"], "grpc");
    assert_eq!(root["attributes"]["http.response.status_code"], 401);
    // The admission refused it: the phase span says so by its place.
    assert!(
        spans
            .iter()
            .any(|s| s["trace_id"] == root["trace_id"] && s["name"] == "admission")
    );
}

#[actix_web::test]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    // Accepts connections (the kernel's backlog) and never reads them.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hole.local_addr().unwrap());
    let s = System::start_with(Options {
        gateway: Box::new(move |l| {
            l.set(
                "tracing.export",
                json!({"endpoint": endpoint, "timeout_ms": 10000, "max_queue_spans": 64,
                       "max_batch_spans": 16, "batch_delay_ms": 50}),
            )
            .set("metrics.bearer_token", Value::Null)
        }),
        ..Options::default()
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let started = Instant::now();
        let r = s
            .client
            .get(format!("{}/readyz", s.gw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    // An export waits up to 10 s for the collector: had any request waited
    // for it, it would show here.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request: {slowest:?}"
    );
    let metrics = testkit::http::scrape(s.client.get(format!("{}/metrics", s.gw))).await;
    let dropped = testkit::http::sample(&metrics, "gatehouse_trace_spans_dropped_total");
    assert!(dropped > 0.0, "the full queue drops, and counts, spans");
    drop(hole);
}
