//! Each error class: its status, and an OperationOutcome that names the problem.
use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_400() {
    let server = TestServer::start();
    let (status, body) = server.post_raw("/cds-services/leg-cramp-causes", "{\"hook\": \"patient-view\",").await;
    assert_eq!(status, 400);
    assert_outcome(&body, "not valid JSON");
}

#[tokio::test]
async fn empty_body_is_400() {
    let server = TestServer::start();
    let (status, body) = server.post_raw("/cds-services/leg-cramp-causes", "").await;
    assert_eq!(status, 400);
    assert_outcome(&body, "empty");
}

#[tokio::test]
async fn each_missing_required_field_is_named_by_pointer() {
    let server = TestServer::start();
    for (field, pointer) in [("hook", "/hook"), ("hookInstance", "/hookInstance"), ("context", "/context")] {
        let mut req = patient_view_request();
        req.as_object_mut().unwrap().remove(field);
        let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
        assert_eq!(status, 400, "{field}");
        assert_outcome(&body, pointer);
        assert_eq!(body["issue"][0]["code"], "required");
        assert_eq!(body["issue"][0]["expression"][0], pointer);
    }
    let mut req = patient_view_request();
    req["context"].as_object_mut().unwrap().remove("patientId");
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "/context/patientId");
}

#[tokio::test]
async fn wrong_types_are_400() {
    let server = TestServer::start();
    let cases = [
        ("/hookInstance", json!(42)),
        ("/hookInstance", json!("not-a-uuid")),
        ("/context", json!("p1")),
        ("/prefetch/patient", json!("123")),
        ("/fhirServer", json!("not a url")),
    ];
    for (pointer, value) in cases {
        let mut req = patient_view_request();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() { &mut req } else { req.pointer_mut(parent).unwrap() };
        target[key] = value.clone();
        let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
        assert_eq!(status, 400, "{pointer} = {value}");
        assert_outcome(&body, pointer);
    }
}

#[tokio::test]
async fn root_must_be_an_object() {
    let server = TestServer::start();
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "not of type \"object\"");
}

#[tokio::test]
async fn hook_must_match_the_service() {
    let server = TestServer::start();
    let (status, body) = server.post_json("/cds-services/leg-cramp-order-sign", &patient_view_request()).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "answers hook 'order-sign'");
}

#[tokio::test]
async fn fhir_authorization_without_fhir_server_is_400() {
    let server = TestServer::start();
    let mut req = patient_view_request();
    req["fhirAuthorization"] = json!({"access_token": "abc", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"});
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "fhirServer");
}

#[tokio::test]
async fn deep_nesting_is_400_not_a_crash() {
    let server = TestServer::start();
    let depth = 100_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let (status, out) = server.post_raw("/cds-services/leg-cramp-causes", body).await;
    assert_eq!(status, 400);
    assert_outcome(&out, "recursion limit");
    assert_eq!(server.get("/healthz").await.0, 200, "server still up");
}

#[tokio::test]
async fn unknown_service_is_404() {
    let server = TestServer::start();
    let (status, body) = server.post_json("/cds-services/no-such-service", &patient_view_request()).await;
    assert_eq!(status, 404);
    assert_outcome(&body, "no-such-service");
    let (status, body) = server.get("/not/a/path").await;
    assert_eq!(status, 404);
    assert_outcome(&body, "/not/a/path");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = TestServer::start();
    let res = server.client.get(server.url("/cds-services/leg-cramp-causes")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], "POST, OPTIONS");
    let (_, body) = read(res).await;
    assert_outcome(&body, "method not allowed");
    let res = server.client.delete(server.url("/cds-services")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], "GET, OPTIONS");
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let server = TestServer::start();
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&patient_view_request()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    let (_, body) = read(res).await;
    assert_outcome(&body, "text/plain");
}

#[tokio::test]
async fn twenty_mib_body_is_413_and_the_next_request_is_served() {
    let server = TestServer::start();
    let big = vec![b' '; 20 << 20];
    let (status, body) = server.post_raw("/cds-services/leg-cramp-causes", big).await;
    assert_eq!(status, 413);
    assert_outcome(&body, "exceeds the limit of 10485760 bytes");
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &patient_view_request()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn max_body_is_configurable_by_flag_and_env() {
    let server = TestServer::builder().env("LEG_CRAMP_CDS_MAX_BODY", "1KiB").start();
    let mut req = patient_view_request();
    req["extension"] = json!({"com.example.padding": "x".repeat(2000)});
    let (status, _) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 413);
}
