//! The stack's floor: the least a reverse proxy on actix-web and awc does.
//! One awc client per worker, the request head copied (`request_from`), the
//! body streamed both ways, the answer's status and headers copied (its
//! length kept). No routing, no auth, no limits, no metrics: whatever the
//! gateway costs above this is ours; what this costs below nginx is the
//! stack's. `floor <port> <upstream base URL> [workers]`. `FLOOR_BUFFER=1`
//! is an experiment of #19 (small bodies read whole, not streamed), off in
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
    *ON.get_or_init(|| std::env::var("FLOOR_BUFFER").is_ok_and(|v| v == "1"))
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
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(awc::Client::default()))
            .app_data(web::Data::new(Upstream(upstream.clone())))
            .default_service(web::to(forward))
    })
    .workers(workers)
    .backlog(4096)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}
