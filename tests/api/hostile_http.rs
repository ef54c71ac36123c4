//! HTTP details an outside tester found (issue 13): HEAD and OPTIONS, error bodies produced by
//! actix itself, the discovery URL with a trailing slash, the `Host` rule without
//! authentication, and an OpenAPI description that says what is enforced.
use crate::helpers::*;
use jsonschema::{Draft, Registry};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ_ONLY: &str = "GET, HEAD, OPTIONS";
const POST_ONLY: &str = "POST, OPTIONS";

/// Every endpoint answered with GET in a service started without --demo.
const GET_ENDPOINTS: [&str; 6] =
    ["/healthz", "/readyz", "/cds-services", "/analytics/rules", "/openapi.json", "/metrics"];

/// One request written by hand (reqwest always sends a well-formed `Host`): status line,
/// header block and body of the answer.
async fn raw(server: &TestServer, request: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// An error answer: the status, `application/fhir+json`, and an OperationOutcome that says
/// something.
async fn assert_outcome_answer(res: reqwest::Response, status: u16, case: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "{case}");
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/fhir+json"), "{case}");
    let bytes = res.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{case}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    assert_eq!(body["resourceType"], "OperationOutcome", "{case}: {body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(!diagnostics.is_empty(), "{case}: {body}");
    body
}

fn feedback_for_unknown_card() -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"feedback": [{"card": uuid(), "outcome": "overridden", "outcomeTimestamp": now,
        "overrideReason": {"userComment": "not relevant"}}]})
}

#[tokio::test]
async fn head_healthz_is_200_not_405() {
    let server = TestServer::start();
    for path in GET_ENDPOINTS {
        let get = server.client.get(server.url(path)).send().await.unwrap();
        let head = server.client.head(server.url(path)).send().await.unwrap();
        assert_eq!(head.status().as_u16(), 200, "HEAD {path}");
        assert_eq!(head.headers().get("content-type"), get.headers().get("content-type"), "HEAD {path}");
        if path != "/metrics" {
            // The metrics text grows with every request, so its length differs.
            assert_eq!(head.headers().get("content-length"), get.headers().get("content-length"), "HEAD {path}");
        }
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path} sent a body");
    }
    // A resource that only takes POST does not take HEAD either.
    let res = server.client.head(server.url("/cds-services/leg-cramp-causes")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], POST_ONLY);
}

#[tokio::test]
async fn options_is_consistent_with_allow() {
    let server = TestServer::start();
    let (_, doc) = server.get("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        let mut documented: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        documented.sort();
        let url = server.url(path);
        let res = server.client.request(reqwest::Method::OPTIONS, &url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "OPTIONS {path}");
        let allow = res.headers()["allow"].to_str().unwrap().to_string();
        let mut listed: Vec<String> = allow.split(", ").map(String::from).collect();
        listed.sort();
        assert_eq!(listed, documented, "OPTIONS {path}: Allow {allow:?} vs the description");
        // Every other method is 405 with the same `Allow`.
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            if listed.iter().any(|m| m == method) {
                continue;
            }
            let res = server
                .client
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 405, "{method} {path}");
            assert_eq!(res.headers()["allow"].to_str().unwrap(), allow, "{method} {path}");
        }
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} paths described");
    // A CORS preflight is answered by the same resource, with the same methods.
    for (path, allow) in
        [("/cds-services", READ_ONLY), ("/cds-services/leg-cramp-causes", POST_ONLY), ("/healthz", READ_ONLY)]
    {
        let res = server
            .client
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("Origin", "http://sandbox.example.org")
            .header("Access-Control-Request-Method", if allow == POST_ONLY { "POST" } else { "GET" })
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "preflight {path}");
        let h = res.headers();
        assert_eq!(h["allow"], allow, "preflight {path}");
        assert_eq!(h["access-control-allow-methods"], allow, "preflight {path}");
        assert_eq!(h["access-control-allow-origin"], "*", "preflight {path}");
    }
}

#[tokio::test]
async fn parser_level_errors_have_operation_outcome_bodies() {
    let server = TestServer::start();
    let c = &server.client;
    let service = server.url("/cds-services/leg-cramp-causes");
    // Errors raised by actix's extractors, router and guards, not by a handler.
    let res = c.get(server.url("/analytics/rules?since=2020-01-01T00:00:00Z&since=x")).send().await.unwrap();
    let body = assert_outcome_answer(res, 400, "duplicate query parameter").await;
    assert_outcome(&body, "since");
    assert_outcome_answer(c.get(server.url("/no/such/path")).send().await.unwrap(), 404, "unknown path").await;
    assert_outcome_answer(c.put(&service).send().await.unwrap(), 405, "method not allowed").await;
    assert_outcome_answer(c.delete(server.url("/healthz")).send().await.unwrap(), 405, "method not allowed").await;
    let text = c.post(&service).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_outcome_answer(text, 415, "content type").await;
    let truncated =
        c.post(&service).header("content-type", "application/json").body("{\"hook\":").send().await.unwrap();
    assert_outcome_answer(truncated, 400, "JSON payload").await;
    let empty = c.post(server.url("/cds-services/leg-cramp-causes/feedback")).send().await.unwrap();
    assert_outcome_answer(empty, 400, "empty body").await;
    let not_utf8 = c.post(server.url("/cds-services/%FF%FE")).json(&patient_view_request()).send().await.unwrap();
    assert_outcome_answer(not_utf8, 404, "path parameter that is not UTF-8").await;
    // A chunked body cut short: the payload error of actix's decoder.
    let (status, head, body) = raw(
        &server,
        "POST /cds-services/leg-cramp-causes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n",
    )
    .await;
    assert_eq!(status, 400, "{head}");
    assert!(head.contains("content-type: application/fhir+json"), "{head}");
    assert!(body.contains("\"resourceType\":\"OperationOutcome\""), "{body}");
}

#[tokio::test]
async fn discovery_with_trailing_slash_is_served() {
    let server = TestServer::start();
    let (status, plain) = server.get("/cds-services").await;
    assert_eq!(status, 200);
    let (status, slashed) = server.get("/cds-services/").await;
    assert_eq!(status, 200, "{slashed}");
    assert_eq!(slashed, plain);
    // A client that appends `/{id}` to the slashed discovery URL (the CDS Hooks Sandbox does),
    // or writes a service URL with a trailing slash, reaches the service and its feedback.
    for path in ["/cds-services//leg-cramp-causes", "/cds-services/leg-cramp-causes/"] {
        let (status, body) = server.post_json(path, &patient_view_request()).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_valid_response(&body);
    }
    for path in ["/cds-services//leg-cramp-causes/feedback", "/cds-services/leg-cramp-causes/feedback/"] {
        let (status, body) = server.post_json(path, &feedback_for_unknown_card()).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Still only one path per service: a real unknown id stays 404.
    let (status, body) = server.post_json("/cds-services//no-such-service", &patient_view_request()).await;
    assert_eq!(status, 404);
    assert_outcome(&body, "no-such-service");
}

#[tokio::test]
async fn host_header_must_be_loopback_when_auth_is_off() {
    let server = TestServer::builder().args(["--public-url", "https://cds.example.org/"]).start();
    let port = server.port;
    for host in [
        format!("localhost:{port}"),
        "LocalHost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "cds.example.org".to_string(),
        "cds.example.org:443".to_string(),
    ] {
        let res = server.client.get(server.url("/healthz")).header("host", &host).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "Host: {host}");
    }
    // DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1.
    for host in ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.7"] {
        for (method, path) in
            [("GET", "/cds-services"), ("POST", "/cds-services/leg-cramp-causes"), ("OPTIONS", "/healthz")]
        {
            let req = server.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), server.url(path));
            let res = req.header("host", host).json(&patient_view_request()).send().await.unwrap();
            let body = assert_outcome_answer(res, 421, &format!("{method} {path} Host: {host}")).await;
            assert_eq!(body["issue"][0]["code"], "security");
            assert_outcome(&body, "--public-url");
        }
    }
    // A missing, repeated or malformed Host is 400 (RFC 9112 §3.2). A missing or repeated one
    // is refused by actix's HTTP/1.1 parser before the service sees a request (so without a
    // body); one that is not `host[:port]` by the service.
    for (case, headers) in
        [("missing", String::new()), ("repeated", format!("Host: localhost:{port}\r\nHost: evil.example\r\n"))]
    {
        let (status, head, _) =
            raw(&server, &format!("GET /healthz HTTP/1.1\r\n{headers}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 400, "{case}: {head}");
    }
    for (case, headers) in [("with user info", "Host: user@localhost\r\n"), ("not a host", "Host: local host\r\n")] {
        let (status, head, body) =
            raw(&server, &format!("GET /healthz HTTP/1.1\r\n{headers}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 400, "{case}: {head}");
        assert!(head.contains("content-type: application/fhir+json"), "{case}: {head}");
        assert!(body.contains("Host header"), "{case}: {body}");
    }
    // The authority of an absolute-form request target is the one that counts.
    let (status, head, _) = raw(
        &server,
        &format!("GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 421, "{head}");
}

#[tokio::test]
async fn host_header_is_not_restricted_when_auth_is_on() {
    let jwks = project_path("tests/fixtures/sandbox/sandbox-jwks.json");
    let server = TestServer::builder()
        .args(["--trusted-issuer", &format!("https://sandbox.cds-hooks.org={}", jwks.display())])
        .start();
    let res = server.client.get(server.url("/healthz")).header("host", "cds.internal.example").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "every caller proves who it is; the name used does not matter");
    let res =
        server.client.get(server.url("/cds-services")).header("host", "cds.internal.example").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

struct Described {
    doc: Value,
}

impl Described {
    const URI: &'static str = "https://leg-cramp-cds.local/openapi.json";

    fn validator(&self, pointer: &str) -> jsonschema::Validator {
        let registry =
            Registry::new().draft(Draft::Draft202012).add(Self::URI, self.doc.clone()).unwrap().prepare().unwrap();
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(&json!({"$ref": format!("{}#{pointer}", Self::URI)}))
            .unwrap_or_else(|e| panic!("{pointer}: {e}"))
    }

    fn request_body(&self, path: &str) -> jsonschema::Validator {
        let schema = &self.doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        self.validator(schema.as_str().unwrap_or_else(|| panic!("{path}: no request body")).trim_start_matches('#'))
    }
}

/// Each request is judged the same way by the description and by the service.
async fn agree(server: &TestServer, described: &Described, path: &str, body: &Value, case: &str) {
    let valid = described.request_body(path).is_valid(body);
    let (status, answer) = server.post_json(path, body).await;
    if valid {
        assert_eq!(status, 200, "{case}: the description admits it, the service refused it: {answer}");
    } else {
        assert_eq!(status, 400, "{case}: the description refuses it, the service answered: {answer}");
    }
}

#[tokio::test]
async fn openapi_documents_enforced_constraints() {
    let server = TestServer::start();
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let described = Described { doc };
    let doc = &described.doc;
    // The constraints the tester found missing: uuid hookInstance, feedback minItems.
    let call = "/cds-services/leg-cramp-causes";
    let feedback = "/cds-services/leg-cramp-causes/feedback";
    let mut request = patient_view_request();
    agree(&server, &described, call, &request, "a valid call").await;
    for (case, pointer, value) in [
        ("hookInstance not a uuid", "/hookInstance", json!("not-a-uuid")),
        ("another service's hook", "/hook", json!("order-sign")),
        ("userId not a reference", "/context/userId", json!("nobody")),
        ("fhirServer not a URL", "/fhirServer", json!("not a url")),
    ] {
        let mut bad = request.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        bad.pointer_mut(parent).unwrap()[key] = value;
        assert!(!described.request_body(call).is_valid(&bad), "{case}: the description admits it");
        agree(&server, &described, call, &bad, case).await;
    }
    request.as_object_mut().unwrap().remove("prefetch");
    let (status, _) = server.post_json(call, &request).await;
    assert_eq!(status, 412, "no prefetch, no fhirServer");
    assert!(
        !described.request_body(call).is_valid(&request),
        "the description asks for the prefetch keys or a fhirServer"
    );
    agree(&server, &described, feedback, &feedback_for_unknown_card(), "valid feedback").await;
    for (case, bad) in [
        ("no feedback items", json!({"feedback": []})),
        (
            "accepted without suggestions",
            json!({"feedback": [{"card": uuid(), "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}),
        ),
        (
            "overridden with suggestions",
            json!({"feedback": [{"card": uuid(), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
            "acceptedSuggestions": [{"id": "x"}]}]}),
        ),
        (
            "timestamp not a date-time",
            json!({"feedback": [{"card": uuid(), "outcome": "overridden", "outcomeTimestamp": "yesterday"}]}),
        ),
    ] {
        assert!(!described.request_body(feedback).is_valid(&bad), "{case}: the description admits it");
        agree(&server, &described, feedback, &bad, case).await;
    }
    // Every operation: the error answers it can give, each an OperationOutcome sent as
    // application/fhir+json; HEAD beside each GET, OPTIONS on each path.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let item = item.as_object().unwrap();
        assert!(item.contains_key("options"), "{path}: no OPTIONS");
        assert_eq!(item.contains_key("get"), item.contains_key("head"), "{path}: GET without HEAD");
        for (method, op) in item {
            let responses = op["responses"].as_object().unwrap();
            for status in ["421", "500"] {
                assert!(responses.contains_key(status), "{method} {path}: no {status}");
            }
            if method == "post" {
                for status in ["400", "408", "413", "415", "503"] {
                    assert!(responses.contains_key(status), "{method} {path}: no {status}");
                }
            }
            assert!(!responses.contains_key("401"), "{method} {path}: 401 with authentication off");
            for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                let content = response["content"].as_object().unwrap();
                assert_eq!(content.keys().collect::<Vec<_>>(), ["application/fhir+json"], "{method} {path} {status}");
            }
        }
    }
    // Every endpoint the service answers is described (the demo's only with --demo).
    for path in GET_ENDPOINTS.iter().chain(&[call, feedback, "/cds-services/leg-cramp-order-sign"]) {
        assert!(doc["paths"].get(*path).is_some(), "{path} not described");
    }
    assert!(doc["paths"].get("/samples").is_none(), "demo pages described without --demo");
    // An error body of the service conforms to the described OperationOutcome.
    let res = server.client.get(server.url("/no/such/path")).send().await.unwrap();
    let outcome = assert_outcome_answer(res, 404, "unknown path").await;
    assert!(described.validator("/components/schemas/OperationOutcome").is_valid(&outcome));
}

#[tokio::test]
async fn openapi_follows_the_configuration() {
    let jwks = project_path("tests/fixtures/sandbox/sandbox-jwks.json");
    let server = TestServer::builder()
        .args(["--trusted-issuer", &format!("https://sandbox.cds-hooks.org={}", jwks.display()), "--demo"])
        .start();
    let (_, doc) = server.get("/openapi.json").await;
    let call = &doc["paths"]["/cds-services/leg-cramp-causes"]["post"];
    assert!(call["responses"]["401"].is_object(), "{call}");
    assert_eq!(call["security"], json!([{"bearerAuth": []}]));
    assert!(call["responses"].get("421").is_none(), "the Host rule applies only without authentication");
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
    for path in ["/", "/samples", "/samples/{name}", "/static/app.js"] {
        assert!(doc["paths"].get(path).is_some(), "{path} not described with --demo");
    }
}
