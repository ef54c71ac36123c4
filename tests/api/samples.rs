//! The sample patients of `samples/`: each one's expected rule ids (recorded beside it) come
//! out of `eval` and of the pipeline, today and years from now (dates are relative).
use crate::helpers::*;
use crate::rules::catalog;
use leg_cramp_cds::fhir::CdsRequest;
use leg_cramp_cds::protocol::SchemaSet;
use leg_cramp_cds::service::{evaluate, plan_prefetch};
use serde_json::Value;

pub fn samples() -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(project_path("samples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".json") || name.ends_with(".expected.json") {
            continue;
        }
        let stem = name.trim_end_matches(".json").to_string();
        let request: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(project_path(&format!("samples/{stem}.expected.json"))).unwrap(),
        )
        .unwrap();
        out.push((stem, request, expected));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn rules_at(request: &Value, service_id: &str, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let catalog = catalog();
    let schemas = SchemaSet::compile().unwrap();
    let mut value = request.clone();
    leg_cramp_cds::samples::resolve(&mut value, now);
    let service = catalog.service(service_id).unwrap();
    let mut request = CdsRequest::from_value(value, &schemas, &service.hook).unwrap();
    let plan = plan_prefetch(&mut request, service);
    assert!(plan.missing.is_empty());
    let evaluation = evaluate(&catalog.rules, &request, &plan.resources, now);
    evaluation.rule_ids
}

#[test]
fn every_sample_gives_its_expected_rules_now_and_in_three_years() {
    let samples = samples();
    assert!(samples.len() >= 13, "{}", samples.len());
    let mut silent = 0;
    for (name, request, expected) in &samples {
        let want: Vec<String> = serde_json::from_value(expected["rules"].clone()).unwrap();
        if want.is_empty() {
            silent += 1;
        }
        let service = expected["service"].as_str().unwrap();
        for now in [chrono::Utc::now(), chrono::Utc::now() + chrono::Duration::days(3 * 365)] {
            assert_eq!(rules_at(request, service, now), want, "{name} at {now}");
        }
    }
    assert_eq!(silent, 1, "exactly one sample (the healthy patient) expects no card");
}

/// The cards a sample shows, by topic code: its rules, except that rules shown as one merged
/// card (revision 2 C5) appear under the merged card's code (`"cards"` in the expected file).
fn expected_cards(expected: &Value) -> Vec<&str> {
    let list = expected.get("cards").unwrap_or(&expected["rules"]);
    list.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
}

#[test]
fn eval_prints_the_expected_cards_for_every_sample() {
    for (name, _, expected) in samples() {
        let out = std::process::Command::new(BIN)
            .args(["eval", &format!("samples/{name}.json"), "--cards", "cards"])
            .current_dir(project_path(""))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {text}{}", String::from_utf8_lossy(&out.stderr));
        let cards = expected_cards(&expected);
        let printed: Vec<&str> = text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
        assert_eq!(printed, cards, "{name}:\n{text}");
        assert!(text.contains(&format!("{} card(s)", cards.len())), "{text}");
    }
}

/// Card summaries and the dates named in their details, for comparing two evaluations.
fn cards_seen(body: &Value) -> Vec<(String, String)> {
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["summary"].as_str().unwrap().to_string(), c["detail"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn a_production_service_never_moves_a_patients_dates() {
    let production = TestServer::start();
    // Demo pages do not exist outside a demo.
    assert_eq!(production.get("/samples").await.0, 404);
    assert_eq!(production.client.get(production.url("/")).send().await.unwrap().status().as_u16(), 404);
    for (name, request, expected) in samples() {
        let service = expected["service"].as_str().unwrap();
        let mut plain = request.clone();
        plain.as_object_mut().unwrap().remove("extension");
        let (status, with_extension) = production.post_json(&format!("/cds-services/{service}"), &request).await;
        assert_eq!(status, 200, "{name}: {with_extension}");
        let (_, without) = production.post_json(&format!("/cds-services/{service}"), &plain).await;
        // The sample extension changes nothing: the dates are evaluated exactly as sent.
        assert_eq!(cards_seen(&with_extension), cards_seen(&without), "{name}");
    }
    // The same request to a demo service is moved to now, so what it shows differs.
    let demo = TestServer::builder().arg("--demo").start();
    let (_, request, expected) = samples().into_iter().find(|s| s.0 == "electrolytes").unwrap();
    let path = format!("/cds-services/{}", expected["service"].as_str().unwrap());
    let (_, moved) = demo.post_json(&path, &request).await;
    let (_, as_sent) = production.post_json(&path, &request).await;
    assert_ne!(cards_seen(&moved), cards_seen(&as_sent), "the demo moves sample dates to now");
}

#[tokio::test]
async fn a_sample_posted_as_is_is_evaluated_with_its_dates_moved_to_now() {
    let server = TestServer::builder().arg("--demo").start();
    for (name, request, expected) in samples() {
        let service = expected["service"].as_str().unwrap();
        let (status, body) = server.post_json(&format!("/cds-services/{service}"), &request).await;
        assert_eq!(status, 200, "{name}");
        let rules: Vec<&str> =
            body["cards"].as_array().unwrap().iter().map(|c| c["source"]["topic"]["code"].as_str().unwrap()).collect();
        assert_eq!(rules, expected_cards(&expected), "{name}");
    }
}
