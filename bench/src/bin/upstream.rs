//! The benchmark's minimal upstream: answers every path with a small JSON
//! body, as fast as actix-web can. Both nginx and the gateway proxy to it.
//! `upstream <port> [workers]`.

use actix_web::{App, HttpResponse, HttpServer, web};

async fn answer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"ok":true,"service":"bench-upstream"}"#)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_else(|| "9000".into()).parse()?;
    let workers: usize = args.next().unwrap_or_else(|| "1".into()).parse()?;
    HttpServer::new(|| App::new().default_service(web::to(answer)))
        .workers(workers)
        .backlog(4096)
        .bind(("127.0.0.1", port))?
        .run()
        .await?;
    Ok(())
}
