//! The rule catalogue through the HTTP API: every rule's fire and must-not-fire cases, the
//! shape of every card, rules as data (a new rule without Rust, a broken rule refused), and
//! reload on SIGHUP.
use crate::helpers::*;
use leg_cramp_cds::catalog::Catalog;
use leg_cramp_cds::protocol::response::card_invariant_violations;
use leg_cramp_cds::protocol::{CdsResponse, SchemaSet};
use leg_cramp_cds::rules::model::Expectation;
use leg_cramp_cds::service::cases::{check_response, request_for};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub const NOW: &str = "2026-06-15T12:00:00Z";

pub fn catalog() -> Catalog {
    Catalog::load(&project_path("cards"), &SchemaSet::compile().unwrap()).expect("cards load")
}

/// Sends every case of every rule and returns (rule, case, response) for further checks.
async fn run_every_case(server: &TestServer) -> Vec<(String, String, Value)> {
    let catalog = catalog();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for rule in &catalog.rules.rules {
        for case in &rule.tests {
            assert_eq!(case.now, NOW, "{}: the HTTP run fixes the instant at {NOW}", rule.id);
            let (service, body) = request_for(&catalog, rule, case).unwrap();
            let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
            assert_eq!(status, 200, "{} / {}: {response}", rule.id, case.name);
            let typed: CdsResponse = serde_json::from_value(response.clone()).unwrap();
            if let Err(why) = check_response(rule, case, &typed) {
                failures.push(format!("{} / {}: {why}", rule.id, case.name));
            }
            out.push((rule.id.clone(), case.name.clone(), response));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    out
}

#[tokio::test]
async fn every_catalogue_case_passes_through_the_http_api() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    let results = run_every_case(&server).await;
    let catalog = catalog();
    let cases: usize = catalog.rules.rules.iter().map(|r| r.tests.len()).sum();
    assert_eq!(results.len(), cases, "every case of every rule file was sent");
    for rule in &catalog.rules.rules {
        let fire = rule.tests.iter().filter(|t| t.expect == Expectation::Fire).count();
        let no_fire = rule.tests.len() - fire;
        assert!(fire >= 1 && no_fire >= 1, "{}: {fire} fire / {no_fire} no-fire", rule.id);
    }
    // The catalogue's public ids, exactly.
    let ids: Vec<&str> = catalog.rules.rules.iter().map(|r| r.id.as_str()).collect();
    for id in
        ["treatment-safety-quinine", "red-flag-possible-pe", "lifestyle-self-care-baseline", "medication-ppi-magnesium"]
    {
        assert!(ids.contains(&id), "{id}");
    }
}

/// Words that mean something to an integrator, not to a clinician (revision 2 C9).
const IMPLEMENTATION_WORDS: [&str; 6] =
    ["CDS Hooks", "action type", "not verified", "draft MedicationRequest", "MedicationRequest/", "LOINC listed"];

#[tokio::test]
async fn every_card_is_well_formed_and_explains_itself() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    let mut cards_seen = 0;
    let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
    for (rule, case, response) in run_every_case(&server).await {
        assert_valid_response(&response);
        let typed: CdsResponse = serde_json::from_value(response.clone()).unwrap();
        // One order, one button: a lab code is offered at most once per response (C2).
        let mut lab_codes: Vec<&str> = Vec::new();
        for card in &typed.cards {
            for s in &card.suggestions {
                for a in &s.actions {
                    if let Some(code) = a.resource.as_ref().and_then(|r| r["code"]["coding"][0]["code"].as_str()) {
                        assert!(!lab_codes.contains(&code), "{rule} / {case}: LOINC {code} offered twice");
                        lab_codes.push(code);
                    }
                }
            }
        }
        for card in &typed.cards {
            cards_seen += 1;
            let id = card.source.topic.as_ref().unwrap().code.clone();
            *per_rule.entry(id.clone()).or_default() += 1;
            if let Some(members) = card.extension.get("org.leg-cramp-cds.rules") {
                for m in members.as_array().unwrap() {
                    *per_rule.entry(m.as_str().unwrap().to_string()).or_default() += 1;
                }
            }
            let at = format!("{rule} / {case} → card {id}");
            assert!(uuid::Uuid::parse_str(card.uuid.as_deref().unwrap()).is_ok(), "{at}: uuid");
            assert!(card.summary.chars().count() < 140, "{at}: summary too long");
            assert_eq!(card_invariant_violations(card), Vec::<String>::new(), "{at}");
            assert!(!card.links.is_empty(), "{at}: no citation link");
            assert_eq!(card.source.label, "Leg Cramp CDS");
            assert!(card.override_reasons.iter().any(|r| r.code == "already-addressed"), "{at}");
            let detail = card.detail.as_deref().unwrap();
            // The evidence extension names every triggering resource; the detail dates them.
            let evidence = &card.extension["org.leg-cramp-cds.evidence"];
            assert_eq!(evidence["rule"], id.as_str());
            if !evidence["resources"].as_array().unwrap().is_empty() {
                assert!(
                    detail.contains("2026-") || detail.contains("2025-") || detail.contains("2024-"),
                    "{at}: no date"
                );
            }
            assert!(detail.contains("**Why this card**") && detail.contains("**What to do**"), "{at}");
            // Each source appears once: a link button, or a plain line when it has no link.
            for link in &card.links {
                assert!(!detail.contains(&link.url), "{at}: source {} shown twice", link.url);
            }
            assert!(!detail.contains("]("), "{at}: Markdown links navigate the EHR tab away");
            for word in IMPLEMENTATION_WORDS {
                assert!(!detail.contains(word) && !card.summary.contains(word), "{at}: says {word:?}");
            }
            for s in &card.suggestions {
                assert!(uuid::Uuid::parse_str(s.uuid.as_deref().unwrap()).is_ok(), "{at}: suggestion uuid");
            }
        }
    }
    assert!(cards_seen > 100, "{cards_seen}");
    for rule in &catalog().rules.rules {
        assert!(per_rule.contains_key(&rule.id), "{} never produced a card: {per_rule:?}", rule.id);
    }
}

#[tokio::test]
async fn quinine_on_order_sign_suggests_deleting_exactly_the_draft() {
    let server = TestServer::start();
    let body = json!({
        "hook": "order-sign",
        "hookInstance": uuid(),
        "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "MedicationRequest", "id": "draft-123", "status": "draft", "intent": "order",
                "medicationCodeableConcept": {"text": "quinine sulfate 324 MG Oral Capsule"}, "subject": {"reference": "Patient/p1"}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "draft-456", "status": "draft", "intent": "order",
                "medicationCodeableConcept": {"text": "acetaminophen 500 MG Oral Tablet"}, "subject": {"reference": "Patient/p1"}}}
        ]}},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"},
            "conditions": null, "medicationRequests": null, "labs": null, "pregnancy": null}
    });
    let (status, response) = server.post_json("/cds-services/leg-cramp-order-sign", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_valid_response(&response);
    let cards = response["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{response}");
    let card = &cards[0];
    assert_eq!(card["indicator"], "critical");
    assert_eq!(card["source"]["topic"]["code"], "treatment-safety-quinine");
    assert_eq!(card["selectionBehavior"], "at-most-one");
    let actions: Vec<&Value> =
        card["suggestions"].as_array().unwrap().iter().flat_map(|s| s["actions"].as_array().unwrap()).collect();
    assert_eq!(actions.len(), 1, "{card}");
    assert_eq!(actions[0]["type"], "delete");
    assert_eq!(actions[0]["resourceId"], "MedicationRequest/draft-123");
    assert!(actions[0].get("resource").is_none());
}

#[test]
fn suggested_resources_validate_against_the_fhir_r4_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(project_path("tests/fixtures/fhir-samples/fhir-schema/fhir.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("FHIR schema compiles");
    let catalog = catalog();
    let mut checked = 0;
    for rule in &catalog.rules.rules {
        for order in &rule.card.orders {
            let resource = leg_cramp_cds::cards::service_request(&order.code, &order.display, "p1");
            let errors: Vec<String> = validator.iter_errors(&resource).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {resource}: {errors:?}", rule.id);
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
    // And a broken one is caught, so the check above can fail.
    let broken = json!({"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
        "subject": {"reference": "Patient/p1"}, "orderedTest": "not a FHIR element"});
    assert!(!validator.is_valid(&broken));
}

#[test]
fn check_runs_every_case_in_process() {
    let catalog = catalog();
    let results = leg_cramp_cds::service::cases::run_all(&catalog, &SchemaSet::compile().unwrap());
    let failed: Vec<String> =
        results.iter().filter_map(|(r, c, res)| res.as_ref().err().map(|e| format!("{r} / {c}: {e}"))).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(results.len() >= 74);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn temp_cards() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&project_path("cards"), dir.path());
    dir
}

fn run_check(cards: &Path) -> (bool, String) {
    let out = std::process::Command::new(BIN).args(["check", "--cards", cards.to_str().unwrap()]).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const EXTRA_RULE: &str = r#"{
  "id": "electrolyte-hyperkalemia-extra",
  "title": "Cramps with a hyperkalemia diagnosis (added as data)",
  "category": "electrolyte",
  "hooks": ["patient-view"],
  "priority": 40,
  "requires_leg_cramp": true,
  "population": "adult",
  "trigger": {"all": [{"fact": "LEG_CRAMP_PRESENT"}, {"condition": {"valueset": "HYPERKALEMIA_DX"}}]},
  "card": {
    "indicator": "info",
    "summary": "Hyperkalemia recorded in a patient with cramps: review potassium-raising drugs",
    "detail": "Review ACE inhibitors, ARBs, potassium-sparing diuretics and supplements.",
    "citations": [{"title": "Merck Manual Professional: Hyperkalemia", "url": "https://www.merckmanuals.com/professional/endocrine-and-metabolic-disorders/electrolyte-disorders/hyperkalemia"}]
  },
  "tests": [
    {"name": "E87.5 with cramps", "expect": "fire", "now": "2026-06-15T12:00:00Z",
     "resources": [
       {"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]}},
       {"resourceType": "Condition", "id": "c2", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E87.5"}]}}]},
    {"name": "E87.5 without cramps", "expect": "no-fire", "now": "2026-06-15T12:00:00Z",
     "resources": [
       {"resourceType": "Condition", "id": "c2", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E87.5"}]}}]}
  ]
}"#;

#[tokio::test]
async fn a_new_rule_is_a_data_file_no_rust_change() {
    let cards = temp_cards();
    std::fs::write(cards.path().join("rules/electrolyte-hyperkalemia-extra.json"), EXTRA_RULE).unwrap();
    let (ok, out) = run_check(cards.path());
    assert!(ok, "{out}");
    // Every rule file in the copy, the new one included: other rules may be added meanwhile.
    let rules = std::fs::read_dir(cards.path().join("rules")).unwrap().count();
    assert!(out.contains("electrolyte-hyperkalemia-extra") && out.contains(&format!("{rules} rules")), "{out}");
    let server = TestServer::builder().args(["--cards", cards.path().to_str().unwrap()]).start();
    let mut req = patient_view_request();
    req["prefetch"]["conditions"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G47.62"}]}}},
        {"resource": {"resourceType": "Condition", "id": "c2", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E87.5"}]}}}]});
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &req).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        body["cards"].as_array().unwrap().iter().map(|c| c["source"]["topic"]["code"].as_str().unwrap()).collect();
    assert!(ids.contains(&"electrolyte-hyperkalemia-extra"), "{ids:?}");
}

#[test]
fn a_broken_rule_file_is_refused_with_file_pointer_and_message() {
    // Each case is data: tests/fixtures/invalid-cards/<name>.json names a file of cards/, the
    // JSON pointers to set in it (or its whole text), and the message check and serve must give.
    let dir = project_path("tests/fixtures/invalid-cards");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(!names.is_empty(), "no invalid-card cases in {}", dir.display());
    for path in names {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let expected = case["expected"].as_str().unwrap();
        let cards = temp_cards();
        let file = cards.path().join(case["file"].as_str().unwrap());
        let text = match case["text"].as_str() {
            Some(text) => text.to_string(),
            None => {
                let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                for (pointer, value) in case["set"].as_object().unwrap() {
                    set_pointer(&mut doc, pointer, value.clone())
                        .unwrap_or_else(|| panic!("{name}: no parent of {pointer}"));
                }
                serde_json::to_string_pretty(&doc).unwrap()
            }
        };
        std::fs::write(&file, text).unwrap();
        let (ok, out) = run_check(cards.path());
        assert!(!ok, "{name}: check passed");
        assert!(out.contains(expected), "{name}: expected {expected:?} in:\n{out}");
        let err =
            TestServer::builder().args(["--cards", cards.path().to_str().unwrap()]).try_start().err().expect("refused");
        assert!(err.contains(expected), "{name}: serve did not say {expected:?}: {err}");
    }
}

/// Sets the value at a JSON pointer, adding the last key to its parent object if it is absent.
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Option<()> {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
        return Some(());
    }
    let (parent, key) = pointer.rsplit_once('/')?;
    doc.pointer_mut(parent)?.as_object_mut()?.insert(key.to_string(), value);
    Some(())
}

#[test]
fn check_fails_when_a_case_fails() {
    let cards = temp_cards();
    let file = cards.path().join("rules/electrolyte-hyponatremia.json");
    let mut rule: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    // Move the threshold so the 'Na 131' case no longer fires.
    rule["trigger"]["all"][1]["any"][0]["observation"]["value"] = json!(130);
    std::fs::write(&file, serde_json::to_string_pretty(&rule).unwrap()).unwrap();
    let (ok, out) = run_check(cards.path());
    assert!(!ok, "{out}");
    assert!(out.contains("electrolyte-hyponatremia") && out.contains("FAIL") && out.contains("did not fire"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
}

fn summary_of(body: &Value, rule: &str) -> Option<String> {
    body["cards"]
        .as_array()?
        .iter()
        .find(|c| c["source"]["topic"]["code"] == rule)
        .map(|c| c["summary"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn sighup_reloads_good_cards_and_refuses_bad_ones_without_dropping_requests() {
    let cards = temp_cards();
    let server = TestServer::builder().args(["--cards", cards.path().to_str().unwrap()]).start();
    let mut req = patient_view_request();
    req["prefetch"]["conditions"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]}}}]});
    let rule = "lifestyle-self-care-baseline";
    let original = summary_of(&server.post_json("/cds-services/leg-cramp-causes", &req).await.1, rule).unwrap();

    // Traffic runs throughout; every request must succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (client, url, req, stop) =
            (server.client.clone(), server.url("/cds-services/leg-cramp-causes"), req.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = client.post(&url).json(&req).send().await.expect("request served");
                assert_eq!(res.status().as_u16(), 200);
                sent += 1;
            }
            sent
        })
    };

    let file = cards.path().join(format!("rules/{rule}.json"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["card"]["summary"] = json!("Leg cramps: stretch calves before bed and keep hydrated (reloaded)");
    std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    send_hup(server.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = summary_of(&server.post_json("/cds-services/leg-cramp-causes", &req).await.1, rule).unwrap();
        if s.ends_with("(reloaded)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reload not seen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!original.ends_with("(reloaded)"), "the change was not there before the reload: {original}");

    // A bad change is refused, logged, and the good set stays.
    v["trigger"] = json!({"all": [{"fact": "LEG_CRAMP_PRESENT"}, {"condition": {"valueset": "NOPE"}}]});
    std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    send_hup(server.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log_text().contains("reload refused") {
        assert!(std::time::Instant::now() < deadline, "no refusal logged:\n{}", server.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(server.log_text().contains("unknown value set 'NOPE'"));
    let s = summary_of(&server.post_json("/cds-services/leg-cramp-causes", &req).await.1, rule).unwrap();
    assert!(s.ends_with("(reloaded)"), "{s}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await.expect("no request failed during reloads");
    assert!(sent > 0);
}

fn send_hup(pid: u32) {
    let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}
