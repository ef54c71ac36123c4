//! One patient through the live pipeline: for each service, the request an EHR would send
//! (its prefetch answered from the record, see [`super::search`]) is parsed by
//! [`CdsRequest::parse`] and run by [`run_call`], exactly as `POST /cds-services/{id}` does.
//! Every patient gets the patient-view call; a patient whose record has draft
//! MedicationRequests also gets the order-sign call with them as `context.draftOrders`.
//! No FHIR server, terminology service or feedback store: nothing is fetched, looked up,
//! snoozed or recorded.

use super::record::{PatientRecord, Resource};
use super::search::{self, Search};
use crate::catalog::Catalog;
use crate::fhir::CdsRequest;
use crate::protocol::{Context, SchemaSet, ServiceDefinition};
use crate::report::{CallSummary, PatientOutcome};
use crate::service::{run_call, CallContext, ServiceCall, WARNINGS_EXTENSION};
use chrono::{DateTime, Utc};
use serde_json::json;

/// Who the simulated calls come from.
const USER: &str = "Practitioner/leg-cramp-cds-simulate";

/// The services a population is run through, and the fixed parts of every call.
pub struct Pipeline<'a> {
    pub catalog: &'a Catalog,
    pub schemas: &'a SchemaSet,
    pub now: DateTime<Utc>,
    services: Vec<&'a ServiceDefinition>,
}

/// A patient's outcome, and (when asked) each call's request and response as NDJSON lines.
pub struct Evaluated {
    pub outcome: PatientOutcome,
    pub responses: Vec<String>,
}

impl<'a> Pipeline<'a> {
    /// The patient-view and order-sign services; refuses a prefetch template the simulation
    /// cannot answer, naming it.
    pub fn new(catalog: &'a Catalog, schemas: &'a SchemaSet, now: DateTime<Utc>) -> Result<Self, String> {
        let services: Vec<&ServiceDefinition> =
            catalog.services.iter().filter(|s| s.hook == "patient-view" || s.hook == "order-sign").collect();
        let context = context("p");
        for service in &services {
            for (key, template) in &service.prefetch {
                let query = template.render(&context).map_err(|e| format!("{}: prefetch {key}: {e}", service.id))?;
                search::parse(&query).map_err(|e| format!("{}: prefetch {key} ({query}): {e}", service.id))?;
            }
        }
        Ok(Self { catalog, schemas, now, services })
    }

    /// Runs the patient's calls. `Err` says why the patient could not be evaluated.
    pub fn evaluate(&self, record: &PatientRecord<'_>, keep_responses: bool) -> Result<Evaluated, String> {
        let drafts: Vec<&Resource<'_>> = record
            .resources
            .iter()
            .filter(|r| r.head.resource_type == "MedicationRequest" && r.head.status() == Some("draft"))
            .collect();
        let mut outcome = PatientOutcome { patient: record.id.clone(), ..Default::default() };
        let mut responses = Vec::new();
        for service in &self.services {
            if service.hook == "order-sign" && drafts.is_empty() {
                continue;
            }
            let text = self.request(service, record, &drafts)?;
            let request = CdsRequest::parse(text.as_bytes(), self.schemas, &service.hook)
                .map_err(|e| format!("{}: {e}", service.id))?;
            let call = ServiceCall { request, service, catalog: self.catalog, now: self.now };
            let result =
                block_on(run_call(call, &CallContext::default()))?.map_err(|e| format!("{}: {e}", service.id))?;
            outcome.named_facts.extend(result.named_facts.iter().cloned());
            outcome.calls.push(CallSummary::of(&service.hook, &result.response, WARNINGS_EXTENSION));
            if keep_responses {
                let response = serde_json::to_string(&result.response).map_err(|e| e.to_string())?;
                let head = json!({"patient": record.id, "service": service.id}).to_string();
                responses.push(format!(
                    "{},\"request\":{text},\"response\":{response}}}",
                    head.strip_suffix('}').unwrap_or(&head)
                ));
            }
        }
        Ok(Evaluated { outcome, responses })
    }

    /// The request text: hook, a fresh hookInstance, context, and every prefetch key answered.
    fn request(
        &self,
        service: &ServiceDefinition,
        record: &PatientRecord<'_>,
        drafts: &[&Resource<'_>],
    ) -> Result<String, String> {
        let context = context(&record.id);
        let mut prefetch = String::new();
        for (key, template) in &service.prefetch {
            let query = template.render(&context).map_err(|e| format!("prefetch {key}: {e}"))?;
            let answer = search::parse(&query).map(|s: Search| s.answer(record))?;
            if !prefetch.is_empty() {
                prefetch.push(',');
            }
            prefetch.push_str(&json!(key).to_string());
            prefetch.push(':');
            prefetch.push_str(&answer);
        }
        let mut context_json = json!({"userId": USER, "patientId": record.id}).to_string();
        if service.hook != "patient-view" {
            context_json.pop();
            context_json.push_str(",\"draftOrders\":");
            context_json.push_str(&search::bundle("collection", drafts));
            context_json.push('}');
        }
        Ok(format!(
            "{{\"hook\":{},\"hookInstance\":\"{}\",\"context\":{context_json},\"prefetch\":{{{prefetch}}}}}",
            json!(service.hook),
            uuid::Uuid::new_v4()
        ))
    }
}

fn context(patient: &str) -> Context {
    Context { user_id: Some(USER.into()), patient_id: Some(patient.into()), ..Default::default() }
}

thread_local! {
    /// Each worker thread's executor for [`run_call`] (which awaits nothing without a FHIR
    /// client or terminology service, but is async for the live service's sake).
    static RUNTIME: std::io::Result<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread().build();
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    RUNTIME.with(|runtime| match runtime {
        Ok(rt) => Ok(rt.block_on(future)),
        Err(e) => Err(format!("cannot start an async runtime: {e}")),
    })
}
