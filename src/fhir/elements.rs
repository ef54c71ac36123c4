//! Which elements of a resource a decision reads: the one table that decides, when an
//! element cannot be read, whether the resource is skipped or only that element is dropped.
//!
//! - A **decision element** (status, code, value, the dates, the medication, the reason of
//!   an order…) that cannot be read makes the whole resource unusable: it is skipped and the
//!   reason names the element. Guessing around it could fire or hide a card wrongly.
//! - The exception is an Observation's `valueQuantity`: the result is kept **without a
//!   value** (the model records what was there in `Observation::value_problem`), so the
//!   clinical layer can say that a newer result could not be interpreted and still use an
//!   older readable one.
//! - A `display` inside any element is only a label (the code next to it decides): dropped.
//! - Everything else (`note`, `interpretation`, `referenceRange`, `dosageInstruction[].text`,
//!   `subject.display`, `reasonReference.display`, …) is dropped alone, with a warning.
//!   Elements the models do not read at all (`meta`, `text`, `category`, `identifier`…) are
//!   never parsed, so they can never be unreadable.

use serde_path_to_error::Segment;

/// Per resource type, its decision elements in FHIR JSON names. A dotted name is a part of
/// an element (`subject.reference`: the subject's display is not needed); array positions
/// are left out (`dosageInstruction.route` is the route of any dosage). `id` is the
/// resource's identity (de-duplication, evidence, draft-order selections).
pub const DECISION_ELEMENTS: &[(&str, &[&str])] = &[
    ("Patient", &["id", "gender", "birthDate"]),
    (
        "Condition",
        &[
            "id",
            "clinicalStatus",
            "verificationStatus",
            "code",
            "onsetDateTime",
            "onsetPeriod",
            "recordedDate",
            "subject.reference",
        ],
    ),
    (
        "MedicationRequest",
        &[
            "id",
            "status",
            "intent",
            "medicationCodeableConcept",
            "medicationReference",
            "authoredOn",
            "reasonCode",
            "reasonReference.reference",
            // Parenteral magnesium or potassium is not a supplement.
            "dosageInstruction.route",
            "subject.reference",
            "contained",
        ],
    ),
    (
        "MedicationStatement",
        &[
            "id",
            "status",
            "medicationCodeableConcept",
            "medicationReference",
            "effectiveDateTime",
            "effectivePeriod",
            "dateAsserted",
            "reasonCode",
            "reasonReference.reference",
            "dosage.route",
            "subject.reference",
            "contained",
        ],
    ),
    ("Medication", &["id", "code", "form", "ingredient"]),
    (
        "Observation",
        &[
            "id",
            "status",
            "code",
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            // Breaks ties between results of the same instant.
            "issued",
            "valueQuantity",
            "valueCodeableConcept",
            "component",
            "subject.reference",
        ],
    ),
];

/// Decision elements that are a result's value: unreadable, the resource is kept without it.
pub const VALUE_ELEMENTS: &[(&str, &str)] = &[("Observation", "valueQuantity")];

/// What to do about an element that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The resource cannot be used: skip it.
    Skip,
    /// The result's value: drop the whole value element, keep the resource without a value.
    DropValue,
    /// Not needed by any decision: drop just the unreadable part.
    Drop,
}

/// Where a failing path (as `serde_path_to_error` reports it) falls in the table.
pub fn disposition(kind: &str, path: &[Segment]) -> Disposition {
    if path.iter().any(|s| matches!(s, Segment::Unknown | Segment::Enum { .. })) {
        return Disposition::Skip;
    }
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some(first) = keys.first() else { return Disposition::Skip };
    if VALUE_ELEMENTS.contains(&(kind, *first)) {
        return Disposition::DropValue;
    }
    if keys.len() > 1 && keys.last() == Some(&"display") {
        return Disposition::Drop;
    }
    let decision =
        DECISION_ELEMENTS.iter().filter(|(k, _)| *k == kind).flat_map(|(_, names)| names.iter()).any(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            // Inside a decision element, or a whole that contains one (an unreadable `subject`
            // holds an unreadable `subject.reference`).
            keys.starts_with(&parts) || parts.starts_with(&keys)
        });
    if decision {
        Disposition::Skip
    } else {
        Disposition::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<Segment> {
        text.split('.')
            .flat_map(|part| {
                let (key, index) = match part.split_once('[') {
                    Some((k, i)) => (k, i.trim_end_matches(']').parse().ok()),
                    None => (part, None),
                };
                let mut out = vec![Segment::Map { key: key.to_string() }];
                out.extend(index.map(|index| Segment::Seq { index }));
                out
            })
            .collect()
    }

    #[test]
    fn the_table_decides() {
        use Disposition::*;
        let table = [
            ("Observation", "status", Skip),
            ("Observation", "code.coding[0].code", Skip),
            ("Observation", "code.coding[0].display", Drop),
            ("Observation", "effectiveDateTime", Skip),
            ("Observation", "valueQuantity.value", DropValue),
            ("Observation", "valueQuantity", DropValue),
            ("Observation", "note", Drop),
            ("Observation", "note[0].text", Drop),
            ("Observation", "interpretation[0].text", Drop),
            ("Observation", "referenceRange[0].high.value", Drop),
            ("Observation", "subject.display", Drop),
            ("Observation", "subject", Skip),
            ("Observation", "component[1].valueQuantity.value", Skip),
            ("Condition", "clinicalStatus.coding.code", Skip),
            ("Condition", "onsetDateTime", Skip),
            ("MedicationRequest", "reasonCode[0].text", Skip),
            ("MedicationRequest", "reasonReference[0].display", Drop),
            ("MedicationRequest", "dosageInstruction[0].text", Drop),
            ("MedicationRequest", "dosageInstruction[0].route", Skip),
            ("MedicationRequest", "dosageInstruction[0]", Skip),
            ("MedicationRequest", "medicationCodeableConcept.coding.display", Drop),
            ("MedicationRequest", "medicationCodeableConcept.text", Skip),
            ("MedicationStatement", "dosage[0].text", Drop),
            ("Patient", "birthDate", Skip),
            ("Patient", "id", Skip),
            ("Medication", "ingredient[0].itemCodeableConcept", Skip),
        ];
        for (kind, at, want) in table {
            assert_eq!(disposition(kind, &path(at)), want, "{kind} {at}");
        }
        assert_eq!(disposition("Observation", &[]), Skip, "the resource itself");
        assert_eq!(disposition("Observation", &[Segment::Unknown]), Skip);
    }

    #[test]
    fn every_type_the_models_read_has_a_row() {
        for kind in ["Patient", "Condition", "MedicationRequest", "MedicationStatement", "Medication", "Observation"] {
            assert!(DECISION_ELEMENTS.iter().any(|(k, names)| *k == kind && names.contains(&"id")), "{kind}");
        }
    }
}
