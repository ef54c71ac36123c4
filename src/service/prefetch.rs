//! Completing the prefetch (contract §1.5): keys the client did not supply are fetched from
//! its FHIR server, and a client-paginated Bundle is followed when a token is present. Any key
//! that cannot be had fails the call, naming the key and why; so does a prefetched Patient
//! that is not `context.patientId`.

use super::error::{MissingKey, ServiceError};
use super::evaluate::PrefetchPlan;
use crate::fhir::client::FhirClient;
use crate::fhir::CdsRequest;
use crate::fhir::ResourceSet;

/// Why a key is missing when the request names no FHIR server.
const NO_SERVER: &str = "not supplied in prefetch and the request has no fhirServer to fetch it from";
/// Why a key is missing when the caller fetches nothing (`eval` without `--fhir-server`).
const NO_CLIENT: &str = "not supplied in prefetch, and this caller does not call FHIR servers (eval: --fhir-server)";

/// The plan's resources, completed from the request's `fhirServer` through `fhir`. Without a
/// client nothing is fetched: a missing key fails the call, continuation pages are not read.
pub async fn complete_prefetch(
    fhir: Option<&FhirClient>,
    request: &CdsRequest,
    plan: PrefetchPlan,
) -> Result<ResourceSet, ServiceError> {
    let PrefetchPlan { mut resources, missing, continuations } = plan;
    // Cards about someone else's data are worse than none: refused before anything is fetched.
    if !resources.foreign_patients.is_empty() {
        return Err(ServiceError::PatientMismatch(std::mem::take(&mut resources.foreign_patients)));
    }
    let server = request.fhir_server.as_deref();
    let token = request.fhir_authorization.as_ref().map(|a| a.access_token.as_str());
    let mut failures = Vec::new();
    let mut fetches = Vec::new();
    for (key, template) in missing {
        match (server, fhir) {
            (None, _) => failures.push(MissingKey::new(key, NO_SERVER)),
            (Some(_), None) => failures.push(MissingKey::new(key, NO_CLIENT)),
            (Some(base), Some(_)) => match template.render(&request.context).map_err(|e| e.to_string()) {
                Ok(query) => fetches.push((key, format!("{}/{}", base.trim_end_matches('/'), query))),
                Err(e) => failures.push(MissingKey::new(key, e)),
            },
        }
    }
    if !failures.is_empty() {
        return Err(ServiceError::PrefetchUnavailable(failures));
    }
    let (Some(fhir), Some(server)) = (fhir, server) else { return Ok(resources) };
    if token.is_some() {
        fetches.extend(continuations);
    }
    if fetches.is_empty() {
        return Ok(resources);
    }
    let started = std::time::Instant::now();
    let count = fetches.len();
    metrics::counter!(crate::metrics::FHIR_CALLS).increment(count as u64);
    for (key, result) in fhir.fetch_all(server, fetches, token).await {
        match result {
            Ok(list) => list.into_iter().for_each(|v| resources.add_resource(v, &format!("fetched.{key}"))),
            Err(reason) => {
                metrics::counter!(crate::metrics::FHIR_FAILURES).increment(1);
                failures.push(MissingKey::new(key, reason));
            }
        }
    }
    tracing::info!(
        hook_instance = %request.hook_instance,
        keys = count,
        failed = failures.len(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "FHIR fallback"
    );
    if failures.is_empty() {
        Ok(resources)
    } else {
        Err(ServiceError::PrefetchUnavailable(failures))
    }
}
