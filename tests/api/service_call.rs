use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn each_service_answers_a_valid_request_with_a_valid_response() {
    let server = TestServer::start();
    for (id, req) in [
        ("leg-cramp-causes", patient_view_request()),
        ("leg-cramp-order-select", order_request("order-select", true)),
        ("leg-cramp-order-sign", order_request("order-sign", false)),
    ] {
        let res = server.client.post(server.url(&format!("/cds-services/{id}"))).json(&req).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{id}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let (_, body) = read(res).await;
        assert!(body["cards"].is_array(), "{id}: {body}");
        assert_valid_response(&body);
    }
}

#[tokio::test]
async fn unknown_top_level_fields_and_extensions_are_ignored() {
    let server = TestServer::start();
    let mut req = patient_view_request();
    req["somethingNew"] = json!({"from": "a future version"});
    req["extension"] = json!({"com.example.timestamp": "2017-11-27T22:13:25Z", "com.example.nested": {"a": [1, 2]}});
    req["context"]["com.example.contextExtra"] = json!(true);
    req["fhirAuthorization"] = json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "cds", "patient": "p1", "newField": 1});
    req["fhirServer"] = json!("http://127.0.0.1:9/fhir");
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_valid_response(&body);
}

#[tokio::test]
async fn the_access_log_names_the_call_but_not_the_patient() {
    let server = TestServer::start();
    let req = patient_view_request();
    let hook_instance = req["hookInstance"].as_str().unwrap().to_string();
    let (status, _) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200);
    // The log line is written after the response; give the reader thread a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        if let Some(l) =
            server.logs.lock().unwrap().iter().find(|l| l.contains(&hook_instance) && l.contains("\"status\"")).cloned()
        {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no log line for {hook_instance}:\n{}", server.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["service"], "leg-cramp-causes");
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "POST");
    assert!(v["latency_ms"].as_f64().is_some());
    assert!(!server.log_text().contains("1970-01-01"), "birth date leaked into logs");
}
