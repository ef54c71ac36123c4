//! Normalisation: every resource of a request turned into one clean picture of the patient,
//! computed once per request. Statuses are applied per the catalogue's conventions, codes are
//! resolved to value sets through the index, lab values are converted to each value set's
//! canonical unit, and pregnancy is derived. The engine reads only this.

pub mod dates;
pub mod medication;
pub mod observation;
pub mod pregnancy;

use crate::fhir::model::{CodeableConcept, Coding};
use crate::fhir::resources::ResourceSet;
use crate::fhir::terminology::ResolvedCodes;
use crate::knowledge::conventions::Conventions;
use crate::knowledge::valueset::{ValueSetIndex, VsId};
use chrono::{DateTime, Utc};
use dates::parse_fhir_datetime;
pub use medication::{IngredientMatch, MedicationFact, MedicationRoute, MedicationSource};
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
    pub fn build<E>(
        resources: &ResourceSet,
        conventions: &Conventions<E>,
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

fn condition_fact<E>(
    c: &crate::fhir::model::Condition,
    conventions: &Conventions<E>,
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
