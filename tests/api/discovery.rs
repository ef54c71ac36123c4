use crate::helpers::*;
use leg_cramp_cds::protocol::discovery::allowed_prefetch_tokens;
use leg_cramp_cds::protocol::response::empty_value_paths;
use leg_cramp_cds::protocol::schemas::Document;
use leg_cramp_cds::protocol::{PrefetchTemplate, SchemaSet};

#[tokio::test]
async fn discovery_lists_exactly_the_three_services() {
    let server = TestServer::start();
    let (status, body) = server.get("/cds-services").await;
    assert_eq!(status, 200);
    SchemaSet::compile().unwrap().validate(Document::Discovery, &body).expect("valid discovery document");
    assert!(empty_value_paths(&body).is_empty(), "{body}");
    let mut services: Vec<(String, String)> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["hook"].as_str().unwrap().to_string()))
        .collect();
    services.sort();
    assert_eq!(
        services,
        vec![
            ("leg-cramp-causes".to_string(), "patient-view".to_string()),
            ("leg-cramp-order-select".to_string(), "order-select".to_string()),
            ("leg-cramp-order-sign".to_string(), "order-sign".to_string()),
        ]
    );
    for s in body["services"].as_array().unwrap() {
        for field in ["hook", "title", "description", "id"] {
            assert!(s[field].as_str().is_some_and(|v| !v.is_empty()), "{field} missing in {s}");
        }
    }
}

#[tokio::test]
async fn every_prefetch_template_uses_only_2_0_tokens() {
    let server = TestServer::start();
    let (_, body) = server.get("/cds-services").await;
    let mut templates = 0;
    for s in body["services"].as_array().unwrap() {
        let hook = s["hook"].as_str().unwrap();
        let prefetch = s["prefetch"].as_object().expect("prefetch present");
        assert!(prefetch.contains_key("patient"), "{s}");
        for (key, template) in prefetch {
            let template = template.as_str().unwrap();
            let parsed = PrefetchTemplate::parse(template).unwrap();
            let tokens: Vec<&str> = parsed.tokens().collect();
            assert!(!tokens.is_empty(), "{key}: {template} has no token");
            for t in tokens {
                assert!(allowed_prefetch_tokens(hook).contains(&t), "{key}: {{{{{t}}}}} is not a 2.0 token");
            }
            templates += 1;
        }
    }
    assert_eq!(templates, 7 + 5 + 5);
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start();
    assert_eq!(server.get("/healthz").await.0, 200);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["services"], 3);
}
