//! Normalisation conventions, table-driven, on the real cards (conventions and value sets).
use crate::rules::catalog;
use chrono::{DateTime, Utc};
use leg_cramp_cds::catalog::Catalog;
use leg_cramp_cds::facts::PatientFacts;
use leg_cramp_cds::fhir::terminology::ResolvedCodes;
use leg_cramp_cds::fhir::ResourceSet;
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    "2026-06-15T12:00:00Z".parse().unwrap()
}

fn facts_of(resources: Vec<Value>, gender: &str) -> PatientFacts {
    let catalog = catalog();
    let mut set = ResourceSet::new();
    set.add_resource(
        json!({"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": "1970-03-01"}),
        "test",
    );
    for r in resources {
        set.add_value(r, "test");
    }
    offline_facts(&catalog, &set, now())
}

/// The facts of `set` at `now`, offline (no terminology service).
fn offline_facts(catalog: &Catalog, set: &ResourceSet, now: DateTime<Utc>) -> PatientFacts {
    PatientFacts::build(
        set,
        &catalog.rules.conventions,
        &catalog.rules.index,
        &ResolvedCodes::none(),
        "patient-view",
        now,
    )
}

fn condition(clinical: Option<&str>, verification: Option<&str>, recorded: &str) -> Value {
    let mut c = json!({"resourceType": "Condition", "id": "c", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]},
        "recordedDate": recorded});
    if let Some(s) = clinical {
        c["clinicalStatus"] = json!({"coding": [{"code": s}]});
    }
    if let Some(v) = verification {
        c["verificationStatus"] = json!({"coding": [{"code": v}]});
    }
    c
}

#[test]
fn condition_active_convention() {
    let table = [
        (Some("active"), None, "2020-01-01", true),
        (Some("recurrence"), Some("confirmed"), "2020-01-01", true),
        (Some("relapse"), None, "2020-01-01", true),
        (Some("inactive"), None, "2026-06-01", false),
        (Some("remission"), None, "2026-06-01", false),
        (Some("resolved"), None, "2026-06-01", false),
        (Some("active"), Some("refuted"), "2026-06-01", false),
        (Some("active"), Some("entered-in-error"), "2026-06-01", false),
        (Some("active"), Some("provisional"), "2026-06-01", true),
        (Some("active"), Some("differential"), "2026-06-01", true),
        (Some("active"), Some("unconfirmed"), "2026-06-01", true),
        (None, None, "2026-01-01", true),
        (None, None, "2025-05-01", false),
        (None, Some("refuted"), "2026-06-01", false),
    ];
    for (clinical, verification, recorded, active) in table {
        let f = facts_of(vec![condition(clinical, verification, recorded)], "female");
        assert_eq!(f.conditions[0].active, active, "{clinical:?} {verification:?} {recorded}");
    }
}

#[test]
fn medication_active_convention_and_ingredient_matching() {
    let catalog = catalog();
    let thiazide = catalog.rules.index.id("MED_THIAZIDE_DIURETIC").unwrap();
    let product = json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310798", "display": "hydrochlorothiazide 25 MG Oral Tablet"}]});
    let table = [
        ("MedicationRequest", "active", Some("order"), true),
        ("MedicationRequest", "active", Some("plan"), true),
        ("MedicationRequest", "active", Some("original-order"), true),
        ("MedicationRequest", "active", Some("proposal"), false),
        ("MedicationRequest", "stopped", Some("order"), false),
        ("MedicationRequest", "completed", Some("order"), false),
        ("MedicationRequest", "cancelled", Some("order"), false),
        ("MedicationRequest", "on-hold", Some("order"), false),
        ("MedicationRequest", "entered-in-error", Some("order"), false),
        ("MedicationRequest", "draft", Some("order"), false),
        ("MedicationRequest", "unknown", Some("order"), false),
        ("MedicationStatement", "active", None, true),
        ("MedicationStatement", "not-taken", None, false),
        ("MedicationStatement", "stopped", None, false),
        ("MedicationStatement", "entered-in-error", None, false),
    ];
    for (kind, status, intent, active) in table {
        let mut r = json!({"resourceType": kind, "id": "m", "status": status, "medicationCodeableConcept": product});
        if let Some(i) = intent {
            r["intent"] = json!(i);
        }
        let f = facts_of(vec![r], "female");
        assert_eq!(f.medications[0].active, active, "{kind} {status} {intent:?}");
        assert!(f.medications[0].sets.contains(&thiazide), "product code with ingredient in display");
    }
    // Contained Medication, referenced Medication, ATC code, ingredient-only text.
    let contained = json!({"resourceType": "MedicationRequest", "id": "a", "status": "active", "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "med1", "code": {"text": "Chlorthalidone 25 MG Oral Tablet"}}],
        "medicationReference": {"reference": "#med1"}});
    let referenced = json!({"resourceType": "MedicationRequest", "id": "b", "status": "active", "intent": "order",
        "medicationReference": {"reference": "Medication/m2"}});
    let medication = json!({"resourceType": "Medication", "id": "m2",
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5764", "display": "Indapamide"}]}}]});
    let atc = json!({"resourceType": "MedicationStatement", "id": "c", "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "C03BA08"}]}});
    let unrelated = json!({"resourceType": "MedicationStatement", "id": "d", "status": "active",
        "medicationCodeableConcept": {"text": "losartan potassium 50 MG Oral Tablet"}});
    let f = facts_of(vec![contained, referenced, medication, atc, unrelated], "female");
    let matched: Vec<bool> = f.medications.iter().map(|m| m.sets.contains(&thiazide)).collect();
    assert_eq!(matched, vec![true, true, true, false], "{:?}", f.medications);
}

fn lab(code: &str, value: f64, unit: &str, when: &str, status: &str) -> Value {
    // A FHIR id: letters, digits, '-' and '.' only.
    let id: String = format!("{code}-{value}-{unit}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    json!({"resourceType": "Observation", "id": id, "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit}})
}

#[test]
fn every_catalogue_unit_conversion() {
    let catalog = catalog();
    // (LOINC, value, unit, value set, expected canonical)
    let table = [
        ("2601-3", 1.0, "mmol/L", "LAB_MAGNESIUM", 2.431),
        ("19123-9", 2.0, "mEq/L", "LAB_MAGNESIUM", 2.431),
        ("19123-9", 2.0, "mg/dL", "LAB_MAGNESIUM", 2.0),
        ("2000-8", 1.0, "mmol/L", "LAB_CALCIUM_TOTAL", 4.008),
        ("1994-3", 4.0, "mg/dL", "LAB_CALCIUM_IONIZED", 0.998),
        ("2823-3", 3.2, "meq/L", "LAB_POTASSIUM", 3.2),
        ("2951-2", 131.0, "mEq/L", "LAB_SODIUM", 131.0),
        ("14635-7", 49.92, "nmol/L", "LAB_25OH_VITAMIN_D", 20.0),
        ("2132-9", 147.6, "pmol/L", "LAB_VITAMIN_B12", 200.05), // molar mass 1355.37 g/mol
        ("2160-0", 88.4, "umol/L", "LAB_CREATININE", 1.0),
        ("2160-0", 88.4, "µmol/L", "LAB_CREATININE", 1.0),
        ("3016-3", 5.0, "uIU/mL", "LAB_TSH", 5.0),
        ("3016-3", 5.0, "u[IU]/mL", "LAB_TSH", 5.0),
        ("49051-6", 196.0, "d", "GESTATIONAL_AGE_OBS", 28.0),
        ("1751-7", 35.0, "g/L", "LAB_ALBUMIN", 3.5),
        ("8867-4", 110.0, "{beats}/min", "VITAL_HEART_RATE", 110.0),
    ];
    for (code, value, unit, vs, want) in table {
        let f = facts_of(vec![lab(code, value, unit, "2026-06-10", "final")], "female");
        let vs_id = catalog.rules.index.id(vs).unwrap();
        let got = f.observations[0].canonical_value(vs_id).unwrap_or_else(|| panic!("{code} {unit} not converted"));
        assert!((got - want).abs() < 0.01, "{code} {value} {unit}: {got} != {want}");
    }
    let f = facts_of(vec![lab("19123-9", 2.0, "furlongs", "2026-06-10", "final")], "female");
    let mg = catalog.rules.index.id("LAB_MAGNESIUM").unwrap();
    assert_eq!(f.observations[0].canonical_value(mg), None);
    assert!(f.notes.iter().any(|n| n.contains("furlongs") && n.contains("not compared")), "{:?}", f.notes);
}

#[test]
fn observation_statuses() {
    for (status, used) in [
        ("final", true),
        ("amended", true),
        ("corrected", true),
        ("preliminary", false),
        ("registered", false),
        ("cancelled", false),
        ("entered-in-error", false),
        ("unknown", false),
    ] {
        let f = facts_of(vec![lab("2823-3", 3.0, "mmol/L", "2026-06-10", status)], "female");
        assert_eq!(!f.observations.is_empty(), used, "{status}");
    }
}

fn status_obs(answer: &str, when: &str) -> Value {
    json!({"resourceType": "Observation", "id": format!("ps-{when}"), "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]}, "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": answer}]}})
}

fn dx(code: &str, status: &str, recorded: &str) -> Value {
    json!({"resourceType": "Condition", "id": format!("{code}-{recorded}"), "clinicalStatus": {"coding": [{"code": status}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}, "recordedDate": recorded})
}

#[test]
fn pregnancy_convention() {
    let yes = "LA15173-0";
    let no = "LA26683-5";
    let table: Vec<(&str, Vec<Value>, &str, bool)> = vec![
        ("positive status answer", vec![status_obs(yes, "2026-05-01")], "female", true),
        ("positive answer older than 280 days", vec![status_obs(yes, "2025-08-01")], "female", false),
        (
            "later negative answer cancels",
            vec![status_obs(yes, "2026-03-01"), status_obs(no, "2026-06-01")],
            "female",
            false,
        ),
        (
            "earlier negative answer does not",
            vec![status_obs(no, "2026-01-01"), status_obs(yes, "2026-03-01")],
            "female",
            true,
        ),
        ("active pregnancy diagnosis", vec![dx("Z34.83", "active", "2026-04-01")], "female", true),
        (
            "delivery after the diagnosis cancels",
            vec![dx("Z34.83", "active", "2026-01-01"), dx("O80", "resolved", "2026-05-01")],
            "female",
            false,
        ),
        (
            "delivery before the diagnosis does not",
            vec![dx("O80", "resolved", "2025-01-01"), dx("Z34.83", "active", "2026-04-01")],
            "female",
            true,
        ),
        (
            "male never pregnant",
            vec![status_obs(yes, "2026-05-01"), dx("Z33.1", "active", "2026-05-01")],
            "male",
            false,
        ),
        ("resolved pregnancy diagnosis", vec![dx("Z34.83", "resolved", "2026-04-01")], "female", false),
    ];
    for (name, resources, gender, pregnant) in table {
        assert_eq!(facts_of(resources, gender).pregnancy.pregnant, pregnant, "{name}");
    }
    // Gestational age: 26 weeks recorded 14 days ago is 28 weeks today (third trimester).
    let ga = json!({"resourceType": "Observation", "id": "ga", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "49051-6"}]},
        "effectiveDateTime": "2026-06-01T12:00:00Z", "valueQuantity": {"value": 26, "unit": "wk"}});
    let p = facts_of(vec![status_obs(yes, "2026-04-15"), ga], "female").pregnancy;
    assert_eq!((p.pregnant, p.gestational_age_weeks, p.third_trimester), (true, Some(28), true));
    let p =
        facts_of(vec![dx("Z34.82", "active", "2026-05-01"), dx("Z3A.30", "active", "2026-06-01")], "female").pregnancy;
    assert!(p.third_trimester && p.gestational_age_weeks.is_none());
}

#[test]
fn age_at_the_evaluation_instant() {
    let catalog = catalog();
    let mut set = ResourceSet::new();
    set.add_resource(json!({"resourceType": "Patient", "id": "p", "birthDate": "2008-06-16"}), "t");
    let f = offline_facts(&catalog, &set, now());
    assert_eq!(f.age_years, Some(17));
    let later: DateTime<Utc> = "2026-06-16T00:00:00Z".parse().unwrap();
    let f = offline_facts(&catalog, &set, later);
    assert_eq!(f.age_years, Some(18));
}
