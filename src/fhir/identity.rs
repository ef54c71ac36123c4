//! Whose record a resource is, and whether its id is a FHIR id.
//!
//! A request is about one patient, `context.patientId`. A prefetched Patient that is someone
//! else makes the whole request wrong (the caller gets 400, see
//! [`super::ResourceSet::foreign_patients`]); any other resource whose `subject` names another
//! patient, or whose id is not a FHIR id, costs only itself: it is skipped and named in the
//! warnings. A subject that names no patient id we can read (`urn:uuid:…`, a contained `#…`,
//! an identifier or display only, a Group) is kept: nothing in it says it is someone else.

use super::model::Resource;

/// Longest FHIR id (FHIR R4 `id` datatype: `[A-Za-z0-9\-\.]{1,64}`).
pub const MAX_ID_LEN: usize = 64;

/// Why a resource with an id that is not a FHIR id is skipped.
pub const BAD_ID: &str = "its id is not a FHIR id (1 to 64 letters, digits, '-' or '.')";

/// Why a resource about another patient is skipped (the other id is not repeated).
pub const OTHER_SUBJECT: &str = "its subject is another patient, not context.patientId";

/// Why a Patient fetched from the FHIR server that is not the request's patient is skipped.
pub const OTHER_PATIENT: &str = "this Patient is not context.patientId";

/// Whether `id` is a FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_fhir_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The patient id a reference names: `Patient/p1`, `Patient/p1/_history/2`, or an absolute
/// `https://ehr/fhir/Patient/p1`. `None` when it names no Patient by id.
pub fn referenced_patient(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    let at = segments.iter().rposition(|s| *s == "Patient")?;
    segments.get(at + 1).copied().filter(|id| !id.is_empty())
}

/// The `subject` reference of a resource about a patient (Condition, MedicationRequest,
/// MedicationStatement, Observation); `None` for Patient, Medication and other types.
pub fn subject_of(resource: &Resource) -> Option<&str> {
    let subject = match resource {
        Resource::Condition(r) => r.subject.as_ref(),
        Resource::MedicationRequest(r) => r.subject.as_ref(),
        Resource::MedicationStatement(r) => r.subject.as_ref(),
        Resource::Observation(r) => r.subject.as_ref(),
        Resource::Patient(_) | Resource::Medication(_) | Resource::Other(_) => None,
    };
    subject?.reference.as_deref()
}

/// Whether a subject reference names a patient other than `patient_id`.
pub fn is_other_patient(subject: Option<&str>, patient_id: &str) -> bool {
    subject.and_then(referenced_patient).is_some_and(|id| id != patient_id)
}

/// Why a resource (not a Patient) must be skipped for a request about `patient_id`: an id
/// that is not a FHIR id, or a subject that is another patient.
pub fn refusal(id: Option<&str>, subject: Option<&str>, patient_id: Option<&str>) -> Option<&'static str> {
    if id.is_some_and(|id| !is_fhir_id(id)) {
        return Some(BAD_ID);
    }
    patient_id.filter(|p| is_other_patient(subject, p)).map(|_| OTHER_SUBJECT)
}

/// A JSON pointer member name (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn pointer_segment(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_ids() {
        assert!(is_fhir_id("p1") && is_fhir_id("a-b.C9") && is_fhir_id(&"x".repeat(64)));
        assert!(!is_fhir_id("") && !is_fhir_id(&"x".repeat(65)) && !is_fhir_id("a b") && !is_fhir_id("a/b"));
        assert!(!is_fhir_id("é") && !is_fhir_id("a_b"));
    }

    #[test]
    fn patient_references() {
        assert_eq!(referenced_patient("Patient/p1"), Some("p1"));
        assert_eq!(referenced_patient("Patient/p1/_history/3"), Some("p1"));
        assert_eq!(referenced_patient("https://ehr.example/fhir/Patient/p1"), Some("p1"));
        assert_eq!(referenced_patient("https://ehr.example/fhir/Patient/p1?x=1"), Some("p1"));
        assert_eq!(referenced_patient("urn:uuid:5c0b2f39-4a8c-4a44-9e5b-0f3a1c8e2a11"), None);
        assert_eq!(referenced_patient("#p"), None);
        assert_eq!(referenced_patient("Group/g1"), None);
        assert_eq!(referenced_patient("Patient/"), None);
        assert!(is_other_patient(Some("Patient/p2"), "p1"));
        assert!(!is_other_patient(Some("Patient/p1"), "p1"));
        assert!(!is_other_patient(None, "p1"));
    }

    #[test]
    fn refusals() {
        assert_eq!(refusal(Some("ok"), Some("Patient/p1"), Some("p1")), None);
        assert_eq!(refusal(Some(&"x".repeat(100)), Some("Patient/p1"), Some("p1")), Some(BAD_ID));
        assert_eq!(refusal(Some("ok"), Some("Patient/p2"), Some("p1")), Some(OTHER_SUBJECT));
        assert_eq!(refusal(Some("ok"), Some("Patient/p2"), None), None, "no context patient: nothing to compare");
    }
}
