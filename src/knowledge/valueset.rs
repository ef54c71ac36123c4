//! Value sets as data (`cards/valuesets/*.json`) and the index built from them at load:
//! code → value sets, so that looking up a patient's code costs the same however many
//! codes and rules there are.

use crate::knowledge::load::{read_json, LoadError};
use crate::knowledge::phrases::PhraseIndex;
use crate::knowledge::units::{UnitConverter, UnitSpec};
use crate::protocol::schemas::{Document, SchemaSet};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A value set's units, converted through UCUM (see [`crate::knowledge::units`]):
/// `to_canonical(value, unit)` gives the value in `canonical`, or `None` when the unit cannot
/// be read or converted; `explain(unit)` says why.
pub use crate::knowledge::units::AnalyteUnits as Units;

pub type VsId = u32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSetFile {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub id: String,
    pub description: String,
    /// Short human name of what the set measures or contains (used for `{analyte}`).
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub codes: Vec<CodeEntry>,
    /// Ingredient names (lower case) matched as whole words in medication codings' display
    /// and text: covers product-level codes (SCD/SBD) and ingredients without a verified code.
    #[serde(default)]
    pub ingredients: Vec<String>,
    /// Ingredient names that are only the salt part of another drug in some products.
    #[serde(default)]
    pub salts: Option<Salts>,
    /// For lab and vital value sets: the canonical unit, molar mass, valence and what else
    /// UCUM cannot convert.
    #[serde(default)]
    pub units: Option<UnitSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    pub system: String,
    pub code: String,
    #[serde(default)]
    pub display: Option<String>,
    /// `descendants`: this code and every code below it (prefix match, ICD-10-CM and ATC).
    #[serde(default)]
    pub r#match: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Ingredient names of a supplement set that name a salt of another drug in some products
/// (USP salt names: esomeprazole magnesium, losartan potassium). Such a name counts only when
/// the product names no other drug: no ingredient of a value set without `salts`, and none
/// of the `not_with` words.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Salts {
    /// Names from `ingredients` (e.g. the bare "magnesium").
    pub words: Vec<String>,
    /// Other drugs (or anions) that make the salt word theirs: "losartan", "iodide".
    #[serde(default)]
    pub not_with: Vec<String>,
}

/// Canonical code-system URIs, so that an OID or a common variant matches.
pub fn canonical_system(system: &str) -> &str {
    match system {
        // WHO ICD-10 (6.3) is read as ICD-10-CM: the catalogue's codes (R25.2, I80.x, E87.x…)
        // have the same meaning in both, and a WHO code absent from CM simply matches nothing.
        "urn:oid:2.16.840.1.113883.6.90"
        | "http://hl7.org/fhir/sid/icd-10-cm/"
        | "http://hl7.org/fhir/sid/icd-10"
        | "http://hl7.org/fhir/sid/icd-10/"
        | "urn:oid:2.16.840.1.113883.6.3" => "http://hl7.org/fhir/sid/icd-10-cm",
        "urn:oid:2.16.840.1.113883.6.96" | "http://snomed.info/sct/" => "http://snomed.info/sct",
        "urn:oid:2.16.840.1.113883.6.1" | "http://loinc.org/" => "http://loinc.org",
        "urn:oid:2.16.840.1.113883.6.88" | "http://www.nlm.nih.gov/research/umls/rxnorm/" => {
            "http://www.nlm.nih.gov/research/umls/rxnorm"
        }
        "urn:oid:2.16.840.1.113883.6.73" | "http://www.whocc.no/atc/" => "http://www.whocc.no/atc",
        other => other,
    }
}

fn needs_canonical_code(system: &str) -> bool {
    system == "http://hl7.org/fhir/sid/icd-10-cm" || system == "http://www.whocc.no/atc"
}

/// ICD-10-CM and ATC codes are compared without the dot and in upper case (`R25.2` = `r252`).
fn canonical_code(system: &str, code: &str) -> String {
    if needs_canonical_code(system) {
        code.trim().chars().filter(|c| *c != '.').flat_map(char::to_uppercase).collect()
    } else {
        code.trim().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct ValueSet {
    pub id: String,
    pub label: Option<String>,
    pub units: Option<Units>,
    pub codes: Vec<CodeEntry>,
    pub salts: Option<Salts>,
}

/// All value sets and the lookup tables built from them.
#[derive(Debug, Clone, Default)]
pub struct ValueSetIndex {
    sets: Vec<ValueSet>,
    by_id: HashMap<String, VsId>,
    /// system → code → sets. Nested so that lookups borrow (&str) instead of allocating a key.
    exact: HashMap<String, HashMap<String, Vec<VsId>>>,
    /// system → code prefix → sets that include the code and its descendants.
    descendants: HashMap<String, HashMap<String, Vec<VsId>>>,
    longest_prefix: usize,
    /// ingredient name → sets.
    ingredients: PhraseIndex<VsId>,
    /// Brand names and route words (`cards/brands.json`, `cards/medication-forms.json`).
    pub vocabulary: crate::knowledge::vocabulary::MedicationVocabulary,
}

impl ValueSetIndex {
    /// Indexes the value sets; their units share `converter`.
    pub fn build(files: Vec<ValueSetFile>, converter: &Arc<UnitConverter>) -> Result<Self, Vec<(String, String)>> {
        let mut index = ValueSetIndex::default();
        let mut errors = Vec::new();
        for file in files {
            if index.by_id.contains_key(&file.id) {
                errors.push((file.id.clone(), "duplicate value set id".to_string()));
                continue;
            }
            let id = index.sets.len() as VsId;
            for entry in &file.codes {
                let system = canonical_system(&entry.system).to_string();
                let code = canonical_code(&system, &entry.code);
                match entry.r#match.as_deref() {
                    None | Some("exact") => {
                        push_unique(index.exact.entry(system).or_default().entry(code).or_default(), id)
                    }
                    Some("descendants") => {
                        index.longest_prefix = index.longest_prefix.max(code.len());
                        push_unique(index.descendants.entry(system).or_default().entry(code).or_default(), id);
                    }
                    Some(other) => {
                        errors.push((file.id.clone(), format!("unknown match '{other}' for code {}", entry.code)))
                    }
                }
            }
            for name in &file.ingredients {
                if !index.ingredients.insert(name, id) {
                    errors.push((file.id.clone(), format!("empty ingredient name {name:?}")));
                }
            }
            for word in file.salts.iter().flat_map(|s| &s.words) {
                if !file
                    .ingredients
                    .iter()
                    .any(|i| crate::knowledge::phrases::words(i) == crate::knowledge::phrases::words(word))
                {
                    errors.push((file.id.clone(), format!("salt word {word:?} is not one of the ingredients")));
                }
            }
            let units = match file.units.as_ref().map(|spec| Units::new(spec, converter)).transpose() {
                Ok(units) => units,
                Err(es) => {
                    errors.extend(es.into_iter().map(|e| (file.id.clone(), format!("units: {e}"))));
                    None
                }
            };
            index.by_id.insert(file.id.clone(), id);
            index.sets.push(ValueSet { id: file.id, label: file.label, units, codes: file.codes, salts: file.salts });
        }
        if errors.is_empty() {
            Ok(index)
        } else {
            Err(errors)
        }
    }

    pub fn id(&self, name: &str) -> Option<VsId> {
        self.by_id.get(name).copied()
    }

    pub fn get(&self, id: VsId) -> &ValueSet {
        &self.sets[id as usize]
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Adds to `out` every value set containing this coding.
    pub fn sets_of_code(&self, system: &str, code: &str, out: &mut Vec<VsId>) {
        let system = canonical_system(system);
        let owned;
        let code = if needs_canonical_code(system) {
            owned = canonical_code(system, code);
            owned.as_str()
        } else {
            code.trim()
        };
        if let Some(ids) = self.exact.get(system).and_then(|codes| codes.get(code)) {
            extend_unique(out, ids);
        }
        if let Some(prefixes) = self.descendants.get(system) {
            for end in 1..=code.len().min(self.longest_prefix) {
                if let Some(ids) = code.get(..end).and_then(|p| prefixes.get(p)) {
                    extend_unique(out, ids);
                }
            }
        }
    }

    /// Adds to `out` every value set one of whose ingredient names occurs, as whole words,
    /// in `text` (a coding display, a CodeableConcept text, a Medication ingredient).
    pub fn sets_of_ingredient_text(&self, text: &str, out: &mut Vec<VsId>) {
        self.ingredients.find_in(text, |m| extend_unique(out, m.values));
    }

    /// Ingredient names of every value set, for finding which name matched (and where).
    pub fn ingredient_names(&self) -> &PhraseIndex<VsId> {
        &self.ingredients
    }
}

/// Reads `units.json` of the cards directory (schema `units.schema.json`): the non-UCUM unit
/// spellings, as the converter every value set's units share.
pub fn load_unit_converter(dir: &Path, schemas: &SchemaSet) -> Result<Arc<UnitConverter>, Vec<LoadError>> {
    let file = dir.join("units.json");
    let err = |pointer: String, message: String| LoadError { file: file.clone(), pointer, message };
    let value = read_json(&file).map_err(|e| vec![e])?;
    schemas
        .validate(Document::Units, &value)
        .map_err(|es| es.into_iter().map(|e| err(e.pointer, e.message)).collect::<Vec<_>>())?;
    let table = serde_json::from_value(value).map_err(|e| vec![err(String::new(), e.to_string())])?;
    UnitConverter::new(&table)
        .map(Arc::new)
        .map_err(|es| es.into_iter().map(|e| err(e.pointer(), e.to_string())).collect())
}

fn push_unique(v: &mut Vec<VsId>, id: VsId) {
    if !v.contains(&id) {
        v.push(id);
    }
}

fn extend_unique(out: &mut Vec<VsId>, ids: &[VsId]) {
    for id in ids {
        push_unique(out, *id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::units::UnitProblem;
    use serde_json::json;

    fn index() -> ValueSetIndex {
        let files: Vec<ValueSetFile> = serde_json::from_value(json!([
            {"id": "PAD", "description": "d", "codes": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I70.2", "match": "descendants"},
                {"system": "http://snomed.info/sct", "code": "399957001"}]},
            {"id": "THIAZIDE", "description": "d", "ingredients": ["hydrochlorothiazide", "magnesium oxide"],
             "codes": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5487"},
                       {"system": "http://www.whocc.no/atc", "code": "C03AA", "match": "descendants"}]},
            {"id": "MG", "description": "d", "units": {"canonical": "mg/dL", "molar_mass": 24.305, "valence": 2,
                "plausible": {"low": 0.1, "high": 40, "source": "s"}},
             "codes": [{"system": "http://loinc.org", "code": "19123-9"}]}
        ]))
        .unwrap();
        ValueSetIndex::build(files, &converter()).unwrap()
    }

    fn converter() -> Arc<UnitConverter> {
        let table = serde_json::from_value(json!({"description": "d", "groups": [
            {"source": "s", "spellings": {"mEq/L": "meq/L"}}]}))
        .unwrap();
        Arc::new(UnitConverter::new(&table).unwrap())
    }

    #[test]
    fn exact_descendant_and_oid_matching() {
        let ix = index();
        let pad = ix.id("PAD").unwrap();
        let mut out = Vec::new();
        ix.sets_of_code("http://hl7.org/fhir/sid/icd-10-cm", "I70.213", &mut out);
        assert_eq!(out, vec![pad]);
        out.clear();
        ix.sets_of_code("urn:oid:2.16.840.1.113883.6.90", "i70213", &mut out);
        assert_eq!(out, vec![pad], "OID system and undotted lower-case code");
        out.clear();
        ix.sets_of_code("http://hl7.org/fhir/sid/icd-10-cm", "I70.1", &mut out);
        assert!(out.is_empty(), "a sibling is not a descendant");
        ix.sets_of_code("http://snomed.info/sct", "399957001", &mut out);
        assert_eq!(out, vec![pad]);
        out.clear();
        ix.sets_of_code("http://www.whocc.no/atc", "C03AA03", &mut out);
        assert_eq!(out, vec![ix.id("THIAZIDE").unwrap()]);
    }

    #[test]
    fn ingredient_names_match_whole_words_in_product_text() {
        let ix = index();
        let mut out = Vec::new();
        ix.sets_of_ingredient_text("Hydrochlorothiazide 25 MG Oral Tablet", &mut out);
        assert_eq!(out, vec![ix.id("THIAZIDE").unwrap()]);
        out.clear();
        ix.sets_of_ingredient_text("Magnesium Oxide 400 MG Oral Tablet", &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        ix.sets_of_ingredient_text("magnesium sulfate", &mut out);
        assert!(out.is_empty(), "two-word names need both words");
        ix.sets_of_ingredient_text("chlorothiazidex", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn units_convert_through_ucum_with_molar_mass_and_valence() {
        let ix = index();
        let u = ix.get(ix.id("MG").unwrap()).units.as_ref().unwrap();
        assert_eq!(u.to_canonical(2.0, "mg/dL"), Some(2.0));
        assert_eq!(u.to_canonical(2.0, "MG/DL"), Some(2.0), "upper case: UCUM's case-insensitive codes");
        assert!((u.to_canonical(0.62, "mmol/L").unwrap() - 1.507).abs() < 0.001);
        assert!((u.to_canonical(1.48, "mEq/L").unwrap() - 1.799).abs() < 0.001);
        assert!((u.to_canonical(20.0, "mg/L").unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(u.to_canonical(2.0, "furlongs"), None);
        assert_eq!(u.explain("furlongs"), Some(UnitProblem::Unknown));
        assert_eq!(u.explain("mL/min"), Some(UnitProblem::WrongDimension));
        assert_eq!(u.explain("umol/L"), None);
    }

    #[test]
    fn bad_units_in_a_value_set_are_load_errors() {
        let p = json!({"low": 1, "high": 2, "source": "s"});
        let files: Vec<ValueSetFile> = serde_json::from_value(json!([
            {"id": "A", "description": "d", "units": {"canonical": "furlongs/fortnight", "plausible": p}, "codes": [{"system": "s", "code": "1"}]},
            {"id": "B", "description": "d", "units": {"canonical": "mg/dL", "factors": {"g/L": 0.1}, "plausible": p}, "codes": [{"system": "s", "code": "2"}]},
            {"id": "C", "description": "d", "units": {"canonical": "mg/dL", "plausible": {"low": 5, "high": 1, "source": "s"}}, "codes": [{"system": "s", "code": "3"}]}
        ]))
        .unwrap();
        let errors = ValueSetIndex::build(files, &converter()).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[2].0 == "C" && errors[2].1.contains("0 < low < high"), "{errors:?}");
        assert!(errors[0].0 == "A" && errors[0].1.contains("neither UCUM nor a listed spelling"), "{errors:?}");
        assert!(errors[1].0 == "B" && errors[1].1.contains("already converts"), "{errors:?}");
    }

    #[test]
    fn the_cards_unit_table_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
        let schemas = SchemaSet::compile().unwrap();
        let converter = load_unit_converter(&dir, &schemas).unwrap();
        assert_eq!(converter.read("beats/minute").unwrap().ucum, "/min");
        let missing = load_unit_converter(&dir.join("rules"), &schemas).unwrap_err();
        assert!(missing[0].message.contains("cannot read"), "{missing:?}");
    }
}
