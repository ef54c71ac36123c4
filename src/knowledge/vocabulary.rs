//! Medication vocabulary as data, loaded with the value sets: brand names and the
//! ingredients they stand for (`cards/brands.json`), the codes and words that tell a
//! medication's route (`cards/medication-forms.json`), and the salt rules of supplement value
//! sets (`salts` in `cards/valuesets/*.json`). Only lookups live here; deciding what a
//! medication is happens in the facts layer (`facts::medication`).

use super::phrases::{words, PhraseIndex, Words};
use super::valueset::{canonical_system, ValueSetIndex, VsId};
use crate::knowledge::load::{read_json, LoadError};
use crate::protocol::schemas::{Document, SchemaSet};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// How a medication is given, as far as the record says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MedicationRoute {
    Oral,
    /// Intravenous, intramuscular, subcutaneous: injected or infused.
    Parenteral,
    /// Inhaled, topical, rectal, vaginal, sublingual…
    Other,
    /// Neither the dosage nor the product says.
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandsFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(rename = "description")]
    _description: String,
    brands: Vec<BrandEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandEntry {
    brand: String,
    ingredients: Vec<String>,
    #[serde(rename = "source")]
    _source: String,
    #[serde(rename = "note", default)]
    _note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormsFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(rename = "description")]
    _description: String,
    routes: Vec<RouteEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    route: MedicationRoute,
    #[serde(default)]
    codes: Vec<RouteCode>,
    #[serde(default)]
    route_words: Vec<String>,
    #[serde(default)]
    form_words: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteCode {
    system: String,
    code: String,
    #[serde(rename = "display", default)]
    _display: Option<String>,
}

/// A brand name and the ingredients (lower case, as a clinician writes them) it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Brand {
    pub name: String,
    pub ingredients: Vec<String>,
}

/// The salt rule of one supplement value set (see [`super::valueset::Salts`]).
#[derive(Debug, Clone, Default)]
struct SaltRule {
    /// Lower-case words joined by one space, as phrases are indexed.
    words: Vec<String>,
    not_with: PhraseIndex<()>,
}

#[derive(Debug, Clone, Default)]
pub struct MedicationVocabulary {
    brands: Vec<Brand>,
    brand_names: PhraseIndex<usize>,
    /// system → code → route (dosage route codes, e.g. SNOMED 26643006 oral).
    route_codes: HashMap<String, HashMap<String, MedicationRoute>>,
    /// (precedence, route): the first entry of the file that matches wins.
    route_words: PhraseIndex<(usize, MedicationRoute)>,
    form_words: PhraseIndex<(usize, MedicationRoute)>,
    salts: HashMap<VsId, SaltRule>,
}

impl MedicationVocabulary {
    /// Loads both files of `dir` (schema-checked) and the salt rules of `index`'s value sets.
    /// Problems are added to `errors` as `file: pointer: message`.
    pub fn load(dir: &Path, schemas: &SchemaSet, index: &ValueSetIndex, errors: &mut Vec<LoadError>) -> Self {
        let mut vocabulary = MedicationVocabulary::default();
        let brands_file = dir.join("brands.json");
        if let Some(file) = read_document::<BrandsFile>(&brands_file, Document::Brands, schemas, errors) {
            for (i, entry) in file.brands.into_iter().enumerate() {
                let problem = vocabulary.add_brand(entry, index);
                errors.extend(problem.map(|m| error(&brands_file, &format!("/brands/{i}"), m)));
            }
        }
        let forms_file = dir.join("medication-forms.json");
        if let Some(file) = read_document::<FormsFile>(&forms_file, Document::MedicationForms, schemas, errors) {
            for (precedence, entry) in file.routes.into_iter().enumerate() {
                vocabulary.add_route(precedence, entry);
            }
        }
        for vs in 0..index.len() as VsId {
            if let Some(salts) = &index.get(vs).salts {
                let joined = salts.words.iter().map(|w| words(w).join(" ")).collect();
                let mut rule = SaltRule { words: joined, ..Default::default() };
                salts.not_with.iter().for_each(|w| {
                    rule.not_with.insert(w, ());
                });
                vocabulary.salts.insert(vs, rule);
            }
        }
        vocabulary
    }

    fn add_brand(&mut self, entry: BrandEntry, index: &ValueSetIndex) -> Option<String> {
        if !self.brand_names.get(&entry.brand).is_empty() {
            return Some(format!("brand {:?} is listed twice", entry.brand));
        }
        // A brand whose ingredients no value set knows could never matter: most likely a typo.
        if !entry.ingredients.iter().any(|i| index.ingredient_names().occurs_in(i)) {
            return Some(format!("no ingredient of brand {:?} is an ingredient of any value set", entry.brand));
        }
        if !self.brand_names.insert(&entry.brand, self.brands.len()) {
            return Some("brand name has no word".into());
        }
        let ingredients = entry.ingredients.iter().map(|i| words(i).join(" ")).collect();
        self.brands.push(Brand { name: entry.brand, ingredients });
        None
    }

    fn add_route(&mut self, precedence: usize, entry: RouteEntry) {
        for c in &entry.codes {
            self.route_codes
                .entry(canonical_system(&c.system).to_string())
                .or_default()
                .insert(c.code.trim().to_string(), entry.route);
        }
        for w in &entry.route_words {
            self.route_words.insert(w, (precedence, entry.route));
        }
        for w in &entry.form_words {
            self.form_words.insert(w, (precedence, entry.route));
        }
    }

    /// Every brand named (as whole words) in `text`.
    pub fn brands_in<'a>(&'a self, text: &Words, mut found: impl FnMut(&'a Brand)) {
        self.brand_names.find(text, |m| m.values.iter().for_each(|&i| found(&self.brands[i])));
    }

    /// The route a dosage route coding stands for.
    pub fn route_of_code(&self, system: &str, code: &str) -> Option<MedicationRoute> {
        self.route_codes.get(canonical_system(system)).and_then(|codes| codes.get(code.trim())).copied()
    }

    /// The route named by a dosage route's text or display ("by mouth", "IV").
    pub fn route_in_route_text(&self, text: &Words) -> Option<MedicationRoute> {
        first_route(&self.route_words, text)
    }

    /// The route implied by a dose form or product text ("Injectable Solution", "Oral Tablet").
    pub fn route_in_form_text(&self, text: &Words) -> Option<MedicationRoute> {
        first_route(&self.form_words, text)
    }

    /// Whether `phrase` (an ingredient name matched for `vs`) is one of its salt words.
    pub fn is_salt_word(&self, vs: VsId, phrase: &str) -> bool {
        self.salts.get(&vs).is_some_and(|r| r.words.iter().any(|w| w == phrase))
    }

    /// Whether `text` names a drug that makes `vs`'s salt words that drug's salt.
    pub fn salt_blocked_by_text(&self, vs: VsId, text: &Words) -> bool {
        self.salts.get(&vs).is_some_and(|r| r.not_with.occurs(text))
    }

    /// Whether `vs` is a supplement set with a salt rule.
    pub fn has_salts(&self, vs: VsId) -> bool {
        self.salts.contains_key(&vs)
    }
}

fn first_route(index: &PhraseIndex<(usize, MedicationRoute)>, text: &Words) -> Option<MedicationRoute> {
    let mut best: Option<(usize, MedicationRoute)> = None;
    index.find(text, |m| {
        for &(p, route) in m.values {
            if best.is_none_or(|(b, _)| p < b) {
                best = Some((p, route));
            }
        }
    });
    best.map(|(_, route)| route)
}

fn error(file: &Path, pointer: &str, message: String) -> LoadError {
    LoadError { file: file.to_path_buf(), pointer: pointer.to_string(), message }
}

/// Reads a JSON file, checks it against its schema and deserialises it; `None` after adding
/// the problems to `errors`.
fn read_document<T: DeserializeOwned>(
    file: &Path,
    document: Document,
    schemas: &SchemaSet,
    errors: &mut Vec<LoadError>,
) -> Option<T> {
    let value = read_json(file).map_err(|e| errors.push(e)).ok()?;
    if let Err(es) = schemas.validate(document, &value) {
        errors.extend(es.into_iter().map(|e| error(file, &e.pointer, e.message)));
        return None;
    }
    serde_json::from_value(value).map_err(|e| errors.push(error(file, "", e.to_string()))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> MedicationVocabulary {
        let schemas = SchemaSet::compile().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
        let mut errors = Vec::new();
        let index = crate::knowledge::load::load_value_sets(&dir, &schemas, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        index.vocabulary
    }

    #[test]
    fn brands_resolve_to_ingredients_as_whole_words() {
        let v = vocabulary();
        let mut found = Vec::new();
        v.brands_in(&Words::new("ADVAIR DISKUS 250-50 MCG/DOSE"), |b| found.push(b.ingredients.clone()));
        assert_eq!(found, vec![vec!["fluticasone propionate".to_string(), "salmeterol".into()]]);
        found.clear();
        v.brands_in(&Words::new("Klor-Con M20 tablet"), |b| found.push(b.ingredients.clone()));
        assert_eq!(found, vec![vec!["potassium chloride".to_string()]]);
        found.clear();
        v.brands_in(&Words::new("Lipitorx"), |b| found.push(b.ingredients.clone()));
        assert!(found.is_empty());
    }

    #[test]
    fn routes_by_code_route_text_and_dose_form() {
        let v = vocabulary();
        assert_eq!(v.route_of_code("http://snomed.info/sct", "26643006"), Some(MedicationRoute::Oral));
        assert_eq!(v.route_of_code("http://snomed.info/sct", "47625008"), Some(MedicationRoute::Parenteral));
        assert_eq!(v.route_in_route_text(&Words::new("By mouth")), Some(MedicationRoute::Oral));
        assert_eq!(v.route_in_route_text(&Words::new("IV push")), Some(MedicationRoute::Parenteral));
        assert_eq!(
            v.route_in_form_text(&Words::new("magnesium sulfate 500 MG/ML Injectable Solution")),
            Some(MedicationRoute::Parenteral)
        );
        assert_eq!(
            v.route_in_form_text(&Words::new("Magnesium Oxide 400 MG Oral Tablet")),
            Some(MedicationRoute::Oral)
        );
        assert_eq!(
            v.route_in_form_text(&Words::new("salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler")),
            Some(MedicationRoute::Other)
        );
        assert_eq!(v.route_in_form_text(&Words::new("magnesium 400 mg")), None);
    }
}
