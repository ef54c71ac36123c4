//! Every FHIR resource a request brings, parsed once and de-duplicated: prefetch values
//! (single resources or Bundles), resources fetched from the FHIR server, and draft orders.
//! Every resource is read tolerantly ([`super::tolerant`]): an element no decision needs is
//! dropped alone and reported; a resource whose decision element cannot be read is skipped
//! and reported; neither ever hides the others. Resources that are not about the request's
//! patient are set aside ([`super::identity`]).

use super::head::{fast_head, ResourceHead};
use super::identity::{pointer_segment, refusal, subject_of, OTHER_PATIENT};
use super::model::*;
use super::prefetch::{Entry, PrefetchValue};
use super::tolerant::{bounded, read_json, read_kind, read_value, IgnoredElement, Read, ReadError};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// A resource that could not be used, or one element of a resource that was dropped (its
/// location then starts with `element …`, e.g. `element note of prefetch.labs entry 17
/// (Observation/abc)`). Each becomes one line of the response's warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedResource {
    /// Where it was: e.g. `prefetch.labs entry 17 (Observation/abc)`.
    pub location: String,
    pub reason: String,
}

/// A draft order from `context.draftOrders`, with whether it is in scope for the hook
/// (order-select: listed in `selections`; order-sign: every draft).
#[derive(Debug, Clone)]
pub struct DraftOrder {
    pub request: MedicationRequest,
    pub in_scope: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceSet {
    pub patient: Option<Patient>,
    pub conditions: Vec<Condition>,
    pub medication_requests: Vec<MedicationRequest>,
    pub medication_statements: Vec<MedicationStatement>,
    /// Medication resources by `Medication/id` (referenced from requests/statements).
    pub medications: Vec<Medication>,
    pub observations: Vec<Observation>,
    pub draft_orders: Vec<DraftOrder>,
    pub skipped: Vec<SkippedResource>,
    /// JSON pointers to the id of each prefetched Patient that is not `context.patientId`:
    /// the request is then about two patients, and is refused.
    pub foreign_patients: Vec<String>,
    /// `context.patientId`: resources whose subject is another patient are skipped.
    patient_id: Option<String>,
    seen: HashSet<String>,
    /// Position in `medications` by id, so that references resolve in constant time.
    medication_by_id: HashMap<String, usize>,
    /// Position in `conditions` by id (reasons of orders refer to them).
    condition_by_id: HashMap<String, usize>,
}

impl ResourceSet {
    /// A set that takes any patient's resources (tests, tools).
    pub fn new() -> Self {
        Self::default()
    }

    /// A set for a request about `patient_id` (its `context.patientId`).
    pub fn for_patient(patient_id: Option<&str>) -> Self {
        Self { patient_id: patient_id.map(str::to_string), ..Self::default() }
    }

    /// Adds a prefetch value: each resource is parsed once, straight into its typed model.
    /// Returns a Bundle's `next` link, if the client paginated it. `key` names it in warnings.
    pub fn add_prefetch(&mut self, value: PrefetchValue, key: &str) -> Option<String> {
        match value {
            PrefetchValue::Bundle { entries, next } => {
                for (i, entry) in entries.into_iter().enumerate() {
                    let at = || prefetch_position(key, Some(i));
                    let pointer = || Some(prefetch_pointer(key, Some(i)));
                    match entry {
                        Some(Entry::Typed(r)) => {
                            self.add_typed(r, &at(), pointer());
                        }
                        Some(Entry::Raw(r)) => self.add_raw_resource(r.get(), at(), pointer()),
                        Some(Entry::Invalid { label, reason }) => {
                            self.skip(format!("{} ({})", at(), bounded(&label, LABEL_CHARS)), reason)
                        }
                        None => self.skip(at(), "entry has no resource".into()),
                    }
                }
                next
            }
            PrefetchValue::Resource { raw, .. } => {
                self.add_raw_resource(raw.get(), prefetch_position(key, None), Some(prefetch_pointer(key, None)));
                None
            }
            PrefetchValue::Invalid(_) => {
                self.skip(prefetch_position(key, None), "not a FHIR resource".into());
                None
            }
            PrefetchValue::Null | PrefetchValue::OperationOutcome => None,
        }
    }

    /// Adds an already typed resource (de-duplicated by type and id); `false` if it was not
    /// added: a duplicate, or set aside because it is not the request's patient's or its id
    /// is not a FHIR id (named in the warnings). `at` is its position, `pointer` the JSON
    /// pointer to its id when it came in the request's prefetch.
    fn add_typed(&mut self, resource: Resource, at: &str, pointer: Option<String>) -> bool {
        let (kind, id) = resource.kind_and_id();
        if let (Resource::Patient(_), Some(context), Some(id)) = (&resource, &self.patient_id, id) {
            if id != context {
                match pointer {
                    // Enough to fix the request; bounded whatever it holds.
                    Some(pointer) if self.foreign_patients.len() < MAX_FOREIGN_REPORTED => {
                        self.foreign_patients.push(pointer)
                    }
                    Some(_) => {}
                    None => self.skip(label(at, kind, Some(id)), OTHER_PATIENT.into()),
                }
                return false;
            }
        }
        if let Some(why) = refusal(id, subject_of(&resource), self.patient_id.as_deref()) {
            self.skip(label(at, kind, id), why.into());
            return false;
        }
        if let (kind, Some(id)) = resource.kind_and_id() {
            if !self.seen.insert(format!("{kind}/{id}")) {
                return false;
            }
        }
        match resource {
            Resource::Patient(p) => {
                if self.patient.is_none() {
                    self.patient = Some(p);
                }
            }
            Resource::Condition(c) => {
                if let Some(id) = &c.id {
                    self.condition_by_id.entry(id.clone()).or_insert(self.conditions.len());
                }
                self.conditions.push(c)
            }
            Resource::MedicationRequest(m) => self.medication_requests.push(m),
            Resource::MedicationStatement(m) => self.medication_statements.push(m),
            Resource::Medication(m) => {
                if let Some(id) = &m.id {
                    self.medication_by_id.entry(id.clone()).or_insert(self.medications.len());
                }
                self.medications.push(m)
            }
            Resource::Observation(o) => self.observations.push(o),
            Resource::Other(_) => {}
        }
        true
    }

    /// Adds what the tolerant reader made of a resource: the resource with a warning per
    /// dropped element, or a skip naming why it cannot be used. `at` is its position.
    fn add_read(
        &mut self,
        at: &str,
        head: (&str, Option<&str>),
        read: Result<Read, ReadError>,
        pointer: Option<String>,
    ) {
        let label = label(at, head.0, head.1);
        match read {
            Ok(Read { resource, ignored }) => {
                if self.add_typed(resource, at, pointer) {
                    self.report_ignored(&label, &ignored);
                }
            }
            Err(e) => self.skip(label, e.to_string()),
        }
    }

    /// One warning per dropped element. They are listed with the skipped resources (the
    /// response's warnings are built from `skipped`), with a location that says which
    /// element of which resource was skipped.
    fn report_ignored(&mut self, label: &str, ignored: &[IgnoredElement]) {
        for element in ignored {
            self.skip(format!("element {} of {label}", element.element), element.reason());
        }
    }

    fn add_raw_resource(&mut self, text: &str, at: String, pointer: Option<String>) {
        let head = match fast_head(text) {
            Some((kind, id)) => ResourceHead { resource_type: Some(kind.into()), id: id.map(Into::into) },
            None => match serde_json::from_str::<ResourceHead>(text) {
                Ok(h) => h,
                Err(_) => {
                    return self.skip(at, "not a FHIR resource (not an object with a string resourceType)".into())
                }
            },
        };
        let Some(kind) = head.resource_type.as_deref().filter(|k| !k.is_empty()) else {
            return self.skip(at, ReadError::NoResourceType.to_string());
        };
        let read = read_json(kind, text);
        self.add_read(&at, (kind, head.id.as_deref()), read, pointer);
    }

    /// Adds a JSON value (fetched from a FHIR server, or built by tests): a resource, or a
    /// Bundle whose entries (an array, or a single entry) are added.
    pub fn add_value(&mut self, value: Value, location: &str) {
        if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let Value::Object(mut bundle) = value else { return };
            let entries = match bundle.remove("entry") {
                Some(Value::Array(entries)) => entries,
                Some(entry @ Value::Object(_)) => vec![entry],
                _ => Vec::new(),
            };
            for (i, mut entry) in entries.into_iter().enumerate() {
                match entry.get_mut("resource").map(Value::take) {
                    Some(resource) => self.add_resource(resource, &format!("{location} entry {i}")),
                    None => self.skip(format!("{location} entry {i}"), "entry has no resource".into()),
                }
            }
        } else {
            self.add_resource(value, location);
        }
    }

    pub fn add_resource(&mut self, value: Value, location: &str) {
        let kind = value.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
        let id = value.get("id").and_then(Value::as_str).map(str::to_string);
        let read = read_value(value);
        self.add_read(location, (&kind, id.as_deref()), read, None);
    }

    /// Adds the MedicationRequests of a draft-orders Bundle, read as tolerantly as prefetch;
    /// other order types are not read by any rule. `selected` is `None` on order-sign
    /// (every draft is in scope).
    pub fn add_draft_orders(&mut self, bundle: &Value, selected: Option<&[String]>) {
        let Some(entries) = bundle.get("entry").and_then(Value::as_array) else { return };
        let selected: Option<HashSet<&str>> = selected.map(|s| s.iter().map(String::as_str).collect());
        for (i, entry) in entries.iter().enumerate() {
            let Some(resource) = entry.get("resource") else { continue };
            if resource.get("resourceType").and_then(Value::as_str) != Some("MedicationRequest") {
                continue;
            }
            let at = format!("context.draftOrders entry {i}");
            let label = label(&at, "MedicationRequest", resource.get("id").and_then(Value::as_str));
            // Straight from the borrowed value when it parses; the tolerant reader needs a copy.
            let read = match MedicationRequest::deserialize(resource) {
                Ok(request) => Ok(Read { resource: Resource::MedicationRequest(request), ignored: Vec::new() }),
                Err(_) => read_kind("MedicationRequest", resource.clone()),
            };
            match read {
                Ok(Read { resource: Resource::MedicationRequest(request), ignored }) => {
                    let subject = request.subject.as_ref().and_then(|s| s.reference.as_deref());
                    if let Some(why) = refusal(request.id.as_deref(), subject, self.patient_id.as_deref()) {
                        self.skip(label, why.into());
                        continue;
                    }
                    self.report_ignored(&label, &ignored);
                    let reference = format!("MedicationRequest/{}", request.id.as_deref().unwrap_or(""));
                    let in_scope = selected.as_ref().is_none_or(|s| s.contains(reference.as_str()));
                    self.draft_orders.push(DraftOrder { request, in_scope });
                }
                Ok(_) => {}
                Err(e) => self.skip(label, e.to_string()),
            }
        }
    }

    fn skip(&mut self, location: String, reason: String) {
        // The log gets where only: the resource id (a Patient id is an identifier) and the
        // reason (it describes the offending value) go to the response, not the log. The
        // position holds numbers, the prefetch key (bounded) and model field names. A few
        // lines per request: the response's warnings list every one, the log need not.
        match self.skipped.len() {
            n if n < LOGGED_SKIPS => {
                let position = location.split(" (").next().unwrap_or("");
                tracing::warn!(position, "FHIR resource skipped");
            }
            LOGGED_SKIPS => tracing::warn!("more FHIR resources skipped in this request; not logged one by one"),
            _ => {}
        }
        self.skipped.push(SkippedResource { location, reason });
    }

    /// Finds a referenced Medication: `#id` among `contained`, else `Medication/id` in the set
    /// (borrowed: many orders may name one Medication). A contained Medication is read
    /// tolerantly; one that cannot be read resolves to nothing, as an unresolvable reference does.
    pub fn resolve_medication(&self, reference: &str, contained: &[Value]) -> Option<Cow<'_, Medication>> {
        if let Some(local) = reference.strip_prefix('#') {
            let found = contained.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(local))?;
            return match read_kind("Medication", found.clone()) {
                Ok(Read { resource: Resource::Medication(m), .. }) => Some(Cow::Owned(m)),
                _ => None,
            };
        }
        let id = reference.rsplit('/').next()?;
        self.medication_by_id.get(id).map(|&i| Cow::Borrowed(&self.medications[i]))
    }

    /// The Condition with this id, if the request brought it.
    pub fn condition(&self, id: &str) -> Option<&Condition> {
        self.condition_by_id.get(id).map(|&i| &self.conditions[i])
    }
}

/// Prefetched Patients of another patient named in the refusal, at most.
const MAX_FOREIGN_REPORTED: usize = 10;
/// Skipped resources logged one by one per request (the response lists them all).
const LOGGED_SKIPS: usize = 10;
/// Longest prefetch key, resource type or id echoed in a location.
const LABEL_CHARS: usize = 64;

/// `prefetch.labs entry 3`: the key is the client's, so it is bounded.
fn prefetch_position(key: &str, entry: Option<usize>) -> String {
    match entry {
        Some(i) => format!("prefetch.{} entry {i}", bounded(key, LABEL_CHARS)),
        None => format!("prefetch.{}", bounded(key, LABEL_CHARS)),
    }
}

/// `/prefetch/labs/entry/3/resource/id` (or `/prefetch/patient/id`): where a prefetched
/// resource's id is in the request. The key is the client's, so it is bounded.
fn prefetch_pointer(key: &str, entry: Option<usize>) -> String {
    let key = pointer_segment(&bounded(key, LABEL_CHARS));
    match entry {
        Some(i) => format!("/prefetch/{key}/entry/{i}/resource/id"),
        None => format!("/prefetch/{key}/id"),
    }
}

/// `prefetch.labs entry 3 (Observation/o1)`: the position, then type and id, bounded.
fn label(at: &str, kind: &str, id: Option<&str>) -> String {
    match (kind, id) {
        ("", _) => at.to_string(),
        (kind, Some(id)) => format!("{at} ({}/{})", bounded(kind, LABEL_CHARS), bounded(id, LABEL_CHARS)),
        (kind, None) => format!("{at} ({})", bounded(kind, LABEL_CHARS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_bad_resource_among_many_is_skipped_and_named() {
        let mut entries: Vec<Value> = (0..200)
            .map(|i| json!({"resource": {"resourceType": "Observation", "id": format!("o{i}"), "status": "final"}}))
            .collect();
        entries[57] = json!({"resource": {"resourceType": "Observation", "id": "bad", "status": {"not": "a code"}}});
        let mut set = ResourceSet::new();
        set.add_value(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}), "prefetch.labs");
        assert_eq!(set.observations.len(), 199);
        assert_eq!(set.skipped.len(), 1);
        assert!(set.skipped[0].location.contains("entry 57 (Observation/bad)"), "{:?}", set.skipped);
    }

    #[test]
    fn duplicates_are_kept_once() {
        let mut set = ResourceSet::new();
        let o = json!({"resourceType": "Observation", "id": "hr", "status": "final"});
        set.add_value(o.clone(), "prefetch.labs");
        set.add_value(json!({"resourceType": "Bundle", "entry": [{"resource": o}]}), "prefetch.vitals");
        assert_eq!(set.observations.len(), 1);
    }

    #[test]
    fn draft_orders_are_read_tolerantly() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "MedicationRequest", "id": "d1", "status": "draft",
                "reasonCode": {"text": "cramps"}, "dosageInstruction": [{"text": 5}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "d2", "status": 5}},
            {"resource": {"resourceType": "MedicationRequest", "id": "d3", "status": "draft"}}]});
        let mut set = ResourceSet::new();
        set.add_draft_orders(&bundle, Some(&["MedicationRequest/d1".to_string()]));
        let kept: Vec<(&str, bool)> =
            set.draft_orders.iter().map(|d| (d.request.id.as_deref().unwrap_or(""), d.in_scope)).collect();
        assert_eq!(kept, [("d1", true), ("d3", false)]);
        assert_eq!(set.draft_orders[0].request.reason_code[0].text.as_deref(), Some("cramps"));
        let locations: Vec<&str> = set.skipped.iter().map(|s| s.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "element dosageInstruction[0].text of context.draftOrders entry 0 (MedicationRequest/d1)",
                "context.draftOrders entry 1 (MedicationRequest/d2)"
            ]
        );
        assert!(set.skipped[1].reason.contains("element status could not be read"), "{:?}", set.skipped);
    }

    #[test]
    fn locations_echo_bounded_ids_and_keys() {
        let mut set = ResourceSet::new();
        let id = "i".repeat(1000);
        set.add_resource(json!({"resourceType": "Observation", "id": id, "status": 5}), "fetched.labs");
        let raw = serde_json::value::to_raw_value(&json!({"resourceType": "Observation", "status": 5})).unwrap();
        let key = "k".repeat(1000);
        set.add_prefetch(PrefetchValue::Resource { resource_type: "Observation".into(), raw }, &key);
        assert_eq!(set.skipped.len(), 2);
        assert!(set.skipped.iter().all(|s| s.location.len() < 100), "{:?}", set.skipped);
    }
}
