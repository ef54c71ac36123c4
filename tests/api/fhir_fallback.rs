//! Missing prefetch: fetched from the EHR's FHIR server (a wiremock server on loopback),
//! with the bearer token, in parallel, with paging and a deadline; 412 when it cannot be had.
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "secret-fhir-token-4f2a";

fn bundle(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"})
}

fn conditions() -> Vec<Value> {
    vec![json!({"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G47.62", "display": "Sleep related leg cramps"}]},
        "recordedDate": "2026-05-01"})]
}

fn labs() -> Vec<Value> {
    vec![json!({"resourceType": "Observation", "id": "mg1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]}, "effectiveDateTime": "2026-06-10T08:00:00Z",
        "valueQuantity": {"value": 0.62, "unit": "mmol/L"}})]
}

fn meds() -> Vec<Value> {
    vec![json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310798", "display": "hydrochlorothiazide 25 MG Oral Tablet"}]}})]
}

fn request_without_prefetch(fhir: &str) -> Value {
    json!({
        "hook": "patient-view", "hookInstance": uuid(), "fhirServer": fhir,
        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "leg-cramp-cds", "patient": "p1"},
        "context": {"userId": "Practitioner/example", "patientId": "p1"}
    })
}

async fn mount_fhir(server: &MockServer, labs_body: Value) {
    let bearer = format!("Bearer {TOKEN}");
    let auth = || header("Authorization", bearer.as_str());
    Mock::given(method("GET"))
        .and(path("/fhir/Patient/p1"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(patient()))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Condition"))
        .and(query_param("patient", "p1"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(conditions())))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/MedicationRequest"))
        .and(query_param("status", "active"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(meds())))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/MedicationStatement"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(vec![])))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .and(query_param("category", "laboratory"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(labs_body))
        .expect(1)
        .mount(server)
        .await;
    // vitals and pregnancy searches
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .and(query_param("_sort", "-date"))
        .and(wiremock::matchers::query_param_is_missing("category"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(vec![])))
        .expect(2)
        .mount(server)
        .await;
}

#[tokio::test]
async fn missing_prefetch_is_fetched_with_the_bearer_token_and_gives_the_same_cards() {
    let fhir = MockServer::start().await;
    mount_fhir(&fhir, bundle(labs())).await;
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let (status, fetched) = server
        .post_json("/cds-services/leg-cramp-causes", &request_without_prefetch(&format!("{}/fhir", fhir.uri())))
        .await;
    assert_eq!(status, 200, "{fetched}");
    assert_valid_response(&fetched);

    let mut with_prefetch = request_without_prefetch("http://127.0.0.1:9/unused");
    with_prefetch["prefetch"] = json!({"patient": patient(), "conditions": bundle(conditions()), "medicationRequests": bundle(meds()),
        "medicationStatements": null, "labs": bundle(labs()), "vitals": null, "pregnancy": null});
    let (status, prefetched) = server.post_json("/cds-services/leg-cramp-causes", &with_prefetch).await;
    assert_eq!(status, 200);
    let a = rule_summaries(&fetched);
    assert_eq!(a, rule_summaries(&prefetched));
    let ids: Vec<&str> = a.iter().map(|(r, _)| r.as_str()).collect();
    // The self-care baseline yields to the magnesium warning (revision 2 C4).
    assert_eq!(ids, vec!["electrolyte-hypomagnesemia", "medication-diuretic"]);
    fhir.verify().await;
    assert!(!server.log_text().contains(TOKEN), "token leaked into the log");
}

#[tokio::test]
async fn paging_is_followed() {
    let fhir = MockServer::start().await;
    // Page 1 has no magnesium; page 2 (the `next` link) has the low value.
    let page1 = json!({"resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": format!("{}/fhir/Observation-page2?token=abc", fhir.uri())}],
        "entry": [{"resource": {"resourceType": "Observation", "id": "k1", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "effectiveDateTime": "2026-06-10", "valueQuantity": {"value": 4.2, "unit": "mmol/L"}}}]});
    mount_fhir(&fhir, page1).await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation-page2"))
        .and(header("Authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(labs())))
        .expect(1)
        .mount(&fhir)
        .await;
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let (status, body) = server
        .post_json("/cds-services/leg-cramp-causes", &request_without_prefetch(&format!("{}/fhir", fhir.uri())))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(rule_summaries(&body).iter().any(|(r, _)| r == "electrolyte-hypomagnesemia"), "{body}");
    fhir.verify().await;
}

#[tokio::test]
async fn a_client_paginated_prefetch_bundle_is_followed_with_the_token() {
    let fhir = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/next-labs"))
        .and(header("Authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(labs())))
        .expect(1)
        .mount(&fhir)
        .await;
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let mut req = request_without_prefetch(&format!("{}/fhir", fhir.uri()));
    req["prefetch"] = json!({"patient": patient(), "conditions": bundle(conditions()), "medicationRequests": null, "medicationStatements": null,
        "labs": {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": format!("{}/fhir/next-labs", fhir.uri())}], "entry": []},
        "vitals": null, "pregnancy": null});
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200, "{body}");
    assert!(rule_summaries(&body).iter().any(|(r, _)| r == "electrolyte-hypomagnesemia"), "{body}");
    fhir.verify().await;
}

#[tokio::test]
async fn null_prefetch_means_no_data_and_no_call() {
    let fhir = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(500)).expect(0).mount(&fhir).await;
    let server = TestServer::start();
    let mut req = patient_view_request();
    req["fhirServer"] = json!(format!("{}/fhir", fhir.uri()));
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200, "{body}");
    fhir.verify().await;
}

#[tokio::test]
async fn an_operation_outcome_prefetch_is_fetched_instead() {
    let fhir = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Condition"))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(conditions())))
        .expect(1)
        .mount(&fhir)
        .await;
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let mut req = patient_view_request();
    req["fhirServer"] = json!(format!("{}/fhir", fhir.uri()));
    req["prefetch"]["conditions"] =
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]});
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        rule_summaries(&body).iter().any(|(r, _)| r == "lifestyle-self-care-baseline"),
        "cramp condition fetched: {body}"
    );
    fhir.verify().await;
}

#[tokio::test]
async fn missing_prefetch_without_a_fhir_server_is_412_naming_the_keys() {
    let server = TestServer::start();
    let mut req = patient_view_request();
    req["prefetch"].as_object_mut().unwrap().remove("labs");
    req["prefetch"].as_object_mut().unwrap().remove("conditions");
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 412);
    assert_outcome(&body, "prefetch key 'labs'");
    assert_outcome(&body, "prefetch key 'conditions'");
    assert_eq!(body["issue"][0]["code"], "processing");
}

async fn assert_412_within(fhir_server: String, timeout_arg: &str, limit: Duration, needle: &str) {
    let server = TestServer::builder().args(["--fhir-timeout", timeout_arg]).start();
    let started = Instant::now();
    let (status, body) =
        server.post_json("/cds-services/leg-cramp-causes", &request_without_prefetch(&fhir_server)).await;
    let took = started.elapsed();
    assert_eq!(status, 412, "{body}");
    assert!(took < limit, "took {took:?}, limit {limit:?}");
    assert_outcome(&body, needle);
    assert!(!server.log_text().contains(TOKEN));
}

#[tokio::test]
async fn an_unreachable_fhir_server_is_412_within_the_deadline() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_412_within(format!("http://127.0.0.1:{port}/fhir"), "3s", Duration::from_millis(3500), "unreachable").await;
}

#[tokio::test]
async fn a_slow_fhir_server_is_412_at_the_deadline_not_a_hang() {
    let fhir = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(vec![])).set_delay(Duration::from_secs(20)))
        .mount(&fhir)
        .await;
    assert_412_within(format!("{}/fhir", fhir.uri()), "1s", Duration::from_millis(1500), "within 1000 ms").await;
}

#[tokio::test]
async fn a_401_from_the_fhir_server_is_412() {
    let fhir = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(401)).mount(&fhir).await;
    assert_412_within(format!("{}/fhir", fhir.uri()), "3s", Duration::from_secs(3), "401").await;
}

#[tokio::test]
async fn a_non_loopback_fhir_server_is_refused_without_any_connection() {
    // Default policy without auth: loopback only. The refusal happens before connecting.
    assert_412_within("http://10.255.255.1/fhir".into(), "3s", Duration::from_secs(1), "not an allowed FHIR server")
        .await;
}

#[tokio::test]
async fn one_malformed_resource_among_200_is_skipped_and_named() {
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let mut observations: Vec<Value> = (0..199)
        .map(|i| json!({"resourceType": "Observation", "id": format!("na{i}"), "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2951-2"}]}, "effectiveDateTime": format!("2025-{:02}-01", 1 + i % 12),
            "valueQuantity": {"value": 140, "unit": "mmol/L"}}))
        .collect();
    observations.push(json!({"resourceType": "Observation", "id": "k-low", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "effectiveDateTime": "2026-06-10", "valueQuantity": {"value": 3.1, "unit": "mmol/L"}}));
    observations.insert(100, json!({"resourceType": "Observation", "id": "broken", "status": "final", "valueQuantity": {"value": "three point one"}}));
    assert_eq!(observations.len(), 201);
    let mut req = patient_view_request();
    req["prefetch"]["conditions"] = bundle(conditions());
    req["prefetch"]["labs"] = bundle(observations);
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200, "{body}");
    assert!(rule_summaries(&body).iter().any(|(r, _)| r == "electrolyte-hypokalemia"), "{body}");
    let warnings = body["extension"]["org.leg-cramp-cds.warnings"].as_array().expect("warnings").clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("prefetch.labs entry 100 (Observation/broken)"), "{warnings:?}");
    // The log says where, but neither the id nor the offending value.
    assert!(server.wait_for_log("prefetch.labs entry 100").await);
    assert!(!server.log_text().contains("three point one") && !server.log_text().contains("Observation/broken"));
}

#[tokio::test]
async fn a_lab_in_any_supported_unit_gives_the_same_decision() {
    let server = TestServer::builder().args(["--now", "2026-06-15T12:00:00Z"]).start();
    let decide = |code: &'static str, value: f64, unit: &'static str| {
        let mut req = patient_view_request();
        req["prefetch"]["conditions"] = bundle(conditions());
        req["prefetch"]["labs"] = bundle(vec![json!({"resourceType": "Observation", "id": "mg", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": "2026-06-10",
            "valueQuantity": {"value": value, "unit": unit}})]);
        let server = &server;
        async move {
            let (_, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
            rule_summaries(&body).iter().any(|(r, _)| r == "electrolyte-hypomagnesemia")
        }
    };
    // Low: 1.5 mg/dL = 0.617 mmol/L = 1.234 mEq/L.
    assert!(decide("19123-9", 1.5, "mg/dL").await);
    assert!(decide("2601-3", 0.617, "mmol/L").await);
    assert!(decide("19123-9", 1.234, "mEq/L").await);
    // Normal: 2.0 mg/dL = 0.823 mmol/L = 1.646 mEq/L.
    assert!(!decide("19123-9", 2.0, "mg/dL").await);
    assert!(!decide("2601-3", 0.823, "mmol/L").await);
    assert!(!decide("19123-9", 1.646, "mEq/L").await);
    // Unknown unit: never compared (would be "low" if read as mg/dL).
    assert!(!decide("19123-9", 1.5, "mg/L").await);
}
