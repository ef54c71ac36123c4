//! Revision 2 behaviour that spans rules: lab orders stated instead of offered when a result
//! exists, one offer per response, and summaries that stay short whatever the data says.

use crate::helpers::*;
use crate::rules::catalog;
use leg_cramp_cds::fhir::CdsRequest;
use leg_cramp_cds::protocol::schemas::SchemaSet;
use leg_cramp_cds::rules::model::Expectation;
use leg_cramp_cds::service::cases::request_for;
use leg_cramp_cds::service::{evaluate, plan_prefetch};
use proptest::prelude::*;
use serde_json::{json, Value};

const NOW: &str = "2026-06-15T12:00:00Z";

fn cramp() -> Value {
    json!({"resourceType": "Condition", "id": "c1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2", "display": "Cramp and spasm"}]},
        "recordedDate": "2026-06-01"})
}

fn lab(id: &str, loinc: &str, value: f64, unit: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": unit, "code": unit}})
}

fn patient_view(resources: Vec<Value>) -> Value {
    json!({
        "hook": "patient-view", "hookInstance": uuid(),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01"},
            "conditions": null, "medicationRequests": null, "medicationStatements": null, "vitals": null, "pregnancy": null,
            "labs": {"resourceType": "Bundle", "type": "searchset", "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()}
        }
    })
}

fn offered_codes(response: &Value) -> Vec<String> {
    response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["suggestions"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["resource"]["code"]["coding"][0]["code"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_recent_result_is_stated_and_not_ordered_again() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    // Hypokalemia (K 3.1) suggests a metabolic panel and magnesium; magnesium was measured
    // last week, potassium and sodium today.
    let resources = vec![
        cramp(),
        lab("k", "2823-3", 3.1, "mmol/L", "2026-06-14"),
        lab("na", "2951-2", 139.0, "mmol/L", "2026-06-14"),
        lab("mg", "19123-9", 1.9, "mg/dL", "2026-06-08"),
    ];
    let (status, response) = server.post_json("/cds-services/leg-cramp-causes", &patient_view(resources)).await;
    assert_eq!(status, 200, "{response}");
    let codes = offered_codes(&response);
    assert!(!codes.contains(&"19123-9".to_string()), "magnesium re-ordered: {codes:?}");
    assert!(!codes.contains(&"24323-8".to_string()), "panel re-ordered although K and Na are today's: {codes:?}");
    let card = response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"]["topic"]["code"] == "electrolyte-hypokalemia")
        .unwrap_or_else(|| panic!("no hypokalemia card: {response}"));
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.contains("magnesium: recent result") && detail.contains("magnesium 1.9 mg/dL on 2026-06-08"),
        "{detail}"
    );
    assert!(!detail.contains("Order magnesium: no usable result"), "{detail}");

    // Without the magnesium result it is offered, once, and the text says there is none.
    let resources = vec![
        cramp(),
        lab("k", "2823-3", 3.1, "mmol/L", "2026-06-14"),
        lab("na", "2951-2", 139.0, "mmol/L", "2026-06-14"),
    ];
    let (_, response) = server.post_json("/cds-services/leg-cramp-causes", &patient_view(resources)).await;
    let codes = offered_codes(&response);
    assert_eq!(codes.iter().filter(|c| *c == "19123-9").count(), 1, "{codes:?}");
    assert!(response.to_string().contains("Order magnesium: no usable result in the last 90 days"), "{response}");
}

/// Every fire case of every rule, with its numbers pushed to extremes and its drug names made
/// absurdly long: no summary ever reaches 140 characters.
fn extreme(v: &mut Value, number: f64, name: &str) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match (k.as_str(), &*x) {
                    ("value", Value::Number(_)) => *x = json!(number),
                    ("text" | "display", Value::String(s)) if s.chars().count() > 3 => {
                        *x = json!(format!("{s} {name}"));
                    }
                    _ => extreme(x, number, name),
                }
            }
        }
        Value::Array(xs) => xs.iter_mut().for_each(|x| extreme(x, number, name)),
        _ => {}
    }
}

/// The catalogue and schemas, loaded once for every generated case.
fn loaded() -> &'static (leg_cramp_cds::catalog::Catalog, SchemaSet) {
    static LOADED: std::sync::OnceLock<(leg_cramp_cds::catalog::Catalog, SchemaSet)> = std::sync::OnceLock::new();
    LOADED.get_or_init(|| (catalog(), SchemaSet::compile().unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn no_summary_reaches_140_characters(
        number in prop_oneof![Just(-1e300), Just(1e300), Just(-1e40), Just(5e-324), Just(0.0), -1e9f64..1e9f64],
        name in "[A-Za-z]{20,200}( [A-Za-z0-9]{5,60}){0,6}",
    ) {
        let (catalog, schemas) = loaded();
        let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
        let mut checked = 0;
        for rule in &catalog.rules.rules {
            for case in rule.tests.iter().filter(|c| c.expect == Expectation::Fire) {
                let (service_id, mut body) = request_for(catalog, rule, case).unwrap();
                extreme(&mut body["prefetch"], number, &name);
                extreme(&mut body["context"]["draftOrders"], number, &name);
                let service = catalog.service(&service_id).unwrap();
                let Ok(mut request) = CdsRequest::from_value(body, schemas, &service.hook) else { continue };
                let plan = plan_prefetch(&mut request, service);
                let evaluation = evaluate(&catalog.rules, &request, &plan.resources, now);
                for card in &evaluation.response.cards {
                    prop_assert!(card.summary.chars().count() < 140, "{} / {}: {}", rule.id, case.name, card.summary);
                    checked += 1;
                }
            }
        }
        // The mutated requests are still evaluated (the property is not passed vacuously).
        prop_assert!(checked >= catalog.rules.rules.len(), "only {checked} cards checked");
    }
}

fn medication(id: &str, text: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-01-01"})
}

fn on_three_drugs() -> Value {
    let mut request = patient_view(vec![cramp()]);
    let meds = [
        medication("hctz", "Hydrochlorothiazide 25 MG Oral Tablet"),
        medication("atorva", "Lipitor 20 MG Oral Tablet"),
        medication("advair", "Advair Diskus 250/50"),
    ];
    request["prefetch"]["medicationRequests"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": meds.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    request["prefetch"]["labs"] = Value::Null;
    request["prefetch"]["conditions"] =
        json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": cramp()}]});
    request
}

#[tokio::test]
async fn several_drugs_make_one_medication_review_and_feedback_on_it_counts_for_each_rule() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    let (status, response) = server.post_json("/cds-services/leg-cramp-causes", &on_three_drugs()).await;
    assert_eq!(status, 200, "{response}");
    assert_valid_response(&response);
    let cards = response["cards"].as_array().unwrap();
    let topics: Vec<&str> = cards.iter().map(|c| c["source"]["topic"]["code"].as_str().unwrap()).collect();
    assert!(!topics.iter().any(|t| t.starts_with("medication-") && *t != "medication-review"), "{topics:?}");
    let review = cards.iter().find(|c| c["source"]["topic"]["code"] == "medication-review").expect("merged card");
    let summary = review["summary"].as_str().unwrap();
    for drug in ["hydrochlorothiazide", "atorvastatin", "salmeterol"] {
        assert!(summary.contains(drug), "{summary}");
    }
    assert!(summary.starts_with("3 of her medicines"), "{summary}");
    let rules: Vec<&str> = review["extension"]["org.leg-cramp-cds.rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 3, "{rules:?}");
    for r in ["medication-diuretic", "medication-statin", "medication-laba"] {
        assert!(rules.contains(&r), "{rules:?}");
    }
    // Each source once: as a link, never again in the detail.
    let links: Vec<&str> = review["links"].as_array().unwrap().iter().map(|l| l["url"].as_str().unwrap()).collect();
    let mut unique = links.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), links.len(), "{links:?}");

    let fb = json!({"feedback": [{"card": review["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW,
        "overrideReason": {"reason": {"system": "urn:leg-cramp-cds:override-reason", "code": "already-addressed", "display": "Already addressed"}}}]});
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes/feedback", &fb).await;
    assert_eq!(status, 200, "{body}");
    let (_, analytics) = server.get("/analytics/rules").await;
    for r in &rules {
        let row = analytics["rules"].as_array().unwrap().iter().find(|x| x["rule"] == *r).unwrap();
        assert_eq!(row["overridden"], 1, "{r}: {row}");
        assert_eq!(row["issued"], 1, "{r}: {row}");
    }
    // "Already addressed" snoozes each rule it stood for: the next visit shows none of them.
    let (_, again) = server.post_json("/cds-services/leg-cramp-causes", &on_three_drugs()).await;
    let topics: Vec<&str> =
        again["cards"].as_array().unwrap().iter().map(|c| c["source"]["topic"]["code"].as_str().unwrap()).collect();
    assert!(!topics.iter().any(|t| t.starts_with("medication-")), "{topics:?}");
}
