//! Running a rule's test cases: each case becomes a complete CDS Hooks request for the
//! service of its hook, goes through the same service function as a live call
//! ([`super::run_call`], with no FHIR client, terminology or store), and the cards are checked
//! against the expectation. Used by `leg-cramp-cds check` and by `cargo test`.

use super::call::{run_call, CallContext, CallOutcome, ServiceCall};
use crate::catalog::Catalog;
use crate::fhir::CdsRequest;
use crate::protocol::{CdsResponse, SchemaSet};
use crate::rules::model::{Expectation, Rule, TestCase};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// The request a test case stands for, and the id of the service it is sent to.
pub fn request_for(catalog: &Catalog, rule: &Rule, case: &TestCase) -> Result<(String, Value), String> {
    let hook = case.hook.clone().unwrap_or_else(|| rule.hooks[0].clone());
    let patient = case.patient.clone().unwrap_or_else(|| json!({"resourceType": "Patient", "id": "p1"}));
    build_request(catalog, &hook, patient, &case.resources, &case.draft_orders, case.selections.clone())
}

/// A complete request for the service of `hook`: each resource goes into the prefetch key
/// whose template searches its type (as a searchset Bundle); keys left empty are `null`
/// ("no data"). On order hooks the drafts form `context.draftOrders`; on order-select every
/// draft is selected unless `selections` says otherwise.
pub fn build_request(
    catalog: &Catalog,
    hook: &str,
    patient: Value,
    resources: &[Value],
    drafts: &[Value],
    selections: Option<Vec<String>>,
) -> Result<(String, Value), String> {
    let service =
        catalog.services.iter().find(|s| s.hook == hook).ok_or_else(|| format!("no service for hook {hook}"))?;
    let patient_id = patient.get("id").and_then(Value::as_str).unwrap_or("p1").to_string();
    let mut buckets: Map<String, Value> = Map::new();
    for key in service.prefetch.keys() {
        buckets.insert(key.clone(), Value::Null);
    }
    let key_for = |kind: &str| -> Option<String> {
        service
            .prefetch
            .iter()
            .find(|(_, t)| t.as_str().starts_with(&format!("{kind}?")) || t.as_str().starts_with(&format!("{kind}/")))
            .map(|(k, _)| k.clone())
            .or_else(|| service.prefetch.iter().find(|(_, t)| t.as_str().contains('?')).map(|(k, _)| k.clone()))
    };
    for resource in resources {
        let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        if kind == "Patient" {
            continue;
        }
        let key = key_for(kind).ok_or("service has no search prefetch key")?;
        let slot = buckets.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = json!({"resourceType": "Bundle", "type": "searchset", "entry": []});
        }
        slot["entry"].as_array_mut().expect("bundle").push(json!({"resource": resource}));
    }
    if let Some(k) = key_for("Patient") {
        buckets.insert(k, patient);
    }
    let mut context = json!({"userId": "Practitioner/example", "patientId": patient_id});
    if hook != "patient-view" {
        let entries: Vec<Value> = drafts.iter().map(|r| json!({"resource": r})).collect();
        context["draftOrders"] = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
        if hook == "order-select" {
            let selections = selections.unwrap_or_else(|| {
                drafts
                    .iter()
                    .filter_map(|r| Some(format!("{}/{}", r["resourceType"].as_str()?, r["id"].as_str()?)))
                    .collect()
            });
            context["selections"] = json!(selections);
        }
    }
    let request = json!({
        "hook": hook,
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": context,
        "prefetch": buckets,
    });
    Ok((service.id.clone(), request))
}

/// Checks a response against a case's expectation; `Err` says what differs.
pub fn check_response(rule: &Rule, case: &TestCase, response: &CdsResponse) -> Result<(), String> {
    let card = response.cards.iter().find(|c| card_stands_for(c, &rule.id));
    match (case.expect, card) {
        (Expectation::NoFire, Some(c)) => return Err(format!("fired ({}: {})", c.indicator.as_str(), c.summary)),
        (Expectation::NoFire, None) => {}
        (Expectation::Fire, None) => {
            let got: Vec<&str> =
                response.cards.iter().filter_map(|c| c.source.topic.as_ref().map(|t| t.code.as_str())).collect();
            return Err(format!("did not fire (cards: [{}])", got.join(", ")));
        }
        (Expectation::Fire, Some(c)) => {
            if let Some(want) = case.indicator {
                if c.indicator != want {
                    return Err(format!("indicator {} (expected {})", c.indicator.as_str(), want.as_str()));
                }
            }
            let detail = c.detail.as_deref().unwrap_or("");
            for needle in &case.detail_contains {
                if !detail.contains(needle.as_str()) {
                    return Err(format!("detail lacks {needle:?}"));
                }
            }
        }
    }
    for absent in &case.absent_rules {
        if response.cards.iter().any(|c| card_stands_for(c, absent)) {
            return Err(format!("rule {absent} should not be in the response"));
        }
    }
    Ok(())
}

/// Whether a card is the rule's own card, or a merged card that lists the rule.
pub fn card_stands_for(card: &crate::protocol::Card, rule_id: &str) -> bool {
    card.source.topic.as_ref().is_some_and(|t| t.code == rule_id)
        || card
            .extension
            .get(crate::cards::RULES_EXTENSION)
            .and_then(|v| v.as_array())
            .is_some_and(|rules| rules.iter().any(|r| r.as_str() == Some(rule_id)))
}

/// Runs one case in-process (no HTTP): request → service call → check.
pub fn run_case(catalog: &Catalog, schemas: &SchemaSet, rule: &Rule, case: &TestCase) -> Result<(), String> {
    let now = chrono::DateTime::parse_from_rfc3339(&case.now).map_err(|e| format!("now: {e}"))?.to_utc();
    let (service_id, body) = request_for(catalog, rule, case)?;
    let service = catalog.service(&service_id).expect("service exists");
    let request = CdsRequest::from_value(body, schemas, &service.hook).map_err(|e| format!("request invalid: {e}"))?;
    let outcome = run_offline(ServiceCall { request, service, catalog, now })?;
    check_response(rule, case, &outcome.response)
}

/// Runs a call with no collaborators. Such a call does no I/O, so its future is ready when
/// first polled; a case that would need a FHIR server fails on its missing keys instead.
pub fn run_offline(call: ServiceCall<'_>) -> Result<CallOutcome, String> {
    let context = CallContext::default();
    let future = std::pin::pin!(run_call(call, &context));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(outcome)) => Ok(outcome),
        Poll::Ready(Err(e)) => Err(format!("prefetch incomplete: {e}")),
        Poll::Pending => Err("the call waited on I/O without a FHIR client, terminology or store".into()),
    }
}

/// Every case of every rule: (rule id, case name, result).
pub fn run_all(catalog: &Catalog, schemas: &SchemaSet) -> Vec<(String, String, Result<(), String>)> {
    let mut results = Vec::new();
    for rule in &catalog.rules.rules {
        for case in &rule.tests {
            results.push((rule.id.clone(), case.name.clone(), run_case(catalog, schemas, rule, case)));
        }
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_lacking_a_prefetch_key_fails_naming_it_without_waiting_on_io() {
        let schemas = SchemaSet::compile().unwrap();
        let catalog = Catalog::load(std::path::Path::new("cards"), &schemas).unwrap();
        let rule = catalog.rules.rules.iter().find(|r| !r.tests.is_empty()).unwrap();
        let (service_id, mut body) = request_for(&catalog, rule, &rule.tests[0]).unwrap();
        let service = catalog.service(&service_id).unwrap();
        let key = service.prefetch.keys().next().unwrap().clone();
        body["prefetch"].as_object_mut().unwrap().remove(&key);
        let request = CdsRequest::from_value(body, &schemas, &service.hook).unwrap();
        let err = run_offline(ServiceCall { request, service, catalog: &catalog, now: chrono::Utc::now() })
            .err()
            .expect("a missing key fails");
        assert!(err.contains(&format!("{key}: not supplied in prefetch")), "{err}");
    }
}
