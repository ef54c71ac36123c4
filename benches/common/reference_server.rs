//! What the load test's reference servers (`benches/baseline/`, `benches/limit/`) share: the
//! routes, the `{"cards":[]}` answer, and the command line `ADDR [WORKERS]`. Each server
//! differs only in how much of the request it reads, which it passes in as a parse function.

use actix_web::{web, App, HttpResponse, HttpServer};

/// Parses a request body as the server's structs would; the error text goes into the 400.
pub type Parse = fn(&[u8]) -> Result<(), serde_json::Error>;

/// Serves discovery and `POST /cds-services/{id}` on `ADDR` (argument 1, else `default_addr`)
/// with `WORKERS` (argument 2, else 1) HTTP workers, answering `{"cards":[]}` to every body
/// `parse` accepts.
pub async fn serve(name: &'static str, default_addr: &str, parse: Parse) -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| default_addr.into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    eprintln!("{name} listening on {addr} with {workers} worker(s)");
    HttpServer::new(move || {
        App::new()
            .app_data(web::PayloadConfig::new(10 << 20))
            .route(
                "/cds-services",
                web::get().to(move || async move {
                    HttpResponse::Ok().json(serde_json::json!({"services": [
                        {"hook": "patient-view", "id": "leg-cramp-causes", "description": name}]}))
                }),
            )
            .route(
                "/cds-services/{id}",
                web::post().to(move |body: web::Bytes| async move {
                    match parse(&body) {
                        Ok(()) => HttpResponse::Ok().content_type("application/json").body(r#"{"cards":[]}"#),
                        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
                    }
                }),
            )
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
