//! The baseline for the load test: a bare actix-web server with the same routes that only
//! deserialises the request into typed structs (the same FHIR models the service uses) and
//! answers `{"cards":[]}`. The floor for this shape of work on this machine.
//!
//! cargo run --release --example baseline_server -- 127.0.0.1:8081

#[path = "../common/reference_server.rs"]
mod reference_server;

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

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    reference_server::serve("baseline", "127.0.0.1:8081", |body| serde_json::from_slice::<Request>(body).map(|_| ()))
        .await
}
