//! Normalisation: every resource of a request turned into one clean picture of the patient,
//! computed once per request. Statuses are applied per the catalogue's conventions, codes are
//! resolved to value sets through the index, lab values are converted to each value set's
//! canonical unit, and pregnancy is derived. The engine reads only this.

pub mod dates;
pub mod observation;
pub mod pregnancy;

use crate::fhir::model::{CodeableConcept, Coding};
use crate::fhir::resources::ResourceSet;
use crate::rules::conventions::Conventions;
use crate::rules::valueset::{ValueSetIndex, VsId};
use chrono::{DateTime, Utc};
use dates::parse_fhir_datetime;
pub use observation::ObservationFact;
pub use pregnancy::PregnancyFact;

/// A coding kept for display in evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRef {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConditionFact {
    pub reference: String,
    pub label: String,
    pub coding: Option<CodeRef>,
    pub sets: Vec<VsId>,
    /// Active per the `condition_active` convention (status, verification, undated window).
    pub active: bool,
    /// verificationStatus refuted or entered-in-error: never evidence of anything.
    pub refuted: bool,
    pub clinical_status: Option<String>,
    /// Onset or, failing that, recorded date: when the condition entered the record.
    pub dated: Option<DateTime<Utc>>,
    /// When it was recorded (may be later than the onset).
    pub recorded: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicationSource {
    Request,
    Statement,
    DraftOrder,
}

impl MedicationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MedicationSource::Request => "MedicationRequest",
            MedicationSource::Statement => "MedicationStatement",
            MedicationSource::DraftOrder => "order being placed",
        }
    }
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
    pub label: String,
    pub sets: Vec<VsId>,
    pub reason_sets: Vec<VsId>,
    /// The order's or statement's reasons as written, for the card.
    pub reason_labels: Vec<String>,
    /// It carries a reason (`reasonCode` or `reasonReference`).
    pub has_reason: bool,
    pub route: MedicationRoute,
    pub started: Option<DateTime<Utc>>,
}

impl MedicationFact {
    /// The product's name without strength and form ("Hydrochlorothiazide 25 MG Oral Tablet"
    /// → "hydrochlorothiazide"), for lists of drugs.
    pub fn short_name(&self) -> String {
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
}

/// How a medication is given: parenteral magnesium is treatment, not a cramp remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicationRoute {
    Oral,
    Parenteral,
    Other,
    Unknown,
}

/// The normalised patient: what every rule reads.
#[derive(Debug, Clone)]
pub struct PatientFacts {
    pub now: DateTime<Utc>,
    pub hook: String,
    pub patient_reference: Option<String>,
    pub age_years: Option<u32>,
    pub gender: Option<String>,
    pub conditions: Vec<ConditionFact>,
    pub medications: Vec<MedicationFact>,
    /// Usable observations (status per convention), newest first; undated ones last.
    pub observations: Vec<ObservationFact>,
    pub pregnancy: PregnancyFact,
    /// Data that could not be used, said plainly (skipped resources, unknown units).
    pub notes: Vec<String>,
}

impl PatientFacts {
    pub fn build(
        resources: &ResourceSet,
        conventions: &Conventions,
        index: &ValueSetIndex,
        hook: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let mut notes: Vec<String> =
            resources.skipped.iter().map(|s| format!("skipped {}: {}", s.location, s.reason)).collect();
        let patient = resources.patient.as_ref();
        let conditions = resources.conditions.iter().map(|c| condition_fact(c, conventions, index, now)).collect();
        let mut medications = Vec::new();
        let med = &conventions.medication;
        for r in &resources.medication_requests {
            let active = r.status.as_deref().is_some_and(|s| med.request_active_statuses.iter().any(|a| a == s))
                && r.intent.as_deref().is_none_or(|i| med.request_intents.iter().any(|a| a == i));
            let mut fact = medication_fact(
                resources,
                index,
                MedicationSource::Request,
                r.id.as_deref(),
                r.status.clone(),
                active,
                false,
                r.medication_codeable_concept.as_ref(),
                r.medication_reference.as_ref(),
                &r.contained,
                &r.reason_code,
                r.authored_on.as_deref(),
            );
            add_reason_references(&mut fact, &r.reason_reference, &resources.conditions, index);
            fact.route = route_of(&r.dosage_instruction, &fact.label);
            medications.push(fact);
        }
        for s in &resources.medication_statements {
            let active = s.status.as_deref().is_some_and(|st| med.statement_active_statuses.iter().any(|a| a == st));
            let start =
                s.effective_period.as_ref().and_then(|p| p.start.as_deref()).or(s.effective_date_time.as_deref());
            let mut fact = medication_fact(
                resources,
                index,
                MedicationSource::Statement,
                s.id.as_deref(),
                s.status.clone(),
                active,
                false,
                s.medication_codeable_concept.as_ref(),
                s.medication_reference.as_ref(),
                &s.contained,
                &s.reason_code,
                start,
            );
            add_reason_references(&mut fact, &s.reason_reference, &resources.conditions, index);
            fact.route = route_of(&s.dosage, &fact.label);
            medications.push(fact);
        }
        for d in &resources.draft_orders {
            let r = &d.request;
            let mut fact = medication_fact(
                resources,
                index,
                MedicationSource::DraftOrder,
                r.id.as_deref(),
                r.status.clone(),
                false,
                d.in_scope,
                r.medication_codeable_concept.as_ref(),
                r.medication_reference.as_ref(),
                &r.contained,
                &r.reason_code,
                r.authored_on.as_deref(),
            );
            add_reason_references(&mut fact, &r.reason_reference, &resources.conditions, index);
            fact.route = route_of(&r.dosage_instruction, &fact.label);
            medications.push(fact);
        }
        let mut observations = Vec::new();
        for o in &resources.observations {
            if !o.status.as_deref().is_some_and(|s| conventions.observation.usable_statuses.iter().any(|u| u == s)) {
                continue;
            }
            observation::facts_of(o, index, &conventions.observation, &mut observations, &mut notes);
        }
        observation::sort_newest_first(&mut observations);
        let gender = patient.and_then(|p| p.gender.clone());
        let conditions_vec: Vec<ConditionFact> = conditions;
        let pregnancy =
            pregnancy::derive(&conventions.pregnancy, index, gender.as_deref(), &conditions_vec, &observations, now);
        notes.extend(pregnancy.note.clone());
        PatientFacts {
            now,
            hook: hook.to_string(),
            patient_reference: patient.and_then(|p| p.id.as_ref()).map(|id| format!("Patient/{id}")),
            age_years: patient.and_then(|p| p.birth_date.as_deref()).and_then(|b| dates::age_years(b, now)),
            gender,
            conditions: conditions_vec,
            medications,
            observations,
            pregnancy,
            notes,
        }
    }
}

pub(crate) fn sets_of_concept(cc: &CodeableConcept, index: &ValueSetIndex, out: &mut Vec<VsId>) {
    for c in &cc.coding {
        if let (Some(system), Some(code)) = (&c.system, &c.code) {
            index.sets_of_code(system, code, out);
        }
    }
}

pub(crate) fn first_coding(cc: &CodeableConcept) -> Option<CodeRef> {
    cc.coding.iter().find_map(|c: &Coding| {
        Some(CodeRef { system: c.system.clone()?, code: c.code.clone()?, display: c.display.clone() })
    })
}

pub(crate) fn reference(kind: &str, id: Option<&str>) -> String {
    format!("{kind}/{}", id.unwrap_or("(no id)"))
}

fn condition_fact(
    c: &crate::fhir::model::Condition,
    conventions: &Conventions,
    index: &ValueSetIndex,
    now: DateTime<Utc>,
) -> ConditionFact {
    let conv = &conventions.condition;
    let mut sets = Vec::new();
    if let Some(code) = &c.code {
        sets_of_concept(code, index, &mut sets);
    }
    let clinical_status = c.clinical_status.as_ref().and_then(|s| s.first_code()).map(str::to_string);
    let verification = c.verification_status.as_ref().and_then(|s| s.first_code());
    let onset = c
        .onset_date_time
        .as_deref()
        .or_else(|| c.onset_period.as_ref().and_then(|p| p.start.as_deref()))
        .and_then(parse_fhir_datetime);
    let recorded = c.recorded_date.as_deref().and_then(parse_fhir_datetime);
    let dated = onset.or(recorded);
    let refuted = verification.is_some_and(|v| conv.excluded_verification_statuses.iter().any(|x| x == v));
    let status_active = match &clinical_status {
        Some(s) => conv.active_clinical_statuses.iter().any(|a| a == s),
        // No clinicalStatus: count it only if it entered the record recently.
        None => [onset, recorded]
            .iter()
            .flatten()
            .any(|d| dates::days_between(*d, now) <= conv.without_status_within_days as f64),
    };
    ConditionFact {
        reference: reference("Condition", c.id.as_deref()),
        label: c.code.as_ref().and_then(CodeableConcept::label).unwrap_or("(uncoded condition)").to_string(),
        coding: c.code.as_ref().and_then(first_coding),
        sets,
        active: status_active && !refuted,
        refuted,
        clinical_status,
        dated,
        recorded,
    }
}

#[allow(clippy::too_many_arguments)]
fn medication_fact(
    resources: &ResourceSet,
    index: &ValueSetIndex,
    source: MedicationSource,
    id: Option<&str>,
    status: Option<String>,
    active: bool,
    draft_in_scope: bool,
    concept: Option<&CodeableConcept>,
    reference_to: Option<&crate::fhir::model::Reference>,
    contained: &[serde_json::Value],
    reasons: &[CodeableConcept],
    started: Option<&str>,
) -> MedicationFact {
    let mut sets = Vec::new();
    let mut label = None;
    let resolved =
        reference_to.and_then(|r| r.reference.as_deref()).and_then(|r| resources.resolve_medication(r, contained));
    let mut concepts: Vec<&CodeableConcept> = concept.into_iter().collect();
    if let Some(m) = &resolved {
        concepts.extend(m.code.iter());
        concepts.extend(m.ingredient.iter().filter_map(|i| i.item_codeable_concept.as_ref()));
    }
    if let Some(display) = reference_to.and_then(|r| r.display.as_deref()) {
        index.sets_of_ingredient_text(display, &mut sets);
        label.get_or_insert_with(|| display.to_string());
    }
    for cc in concepts {
        sets_of_concept(cc, index, &mut sets);
        if let Some(text) = &cc.text {
            index.sets_of_ingredient_text(text, &mut sets);
        }
        for c in &cc.coding {
            if let Some(d) = &c.display {
                index.sets_of_ingredient_text(d, &mut sets);
            }
        }
        if label.is_none() {
            label = cc.label().map(str::to_string);
        }
    }
    let mut reason_sets = Vec::new();
    for r in reasons {
        sets_of_concept(r, index, &mut reason_sets);
    }
    let kind = if source == MedicationSource::Statement { "MedicationStatement" } else { "MedicationRequest" };
    MedicationFact {
        reference: reference(kind, id),
        source,
        status,
        active,
        draft_in_scope,
        label: label.unwrap_or_else(|| "(unnamed medication)".to_string()),
        sets,
        reason_labels: reasons.iter().filter_map(CodeableConcept::label).map(str::to_string).collect(),
        has_reason: !reasons.is_empty(),
        reason_sets,
        route: MedicationRoute::Unknown,
        started: started.and_then(parse_fhir_datetime),
    }
}

/// Reasons given by reference (`reasonReference`) count like coded ones: the referenced
/// Condition's codes are its reason, and a reference alone still means "has a reason".
fn add_reason_references(
    fact: &mut MedicationFact,
    references: &[crate::fhir::model::Reference],
    conditions: &[crate::fhir::model::Condition],
    index: &ValueSetIndex,
) {
    for r in references {
        fact.has_reason = true;
        let target = r.reference.as_deref().and_then(|t| t.strip_prefix("Condition/"));
        let condition = target.and_then(|id| conditions.iter().find(|c| c.id.as_deref() == Some(id)));
        match condition.and_then(|c| c.code.as_ref()) {
            Some(code) => {
                sets_of_concept(code, index, &mut fact.reason_sets);
                fact.reason_labels.extend(code.label().map(str::to_string));
            }
            None => fact.reason_labels.extend(r.display.clone()),
        }
    }
}

/// The route of a dosage (SNOMED route code or its words), else the dose form in the
/// product's name ("Injectable Solution", "Oral Tablet").
fn route_of(dosages: &[crate::fhir::model::Dosage], product: &str) -> MedicationRoute {
    const PARENTERAL: [&str; 7] =
        ["47625008", "78421000", "34206005", "intravenous", "intramuscular", "subcutaneous", "injection"];
    const ORAL: [&str; 3] = ["26643006", "oral", "by mouth"];
    let words = |cc: &CodeableConcept| {
        let mut text: Vec<String> = cc.coding.iter().filter_map(|c| c.code.clone()).collect();
        text.extend(cc.coding.iter().filter_map(|c| c.display.as_deref()).map(str::to_lowercase));
        text.extend(cc.text.as_deref().map(str::to_lowercase));
        text.join(" ")
    };
    for d in dosages {
        if let Some(route) = &d.route {
            let w = words(route);
            if PARENTERAL.iter().any(|p| w.contains(p)) {
                return MedicationRoute::Parenteral;
            }
            if ORAL.iter().any(|p| w.contains(p)) {
                return MedicationRoute::Oral;
            }
            return MedicationRoute::Other;
        }
    }
    let p = product.to_lowercase();
    if ["inject", "infusion", "intravenous", "intramuscular", "prefilled syringe", "vial"].iter().any(|w| p.contains(w))
    {
        MedicationRoute::Parenteral
    } else if ["oral", "tablet", "capsule", "chewable", "by mouth"].iter().any(|w| p.contains(w)) {
        MedicationRoute::Oral
    } else {
        MedicationRoute::Unknown
    }
}
