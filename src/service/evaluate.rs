//! The synchronous core of a service call: request → resources → patient facts → findings →
//! cards → response. Prefetch is read here; what is missing is fetched by
//! [`super::call::run_call`] (asynchronously) through [`crate::fhir::client`].

use crate::cards::build_cards;
use crate::facts::PatientFacts;
use crate::fhir::prefetch::PrefetchValue;
use crate::fhir::terminology::ResolvedCodes;
use crate::fhir::CdsRequest;
use crate::fhir::ResourceSet;
use crate::protocol::{CdsResponse, Indicator, PrefetchTemplate, ServiceDefinition};
use crate::rules::{evaluate as evaluate_rules, named_facts_holding, RuleBook};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashSet;

/// Response-level extension key listing data that could not be used.
pub const WARNINGS_EXTENSION: &str = "org.leg-cramp-cds.warnings";

/// What the request's prefetch provides, and what must still be fetched.
pub struct PrefetchPlan {
    pub resources: ResourceSet,
    /// (key, template) of keys the client did not supply (absent, or an OperationOutcome).
    pub missing: Vec<(String, PrefetchTemplate)>,
    /// (key, next-page URL) of searchset Bundles the client paginated.
    pub continuations: Vec<(String, String)>,
}

/// Reads the prefetch per the contract: absent = not supplied; `null` = no data;
/// an OperationOutcome = the client's fetch failed (treated as absent); anything else is data.
/// A prefetched Patient that is not `context.patientId` is recorded in
/// `resources.foreign_patients` (the call is then refused by [`super::prefetch::complete_prefetch`]).
pub fn plan_prefetch(request: &mut CdsRequest, service: &ServiceDefinition) -> PrefetchPlan {
    // Only the request's patient's resources are read (see fhir::identity).
    let mut resources = ResourceSet::for_patient(request.context.patient_id.as_deref());
    let mut missing = Vec::new();
    let mut continuations = Vec::new();
    for (key, template) in &service.prefetch {
        match request.prefetch.remove(key) {
            None | Some(PrefetchValue::OperationOutcome) => missing.push((key.clone(), template.clone())),
            Some(PrefetchValue::Null) => {}
            Some(value) => {
                if let Some(next) = resources.add_prefetch(value, key) {
                    continuations.push((key.clone(), next));
                }
            }
        }
    }
    // Keys the service did not ask for are still patient data the client chose to send.
    for (key, value) in std::mem::take(&mut request.prefetch) {
        resources.add_prefetch(value, &key);
    }
    if let Some(drafts) = &request.context.draft_orders {
        let selections = (request.hook == "order-select").then_some(request.context.selections.as_slice());
        resources.add_draft_orders(drafts, selections);
    }
    PrefetchPlan { resources, missing, continuations }
}

/// The result of one evaluation, with what the access log and metrics want to know.
pub struct Evaluation {
    pub response: CdsResponse,
    pub rule_ids: Vec<String>,
    /// Rules whose card was withheld (snoozed) because clinicians marked it already addressed.
    pub snoozed: Vec<String>,
    /// The conventions' named facts that held (e.g. `LEG_CRAMP_PRESENT`), for `simulate`.
    pub named_facts: Vec<String>,
}

/// Facts → findings → cards. Pure and synchronous: the same input and instant give the same
/// cards (apart from their fresh uuids).
pub fn evaluate(book: &RuleBook, request: &CdsRequest, resources: &ResourceSet, now: DateTime<Utc>) -> Evaluation {
    evaluate_with_snoozes(book, request, resources, &ResolvedCodes::none(), now, &HashSet::new())
}

/// As [`evaluate`], with the RxNorm codes a terminology service `resolved`, withholding
/// info/warning cards of the `snoozed_rules` (feedback-driven alert-fatigue control).
/// Critical cards are never withheld.
pub fn evaluate_with_snoozes(
    book: &RuleBook,
    request: &CdsRequest,
    resources: &ResourceSet,
    resolved: &ResolvedCodes,
    now: DateTime<Utc>,
    snoozed_rules: &HashSet<String>,
) -> Evaluation {
    let facts = PatientFacts::build(resources, &book.conventions, &book.index, resolved, &request.hook, now);
    let mut findings = evaluate_rules(book, &facts);
    let mut snoozed = Vec::new();
    if !snoozed_rules.is_empty() {
        findings.retain(|f| {
            let id = &book.rules[f.rule].id;
            let withhold = f.indicator != Indicator::Critical && snoozed_rules.contains(id);
            if withhold {
                snoozed.push(id.clone());
            }
            !withhold
        });
    }
    let patient_id = request.context.patient_id.as_deref().unwrap_or("unknown");
    let cards = build_cards(book, &facts, &findings, patient_id);
    let rule_ids = findings.iter().map(|f| book.rules[f.rule].id.clone()).collect();
    let named_facts = named_facts_holding(book, &facts).into_iter().map(str::to_string).collect();
    let mut response = CdsResponse { cards, ..Default::default() };
    if !facts.notes.is_empty() {
        response.extension.insert(WARNINGS_EXTENSION.to_string(), json!(facts.notes));
    }
    Evaluation { response, rule_ids, snoozed, named_facts }
}
