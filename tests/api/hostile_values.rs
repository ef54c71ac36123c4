//! Values and identifiers checked as a clinician would (issue 13), through the real server:
//! a value no living patient can have is not used for decisions and is named in the warnings;
//! FHIR ids follow the FHIR id rule; a request is about one patient, and another patient's
//! data is never used for it.
use crate::helpers::*;
use crate::rules::{catalog, NOW};
use crate::tolerant_reading::{cramp, patient, server};
use leg_cramp_cds::service::cases::build_request;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CRITICAL: &str = "red-flag-critical-electrolytes";
const HYPOKALAEMIA: &str = "electrolyte-hypokalemia";

/// A result of the LOINC `code` with `valueQuantity` {value, unit}.
fn lab(id: &str, code: &str, when: &str, value: f64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
}

fn potassium(id: &str, when: &str, value: f64) -> Value {
    lab(id, "2823-3", when, value, "mmol/L")
}

/// The request for `hook` with these resources (and drafts), as `build_request` makes it.
fn request(hook: &str, resources: &[Value], drafts: &[Value]) -> (String, Value) {
    build_request(&catalog(), hook, patient(), resources, drafts, None).unwrap()
}

/// Sends the resources to the service of `hook`; the 200 response body.
async fn call(server: &TestServer, hook: &str, resources: &[Value], drafts: &[Value]) -> Value {
    let (service, body) = request(hook, resources, drafts);
    let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
    assert_eq!(status, 200, "{response}");
    assert_valid_response(&response);
    response
}

fn rules(response: &Value) -> Vec<String> {
    rule_summaries(response).into_iter().map(|(rule, _)| rule).collect()
}

fn warnings(response: &Value) -> Vec<String> {
    response["extension"]["org.leg-cramp-cds.warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The JSON pointers an OperationOutcome names.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn potassium_of_zero_negative_or_denormal_is_not_believed() {
    let server = server();
    for value in [0.0, -3.0, 5e-324, -0.0, 0.1, 25.0] {
        let response =
            call(&server, "patient-view", &[cramp(), potassium("k-bad", "2026-06-15T08:00:00Z", value)], &[]).await;
        let fired = rules(&response);
        assert!(!fired.iter().any(|r| r == CRITICAL || r == HYPOKALAEMIA), "K {value}: {fired:?}");
        let warnings = warnings(&response);
        assert!(
            warnings.iter().any(|w| w.contains("Observation/k-bad")
                && w.contains("potassium")
                && w.contains("outside what a living patient can have")),
            "K {value}: {warnings:?}"
        );
    }
    // Ten days old (outside the critical card's 7 days): no low-potassium warning card either.
    let response =
        call(&server, "patient-view", &[cramp(), potassium("k-old", "2026-06-05T08:00:00Z", 0.0)], &[]).await;
    assert!(!rules(&response).iter().any(|r| r == HYPOKALAEMIA), "{response}");
}

#[tokio::test]
async fn an_impossible_newest_result_does_not_hide_the_newest_plausible_one() {
    let server = server();
    let resources = [
        cramp(),
        potassium("k-impossible", "2026-06-15T10:00:00Z", -3.0),
        potassium("k-real", "2026-06-14T08:00:00Z", 2.3),
        potassium("k-older", "2026-06-13T08:00:00Z", 4.1),
    ];
    let response = call(&server, "patient-view", &resources, &[]).await;
    let card = response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"]["topic"]["code"] == CRITICAL)
        .unwrap_or_else(|| panic!("the 2.3 mmol/L result decides: {response}"));
    assert!(card["summary"].as_str().unwrap().contains("2.3"), "{card}");
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.contains("A newer potassium result (-3 mmol/L") && detail.contains("is not a possible value"),
        "{detail}"
    );
    assert!(warnings(&response).iter().any(|w| w.contains("Observation/k-impossible")), "{response}");
}

#[tokio::test]
async fn huge_negative_value_does_not_make_a_long_summary() {
    let server = server();
    let huge = [-1e300, 1e300, -1e-300, f64::MAX, f64::MIN, 5e-324];
    // (LOINC, unit) of analytes the rules read, several through a unit conversion.
    let analytes = [
        ("2823-3", "mmol/L"),
        ("2823-3", "mg/dL"),
        ("2951-2", "mmol/L"),
        ("19123-9", "mg/dL"),
        ("2601-3", "mmol/L"),
        ("17861-6", "mg/dL"),
        ("2157-6", "U/L"),
        ("3016-3", "mIU/L"),
        ("2132-9", "pmol/L"),
        ("14635-7", "nmol/L"),
        ("33914-3", "mL/min/{1.73_m2}"),
        ("2345-7", "mmol/L"),
        ("8867-4", "/min"),
        ("1751-7", "g/L"),
    ];
    let statin = json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "atorvastatin 40 MG Oral Tablet"}});
    let mut cards = 0;
    for (code, unit) in analytes {
        for value in huge {
            let resources = [cramp(), statin.clone(), lab("x1", code, "2026-06-15T08:00:00Z", value, unit)];
            let response = call(&server, "patient-view", &resources, &[]).await;
            for card in response["cards"].as_array().unwrap() {
                cards += 1;
                let summary = card["summary"].as_str().unwrap();
                assert!(summary.chars().count() < 140, "{code} {value}: {summary}");
                let detail = card["detail"].as_str().unwrap_or("");
                assert_no_long_number(detail, &format!("{code} {value} detail"));
            }
            for w in warnings(&response) {
                assert!(w.chars().count() < 200, "{code} {value}: {w}");
                assert_no_long_number(&w, &format!("{code} {value} warning"));
            }
        }
    }
    assert!(cards > 0, "no card was checked");
}

/// No run of digits longer than 12 (a number is written in scientific notation first).
fn assert_no_long_number(text: &str, what: &str) {
    let longest = text.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    assert!(longest <= 12, "{what}: a {longest}-digit number in {text}");
}

#[tokio::test]
async fn patient_id_of_100000_characters_is_refused() {
    let server = server();
    let long = "x".repeat(100_000);
    for (field, value) in [
        ("patientId", long.as_str()),
        ("patientId", "p 1"),
        ("patientId", "Patient/p1"),
        ("encounterId", long.as_str()),
        ("encounterId", "e_1"),
    ] {
        let mut body = patient_view_request();
        body["context"][field] = json!(value);
        if field == "patientId" {
            body["prefetch"]["patient"]["id"] = json!(value);
        }
        let res = server
            .client
            .post(server.url("/cds-services/leg-cramp-causes"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400, "{field} {:.20}", value);
        let text = res.text().await.unwrap();
        assert!(text.len() < 4_000, "{field}: the value is not echoed ({} bytes)", text.len());
        assert!(!text.contains("xxxxxxxxxx"), "{field}: echoed");
        let outcome: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(expressions(&outcome).contains(&format!("/context/{field}")), "{outcome}");
    }
    // A FHIR id may have 64 characters, with '-' and '.'.
    let id = format!("A-b.{}", "9".repeat(60));
    let mut body = patient_view_request();
    body["context"]["patientId"] = json!(id);
    body["prefetch"]["patient"]["id"] = json!(id);
    let (status, response) = server.post_json("/cds-services/leg-cramp-causes", &body).await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn context_patient_id_mismatching_prefetch_patient_is_400() {
    let server = server();
    let (_, mut body) = request("patient-view", &[cramp(), potassium("k1", "2026-06-15T08:00:00Z", 2.3)], &[]);
    body["context"]["patientId"] = json!("someone-else");
    let (status, outcome) = server.post_json("/cds-services/leg-cramp-causes", &body).await;
    assert_eq!(status, 400, "{outcome}");
    let pointers = expressions(&outcome);
    assert!(pointers.contains(&"/context/patientId".to_string()), "{outcome}");
    assert!(pointers.contains(&"/prefetch/patient/id".to_string()), "{outcome}");
    assert!(!outcome.to_string().contains("someone-else"), "ids are not echoed: {outcome}");

    // The same Patient inside a Bundle under another key is named there.
    let mut body = patient_view_request();
    body["prefetch"]["extra"] = json!({"resourceType": "Bundle", "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p2"}}]});
    let (status, outcome) = server.post_json("/cds-services/leg-cramp-causes", &body).await;
    assert_eq!(status, 400, "{outcome}");
    assert!(expressions(&outcome).contains(&"/prefetch/extra/entry/0/resource/id".to_string()), "{outcome}");

    // On order hooks too.
    let mut body = order_request("order-sign", false);
    body["prefetch"]["patient"]["id"] = json!("p2");
    let (status, outcome) = server.post_json("/cds-services/leg-cramp-order-sign", &body).await;
    assert_eq!(status, 400, "{outcome}");
    assert!(expressions(&outcome).contains(&"/context/patientId".to_string()), "{outcome}");
}

#[tokio::test]
async fn resources_of_another_patient_are_skipped() {
    let server = server();
    let mut other_k = potassium("k-other", "2026-06-15T08:00:00Z", 2.1);
    other_k["subject"] = json!({"reference": "https://ehr.example/fhir/Patient/p2"});
    let mut other_cramp = cramp();
    other_cramp["id"] = json!("cramp-other");
    other_cramp["subject"] = json!({"reference": "Patient/p2/_history/4"});
    let own_k = potassium("k-own", "2026-06-14T08:00:00Z", 4.2);
    let response = call(&server, "patient-view", &[cramp(), other_k, own_k], &[]).await;
    assert!(!rules(&response).iter().any(|r| r == CRITICAL), "p2's potassium is not p1's: {response}");
    let warnings = warnings(&response);
    assert!(
        warnings.iter().any(|w| w.contains("Observation/k-other") && w.contains("another patient")),
        "{warnings:?}"
    );
    // Without the patient's own cramp diagnosis, another patient's is no evidence.
    let response =
        call(&server, "patient-view", &[other_cramp, potassium("k-low", "2026-06-15T08:00:00Z", 2.1)], &[]).await;
    assert!(!rules(&response).iter().any(|r| r == CRITICAL), "{response}");
    assert!(warnings_of(&response, "Condition/cramp-other"), "{response}");

    // A draft order for another patient is not this patient's order.
    let quinine = json!({"resourceType": "MedicationRequest", "id": "draft-q", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"text": "quinine sulfate 324 MG Oral Capsule"},
        "subject": {"reference": "Patient/p2"}, "authoredOn": NOW});
    let response = call(&server, "order-sign", &[], &[quinine]).await;
    assert!(!rules(&response).iter().any(|r| r == "treatment-safety-quinine"), "{response}");
    assert!(warnings_of(&response, "MedicationRequest/draft-q"), "{response}");
}

fn warnings_of(response: &Value, reference: &str) -> bool {
    warnings(response).iter().any(|w| w.contains(reference) && w.contains("another patient"))
}

#[tokio::test]
async fn resources_of_another_patient_from_the_fhir_server_are_skipped() {
    let fhir = MockServer::start().await;
    let mut other_k = potassium("k-other", "2026-06-15T08:00:00Z", 2.1);
    other_k["subject"] = json!({"reference": "Patient/p2"});
    let labs = json!({"resourceType": "Bundle", "type": "searchset",
        "entry": [{"resource": other_k}, {"resource": potassium("k-own", "2026-06-14T08:00:00Z", 4.2)}]});
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(labs))
        .mount(&fhir)
        .await;
    // A server that answers Patient/p1 with someone else: that Patient is not used.
    Mock::given(method("GET"))
        .and(path("/fhir/Patient/p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Patient", "id": "p2"})))
        .mount(&fhir)
        .await;
    let server = server();
    let (service, mut body) = request("patient-view", &[cramp()], &[]);
    let prefetch = body["prefetch"].as_object_mut().unwrap();
    prefetch.remove("labs");
    prefetch.remove("patient");
    body["fhirServer"] = json!(format!("{}/fhir", fhir.uri()));
    let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
    assert_eq!(status, 200, "{response}");
    assert!(!rules(&response).iter().any(|r| r == CRITICAL), "{response}");
    assert!(warnings_of(&response, "Observation/k-other"), "{response}");
    let all = warnings(&response);
    assert!(all.iter().any(|w| w.contains("fetched.patient") && w.contains("Patient/p2")), "{all:?}");
}

#[tokio::test]
async fn a_malformed_resource_id_costs_only_that_resource() {
    let server = server();
    let long = "k".repeat(10_000);
    let mut bad_long = potassium("x", "2026-06-15T09:00:00Z", 2.0);
    bad_long["id"] = json!(long);
    let bad_chars = potassium("k 2/../x", "2026-06-15T09:30:00Z", 2.0);
    let good = potassium("k-good", "2026-06-14T08:00:00Z", 2.3);
    let response = call(&server, "patient-view", &[cramp(), bad_long, bad_chars, good], &[]).await;
    let card = response["cards"].as_array().unwrap().iter().find(|c| c["source"]["topic"]["code"] == CRITICAL);
    let card = card.unwrap_or_else(|| panic!("the good result is used: {response}"));
    assert!(card["summary"].as_str().unwrap().contains("2.3"), "{card}");
    let warnings = warnings(&response);
    assert_eq!(warnings.iter().filter(|w| w.contains("not a FHIR id")).count(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.chars().count() < 300), "ids are echoed bounded: {warnings:?}");
}
