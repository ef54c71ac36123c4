//! The optional terminology lookup (`--terminology-url`), against a wiremock server on
//! loopback playing RxNav (or a FHIR terminology server): a product code with no display is
//! resolved to its ingredient and the card fires; answers are cached; a slow, down or wrong
//! service never holds the hook past the FHIR deadline, and the medication is named in the
//! response's warnings instead.
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: &str = "2026-06-15T12:00:00Z";
/// RxNorm SCD "atorvastatin 20 MG Oral Tablet", sent without a display.
const SCD: &str = "617310";
const RXNAV_PATH: &str = "/REST/rxcui/617310/related.json";

/// A patient with leg cramps and one active MedicationRequest coded only by `code`.
fn request_with_product_code(code: &str) -> Value {
    let mut req = patient_view_request();
    req["prefetch"]["conditions"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2", "display": "Cramp and spasm"}]},
        "recordedDate": "2026-06-01"}}]});
    req["prefetch"]["medicationRequests"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "m7", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]},
        "authoredOn": "2025-01-10"}}]});
    req
}

fn rxnav_atorvastatin() -> Value {
    json!({"relatedGroup": {"rxcui": SCD, "termType": ["IN", "MIN"], "conceptGroup": [
        {"tty": "IN", "conceptProperties": [{"rxcui": "83367", "name": "atorvastatin", "tty": "IN"}]},
        {"tty": "MIN"}]}})
}

fn server_with(url: &str, extra: &[&str]) -> TestServer {
    TestServer::builder()
        .args(["--now", NOW, "--fhir-timeout", "1s", "--terminology-url", url])
        .args(extra.iter().copied())
        .start()
}

fn rules(body: &Value) -> Vec<String> {
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["source"]["topic"]["code"].as_str().map(String::from))
        .collect()
}

fn warnings(body: &Value) -> Vec<String> {
    body["extension"]["org.leg-cramp-cds.warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Posts the request; asserts 200, no statin card and the warning naming the medication.
async fn assert_not_recognised(server: &TestServer, reason: &str) {
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &request_with_product_code(SCD)).await;
    assert_eq!(status, 200, "{body}");
    assert_valid_response(&body);
    assert!(!rules(&body).contains(&"medication-statin".to_string()), "{body}");
    let expected = format!("MedicationRequest/m7: RxNorm {SCD} not recognised ({reason}); not used");
    assert!(warnings(&body).contains(&expected), "{expected:?} not in {:?}", warnings(&body));
}

#[tokio::test]
async fn a_product_code_is_resolved_to_its_ingredient_once_and_the_statin_card_fires() {
    let rxnav = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(RXNAV_PATH))
        .and(query_param("tty", "IN MIN"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rxnav_atorvastatin()))
        .expect(1)
        .mount(&rxnav)
        .await;
    let server = server_with(&format!("{}/REST", rxnav.uri()), &[]);
    for _ in 0..2 {
        let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &request_with_product_code(SCD)).await;
        assert_eq!(status, 200, "{body}");
        let statin =
            body["cards"].as_array().unwrap().iter().find(|c| c["source"]["topic"]["code"] == "medication-statin");
        let detail = statin.unwrap_or_else(|| panic!("no statin card: {body}"))["detail"].as_str().unwrap();
        assert!(detail.contains("atorvastatin"), "{detail}");
        assert!(warnings(&body).iter().all(|w| !w.contains("RxNorm")), "{body}");
    }
    // The second request was answered from the cache: RxNav was asked once.
    rxnav.verify().await;
    // The log has counts, never which drug.
    assert!(server.wait_for_log("terminology lookup").await);
    assert!(!server.log_text().contains(SCD));
}

#[tokio::test]
async fn a_slow_service_does_not_hold_the_hook_past_the_fhir_deadline() {
    let rxnav = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(RXNAV_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(rxnav_atorvastatin()).set_delay(Duration::from_secs(5)))
        .mount(&rxnav)
        .await;
    let server = server_with(&format!("{}/REST", rxnav.uri()), &[]);
    let started = Instant::now();
    assert_not_recognised(&server, "terminology service did not answer in time").await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_service_that_is_down_gives_the_warning() {
    // A port that was just free: nothing listens, the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = server_with(&format!("http://127.0.0.1:{port}/REST"), &[]);
    assert_not_recognised(&server, "terminology service unreachable").await;
}

#[tokio::test]
async fn wrong_answers_give_the_warning() {
    let rxnav = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(RXNAV_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&rxnav)
        .await;
    Mock::given(method("GET"))
        .and(path("/REST/rxcui/999999/related.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"relatedGroup": {"rxcui": "999999"}})))
        .mount(&rxnav)
        .await;
    Mock::given(method("GET"))
        .and(path("/REST/rxcui/888888/related.json"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&rxnav)
        .await;
    let server = server_with(&format!("{}/REST", rxnav.uri()), &[]);
    assert_not_recognised(&server, "terminology service answer is not readable").await;
    for (code, reason) in [
        ("999999", "terminology service knows no ingredient for it"),
        ("888888", "terminology service answered HTTP 503"),
    ] {
        let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &request_with_product_code(code)).await;
        assert_eq!(status, 200, "{body}");
        let expected = format!("MedicationRequest/m7: RxNorm {code} not recognised ({reason}); not used");
        assert!(warnings(&body).contains(&expected), "{expected:?} not in {:?}", warnings(&body));
    }
}

#[tokio::test]
async fn without_a_terminology_service_the_medication_is_named_in_the_warnings() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    assert_not_recognised(&server, "no terminology service is configured").await;
}

#[tokio::test]
async fn a_code_that_is_not_an_rxcui_is_never_sent() {
    let rxnav = MockServer::start().await;
    let server = server_with(&format!("{}/REST", rxnav.uri()), &[]);
    let (status, body) =
        server.post_json("/cds-services/leg-cramp-causes", &request_with_product_code("../../admin?x=1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(warnings(&body).iter().any(|w| w.contains("(not a valid RxNorm code)")), "{body}");
    assert!(rxnav.received_requests().await.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn a_fhir_terminology_server_is_asked_with_codesystem_lookup() {
    let tx = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/CodeSystem/$lookup"))
        .and(query_param("system", "http://www.nlm.nih.gov/research/umls/rxnorm"))
        .and(query_param("code", SCD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Parameters", "parameter": [
            {"name": "name", "valueString": "RxNorm"},
            {"name": "display", "valueString": "atorvastatin 20 MG Oral Tablet"}]})))
        .expect(1)
        .mount(&tx)
        .await;
    let server = server_with(&format!("{}/fhir", tx.uri()), &["--terminology-protocol", "fhir"]);
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &request_with_product_code(SCD)).await;
    assert_eq!(status, 200, "{body}");
    assert!(rules(&body).contains(&"medication-statin".to_string()), "{body}");
    tx.verify().await;
}
