//! The catalogue's conventions as data (`cards/conventions.json`): which statuses count,
//! how far back undated-status conditions reach, how pregnancy is derived, and the named
//! facts (such as `LEG_CRAMP_PRESENT`) that rules share. A named fact's expression is the rule
//! engine's (`E` is `rules::expr::ExprFile`): knowledge holds it without reading it.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conventions<E> {
    pub condition: ConditionConvention,
    pub medication: MedicationConvention,
    pub observation: ObservationConvention,
    pub pregnancy: PregnancyConvention,
    /// Named boolean facts shared by rules, e.g. `LEG_CRAMP_PRESENT`.
    pub facts: BTreeMap<String, NamedFact<E>>,
    /// Minimum age (years) for rules that declare `"population": "adult"`.
    pub adult_age_years: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConvention {
    pub active_clinical_statuses: Vec<String>,
    pub excluded_verification_statuses: Vec<String>,
    /// A condition without clinicalStatus counts when onset/recorded is within this many days.
    pub without_status_within_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicationConvention {
    pub request_active_statuses: Vec<String>,
    pub request_intents: Vec<String>,
    pub statement_active_statuses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationConvention {
    pub usable_statuses: Vec<String>,
    /// Lower-case words that mark a haemolysed specimen in notes and interpretations.
    pub haemolysis_words: Vec<String>,
    /// Specimen-condition / interpretation codes meaning haemolysed (HL7 v2 table 0493 `HEM`).
    pub haemolysis_codes: Vec<String>,
    /// Value sets whose high results a haemolysed specimen falsely raises: such a result is
    /// never used to decide that the value is high.
    pub haemolysis_raises: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PregnancyConvention {
    pub status_observation: String,
    pub pregnant_answers: String,
    pub not_pregnant_answers: String,
    pub pregnancy_conditions: String,
    pub delivery_conditions: String,
    pub gestational_age_observation: String,
    pub third_trimester_conditions: String,
    /// Qualitative hCG (pregnancy test) observations: a positive answer is pregnancy evidence
    /// and a negative one negative evidence, like the status answers.
    pub hcg_observation: String,
    pub hcg_positive_answers: String,
    pub hcg_negative_answers: String,
    pub lookback_days: i64,
    pub third_trimester_weeks: f64,
    /// A computed gestational age above this, with no delivery recorded, means the record is
    /// incomplete (the delivery was never entered): the pregnancy is not treated as current.
    pub max_gestational_weeks: f64,
    /// Administrative genders that are never pregnant.
    pub never_pregnant_genders: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedFact<E> {
    pub description: String,
    pub expr: E,
}
