//! Medication normalisation over the real cards directory: brands, combinations, salts,
//! routes, reasons and unresolved product codes.

use super::*;
use crate::facts::PatientFacts;
use crate::fhir::terminology::LookupFailure;
use serde_json::{json, Value};

/// What facts read of the real cards directory: its conventions (named facts' expressions left
/// unread) and its value sets.
struct RuleBook {
    conventions: Conventions<Value>,
    index: ValueSetIndex,
}

fn book() -> RuleBook {
    let schemas = crate::protocol::SchemaSet::compile().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
    let mut errors = Vec::new();
    let index = crate::knowledge::load::load_value_sets(&dir, &schemas, &mut errors).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let conventions = crate::knowledge::load::read_json(&dir.join("conventions.json")).unwrap();
    RuleBook { conventions: serde_json::from_value(conventions).unwrap(), index }
}

fn facts_with(book: &RuleBook, resources: Vec<Value>, resolved: &ResolvedCodes) -> PatientFacts {
    let mut set = ResourceSet::new();
    for r in resources {
        set.add_resource(r, "test");
    }
    let now = "2026-06-15T12:00:00Z".parse().unwrap();
    PatientFacts::build(&set, &book.conventions, &book.index, resolved, "patient-view", now)
}

fn request(id: &str, medication: Value) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
           "medicationCodeableConcept": medication})
}

fn text(t: &str) -> Value {
    json!({"text": t})
}

/// The one medication of `resources`, read with no terminology service.
fn one(book: &RuleBook, medication: Value) -> MedicationFact {
    facts_with(book, vec![request("m", medication)], &ResolvedCodes::none()).medications.remove(0)
}

fn fact(ingredients: &[(VsId, &str)], components: &[&str], brand: Option<&str>) -> MedicationFact {
    MedicationFact {
        reference: "MedicationRequest/m".into(),
        source: MedicationSource::Request,
        status: Some("active".into()),
        active: true,
        draft_in_scope: false,
        label: "Some Product 20 MG".into(),
        sets: ingredients.iter().map(|(vs, _)| *vs).collect(),
        reason_sets: Vec::new(),
        reason_labels: Vec::new(),
        started: None,
        ingredients: ingredients.iter().map(|(vs, n)| IngredientMatch { vs: *vs, name: n.to_string() }).collect(),
        components: components.iter().map(|c| c.to_string()).collect(),
        brand: brand.map(str::to_string),
        route: MedicationRoute::Unknown,
        has_reason: false,
    }
}

#[test]
fn drug_label_names_the_matched_ingredient_and_never_overflows() {
    assert_eq!(fact(&[(3, "atorvastatin")], &[], Some("Lipitor")).drug_label(3), "atorvastatin (Lipitor)");
    let advair = fact(&[(5, "salmeterol")], &["fluticasone propionate", "salmeterol"], Some("Advair"));
    assert_eq!(advair.drug_label(5), "salmeterol (in fluticasone/salmeterol)");
    let trelegy = fact(&[(5, "vilanterol")], &["fluticasone furoate", "umeclidinium", "vilanterol"], Some("Trelegy"));
    assert_eq!(trelegy.drug_label(5), "vilanterol (in Trelegy)");
    assert_eq!(fact(&[(1, "magnesium oxide")], &[], None).drug_label(1), "magnesium oxide");
    assert_eq!(advair.drug_label(9), "Some Product 20 MG", "not matched: the recorded label");
    let long = fact(&[(2, "a-very-long-ingredient-name-for-testing")], &["x", "y"], Some("Brandname"));
    assert!(long.drug_label(2).chars().count() <= 40);
}

#[test]
fn label_gains_the_ingredients_it_does_not_name() {
    let m = |vs, n: &str| IngredientMatch { vs, name: n.into() };
    assert_eq!(label_with_ingredients("Lipitor 20 mg", &[], &[m(1, "atorvastatin")]), "Lipitor 20 mg (atorvastatin)");
    assert_eq!(
        label_with_ingredients("atorvastatin 20 MG Oral Tablet", &[], &[m(1, "atorvastatin")]),
        "atorvastatin 20 MG Oral Tablet"
    );
    let combo = ["fluticasone propionate".to_string(), "salmeterol".to_string()];
    assert_eq!(
        label_with_ingredients("Advair Diskus 250/50", &combo, &[m(2, "salmeterol")]),
        "Advair Diskus 250/50 (fluticasone propionate/salmeterol)"
    );
    assert_eq!(label_with_ingredients("Tylenol", &[], &[]), "Tylenol");
}

#[test]
fn brands_and_combinations_name_the_matched_ingredient() {
    let book = book();
    let vs = |id: &str| book.index.id(id).unwrap();
    let lipitor = one(&book, text("Lipitor 20 mg tablet"));
    assert!(lipitor.sets.contains(&vs("MED_STATIN")));
    assert_eq!(lipitor.brand.as_deref(), Some("Lipitor"));
    assert_eq!(lipitor.drug_label(vs("MED_STATIN")), "atorvastatin (Lipitor)");
    assert_eq!(lipitor.label, "Lipitor 20 mg tablet (atorvastatin)");
    let epic = one(&book, text("fluticasone-salmeterol (ADVAIR DISKUS) 250-50 mcg/dose diskus inhaler"));
    assert_eq!(epic.drug_label(vs("MED_LABA")), "salmeterol (in fluticasone/salmeterol)");
    assert_eq!(epic.route, MedicationRoute::Other);
    let rxnorm =
        one(&book, text("fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler"));
    assert_eq!(rxnorm.components, vec!["fluticasone propionate".to_string(), "salmeterol".into()]);
    assert_eq!(rxnorm.ingredients, vec![IngredientMatch { vs: vs("MED_LABA"), name: "salmeterol".into() }]);
    let coded = one(&book, json!({"coding": [{"system": RXNORM, "code": "36117"}]}));
    assert_eq!(coded.drug_label(vs("MED_LABA")), "salmeterol", "an ingredient code names its ingredient");
    assert!(!one(&book, text("Lipitorx 20 mg")).sets.contains(&vs("MED_STATIN")), "whole words only");
}

#[test]
fn supplements_are_told_from_salts_of_other_drugs() {
    let book = book();
    let (mg, k, ppi) = (
        book.index.id("MED_MAGNESIUM_SUPPLEMENT").unwrap(),
        book.index.id("MED_POTASSIUM_SUPPLEMENT").unwrap(),
        book.index.id("MED_PPI").unwrap(),
    );
    let sets = |t: &str| one(&book, text(t)).sets;
    for supplement in ["Magnesium 400 mg tablet", "magnesium", "Calcium / Magnesium / Zinc tablet", "Slow-Mag 64 mg"] {
        assert!(sets(supplement).contains(&mg), "{supplement}");
    }
    for drug in
        ["esomeprazole magnesium 40 MG", "Zypitamag (pitavastatin magnesium) 2 mg", "magnesium salicylate 580 mg"]
    {
        assert!(!sets(drug).contains(&mg), "{drug}");
    }
    assert!(sets("esomeprazole magnesium 40 MG").contains(&ppi));
    for supplement in
        ["potassium citrate 10 MEQ", "Potassium gluconate 595 mg", "potassium bicarbonate", "Potassium 99 mg"]
    {
        assert!(sets(supplement).contains(&k), "{supplement}");
    }
    for drug in [
        "losartan potassium 50 MG Oral Tablet",
        "diclofenac potassium 50 MG",
        "potassium iodide 65 mg",
        "amoxicillin 875 MG / clavulanate potassium 125 MG Oral Tablet",
    ] {
        assert!(!sets(drug).contains(&k), "{drug}");
    }
    assert_eq!(one(&book, text("Magnesium Oxide 400 MG Oral Tablet")).drug_label(mg), "magnesium oxide");
}

#[test]
fn route_from_dosage_code_words_form_and_product() {
    let book = book();
    let with_dosage = |dosage: Value| {
        let mut r = request("m", text("magnesium sulfate"));
        r["dosageInstruction"] = json!([dosage]);
        facts_with(&book, vec![r], &ResolvedCodes::none()).medications.remove(0).route
    };
    let sct = |code: &str| json!({"route": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}});
    assert_eq!(with_dosage(sct("47625008")), MedicationRoute::Parenteral);
    assert_eq!(with_dosage(sct("26643006")), MedicationRoute::Oral);
    assert_eq!(with_dosage(json!({"route": {"text": "By mouth"}})), MedicationRoute::Oral);
    assert_eq!(with_dosage(json!({"text": "2 g IV over 20 minutes"})), MedicationRoute::Parenteral);
    let contained = json!({"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "x", "code": {"text": "magnesium sulfate"},
                       "form": {"coding": [{"display": "Injectable Solution"}]}}],
        "medicationReference": {"reference": "#x"}});
    assert_eq!(
        facts_with(&book, vec![contained], &ResolvedCodes::none()).medications[0].route,
        MedicationRoute::Parenteral
    );
    assert_eq!(one(&book, text("Magnesium Oxide 400 MG Oral Tablet")).route, MedicationRoute::Oral);
    assert_eq!(one(&book, text("magnesium")).route, MedicationRoute::Unknown);
}

#[test]
fn reasons_from_codes_referenced_and_contained_conditions() {
    let book = book();
    let cramp = book.index.id("LEG_CRAMP").unwrap();
    let g4762 = json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G47.62"}]});
    let condition = json!({"resourceType": "Condition", "id": "c9", "code": g4762});
    let mut by_reference = request("a", text("magnesium oxide 400 MG"));
    by_reference["reasonReference"] = json!([{"reference": "Condition/c9"}]);
    let mut by_contained = request("b", text("magnesium oxide 400 MG"));
    by_contained["contained"] = json!([{"resourceType": "Condition", "id": "r1", "code": g4762}]);
    by_contained["reasonReference"] = json!([{"reference": "#r1"}]);
    let mut dangling = request("c", text("magnesium oxide 400 MG"));
    dangling["reasonReference"] = json!([{"reference": "Condition/elsewhere"}]);
    let none = request("d", text("magnesium oxide 400 MG"));
    let f = facts_with(&book, vec![condition, by_reference, by_contained, dangling, none], &ResolvedCodes::none());
    let got: Vec<(bool, bool)> = f.medications.iter().map(|m| (m.reason_sets.contains(&cramp), m.has_reason)).collect();
    assert_eq!(got, vec![(true, true), (true, true), (false, true), (false, false)]);
}

#[test]
fn product_codes_are_resolved_or_named_in_the_warnings() {
    let book = book();
    let statin = book.index.id("MED_STATIN").unwrap();
    let scd = json!({"coding": [{"system": RXNORM, "code": "617310"}]});
    let mut stopped = request("old", json!({"coding": [{"system": RXNORM, "code": "111"}]}));
    stopped["status"] = json!("stopped");
    let resources = vec![request("m7", scd.clone()), request("k", text("Lipitor 10 mg")), stopped];
    let mut set = ResourceSet::new();
    resources.iter().for_each(|r| set.add_resource(r.clone(), "test"));
    assert_eq!(codes_to_resolve(&set, &book.conventions, &book.index), vec!["617310".to_string()]);
    let f = facts_with(&book, resources.clone(), &ResolvedCodes::none());
    assert_eq!(
        f.notes,
        vec!["MedicationRequest/m7: RxNorm 617310 not recognised (no terminology service is configured); not used"]
    );
    assert!(!f.medications[0].sets.contains(&statin));
    let mut resolved = ResolvedCodes::with_unanswered(LookupFailure::Timeout);
    resolved.insert("617310", Ok(vec!["atorvastatin".into()]));
    let f = facts_with(&book, resources, &resolved);
    assert!(f.notes.is_empty(), "{:?}", f.notes);
    assert_eq!(f.medications[0].drug_label(statin), "atorvastatin");
    assert_eq!(f.medications[0].label, "617310 (atorvastatin)");
}
