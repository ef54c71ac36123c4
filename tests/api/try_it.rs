//! Try it and run it: the OpenAPI description and conformance of real responses, the
//! Prometheus metrics, the demo page's files and samples, and the container files.
use crate::helpers::*;
use crate::samples::samples;
use jsonschema::{Draft, Registry};
use serde_json::{json, Value};

const OPENAPI_URI: &str = "https://leg-cramp-cds.local/openapi.json";

struct OpenApi {
    doc: Value,
}

impl OpenApi {
    async fn fetch(server: &TestServer) -> Self {
        let (status, doc) = server.get("/openapi.json").await;
        assert_eq!(status, 200);
        OpenApi { doc }
    }

    fn validator(&self, schema: &str) -> jsonschema::Validator {
        let registry =
            Registry::new().draft(Draft::Draft202012).add(OPENAPI_URI, self.doc.clone()).unwrap().prepare().unwrap();
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&registry)
            .build(&json!({"$ref": format!("{OPENAPI_URI}#/components/schemas/{schema}")}))
            .unwrap_or_else(|e| panic!("{schema}: {e}"))
    }

    fn assert_conforms(&self, schema: &str, body: &Value) {
        let v = self.validator(schema);
        let errors: Vec<String> = v.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{schema}: {errors:?}\n{body}");
    }
}

#[tokio::test]
async fn openapi_describes_every_endpoint_and_real_responses_conform() {
    let server = TestServer::start();
    let api = OpenApi::fetch(&server).await;
    let doc = &api.doc;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    for path in [
        "/cds-services",
        "/cds-services/leg-cramp-causes",
        "/cds-services/leg-cramp-causes/feedback",
        "/analytics/rules",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    // Structural validity: every operation has responses; every component schema compiles
    // (so every $ref in it resolves).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        api.validator(name);
    }
    // Real responses of a sample run conform.
    let (_, discovery) = server.get("/cds-services").await;
    api.assert_conforms("DiscoveryResponse", &discovery);
    let mut feedback_done = false;
    for (name, mut request, expected) in samples() {
        leg_cramp_cds::samples::resolve(&mut request, chrono::Utc::now());
        let service = expected["service"].as_str().unwrap();
        let (status, body) = server.post_json(&format!("/cds-services/{service}"), &request).await;
        assert_eq!(status, 200, "{name}");
        api.assert_conforms("CdsResponse", &body);
        if !feedback_done {
            if let Some(card) = body["cards"].as_array().unwrap().first() {
                let fb = json!({"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-06-15T12:00:00Z",
                    "overrideReason": {"userComment": "demo"}}]});
                api.assert_conforms("FeedbackRequest", &fb);
                let (status, receipt) = server.post_json(&format!("/cds-services/{service}/feedback"), &fb).await;
                assert_eq!(status, 200);
                api.assert_conforms("FeedbackReceipt", &receipt);
                feedback_done = true;
            }
        }
    }
    let (_, analytics) = server.get("/analytics/rules").await;
    api.assert_conforms("RuleAnalyticsResponse", &analytics);
    let (status, outcome) = server.post_json("/cds-services/leg-cramp-causes", &json!({"hook": "patient-view"})).await;
    assert_eq!(status, 400);
    api.assert_conforms("OperationOutcome", &outcome);
    // And the schemas are not vacuous: a card without an indicator does not conform.
    let bad = json!({"cards": [{"summary": "x", "source": {"label": "y"}}]});
    assert!(!api.validator("CdsResponse").is_valid(&bad));
}

#[tokio::test]
async fn metrics_expose_the_series_after_a_sample_run() {
    let server = TestServer::start();
    let mut request = samples().into_iter().find(|s| s.0 == "electrolytes").unwrap().1;
    leg_cramp_cds::samples::resolve(&mut request, chrono::Utc::now());
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &request).await;
    assert_eq!(status, 200);
    // The sample's labs are recent, so its cards state them instead of offering orders.
    let card = &body["cards"][0];
    let fb = json!({"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-06-15T12:00:00Z",
        "overrideReason": {"reason": {"system": "urn:leg-cramp-cds:override-reason", "code": "not-applicable", "display": "Does not apply to this patient"}}}]});
    assert_eq!(server.post_json("/cds-services/leg-cramp-causes/feedback", &fb).await.0, 200);
    // A FHIR fallback that fails (nothing listens on that port).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fallback = json!({"hook": "patient-view", "hookInstance": uuid(), "fhirServer": format!("http://127.0.0.1:{port}/fhir"),
        "context": {"userId": "Practitioner/1", "patientId": "p1"}});
    assert_eq!(server.post_json("/cds-services/leg-cramp-causes", &fallback).await.0, 412);
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        r#"cds_requests_total{service="leg-cramp-causes",status="200"} 1"#,
        r#"cds_requests_total{service="leg-cramp-causes",status="412"} 1"#,
        r#"cds_requests_total{service="leg-cramp-causes/feedback",status="200"} 1"#,
        r#"cds_request_duration_seconds_bucket{service="leg-cramp-causes",le="0.05"}"#,
        r#"cds_cards_total{rule="electrolyte-hypokalemia",indicator="warning"} 1"#,
        r#"cds_cards_total{rule="electrolyte-hypomagnesemia",indicator="warning"} 1"#,
        "cds_fhir_fallback_requests_total 7",
        "cds_fhir_fallback_failures_total 7",
        r#"cds_feedback_items_total{outcome="overridden"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
}

#[tokio::test]
async fn the_demo_page_is_self_contained_and_serves_the_samples() {
    let server = TestServer::builder().arg("--demo").start();
    let res = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    for file in ["/static/app.js", "/static/app.css"] {
        assert!(html.contains(file));
        let res = server.client.get(server.url(file)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{file}");
        let text = res.text().await.unwrap();
        assert!(!text.contains("innerHTML"), "{file} must not inject HTML");
        assert!(!text.contains("//cdn") && !text.contains("googleapis"), "{file} loads nothing external");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no external resources in the page");
    let (status, list) = server.get("/samples").await;
    assert_eq!(status, 200);
    assert_eq!(list["samples"].as_array().unwrap().len(), crate::samples::samples().len());
    let (status, sample) = server.get("/samples/electrolytes").await;
    assert_eq!(status, 200);
    assert_eq!(sample["hook"], "patient-view");
    assert_eq!(server.get("/samples/no-such-sample").await.0, 404);
    assert_eq!(server.get("/samples/..%2Fcards%2Fservices").await.0, 404);
}

#[test]
fn container_files_are_present_and_consistent() {
    let dockerfile = std::fs::read_to_string(project_path("Dockerfile")).unwrap();
    assert!(dockerfile.lines().filter(|l| l.starts_with("FROM ")).count() >= 2, "multi-stage");
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("USER 10001") && dockerfile.contains("--uid 10001"), "runs as non-root");
    // Every COPY source exists.
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(project_path(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    let text = std::fs::read_to_string(project_path("docker-compose.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("docker-compose.yml parses as YAML");
    let compose = &docs[0];
    let services = compose["services"].as_hash().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in ["leg-cramp-cds", "hapi", "hapi-seed", "postgres"] {
        assert!(names.contains(&s), "{s} missing: {names:?}");
    }
    let build = &compose["services"]["leg-cramp-cds"]["build"];
    let context = build["context"].as_str().unwrap();
    assert!(project_path(context).join(build["dockerfile"].as_str().unwrap()).exists());
    for (name, svc) in services {
        if let Some(image) = svc["image"].as_str() {
            assert!(!image.ends_with(":latest") && image.contains(':'), "{name:?}: pin the image tag ({image})");
        }
        for port in svc["ports"].as_vec().into_iter().flatten() {
            assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{name:?} publishes {port:?} beyond loopback");
        }
    }
    assert!(text.contains("/app/docker/seed-hapi.sh") && project_path("docker/seed-hapi.sh").exists());
    assert!(dockerfile.contains("docker/seed-hapi.sh"));
}

#[test]
fn sample_bundle_is_a_fhir_transaction_with_every_resource() {
    let out = std::process::Command::new(BIN)
        .args(["sample-bundle", "samples/diuretic-and-statin.json"])
        .current_dir(project_path(""))
        .output()
        .unwrap();
    assert!(out.status.success());
    let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["request"]["method"] == "PUT"));
    assert!(entries.iter().any(|e| e["resource"]["resourceType"] == "Patient"));
    assert!(entries.len() >= 8, "{}", entries.len());
}
