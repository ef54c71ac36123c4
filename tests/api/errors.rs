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
    assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
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

/// A slow client (headers or body trickling in) and a client sending garbage bytes do not
/// stop the service from answering everyone else; the slow body gets a 408.
#[tokio::test]
async fn slow_and_garbage_clients_do_not_block_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::builder().args(["--request-timeout", "1s"]).start();
    let addr = format!("127.0.0.1:{}", server.port);
    // Several connections hold half-sent headers.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /cds-services/leg-cramp-causes HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        idle.push(s);
    }
    // Garbage on another.
    let mut junk = tokio::net::TcpStream::connect(&addr).await.unwrap();
    junk.write_all(&[0xde, 0xad, 0xbe, 0xef, b'\r', b'\n', b'\r', b'\n']).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), junk.read(&mut buf)).await.unwrap().unwrap_or(0);
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || reply.starts_with("HTTP/1.1 400"), "{reply}");
    // A body that never completes: 408 after the request timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /cds-services/leg-cramp-causes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"hook\":")
        .await
        .unwrap();
    // Meanwhile normal calls are served promptly.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let (status, _) = server.post_json("/cds-services/leg-cramp-causes", &patient_view_request()).await;
        assert_eq!(status, 200);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("OperationOutcome"));
    drop(idle);
}
