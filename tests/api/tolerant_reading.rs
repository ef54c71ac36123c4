//! Tolerant reading of FHIR as real clients send it, through the real server: a single
//! object where FHIR wants an array, malformed elements no decision needs, unreadable
//! values, unreadable decision elements, and a pathological resource.
use crate::helpers::*;
use crate::rules::{catalog, NOW};
use leg_cramp_cds::service::cases::build_request;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(crate) fn server() -> TestServer {
    TestServer::builder().args(["--now", NOW]).start()
}

pub(crate) fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1971-01-15"})
}

/// An active "cramp and spasm" diagnosis: the gate of the electrolyte cards.
pub(crate) fn cramp() -> Value {
    json!({"resourceType": "Condition", "id": "cramp", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2", "display": "Cramp and spasm"}]},
        "subject": {"reference": "Patient/p1"}, "recordedDate": "2026-05-26T12:00:00Z"})
}

/// A serum potassium result with the given `valueQuantity`.
fn potassium(id: &str, when: &str, value_quantity: Value) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium [Moles/volume] in Serum or Plasma"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when, "valueQuantity": value_quantity})
}

fn mmol(value: f64) -> Value {
    json!({"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"})
}

/// A draft quinine order as the CDS Hooks Sandbox's Rx View sends it: `reasonCode` is a
/// single CodeableConcept, not an array.
fn quinine_draft(reason: Value) -> Value {
    json!({"resourceType": "MedicationRequest", "id": "draft-q", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"text": "quinine sulfate 324 MG Oral Capsule"},
        "subject": {"reference": "Patient/p1"}, "authoredOn": NOW, "reasonCode": reason})
}

fn icd10(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}], "text": display})
}

/// Sends the resources (and drafts) to the service of `hook`; the response body.
async fn call(server: &TestServer, hook: &str, resources: &[Value], drafts: &[Value]) -> Value {
    let (service, body) = build_request(&catalog(), hook, patient(), resources, drafts, None).unwrap();
    let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
    assert_eq!(status, 200, "{response}");
    assert_valid_response(&response);
    response
}

/// (rule id, indicator) of each card.
fn cards(response: &Value) -> Vec<(String, String)> {
    response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["source"]["topic"]["code"].as_str().unwrap().to_string(), c["indicator"].as_str().unwrap().to_string())
        })
        .collect()
}

fn fired(response: &Value, rule: &str, indicator: &str) -> bool {
    cards(response).iter().any(|(r, i)| r == rule && i == indicator)
}

fn warnings(response: &Value) -> Vec<String> {
    response["extension"]["org.leg-cramp-cds.warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

const CRITICAL_K: &str = "red-flag-critical-electrolytes";
const QUININE: &str = "treatment-safety-quinine";

#[tokio::test]
async fn reason_code_as_an_object_on_a_quinine_draft_still_fires_the_critical_card() {
    let server = server();
    for hook in ["order-sign", "order-select"] {
        let draft = quinine_draft(icd10("R25.2", "Cramp and spasm"));
        let response = call(&server, hook, &[], &[draft]).await;
        assert!(fired(&response, QUININE, "critical"), "{hook}: {response}");
        assert_eq!(warnings(&response), Vec::<String>::new(), "{hook}");
        // The single reasonCode is really read: naming malaria, it withholds the card.
        let draft = quinine_draft(icd10("B50.9", "Plasmodium falciparum malaria, unspecified"));
        let response = call(&server, hook, &[], &[draft]).await;
        assert!(!fired(&response, QUININE, "critical"), "{hook}: {response}");
    }
}

#[tokio::test]
async fn coding_as_an_object_inside_code_is_used() {
    let server = server();
    let mut condition = cramp();
    condition["code"]["coding"] = condition["code"]["coding"][0].take();
    let mut low = potassium("k-low", "2026-06-15T08:00:00Z", mmol(2.3));
    low["code"]["coding"] = low["code"]["coding"][0].take();
    assert!(condition["code"]["coding"].is_object() && low["code"]["coding"].is_object());
    let response = call(&server, "patient-view", &[condition.clone(), low.clone()], &[]).await;
    assert!(fired(&response, CRITICAL_K, "critical"), "{response}");
    assert_eq!(warnings(&response), Vec::<String>::new());
    // The same, written as EHRs write it (resourceType first), is read in the single pass.
    let body = format!(
        r#"{{"hook":"patient-view","hookInstance":"{}","context":{{"userId":"Practitioner/1","patientId":"p1"}},
        "prefetch":{{"patient":{},"conditions":{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{{"resourceType":"Condition",{}}}}}]}},
        "labs":{{"resourceType":"Bundle","type":"searchset","entry":{{"resource":{{"resourceType":"Observation",{}}}}}}},
        "medicationRequests":null,"medicationStatements":null,"vitals":null,"pregnancy":null}}}}"#,
        uuid(),
        patient(),
        members(&condition),
        members(&low)
    );
    let (status, response) = server.post_raw("/cds-services/leg-cramp-causes", body).await;
    assert_eq!(status, 200, "{response}");
    assert!(fired(&response, CRITICAL_K, "critical"), "single entry, single coding: {response}");
}

/// An object's members without braces and without `resourceType` (written after it).
fn members(resource: &Value) -> String {
    let mut copy = resource.clone();
    copy.as_object_mut().unwrap().remove("resourceType");
    let text = copy.to_string();
    text[1..text.len() - 1].to_string()
}

#[tokio::test]
async fn a_malformed_note_drops_only_the_note() {
    let server = server();
    for note in [json!("Jane Doe haemolysed?"), json!([{"text": 5}]), json!([{"text": "ok"}, 7])] {
        let mut low = potassium("k-noted", "2026-06-15T08:00:00Z", mmol(2.3));
        low["note"] = note.clone();
        let response = call(&server, "patient-view", &[cramp(), low], &[]).await;
        assert!(fired(&response, CRITICAL_K, "critical"), "{note}: {response}");
        let warnings = warnings(&response);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(w.contains("element note") && w.contains("(Observation/k-noted)"), "{w}");
        assert!(w.contains("was ignored") && !w.contains("does not parse"), "{w}");
    }
    assert!(server.wait_for_log("element note").await);
    let log = server.log_text();
    assert!(!log.contains("k-noted") && !log.contains("Jane"), "the log has positions only");
}

#[tokio::test]
async fn an_unreadable_value_quantity_keeps_the_result_without_a_value() {
    let server = server();
    let long = format!("Jane Doe {}", "x".repeat(5000));
    for value_quantity in [
        json!({"value": "abc", "unit": "mmol/L"}),
        json!({"value": {}, "unit": "mmol/L"}),
        json!({"value": 2.3, "unit": {"text": "mmol/L"}}),
        json!({"value": long, "unit": "mmol/L"}),
    ] {
        let unreadable = potassium("k-bad", "2026-06-15T08:00:00Z", value_quantity.clone());
        let response = call(&server, "patient-view", &[cramp(), unreadable], &[]).await;
        assert!(!fired(&response, CRITICAL_K, "critical"), "decided on an unreadable value: {response}");
        let warnings = warnings(&response);
        let w = warnings.iter().find(|w| w.contains("(Observation/k-bad)")).expect("a warning names it");
        assert!(w.contains("element valueQuantity") && w.contains("kept without a value"), "{w}");
        assert!(w.chars().count() < 200 && !w.contains(&"x".repeat(30)), "bounded echo: {w}");
    }
    assert!(!server.log_text().contains("Jane"));
}

/// Revision 2 A1: an unreadable value never hides an older readable one. The newer result is
/// kept (without a value) rather than skipped, so this needs rule evaluation to take the
/// latest *readable* result (`src/rules/eval.rs`, the lead's part of A1).
#[tokio::test]
async fn an_older_readable_potassium_is_used_when_the_newer_is_unreadable() {
    let server = server();
    let newer = potassium("k-new", "2026-06-15T08:00:00Z", json!({"value": "abc", "unit": "mmol/L"}));
    let older = potassium("k-old", "2026-06-13T08:00:00Z", mmol(2.4));
    let response = call(&server, "patient-view", &[cramp(), newer, older], &[]).await;
    assert!(fired(&response, CRITICAL_K, "critical"), "{response}");
    assert!(warnings(&response).iter().any(|w| w.contains("(Observation/k-new)") && w.contains("valueQuantity")));
}

#[tokio::test]
async fn an_unreadable_decision_element_skips_the_resource_and_names_it() {
    let server = server();
    let mut bad_status = potassium("k-status", "2026-06-15T09:00:00Z", mmol(2.1));
    bad_status["status"] = json!(5);
    let mut bad_date = potassium("k-date", "2026-06-15T09:00:00Z", mmol(2.1));
    bad_date["effectiveDateTime"] = json!({"value": "yesterday"});
    let good = potassium("k-good", "2026-06-14T08:00:00Z", mmol(2.3));
    let response = call(&server, "patient-view", &[cramp(), bad_status, bad_date, good], &[]).await;
    assert!(fired(&response, CRITICAL_K, "critical"), "the readable result is still used: {response}");
    let warnings = warnings(&response);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let status = warnings.iter().find(|w| w.contains("(Observation/k-status)")).expect("k-status named");
    assert!(status.contains("element status could not be read (found 5)"), "{status}");
    let date = warnings.iter().find(|w| w.contains("(Observation/k-date)")).expect("k-date named");
    assert!(date.contains("element effectiveDateTime could not be read"), "{date}");
    // The detail speaks of the result used, not of a skipped one.
    let card = &response["cards"].as_array().unwrap()[0];
    let used = &card["extension"]["org.leg-cramp-cds.evidence"]["resources"];
    assert!(used.as_array().unwrap().iter().any(|r| r == "Observation/k-good"), "{card}");
    assert!(!used.to_string().contains("k-status") && !used.to_string().contains("k-date"), "{card}");
}

#[tokio::test]
async fn a_pathological_resource_answers_quickly() {
    let server = server();
    let mut pathological = potassium("k-many", "2026-06-15T09:00:00Z", mmol(2.0));
    pathological["note"] = json!(vec![5; 5000]);
    pathological["referenceRange"] = json!(vec![json!({"high": {"value": "high"}}); 5000]);
    let good = potassium("k-good", "2026-06-14T08:00:00Z", mmol(2.3));
    let started = Instant::now();
    let response = call(&server, "patient-view", &[cramp(), pathological, good], &[]).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(fired(&response, CRITICAL_K, "critical"), "{response}");
    let warnings = warnings(&response);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("(Observation/k-many)") && warnings[0].contains("more than 8 elements"),
        "{warnings:?}"
    );
}
