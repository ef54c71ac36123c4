//! The physical limit for the load test: a bare actix-web server with the same routes that
//! reads the request into borrowed structs, keeps only `resourceType` and `id` of each
//! resource (and the entries of a Bundle), skips everything else without allocating, and
//! answers `{"cards":[]}`. No CDS Hooks service can do less work for the same request, so
//! the service's throughput as a share of this one says how close it is to what the machine
//! allows. (`benches/baseline/` is the heavier floor: owned FHIR structs.)
//!
//! cargo run --release --example limit_server -- 127.0.0.1:8082 [workers]

#[path = "../common/reference_server.rs"]
mod reference_server;

use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;

/// Any resource: only its type and id are kept. `Cow` borrows from the body unless the
/// JSON string holds an escape.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Resource<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    /// Only Bundles have entries; for every other resource the field is absent.
    #[serde(default, borrow)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Entry<'a> {
    #[serde(default, borrow)]
    resource: Option<Resource<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    hook: Cow<'a, str>,
    #[serde(borrow)]
    hook_instance: Cow<'a, str>,
    context: serde::de::IgnoredAny,
    #[serde(default, borrow)]
    prefetch: HashMap<Cow<'a, str>, Option<Resource<'a>>>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    reference_server::serve("limit server", "127.0.0.1:8082", |body| {
        serde_json::from_slice::<Request>(body).map(|_| ())
    })
    .await
}
