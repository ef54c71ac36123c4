//! Every synthetic record in tests/fixtures/fhir-samples (carebundle profiles, the
//! defect-injected one, the 2,177-entry PySynthea lifetime record) sent as a patient-view
//! request: evaluated without error. One record's extracted facts are asserted.
use crate::helpers::*;
use crate::rules::catalog;
use leg_cramp_cds::facts::PatientFacts;
use leg_cramp_cds::fhir::terminology::ResolvedCodes;
use leg_cramp_cds::fhir::ResourceSet;
use leg_cramp_cds::service::cases::build_request;
use serde_json::Value;
use std::io::Read;

fn load(name: &str) -> Value {
    let path = project_path("tests/fixtures/fhir-samples").join(name);
    let bytes = std::fs::read(&path).unwrap();
    let text = if name.ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    };
    serde_json::from_str(&text).unwrap()
}

fn split(bundle: &Value) -> (Value, Vec<Value>) {
    let resources: Vec<Value> = bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect();
    let patient = resources.iter().find(|r| r["resourceType"] == "Patient").cloned().expect("a Patient");
    (patient, resources)
}

const RECORDS: [&str; 7] = [
    "carebundle/anaemia-7-0000.json",
    "carebundle/ckd_stage3-7-0000.json",
    "carebundle/healthy-7-0000.json",
    "carebundle/hypertension-7-0000.json",
    "carebundle/type2_diabetes-7-0000.json",
    "carebundle/type2_diabetes-42-dirty.json",
    "pysynthea/Norma_Tejeda_7228c89c.json.gz",
];

#[tokio::test]
async fn every_synthetic_record_is_evaluated_without_error() {
    let catalog = catalog();
    let server = TestServer::start();
    for name in RECORDS {
        let (patient, resources) = split(&load(name));
        let (service, body) = build_request(&catalog, "patient-view", patient, &resources, &[], None).unwrap();
        let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
        assert_eq!(status, 200, "{name}: {response}");
        assert_valid_response(&response);
    }
}

#[test]
fn facts_extracted_from_the_type2_diabetes_record() {
    let catalog = catalog();
    let (patient, resources) = split(&load("carebundle/type2_diabetes-7-0000.json"));
    let mut set = ResourceSet::new();
    set.add_resource(patient, "test");
    for r in resources {
        set.add_resource(r, "test");
    }
    let now = "2026-06-15T12:00:00Z".parse().unwrap();
    let facts = PatientFacts::build(
        &set,
        &catalog.rules.conventions,
        &catalog.rules.index,
        &ResolvedCodes::none(),
        "patient-view",
        now,
    );
    assert_eq!((facts.gender.as_deref(), facts.age_years), (Some("female"), Some(65)));
    assert_eq!(facts.conditions.iter().filter(|c| c.active).count(), 3);
    assert_eq!(facts.medications.iter().filter(|m| m.active).count(), 3);
    let idx = &catalog.rules.index;
    let diabetes = idx.id("DIABETES_DX").unwrap();
    assert!(facts.conditions.iter().any(|c| c.active && c.sets.contains(&diabetes)));
    for (vs, name) in [("MED_METFORMIN", "metformin"), ("MED_THIAZIDE_DIURETIC", "hydrochlorothiazide")] {
        let id = idx.id(vs).unwrap();
        assert!(facts.medications.iter().any(|m| m.active && m.sets.contains(&id)), "{name}");
    }
    // Latest labs with their units (newest first, so the first match is the latest).
    let latest = |vs: &str| {
        let id = idx.id(vs).unwrap();
        let o = facts.observations.iter().find(|o| o.sets.contains(&id)).unwrap();
        (o.value.unwrap(), o.unit.clone().unwrap(), o.effective.unwrap().format("%Y-%m-%d").to_string())
    };
    assert_eq!(latest("LAB_POTASSIUM"), (4.1, "mmol/L".into(), "2026-01-01".into()));
    assert_eq!(latest("LAB_EGFR"), (95.0, "mL/min/{1.73_m2}".into(), "2026-01-01".into()));
    assert_eq!(latest("LAB_HBA1C"), (7.7, "%".into(), "2026-01-01".into()));
    assert_eq!(latest("LAB_CREATININE"), (0.71, "mg/dL".into(), "2026-01-01".into()));
    assert!(facts.observations.len() >= 34);
    assert!(!facts.pregnancy.pregnant);
}
