//! `eval` runs the same service function as a live call: with `--fhir-server`, prefetch keys
//! the file lacks are fetched from that server exactly as the live service fetches them; without
//! it, a missing key fails with the service's 412 text.
use crate::helpers::*;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "eval-fhir-token-7c1e";
const NOW: &str = "2026-06-15T12:00:00Z";

fn bundle(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

/// A FHIR server that answers the `conditions` key (a cramp condition) and the `labs` key
/// (a low magnesium), each exactly once.
async fn fhir_server() -> MockServer {
    let server = MockServer::start().await;
    let bearer = format!("Bearer {TOKEN}");
    let cramps = json!({"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G47.62", "display": "Sleep related leg cramps"}]},
        "recordedDate": "2026-05-01"});
    let magnesium = json!({"resourceType": "Observation", "id": "mg1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]}, "effectiveDateTime": "2026-06-10T08:00:00Z",
        "valueQuantity": {"value": 0.62, "unit": "mmol/L"}});
    Mock::given(method("GET"))
        .and(path("/fhir/Condition"))
        .and(query_param("patient", "p1"))
        .and(header("Authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(vec![cramps])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .and(query_param("category", "laboratory"))
        .and(header("Authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle(vec![magnesium])))
        .expect(1)
        .mount(&server)
        .await;
    server
}

/// A patient-view request whose prefetch lacks `conditions` and `labs`.
fn request_without_conditions_and_labs() -> Value {
    json!({
        "hook": "patient-view", "hookInstance": uuid(),
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
            "medicationRequests": null, "medicationStatements": null, "vitals": null, "pregnancy": null
        }
    })
}

/// Runs the binary's `eval` on `request` (written to a file) with `extra` arguments.
async fn eval(request: &Value, extra: &[String]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("request.json");
    std::fs::write(&file, serde_json::to_vec(request).unwrap()).unwrap();
    let mut args: Vec<String> =
        ["eval", file.to_str().unwrap(), "--cards", "cards", "--now", NOW].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().cloned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN).args(&args).current_dir(project_path("")).output().unwrap()
    })
    .await
    .unwrap();
    drop(dir);
    out
}

/// The (path, query) of every request a mock FHIR server received, sorted.
async fn seen(server: &MockServer) -> Vec<(String, Option<String>)> {
    let mut requests: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.url.path().to_string(), r.url.query().map(str::to_string)))
        .collect();
    requests.sort();
    requests
}

#[tokio::test]
async fn eval_with_a_fhir_server_fetches_missing_keys_as_the_live_service_does() {
    let request = request_without_conditions_and_labs();

    let for_eval = fhir_server().await;
    let args = [
        "--json".to_string(),
        "--fhir-server".into(),
        format!("{}/fhir", for_eval.uri()),
        "--fhir-token".into(),
        TOKEN.into(),
    ];
    let out = eval(&request, &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eval failed: {stderr}");
    let offline: Value = serde_json::from_slice(&out.stdout).expect("eval --json prints the response");

    let for_live = fhir_server().await;
    let server = TestServer::builder().args(["--now", NOW]).start();
    let mut live_request = request.clone();
    live_request["fhirServer"] = json!(format!("{}/fhir", for_live.uri()));
    live_request["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "leg-cramp-cds", "patient": "p1"});
    let (status, live) = server.post_json("/cds-services/leg-cramp-causes", &live_request).await;
    assert_eq!(status, 200, "{live}");

    let cards = rule_summaries(&offline);
    assert_eq!(cards, rule_summaries(&live), "eval and the live service answer alike");
    assert!(cards.iter().any(|(rule, _)| rule == "electrolyte-hypomagnesemia"), "{cards:?}");
    for_eval.verify().await;
    for_live.verify().await;
    assert_eq!(seen(&for_eval).await, seen(&for_live).await, "the same FHIR requests");
    assert!(!stderr.contains(TOKEN), "token leaked by eval");
}

#[tokio::test]
async fn eval_without_a_fhir_server_names_the_missing_keys_and_fails() {
    let out = eval(&request_without_conditions_and_labs(), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing key must fail eval");
    assert!(stderr.contains("required prefetch data is missing and could not be fetched"), "{stderr}");
    assert!(
        stderr.contains("conditions: not supplied in prefetch") && stderr.contains("labs: not supplied"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no cards printed: {}", String::from_utf8_lossy(&out.stdout));
}
