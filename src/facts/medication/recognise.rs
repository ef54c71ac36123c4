//! Recognising a medication: which value sets it belongs to, by which ingredient, how it is
//! given and why it was ordered. A medication is recognised by, in order: an ingredient or
//! ATC code; an RxNorm product code resolved to its ingredients by the terminology service;
//! a brand name; an ingredient word in a text or display. Every way that finds something
//! counts; the order decides which ingredient name a card shows and whether the terminology
//! service is asked at all (only when nothing else recognised the medication).

use super::{IngredientMatch, MedicationRecord, MedicationRoute, ResolvedCodes, RXNORM};
use crate::fhir::model::{CodeableConcept, Condition, Medication, Reference};
use crate::fhir::resources::ResourceSet;
use crate::knowledge::phrases::{words, Words};
use crate::knowledge::valueset::{canonical_system, ValueSetIndex, VsId};
use crate::knowledge::vocabulary::Brand;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The product a record names: its own concept, and the Medication it references.
pub(super) struct Product<'a> {
    concept: Option<&'a CodeableConcept>,
    reference_display: Option<&'a str>,
    /// Borrowed from the request when shared (many orders may name one Medication).
    medication: Option<Cow<'a, Medication>>,
    /// Every text, split once for the ingredient, brand, salt and dose-form lookups.
    words: Vec<Words>,
}

impl<'a> Product<'a> {
    pub fn of(record: &MedicationRecord<'a>, resources: &'a ResourceSet) -> Self {
        let medication = record
            .reference
            .and_then(|r| r.reference.as_deref())
            .and_then(|r| resources.resolve_medication(r, record.contained));
        let reference_display = record.reference.and_then(|r| r.display.as_deref());
        let mut product = Product { concept: record.concept, reference_display, medication, words: Vec::new() };
        product.words = product.texts().map(Words::new).collect();
        product
    }

    /// The record's concept, the Medication's code and its ingredients.
    fn concepts(&self) -> impl Iterator<Item = &CodeableConcept> {
        let medication = self
            .medication
            .iter()
            .flat_map(|m| m.code.iter().chain(m.ingredient.iter().filter_map(|i| i.item_codeable_concept.as_ref())));
        self.concept.into_iter().chain(medication)
    }

    /// Every text and display naming the product.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        let of_concepts = self
            .concepts()
            .flat_map(|cc| cc.text.as_deref().into_iter().chain(cc.coding.iter().filter_map(|c| c.display.as_deref())));
        self.reference_display.into_iter().chain(of_concepts)
    }

    /// What the record calls the product: the reference's display, else the first concept's.
    pub fn label(&self) -> Option<&str> {
        self.reference_display.or_else(|| self.concepts().find_map(CodeableConcept::label))
    }

    pub fn rxnorm_codes(&self) -> impl Iterator<Item = &str> {
        self.concepts()
            .flat_map(|cc| &cc.coding)
            .filter(|c| c.system.as_deref().map(canonical_system) == Some(RXNORM))
            .filter_map(|c| c.code.as_deref())
    }

    fn form(&self) -> Option<&CodeableConcept> {
        self.medication.as_ref().and_then(|m| m.form.as_ref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Code,
    Terminology,
    Brand,
    Text,
}

struct Candidate {
    vs: VsId,
    name: String,
    via: Via,
    /// A salt word of a supplement set ("magnesium" alone): kept only if no other drug is named.
    salt: bool,
}

/// What a product was recognised as.
pub(super) struct Recognition {
    pub sets: Vec<VsId>,
    pub ingredients: Vec<IngredientMatch>,
    /// Every ingredient of a combination product (empty for a single ingredient).
    pub components: Vec<String>,
    pub brand: Option<String>,
    /// Recognised by a code, brand or ingredient word, without the terminology service.
    pub recognised_locally: bool,
}

pub(super) fn recognise(product: &Product, index: &ValueSetIndex, resolved: &ResolvedCodes) -> Recognition {
    let vocabulary = &index.vocabulary;
    let mut found = Vec::new();
    for c in product.concepts().flat_map(|cc| &cc.coding) {
        if let (Some(system), Some(code)) = (c.system.as_deref(), c.code.as_deref()) {
            let mut sets = Vec::new();
            index.sets_of_code(system, code, &mut sets);
            found.extend(sets.into_iter().map(|vs| Candidate {
                vs,
                name: code_name(index, vs, system, code, c.display.as_deref()),
                via: Via::Code,
                salt: false,
            }));
        }
    }
    let resolved_names: Vec<&String> = product.rxnorm_codes().filter_map(|c| resolved.names(c)).flatten().collect();
    resolved_names.iter().for_each(|n| ingredient_candidates(index, &Words::new(n), Via::Terminology, &mut found));
    let mut brand: Option<&Brand> = None;
    for text in &product.words {
        vocabulary.brands_in(text, |b| {
            brand.get_or_insert(b);
            b.ingredients.iter().for_each(|i| ingredient_candidates(index, &Words::new(i), Via::Brand, &mut found));
        });
    }
    product.words.iter().for_each(|t| ingredient_candidates(index, t, Via::Text, &mut found));
    // A salt word ("magnesium", "potassium") is another drug's salt when the product names one.
    let drug_named = found.iter().any(|c| !c.salt && !vocabulary.has_salts(c.vs));
    // Whether a text blocks a salt depends on the value set only: decided once per set.
    let mut blocked: HashMap<VsId, bool> = HashMap::new();
    found.retain(|c| {
        !c.salt
            || !(drug_named
                || *blocked
                    .entry(c.vs)
                    .or_insert_with(|| product.words.iter().any(|t| vocabulary.salt_blocked_by_text(c.vs, t))))
    });
    found.sort_by_key(|c| c.via);
    let sets: Vec<VsId> = unique(found.iter().map(|c| c.vs));
    let ingredients = sets.iter().map(|&vs| IngredientMatch { vs, name: best_name(&found, vs) }).collect();
    // Components only name what a card shows: not needed for a medication in no value set.
    let components = match brand {
        _ if sets.is_empty() => Vec::new(),
        Some(b) if b.ingredients.len() > 1 => b.ingredients.clone(),
        _ if !resolved_names.is_empty() => combination(resolved_names.iter().map(|n| n.as_str()), index),
        _ => combination(product.label().into_iter(), index),
    };
    Recognition {
        sets,
        ingredients,
        components,
        brand: brand.map(|b| b.name.clone()),
        recognised_locally: found.iter().any(|c| c.via != Via::Terminology),
    }
}

fn ingredient_candidates(index: &ValueSetIndex, text: &Words, via: Via, out: &mut Vec<Candidate>) {
    index.ingredient_names().find(text, |m| {
        for &vs in m.values {
            let salt = index.vocabulary.is_salt_word(vs, m.phrase);
            out.push(Candidate { vs, name: m.phrase.to_string(), via, salt });
        }
    });
}

/// The ingredient a set was matched by: an ingredient name (the longest, not a bare salt
/// word) when one matched, else the code's display in the value set, else the coding's.
fn best_name(found: &[Candidate], vs: VsId) -> String {
    let of_set = found.iter().filter(|c| c.vs == vs);
    of_set
        .clone()
        .filter(|c| c.via != Via::Code)
        .min_by_key(|c| (c.salt, std::cmp::Reverse(c.name.split(' ').count())))
        .or_else(|| of_set.clone().next())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

fn code_name(index: &ValueSetIndex, vs: VsId, system: &str, code: &str, display: Option<&str>) -> String {
    let set = index.get(vs);
    let entry = set.codes.iter().find(|e| {
        canonical_system(&e.system) == canonical_system(system)
            && e.code.replace('.', "").eq_ignore_ascii_case(&code.trim().replace('.', ""))
    });
    entry
        .and_then(|e| e.display.as_deref())
        .or(display)
        .map(|d| d.to_lowercase())
        .unwrap_or_else(|| set.label.clone().unwrap_or_else(|| set.id.to_lowercase()))
}

/// The ingredients of a combination product named in texts: RxNorm-style "a 250 MG / b 50
/// MG" segments, or "a-b" and "a/b" names in which some part is a known ingredient.
/// Empty unless there are at least two.
fn combination<'t>(texts: impl Iterator<Item = &'t str>, index: &ValueSetIndex) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for segment in texts.flat_map(|t| t.split(" / ")) {
        let name = segment.split(|c: char| c.is_ascii_digit() || c == '(' || c == '[').next().unwrap_or("");
        let parts: Vec<&str> = name.split(['-', '/']).map(str::trim).filter(|p| !p.is_empty()).collect();
        let split = parts.len() > 1 && parts.iter().any(|p| index.ingredient_names().occurs_in(p));
        let names = if split { parts } else { vec![name] };
        for n in names.into_iter().map(|n| words(n).join(" ")).filter(|n| !n.is_empty()) {
            if seen.insert(n.clone()) {
                out.push(n);
            }
        }
    }
    if out.len() > 1 {
        out
    } else {
        Vec::new()
    }
}

/// The route: the dosage's route code, its words, the dosage text, then the dose form, then
/// the product's own words ("Injectable Solution", "Oral Tablet").
pub(super) fn route(record: &MedicationRecord, product: &Product, index: &ValueSetIndex) -> MedicationRoute {
    let v = &index.vocabulary;
    for d in record.dosage {
        let Some(r) = &d.route else { continue };
        let coded = r.coding.iter().find_map(|c| v.route_of_code(c.system.as_deref()?, c.code.as_deref()?));
        let worded = || concept_texts(r).find_map(|t| v.route_in_route_text(&Words::new(t)));
        if let Some(route) = coded.or_else(worded) {
            return route;
        }
    }
    let from_dosage_text =
        record.dosage.iter().filter_map(|d| d.text.as_deref()).find_map(|t| v.route_in_route_text(&Words::new(t)));
    let from_form = || product.form().and_then(|f| concept_texts(f).find_map(|t| v.route_in_form_text(&Words::new(t))));
    let from_product = || product.words.iter().find_map(|t| v.route_in_form_text(t));
    from_dosage_text.or_else(from_form).or_else(from_product).unwrap_or_default()
}

fn concept_texts(cc: &CodeableConcept) -> impl Iterator<Item = &str> {
    cc.text.as_deref().into_iter().chain(cc.coding.iter().filter_map(|c| c.display.as_deref()))
}

/// The Conditions an order's `reasonReference`s name: a contained one (`#id`) or one of the
/// request's (`Condition/<id>`, an absolute URL ending so). Each distinct Condition is read
/// once, however often it is referenced, so the work is linear in the record's size.
pub(super) struct Reasons<'a> {
    /// The distinct Conditions referenced, in order of first reference.
    conditions: Vec<Cow<'a, Condition>>,
    /// Per reference, in order: which of `conditions` it names, if any.
    named: Vec<Option<usize>>,
}

impl<'a> Reasons<'a> {
    pub fn of(record: &MedicationRecord<'a>, resources: &'a ResourceSet) -> Self {
        let mut conditions: Vec<Cow<'a, Condition>> = Vec::new();
        let mut named = Vec::with_capacity(record.reason_references.len());
        // Key: (contained?, id) → position in `conditions` (None: does not resolve).
        let mut positions: HashMap<(bool, &'a str), Option<usize>> = HashMap::new();
        let mut contained: Option<HashMap<&'a str, &'a Value>> = None;
        for r in record.reason_references {
            let local = r.reference.as_deref().and_then(|s| s.strip_prefix('#'));
            let key = match local {
                Some(id) => (true, id),
                None => match condition_id(r) {
                    Some(id) => (false, id),
                    None => {
                        named.push(None);
                        continue;
                    }
                },
            };
            let position = *positions.entry(key).or_insert_with(|| {
                let found = match key {
                    (true, id) => contained
                        .get_or_insert_with(|| contained_conditions(record.contained))
                        .get(id)
                        .and_then(|c| serde_json::from_value((*c).clone()).ok())
                        .map(Cow::Owned),
                    (false, id) => resources.condition(id).map(Cow::Borrowed),
                };
                found.map(|c| {
                    conditions.push(c);
                    conditions.len() - 1
                })
            });
            named.push(position);
        }
        Reasons { conditions, named }
    }
}

/// Value sets of the reasons: `reasonCode`, and the Conditions `reasonReference` names.
pub(super) fn reason_sets(record: &MedicationRecord, reasons: &Reasons, index: &ValueSetIndex) -> Vec<VsId> {
    let mut out = Vec::new();
    for cc in record.reason_codes {
        crate::facts::sets_of_concept(cc, index, &mut out);
    }
    for c in &reasons.conditions {
        if let Some(cc) = &c.code {
            crate::facts::sets_of_concept(cc, index, &mut out);
        }
    }
    out
}

/// The reasons as written, for the card: the coded reasons' labels, and for a reference the
/// referenced Condition's label (else the reference's display).
pub(super) fn reason_labels(record: &MedicationRecord, reasons: &Reasons) -> Vec<String> {
    let mut out: Vec<String> = record.reason_codes.iter().filter_map(|cc| cc.label()).map(str::to_string).collect();
    for (r, named) in record.reason_references.iter().zip(&reasons.named) {
        let label = named.and_then(|i| reasons.conditions[i].code.as_ref()?.label().map(str::to_string));
        out.extend(label.or_else(|| r.display.clone()));
    }
    out
}

/// The contained Conditions by id (the first of each id).
fn contained_conditions(contained: &[Value]) -> HashMap<&str, &Value> {
    let mut out = HashMap::new();
    for c in contained {
        if c.get("resourceType").and_then(Value::as_str) == Some("Condition") {
            if let Some(id) = c.get("id").and_then(Value::as_str) {
                out.entry(id).or_insert(c);
            }
        }
    }
    out
}

/// Each item once, in first-seen order (linear).
fn unique<T: Eq + std::hash::Hash + Copy>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|x| seen.insert(*x)).collect()
}

/// `Condition/<id>`, `https://…/Condition/<id>` or `Condition/<id>/_history/<v>` → `<id>`.
fn condition_id(r: &Reference) -> Option<&str> {
    let parts: Vec<&str> = r.reference.as_deref()?.split('/').collect();
    let at = parts.iter().rposition(|p| *p == "Condition")?;
    parts.get(at + 1).copied().filter(|id| !id.is_empty())
}
