//! Hand-written serde types for the FHIR R4 resources and datatypes the rules read.
//! Unknown fields are ignored; `value[x]`/`effective[x]` choices are explicit optional fields.
//! Every array accepts a single element in its place ([`one_or_many`]); what else may be
//! malformed, and what that costs, is decided in [`super::elements`] and
//! [`super::tolerant`].

use super::one_or_many::one_or_many;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Coding {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CodeableConcept {
    #[serde(default, deserialize_with = "one_or_many")]
    pub coding: Vec<Coding>,
    #[serde(default)]
    pub text: Option<String>,
}

impl CodeableConcept {
    /// The first code of the concept (any system), for status-like concepts.
    pub fn first_code(&self) -> Option<&str> {
        self.coding.iter().find_map(|c| c.code.as_deref())
    }

    /// A human label: text, else the first display, else the first code.
    pub fn label(&self) -> Option<&str> {
        self.text
            .as_deref()
            .or_else(|| self.coding.iter().find_map(|c| c.display.as_deref()))
            .or_else(|| self.coding.iter().find_map(|c| c.code.as_deref()))
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Quantity {
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub comparator: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Period {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Reference {
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
}

/// A free-text note (`Annotation`); only its text is read.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Annotation {
    #[serde(default)]
    pub text: Option<String>,
}

/// `Dosage`: the route and dose text are read (parenteral magnesium is not a supplement).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Dosage {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub route: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Range {
    #[serde(default)]
    pub low: Option<Quantity>,
    #[serde(default)]
    pub high: Option<Quantity>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ReferenceRange {
    #[serde(default)]
    pub low: Option<Quantity>,
    #[serde(default)]
    pub high: Option<Quantity>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub clinical_status: Option<CodeableConcept>,
    #[serde(default)]
    pub verification_status: Option<CodeableConcept>,
    #[serde(default)]
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub onset_date_time: Option<String>,
    #[serde(default)]
    pub onset_period: Option<Period>,
    #[serde(default)]
    pub recorded_date: Option<String>,
    #[serde(default)]
    pub subject: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub intent: Option<String>,
    /// `medication[x]`, kept as two fields: serde's `flatten` would buffer every resource.
    #[serde(default)]
    pub medication_codeable_concept: Option<CodeableConcept>,
    #[serde(default)]
    pub medication_reference: Option<Reference>,
    #[serde(default)]
    pub authored_on: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reason_code: Vec<CodeableConcept>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reason_reference: Vec<Reference>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub dosage_instruction: Vec<Dosage>,
    #[serde(default)]
    pub subject: Option<Reference>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub contained: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationStatement {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub medication_codeable_concept: Option<CodeableConcept>,
    #[serde(default)]
    pub medication_reference: Option<Reference>,
    #[serde(default)]
    pub effective_date_time: Option<String>,
    #[serde(default)]
    pub effective_period: Option<Period>,
    #[serde(default)]
    pub date_asserted: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reason_code: Vec<CodeableConcept>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reason_reference: Vec<Reference>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub dosage: Vec<Dosage>,
    #[serde(default)]
    pub subject: Option<Reference>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub contained: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ingredient {
    #[serde(default, rename = "itemCodeableConcept")]
    pub item_codeable_concept: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Medication {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<CodeableConcept>,
    /// Dose form (e.g. "Injectable Solution"): tells a parenteral product from an oral one.
    #[serde(default)]
    pub form: Option<CodeableConcept>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub ingredient: Vec<Ingredient>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    #[serde(default)]
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub value_quantity: Option<Quantity>,
    #[serde(default)]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reference_range: Vec<ReferenceRange>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub effective_date_time: Option<String>,
    #[serde(default)]
    pub effective_period: Option<Period>,
    #[serde(default)]
    pub effective_instant: Option<String>,
    #[serde(default)]
    pub issued: Option<String>,
    #[serde(default)]
    pub value_quantity: Option<Quantity>,
    #[serde(default)]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub reference_range: Vec<ReferenceRange>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub component: Vec<ObservationComponent>,
    #[serde(default)]
    pub subject: Option<Reference>,
    /// Read for specimen problems (a haemolysed potassium is not believed when high).
    #[serde(default, deserialize_with = "one_or_many")]
    pub note: Vec<Annotation>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub interpretation: Vec<CodeableConcept>,
    #[serde(default)]
    pub specimen: Option<Reference>,
    /// Set by the tolerant reader when `valueQuantity` was sent but could not be read (the
    /// Observation is then kept without a value): a short description of what was there,
    /// at most 40 characters, e.g. `value "abc"` or `unit {…}`.
    #[serde(skip)]
    pub value_problem: Option<String>,
}

/// A resource of a type the rules read, or `Other` for everything else (kept only by type).
// Observation is the largest and by far the most common variant: boxing it would cost an
// allocation per resource on the request path, and a Resource lives only until it is
// moved into its ResourceSet list.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Resource {
    Patient(Patient),
    Condition(Condition),
    MedicationRequest(MedicationRequest),
    MedicationStatement(MedicationStatement),
    Medication(Medication),
    Observation(Observation),
    Other(String),
}

impl Resource {
    /// `resourceType` and `id`.
    pub fn kind_and_id(&self) -> (&str, Option<&str>) {
        match self {
            Resource::Patient(r) => ("Patient", r.id.as_deref()),
            Resource::Condition(r) => ("Condition", r.id.as_deref()),
            Resource::MedicationRequest(r) => ("MedicationRequest", r.id.as_deref()),
            Resource::MedicationStatement(r) => ("MedicationStatement", r.id.as_deref()),
            Resource::Medication(r) => ("Medication", r.id.as_deref()),
            Resource::Observation(r) => ("Observation", r.id.as_deref()),
            Resource::Other(kind) => (kind.as_str(), None),
        }
    }

    /// Reads a resource of the given `resourceType` from any serde deserializer: a JSON
    /// value, JSON text, or the rest of an object already being read. The one dispatch on
    /// resource type; types the rules do not read are skipped as `Other`.
    pub fn deserialize_kind<'de, D: serde::Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            "Patient" => Resource::Patient(Deserialize::deserialize(d)?),
            "Condition" => Resource::Condition(Deserialize::deserialize(d)?),
            "MedicationRequest" => Resource::MedicationRequest(Deserialize::deserialize(d)?),
            "MedicationStatement" => Resource::MedicationStatement(Deserialize::deserialize(d)?),
            "Medication" => Resource::Medication(Deserialize::deserialize(d)?),
            "Observation" => Resource::Observation(Deserialize::deserialize(d)?),
            _ => {
                serde::de::IgnoredAny::deserialize(d)?;
                Resource::Other(kind.to_string())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<Resource, serde_json::Error> {
        let kind = value["resourceType"].as_str().unwrap_or_default().to_string();
        Resource::deserialize_kind(&kind, value)
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_types_refused() {
        let ok = read(json!({"resourceType": "Patient", "id": "p", "gender": "female", "x": {"y": 1}}));
        assert!(matches!(ok, Ok(Resource::Patient(p)) if p.gender.as_deref() == Some("female")));
        assert!(read(json!({"resourceType": "Observation", "status": 5})).is_err());
        assert!(matches!(read(json!({"resourceType": "Encounter"})), Ok(Resource::Other(k)) if k == "Encounter"));
    }

    #[test]
    fn every_array_takes_a_single_element() {
        let r = read(json!({"resourceType": "MedicationRequest", "id": "m",
            "reasonCode": {"coding": {"system": "http://snomed.info/sct", "code": "78514002"}},
            "reasonReference": {"reference": "Condition/c"}, "dosageInstruction": {"text": "1 daily"},
            "contained": {"resourceType": "Medication", "id": "med"}}));
        let Ok(Resource::MedicationRequest(m)) = r else { panic!("{r:?}") };
        assert_eq!(m.reason_code[0].first_code(), Some("78514002"));
        assert_eq!(m.reason_reference.len(), 1);
        assert_eq!(m.dosage_instruction[0].text.as_deref(), Some("1 daily"));
        assert_eq!(m.contained.len(), 1);
        let r = read(json!({"resourceType": "Observation", "note": {"text": "haemolysed"},
            "interpretation": {"text": "H"}, "referenceRange": {"high": {"value": 5.1}},
            "component": {"code": {"text": "x"}, "referenceRange": {"text": "r"}}}));
        let Ok(Resource::Observation(o)) = r else { panic!("{r:?}") };
        assert_eq!((o.note.len(), o.interpretation.len(), o.reference_range.len()), (1, 1, 1));
        assert_eq!(o.component[0].reference_range.len(), 1);
        let r = read(json!({"resourceType": "Medication", "ingredient": {"itemCodeableConcept": {"text": "q"}}}));
        assert!(matches!(r, Ok(Resource::Medication(m)) if m.ingredient.len() == 1));
        let r = read(json!({"resourceType": "MedicationStatement", "dosage": {"text": "d"}, "reasonCode": null}));
        assert!(matches!(r, Ok(Resource::MedicationStatement(m)) if m.dosage.len() == 1 && m.reason_code.is_empty()));
    }
}
