//! A 100 MiB answer streams through the gateway without the gateway holding
//! it: the process (gateway, upstream and client together) grows by far
//! less than the body. Its own test binary, so no other test's allocations
//! blur the measure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;

use actix_web::{HttpResponse, web};

const MIB: usize = 1024 * 1024;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

async fn big(path: web::Path<usize>) -> HttpResponse {
    let mib = path.into_inner();
    let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..mib * 16).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())),
    );
    HttpResponse::Ok()
        .no_chunking((mib * MIB) as u64)
        .content_type("application/octet-stream")
        .streaming(stream)
}

#[actix_web::test]
async fn a_100_mib_answer_streams_through_with_bounded_memory() {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_url = format!("http://127.0.0.1:{}", up.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route("/big/{mib}", web::get().to(big))
    })
    .workers(1)
    .listen(up)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let dir = tempfile::tempdir().unwrap();
    let settings: gateway::Settings = gateway::Settings::loader()
        .set("data_dir", dir.path())
        .set("workers", 1)
        .set(
            "upstreams",
            serde_json::json!({"users": [up_url], "orders": [up_url], "scanner": [up_url]}),
        )
        .set(
            "routes",
            serde_json::json!([{"prefix": "/files", "upstream": "orders", "rewrite": "/big", "access": "public"}]),
        )
        .extract()
        .unwrap();
    let gw = gateway::build_with_listener(settings, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", gw.port());
    actix_web::rt::spawn(gw.run_until_stopped());

    let client = testkit::client();
    // Warm up allocators and connection pools with a small answer first.
    let warm = client.get(format!("{base}/files/2")).send().await.unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), 2 * MIB);
    let before = rss_bytes();

    let mut res = client
        .get(format!("{base}/files/100"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], (100 * MIB).to_string());
    let (mut total, mut peak) = (0usize, before);
    while let Some(chunk) = res.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == b'x'));
        total += chunk.len();
        if total % (4 * MIB) < chunk.len() {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(total, 100 * MIB);
    let growth = peak.saturating_sub(before);
    println!(
        "streamed {} MiB; process RSS {} MiB before, peak growth {} MiB",
        total / MIB,
        before / MIB,
        growth / MIB
    );
    assert!(
        growth < 32 * MIB,
        "the process grew by {} MiB while streaming 100 MiB",
        growth / MIB
    );

    // The measure itself sees buffering: holding a 64 MiB answer whole (in
    // the client, this time) shows up.
    let before = rss_bytes();
    let whole = client
        .get(format!("{base}/files/64"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(whole.len(), 64 * MIB);
    let held = rss_bytes().saturating_sub(before);
    println!(
        "holding 64 MiB whole grew the process by {} MiB",
        held / MIB
    );
    assert!(held >= 48 * MIB, "RSS cannot see a 64 MiB buffer: {held}");
}
