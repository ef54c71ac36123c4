//! Medications as EHRs send them: every MedicationRequest, MedicationStatement and draft
//! order turned into a [`MedicationFact`] — its status per the `medication_active`
//! convention, the value sets it belongs to and the ingredient that put it there, its route
//! and its reasons. How a product is recognised is in [`recognise`]; RxNorm codes nothing
//! else recognised are resolved beforehand by an optional terminology service
//! ([`crate::fhir::terminology`]) into [`ResolvedCodes`].

mod recognise;

use super::dates::parse_fhir_datetime;
use crate::fhir::model::{CodeableConcept, Dosage, Reference};
use crate::fhir::resources::ResourceSet;
use crate::fhir::terminology::{ResolvedCodes, TerminologyClient, RXNORM};
use crate::knowledge::conventions::{Conventions, MedicationConvention};
use crate::knowledge::valueset::{ValueSetIndex, VsId};
pub use crate::knowledge::vocabulary::MedicationRoute;
use chrono::{DateTime, Utc};
use recognise::{Product, Recognition};
use serde_json::Value;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicationSource {
    Request,
    Statement,
    DraftOrder,
}

/// A value set a medication belongs to, and the ingredient that put it there.
#[derive(Debug, Clone, PartialEq)]
pub struct IngredientMatch {
    pub vs: VsId,
    /// The ingredient as a clinician writes it, e.g. "salmeterol".
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct MedicationFact {
    pub reference: String,
    pub source: MedicationSource,
    pub status: Option<String>,
    /// Active per the `medication_active` convention (never true for drafts).
    pub active: bool,
    /// A draft order in scope for this hook (selected on order-select, any on order-sign).
    pub draft_in_scope: bool,
    /// The product as recorded, followed by its ingredients in brackets when the record's
    /// words do not name them ("Advair Diskus 250/50 (fluticasone propionate/salmeterol)").
    pub label: String,
    pub sets: Vec<VsId>,
    pub reason_sets: Vec<VsId>,
    /// The reasons as written, for the card.
    pub reason_labels: Vec<String>,
    pub started: Option<DateTime<Utc>>,
    /// One per value set in `sets`, in recognition order.
    pub ingredients: Vec<IngredientMatch>,
    /// Every ingredient of a combination product; empty for a single-ingredient one.
    pub components: Vec<String>,
    /// The brand name the product was recognised by.
    pub brand: Option<String>,
    pub route: MedicationRoute,
    /// The order or statement gives a reason (`reasonCode` or `reasonReference`).
    pub has_reason: bool,
}

impl MedicationFact {
    /// The drug's name for a list of drugs: its matched ingredients ("hydrochlorothiazide",
    /// "salmeterol"), else the recorded product name without strength and form.
    pub fn short_name(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for i in &self.ingredients {
            if !names.contains(&i.name.as_str()) {
                names.push(&i.name);
            }
        }
        if !names.is_empty() {
            return names.join("/");
        }
        let words: Vec<&str> = self
            .label
            .split_whitespace()
            .take_while(|w| !w.chars().any(|c| c.is_ascii_digit()) && !w.starts_with('('))
            .collect();
        if words.is_empty() {
            self.label.to_lowercase()
        } else {
            words.join(" ").to_lowercase()
        }
    }

    /// The drug for a card about value set `vs`: the matched ingredient, with the product it
    /// is in when that helps — "atorvastatin (Lipitor)", "salmeterol (in
    /// fluticasone/salmeterol)" — never longer than a summary's `{drug}` allows, so it is
    /// never cut. The recorded label when `vs` was not matched by an ingredient.
    pub fn drug_label(&self, vs: VsId) -> String {
        let Some(name) = self.ingredients.iter().find(|i| i.vs == vs).map(|i| i.name.as_str()) else {
            return self.label.clone();
        };
        let mut options = Vec::new();
        if self.components.len() > 1 {
            options.push(format!("{name} (in {})", self.components.join("/")));
            let first_words: Vec<&str> = self.components.iter().filter_map(|c| c.split(' ').next()).collect();
            options.push(format!("{name} (in {})", first_words.join("/")));
            options.extend(self.brand.iter().map(|b| format!("{name} (in {b})")));
        } else {
            options.extend(self.brand.iter().map(|b| format!("{name} ({b})")));
        }
        let width = drug_width();
        options.into_iter().find(|o| o.chars().count() <= width).unwrap_or_else(|| name.to_string())
    }
}

/// The widest a `{drug}` placeholder may be filled (the summary length check counts on it).
fn drug_width() -> usize {
    crate::knowledge::placeholder::Placeholder::Drug.max_width()
}

/// The parts of a MedicationRequest, MedicationStatement or draft order that normalisation
/// reads, so that the three are handled by one code path.
pub(super) struct MedicationRecord<'a> {
    source: MedicationSource,
    id: Option<&'a str>,
    status: Option<&'a String>,
    active: bool,
    draft_in_scope: bool,
    concept: Option<&'a CodeableConcept>,
    reference: Option<&'a Reference>,
    contained: &'a [Value],
    reason_codes: &'a [CodeableConcept],
    reason_references: &'a [Reference],
    dosage: &'a [Dosage],
    started: Option<&'a str>,
}

impl MedicationRecord<'_> {
    /// Whether any rule can read it: active, or a draft order in scope.
    fn relevant(&self) -> bool {
        self.active || self.draft_in_scope
    }

    fn reference(&self) -> String {
        let kind = if self.source == MedicationSource::Statement { "MedicationStatement" } else { "MedicationRequest" };
        super::reference(kind, self.id)
    }
}

fn records<'a>(resources: &'a ResourceSet, med: &MedicationConvention) -> Vec<MedicationRecord<'a>> {
    let is = |value: Option<&String>, list: &[String]| value.is_some_and(|v| list.contains(v));
    let requests = resources.medication_requests.iter().map(|r| MedicationRecord {
        source: MedicationSource::Request,
        id: r.id.as_deref(),
        status: r.status.as_ref(),
        active: is(r.status.as_ref(), &med.request_active_statuses)
            && r.intent.as_ref().is_none_or(|i| med.request_intents.contains(i)),
        draft_in_scope: false,
        concept: r.medication_codeable_concept.as_ref(),
        reference: r.medication_reference.as_ref(),
        contained: &r.contained,
        reason_codes: &r.reason_code,
        reason_references: &r.reason_reference,
        dosage: &r.dosage_instruction,
        started: r.authored_on.as_deref(),
    });
    let statements = resources.medication_statements.iter().map(|s| MedicationRecord {
        source: MedicationSource::Statement,
        id: s.id.as_deref(),
        status: s.status.as_ref(),
        active: is(s.status.as_ref(), &med.statement_active_statuses),
        draft_in_scope: false,
        concept: s.medication_codeable_concept.as_ref(),
        reference: s.medication_reference.as_ref(),
        contained: &s.contained,
        reason_codes: &s.reason_code,
        reason_references: &s.reason_reference,
        dosage: &s.dosage,
        started: s.effective_period.as_ref().and_then(|p| p.start.as_deref()).or(s.effective_date_time.as_deref()),
    });
    let drafts = resources.draft_orders.iter().map(|d| MedicationRecord {
        source: MedicationSource::DraftOrder,
        id: d.request.id.as_deref(),
        status: d.request.status.as_ref(),
        active: false,
        draft_in_scope: d.in_scope,
        concept: d.request.medication_codeable_concept.as_ref(),
        reference: d.request.medication_reference.as_ref(),
        contained: &d.request.contained,
        reason_codes: &d.request.reason_code,
        reason_references: &d.request.reason_reference,
        dosage: &d.request.dosage_instruction,
        started: d.request.authored_on.as_deref(),
    });
    requests.chain(statements).chain(drafts).collect()
}

/// Every medication of the request, in resource order (requests, statements, drafts). A
/// medication that only an RxNorm code could name, and whose code was not resolved, is
/// named in `notes` (the response's warnings) as not recognised.
pub fn medication_facts<E>(
    resources: &ResourceSet,
    conventions: &Conventions<E>,
    index: &ValueSetIndex,
    resolved: &ResolvedCodes,
    notes: &mut Vec<String>,
) -> Vec<MedicationFact> {
    let mut out = Vec::new();
    for record in records(resources, &conventions.medication) {
        let product = Product::of(&record, resources);
        let recognition = recognise::recognise(&product, index, resolved);
        if record.relevant() && !recognition.recognised_locally && recognition.sets.is_empty() {
            if let Some(note) = unrecognised_note(&record, &product, resolved) {
                notes.push(note);
            }
        }
        out.push(fact(&record, &product, recognition, resources, index));
    }
    out
}

/// The codes of a request that need a lookup, resolved by `client` before `deadline`.
/// Without a client, every such medication is warned about as "no terminology service is
/// configured" when the facts are built.
pub async fn resolve_medications<E>(
    client: Option<&TerminologyClient>,
    conventions: &Conventions<E>,
    index: &ValueSetIndex,
    resources: &ResourceSet,
    deadline: std::time::Instant,
) -> ResolvedCodes {
    match client {
        None => ResolvedCodes::none(),
        Some(client) => client.resolve(codes_to_resolve(resources, conventions, index), deadline).await,
    }
}

/// RxNorm codes to ask a terminology service about: those of relevant medications that no
/// code, brand or ingredient word recognised. Each code once, in order of appearance.
pub fn codes_to_resolve<E>(
    resources: &ResourceSet,
    conventions: &Conventions<E>,
    index: &ValueSetIndex,
) -> Vec<String> {
    let none = ResolvedCodes::none();
    let mut codes: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for record in records(resources, &conventions.medication).iter().filter(|r| r.relevant()) {
        let product = Product::of(record, resources);
        if recognise::recognise(&product, index, &none).recognised_locally {
            continue;
        }
        for code in product.rxnorm_codes().map(str::trim) {
            if !seen.contains(code) {
                seen.insert(code.to_string());
                codes.push(code.to_string());
            }
        }
    }
    codes
}

/// "MedicationRequest/m7: RxNorm 861007 not recognised (terminology service did not answer
/// in time); not used" — for a medication with RxNorm codes none of which was resolved.
fn unrecognised_note(record: &MedicationRecord, product: &Product, resolved: &ResolvedCodes) -> Option<String> {
    let mut codes = product.rxnorm_codes().map(str::trim);
    let first = codes.next()?;
    if std::iter::once(first).chain(codes).any(|c| resolved.names(c).is_some()) {
        return None;
    }
    // The code is request data: bounded, and only digits are ever looked up.
    let shown: String = first.chars().take(20).collect();
    Some(format!("{}: RxNorm {shown} not recognised ({}); not used", record.reference(), resolved.failure(first)))
}

fn fact<'a>(
    record: &MedicationRecord<'a>,
    product: &Product,
    recognition: Recognition,
    resources: &'a ResourceSet,
    index: &ValueSetIndex,
) -> MedicationFact {
    let Recognition { sets, ingredients, components, brand, .. } = recognition;
    let reasons = recognise::Reasons::of(record, resources);
    let recorded = product.label().unwrap_or("(unnamed medication)");
    MedicationFact {
        reference: record.reference(),
        source: record.source,
        status: record.status.cloned(),
        active: record.active,
        draft_in_scope: record.draft_in_scope,
        label: label_with_ingredients(recorded, &components, &ingredients),
        sets,
        reason_sets: recognise::reason_sets(record, &reasons, index),
        reason_labels: recognise::reason_labels(record, &reasons),
        started: record.started.and_then(parse_fhir_datetime),
        ingredients,
        components,
        brand,
        route: recognise::route(record, product, index),
        has_reason: !record.reason_codes.is_empty() || !record.reason_references.is_empty(),
    }
}

/// The recorded label, plus the ingredients it does not name: a brand or a bare code says
/// little to a reader of the card's evidence.
fn label_with_ingredients(recorded: &str, components: &[String], ingredients: &[IngredientMatch]) -> String {
    let lower = recorded.to_lowercase();
    let names: Vec<&str> = if components.is_empty() {
        let mut n: Vec<&str> = Vec::new();
        for i in ingredients {
            if !n.contains(&i.name.as_str()) {
                n.push(&i.name);
            }
        }
        n
    } else {
        components.iter().map(String::as_str).collect()
    };
    if names.is_empty() || names.iter().all(|n| lower.contains(n)) {
        recorded.to_string()
    } else {
        format!("{recorded} ({})", names.join("/"))
    }
}

#[cfg(test)]
mod tests;
