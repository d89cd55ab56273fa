//! The stack's floor: the least a reverse proxy on actix-web and awc does.
//! One awc client per worker, the request head copied (`request_from`), the
//! body streamed both ways, the answer's status and headers copied (its
//! length kept). No routing, no auth, no limits, no metrics: whatever the
//! gateway costs above this is ours; what this costs below nginx is the
//! stack's. `floor <port> <upstream base URL> [workers]`. The `FLOOR_*`
//! switches are the experiments of #19 (see bench/README.md), all off in
//! the benchmark's row.

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

struct Upstream(String);

async fn forward(
    req: HttpRequest,
    body: web::Payload,
    client: web::Data<awc::Client>,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.0);
    match client.request_from(url, req.head()).send_stream(body).await {
        Ok(res) => {
            let mut out = HttpResponse::build(res.status());
            let mut length = None;
            for (name, value) in res.headers() {
                if name == header::CONTENT_LENGTH {
                    length = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
                } else if name != header::CONNECTION && name != header::TRANSFER_ENCODING {
                    out.append_header((name.clone(), value.clone()));
                }
            }
            // Experiment (FLOOR_BUFFER=1): a small body of known length read
            // whole and sent with the head, instead of streamed.
            if buffer_small()
                && let Some(n) = length.filter(|n| *n <= 64 * 1024)
            {
                let mut res = res;
                return match res.body().limit(64 * 1024).await {
                    Ok(bytes) if bytes.len() as u64 == n => out.body(bytes),
                    _ => HttpResponse::BadGateway().finish(),
                };
            }
            if let Some(n) = length {
                out.no_chunking(n);
            }
            out.streaming(res)
        }
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

fn buffer_small() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| experiment("FLOOR_BUFFER"))
}

/// An experiment's switch (`NAME=1`), off by default.
fn experiment(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The client: awc's defaults, or (experiments) an unbounded pool as the
/// gateway's (`FLOOR_UNBOUNDED_POOL=1`).
fn client() -> awc::Client {
    if experiment("FLOOR_UNBOUNDED_POOL") {
        return awc::Client::builder()
            .connector(awc::Connector::new().limit(0))
            .finish();
    }
    awc::Client::default()
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_else(|| "9001".into()).parse()?;
    let upstream = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9000".into())
        .trim_end_matches('/')
        .to_owned();
    let workers: usize = args.next().unwrap_or_else(|| "1".into()).parse()?;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(client()))
            .app_data(web::Data::new(Upstream(upstream.clone())))
            .default_service(web::to(forward))
    })
    .workers(workers)
    .backlog(4096);
    // Experiments: no timer for the client's request head
    // (`FLOOR_NO_REQUEST_TIMEOUT=1`), no keep-alive timer
    // (`FLOOR_NO_KEEP_ALIVE_TIMER=1`: connections stay open until closed).
    if experiment("FLOOR_NO_REQUEST_TIMEOUT") {
        server = server.client_request_timeout(std::time::Duration::ZERO);
    }
    if experiment("FLOOR_NO_KEEP_ALIVE_TIMER") {
        server = server.keep_alive(actix_web::http::KeepAlive::Os);
    }
    server.bind(("127.0.0.1", port))?.run().await?;
    Ok(())
}
