//! Normalisation: every resource of a request turned into one clean picture of the patient,
//! computed once per request. Statuses are applied per the catalogue's conventions, codes are
//! resolved to value sets through the index, lab values are converted to each value set's
//! canonical unit, and pregnancy is derived. The engine reads only this.

pub mod dates;
pub mod medication;
pub mod pregnancy;

use crate::fhir::model::{CodeableConcept, Coding, Observation, Quantity};
use crate::fhir::resources::ResourceSet;
use crate::rules::conventions::Conventions;
use crate::rules::valueset::{ValueSetIndex, VsId};
use chrono::{DateTime, Utc};
use dates::parse_fhir_datetime;
pub use medication::{IngredientMatch, MedicationFact, MedicationRoute, MedicationSource, ResolvedCodes};
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
}

#[derive(Debug, Clone)]
pub struct ObservationFact {
    pub reference: String,
    pub label: String,
    pub coding: Option<CodeRef>,
    pub sets: Vec<VsId>,
    pub value_sets: Vec<VsId>,
    pub value_label: Option<String>,
    /// As reported (a comparator such as `<` is treated as the bound value).
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub comparator: Option<String>,
    /// Value in the canonical unit of each unit-bearing value set of the code; `None`
    /// when the reported unit is unknown: such a value is never compared.
    pub canonical: Vec<(VsId, Option<f64>)>,
    pub reference_high: Option<(f64, Option<String>)>,
    pub effective: Option<DateTime<Utc>>,
}

impl ObservationFact {
    pub fn canonical_value(&self, vs: VsId) -> Option<f64> {
        self.canonical.iter().find(|(id, _)| *id == vs).and_then(|(_, v)| *v)
    }
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
        resolved: &ResolvedCodes,
        hook: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let mut notes: Vec<String> =
            resources.skipped.iter().map(|s| format!("skipped {}: {}", s.location, s.reason)).collect();
        let patient = resources.patient.as_ref();
        let conditions = resources.conditions.iter().map(|c| condition_fact(c, conventions, index, now)).collect();
        let medications = medication::medication_facts(resources, conventions, index, resolved, &mut notes);
        let mut observations = Vec::new();
        for o in &resources.observations {
            if !o.status.as_deref().is_some_and(|s| conventions.observation.usable_statuses.iter().any(|u| u == s)) {
                continue;
            }
            observation_facts(o, index, &mut observations, &mut notes);
        }
        // Newest first, so "latest in value set X" is the first match.
        observations.sort_by_key(|o| std::cmp::Reverse(o.effective));
        let gender = patient.and_then(|p| p.gender.clone());
        let conditions_vec: Vec<ConditionFact> = conditions;
        let pregnancy =
            pregnancy::derive(&conventions.pregnancy, index, gender.as_deref(), &conditions_vec, &observations, now);
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

fn sets_of_concept(cc: &CodeableConcept, index: &ValueSetIndex, out: &mut Vec<VsId>) {
    for c in &cc.coding {
        if let (Some(system), Some(code)) = (&c.system, &c.code) {
            index.sets_of_code(system, code, out);
        }
    }
}

fn first_coding(cc: &CodeableConcept) -> Option<CodeRef> {
    cc.coding.iter().find_map(|c: &Coding| {
        Some(CodeRef { system: c.system.clone()?, code: c.code.clone()?, display: c.display.clone() })
    })
}

fn reference(kind: &str, id: Option<&str>) -> String {
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
    }
}

/// One fact per observation, plus one per component (e.g. a panel's heart-rate component).
fn observation_facts(o: &Observation, index: &ValueSetIndex, out: &mut Vec<ObservationFact>, notes: &mut Vec<String>) {
    let effective = o
        .effective_date_time
        .as_deref()
        .or(o.effective_instant.as_deref())
        .or_else(|| o.effective_period.as_ref().and_then(|p| p.start.as_deref().or(p.end.as_deref())))
        .or(o.issued.as_deref())
        .and_then(parse_fhir_datetime);
    let reference = reference("Observation", o.id.as_deref());
    let mut push = |code: Option<&CodeableConcept>,
                    quantity: Option<&Quantity>,
                    value_cc: Option<&CodeableConcept>,
                    range: &[crate::fhir::model::ReferenceRange],
                    notes: &mut Vec<String>| {
        let mut sets = Vec::new();
        if let Some(cc) = code {
            sets_of_concept(cc, index, &mut sets);
        }
        let mut value_sets = Vec::new();
        if let Some(cc) = value_cc {
            sets_of_concept(cc, index, &mut value_sets);
        }
        let value = quantity.and_then(|q| q.value);
        let unit = quantity.and_then(|q| q.code.clone().or_else(|| q.unit.clone()));
        let mut canonical = Vec::new();
        for &vs in &sets {
            if let Some(units) = &index.get(vs).units {
                let converted = match (value, &unit) {
                    (Some(v), Some(u)) => units.to_canonical(v, u).or_else(|| {
                        // `unit` is free text; the UCUM `code` may differ from it.
                        quantity.and_then(|q| q.unit.as_deref()).and_then(|u2| units.to_canonical(v, u2))
                    }),
                    (Some(v), None) => {
                        notes.push(format!("{reference}: value {v} has no unit; not compared"));
                        None
                    }
                    _ => None,
                };
                if converted.is_none() {
                    if let (Some(v), Some(u)) = (value, &unit) {
                        notes.push(format!(
                            "{reference}: unit '{u}' of value {v} is not convertible to {} for {}; not compared",
                            units.canonical,
                            index.get(vs).id
                        ));
                    }
                }
                canonical.push((vs, converted));
            }
        }
        let reference_high = range.iter().find_map(|r| {
            let h = r.high.as_ref()?;
            Some((h.value?, h.code.clone().or_else(|| h.unit.clone())))
        });
        out.push(ObservationFact {
            reference: reference.clone(),
            label: code.and_then(CodeableConcept::label).unwrap_or("(uncoded observation)").to_string(),
            coding: code.and_then(first_coding),
            sets,
            value_sets,
            value_label: value_cc.and_then(CodeableConcept::label).map(str::to_string),
            value,
            unit,
            comparator: quantity.and_then(|q| q.comparator.clone()),
            canonical,
            reference_high,
            effective,
        });
    };
    push(o.code.as_ref(), o.value_quantity.as_ref(), o.value_codeable_concept.as_ref(), &o.reference_range, notes);
    for c in &o.component {
        push(c.code.as_ref(), c.value_quantity.as_ref(), c.value_codeable_concept.as_ref(), &c.reference_range, notes);
    }
}
