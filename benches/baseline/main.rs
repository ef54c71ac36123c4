//! The baseline for the load test: a bare actix-web server with the same routes that only
//! deserialises the request into typed structs (the same FHIR models the service uses) and
//! answers `{"cards":[]}`. The floor for this shape of work on this machine.
//!
//! cargo run --release --example baseline_server -- 127.0.0.1:8081

use actix_web::{web, App, HttpResponse, HttpServer};
use leg_cramp_cds::fhir::model::{Condition, MedicationRequest, MedicationStatement, Observation, Patient};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
#[allow(dead_code, clippy::large_enum_variant)] // as in the service: no allocation per resource
#[serde(tag = "resourceType")]
enum Resource {
    Patient(Patient),
    Condition(Condition),
    MedicationRequest(MedicationRequest),
    MedicationStatement(MedicationStatement),
    Observation(Observation),
    Bundle(Bundle),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Bundle {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Entry {
    resource: Option<Resource>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct Request {
    hook: String,
    hook_instance: String,
    context: HashMap<String, serde_json::Value>,
    #[serde(default)]
    prefetch: HashMap<String, Option<Resource>>,
}

async fn discovery() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"services": [
        {"hook": "patient-view", "id": "leg-cramp-causes", "description": "baseline"}]}))
}

async fn call(_id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Request>(&body) {
        Ok(_) => HttpResponse::Ok().content_type("application/json").body(r#"{"cards":[]}"#),
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    eprintln!("baseline listening on {addr} with {workers} worker(s)");
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(10 << 20))
            .route("/cds-services", web::get().to(discovery))
            .route("/cds-services/{id}", web::post().to(call))
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
