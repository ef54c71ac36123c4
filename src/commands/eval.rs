//! `eval FILE`: a request file through [`run_call`], as the live service runs it. With
//! `--fhir-server` missing prefetch keys are fetched from that server (and only it) with a
//! client built like the live one; without it a missing key fails with the service's 412 text.
//! No terminology service, no feedback store.

use crate::catalog::Catalog;
use crate::cli::EvalArgs;
use crate::fhir::client::{FhirClient, FhirClientConfig};
use crate::fhir::CdsRequest;
use crate::protocol::{RequestError, SchemaSet};
use crate::service::{run_call, CallContext, CallOutcome, ServiceCall, ServiceError, WARNINGS_EXTENSION};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("embedded schemas do not compile: {0}")]
    Schemas(String),
    #[error("the cards directory is invalid:\n{0}")]
    Cards(String),
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not JSON: {source}", path.display())]
    NotJson { path: PathBuf, source: serde_json::Error },
    #[error("no service answers hook '{0}'")]
    NoService(String),
    #[error("{0}")]
    Request(RequestError),
    #[error("FHIR client: {0}")]
    FhirClient(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

pub(super) fn run(args: &EvalArgs) -> Result<(), EvalError> {
    let schemas = SchemaSet::compile().map_err(|e| EvalError::Schemas(e.to_string()))?;
    let catalog = Catalog::load(&args.cards, &schemas).map_err(|e| EvalError::Cards(e.to_string()))?;
    let text = std::fs::read(&args.file).map_err(|source| EvalError::Read { path: args.file.clone(), source })?;
    let mut value: Value =
        serde_json::from_slice(&text).map_err(|source| EvalError::NotJson { path: args.file.clone(), source })?;
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    // Sample files carry relative dates: move them to the evaluation instant.
    crate::samples::resolve(&mut value, now);
    if let Some(server) = &args.fhir_server {
        point_at(&mut value, server, args.fhir_token.as_deref());
    }
    let hook = value.get("hook").and_then(Value::as_str).unwrap_or_default().to_string();
    let service = match &args.service {
        Some(id) => catalog.service(id),
        None => catalog.services.iter().find(|s| s.hook == hook),
    };
    let service = service.ok_or(EvalError::NoService(hook))?;
    let request = CdsRequest::from_value(value, &schemas, &service.hook).map_err(EvalError::Request)?;
    let fhir = args.fhir_server.as_ref().map(|server| fhir_client(args, server)).transpose()?;
    let context = CallContext { fhir: fhir.as_ref(), ..Default::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(EvalError::Runtime)?;
    let call = ServiceCall { request, service, catalog: &catalog, now };
    let outcome = runtime.block_on(run_call(call, &context))?;
    print(args, &service.id, now, &outcome);
    Ok(())
}

/// Sends the request to `server`: its own `fhirServer` is replaced, and its token is dropped
/// (it was issued for its own server) unless `token` gives one.
fn point_at(value: &mut Value, server: &str, token: Option<&str>) {
    let Some(object) = value.as_object_mut() else { return };
    object.insert("fhirServer".into(), json!(server));
    match token {
        Some(token) => {
            let authorization = json!({"access_token": token, "token_type": "Bearer", "expires_in": 300,
                "scope": "patient/*.read", "subject": "leg-cramp-cds-eval"});
            object.insert("fhirAuthorization".into(), authorization);
        }
        None => {
            object.remove("fhirAuthorization");
        }
    }
}

/// A client like the live service's, allowed to call `server` only.
fn fhir_client(args: &EvalArgs, server: &str) -> Result<FhirClient, EvalError> {
    FhirClient::new(FhirClientConfig {
        timeout: args.fhir_timeout,
        max_pages: args.fhir_max_pages.max(1),
        max_resources: args.fhir_max_resources.max(1),
        allow: vec![server.to_string()],
        allow_loopback: false,
        extra_roots: Vec::new(),
    })
    .map_err(EvalError::FhirClient)
}

fn print(args: &EvalArgs, service: &str, now: chrono::DateTime<chrono::Utc>, outcome: &CallOutcome) {
    let response = &outcome.response;
    if args.json {
        println!("{}", serde_json::to_string_pretty(response).expect("serialisable"));
        return;
    }
    println!("{} → {} card(s) at {}", service, response.cards.len(), now.to_rfc3339());
    for card in &response.cards {
        let rule = card.source.topic.as_ref().map(|t| t.code.as_str()).unwrap_or("");
        println!("{:<8}  {:<45}  {}", card.indicator.as_str(), rule, card.summary);
    }
    if let Some(w) = response.extension.get(WARNINGS_EXTENSION) {
        println!("warnings: {w}");
    }
}
