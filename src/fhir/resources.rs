//! Every FHIR resource a request brings, parsed once and de-duplicated: prefetch values
//! (single resources or Bundles), resources fetched from the FHIR server, and draft orders.
//! A resource that does not parse is skipped and reported; it never hides the others.

use super::model::*;
use crate::protocol::prefetch::{Entry, PrefetchValue};
use crate::protocol::request::{fast_head, ResourceHead};
use serde_json::Value;
use std::collections::HashSet;

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
    seen: HashSet<String>,
}

impl ResourceSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a prefetch value: each resource is parsed once, straight into its typed model.
    /// Returns a Bundle's `next` link, if the client paginated it. `key` names it in warnings.
    pub fn add_prefetch(&mut self, value: PrefetchValue, key: &str) -> Option<String> {
        match value {
            PrefetchValue::Bundle { entries, next } => {
                for (i, entry) in entries.into_iter().enumerate() {
                    match entry {
                        Some(Entry::Typed(r)) => self.add_typed(r),
                        Some(Entry::Raw(r)) => self.add_raw_resource(r.get(), key, Some(i)),
                        Some(Entry::Invalid { label, reason }) => {
                            self.skip(format!("prefetch.{key} entry {i} ({label})"), reason)
                        }
                        None => self.skip(format!("prefetch.{key} entry {i}"), "entry has no resource".into()),
                    }
                }
                next
            }
            PrefetchValue::Resource { raw, .. } => {
                self.add_raw_resource(raw.get(), key, None);
                None
            }
            PrefetchValue::Invalid(_) => {
                self.skip(format!("prefetch.{key}"), "not a FHIR resource".into());
                None
            }
            PrefetchValue::Null | PrefetchValue::OperationOutcome => None,
        }
    }

    /// Adds an already typed resource (de-duplicated by type and id).
    fn add_typed(&mut self, resource: Resource) {
        if let (kind, Some(id)) = resource.kind_and_id() {
            if !self.seen.insert(format!("{kind}/{id}")) {
                return;
            }
        }
        match resource {
            Resource::Patient(p) => {
                if self.patient.is_none() {
                    self.patient = Some(p);
                }
            }
            Resource::Condition(c) => self.conditions.push(c),
            Resource::MedicationRequest(m) => self.medication_requests.push(m),
            Resource::MedicationStatement(m) => self.medication_statements.push(m),
            Resource::Medication(m) => self.medications.push(m),
            Resource::Observation(o) => self.observations.push(o),
            Resource::Other(_) => {}
        }
    }

    fn add_raw_resource(&mut self, text: &str, key: &str, entry: Option<usize>) {
        let at = match entry {
            Some(i) => format!("prefetch.{key} entry {i}"),
            None => format!("prefetch.{key}"),
        };
        let head = match fast_head(text) {
            Some((kind, id)) => ResourceHead { resource_type: Some(kind.into()), id: id.map(Into::into) },
            None => match serde_json::from_str::<ResourceHead>(text) {
                Ok(h) => h,
                Err(e) => return self.skip(at, format!("not a FHIR resource: {e}")),
            },
        };
        let Some(kind) = head.resource_type.as_deref().filter(|k| !k.is_empty()) else {
            return self.skip(at, "no resourceType".into());
        };
        match Resource::from_json(kind, text) {
            Ok(resource) => self.add_typed(resource),
            Err(reason) => {
                let label = match head.id.as_deref() {
                    Some(id) => format!("{at} ({kind}/{id})"),
                    None => format!("{at} ({kind})"),
                };
                self.skip(label, reason)
            }
        }
    }

    /// Adds a JSON value (fetched from a FHIR server, or built by tests): a resource, or a
    /// Bundle whose entries are added.
    pub fn add_value(&mut self, value: Value, location: &str) {
        if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let Value::Object(mut bundle) = value else { return };
            let entries = match bundle.remove("entry") {
                Some(Value::Array(entries)) => entries,
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
        let label = match (value.get("resourceType").and_then(Value::as_str), value.get("id").and_then(Value::as_str)) {
            (Some(kind), Some(id)) => format!("{location} ({kind}/{id})"),
            (Some(kind), None) => format!("{location} ({kind})"),
            _ => location.to_string(),
        };
        match Resource::from_value(value) {
            Ok(resource) => self.add_typed(resource),
            Err(reason) => self.skip(label, reason),
        }
    }

    /// Adds the MedicationRequests of a draft-orders Bundle; other order types are not read
    /// by any rule. `selected` is `None` on order-sign (every draft is in scope).
    pub fn add_draft_orders(&mut self, bundle: &Value, selected: Option<&[String]>) {
        let Some(entries) = bundle.get("entry").and_then(Value::as_array) else { return };
        for (i, entry) in entries.iter().enumerate() {
            let Some(resource) = entry.get("resource") else { continue };
            if resource.get("resourceType").and_then(Value::as_str) != Some("MedicationRequest") {
                continue;
            }
            match serde_json::from_value::<MedicationRequest>(resource.clone()) {
                Ok(request) => {
                    let reference = format!("MedicationRequest/{}", request.id.as_deref().unwrap_or(""));
                    let in_scope = selected.is_none_or(|s| s.contains(&reference));
                    self.draft_orders.push(DraftOrder { request, in_scope });
                }
                Err(e) => self
                    .skip(format!("context.draftOrders entry {i}"), format!("MedicationRequest does not parse: {e}")),
            }
        }
    }

    fn skip(&mut self, location: String, reason: String) {
        // The log gets where only: the resource id (a Patient id is an identifier) and the
        // parser's message (it quotes the offending value) go to the response, not the log.
        let position = location.split(" (").next().unwrap_or("");
        tracing::warn!(position, "FHIR resource skipped");
        self.skipped.push(SkippedResource { location, reason });
    }

    /// Finds a referenced Medication: `#id` among `contained`, else `Medication/id` in the set.
    pub fn resolve_medication(&self, reference: &str, contained: &[Value]) -> Option<Medication> {
        if let Some(local) = reference.strip_prefix('#') {
            return contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))
                .and_then(|c| serde_json::from_value(c.clone()).ok());
        }
        let id = reference.rsplit('/').next()?;
        self.medications.iter().find(|m| m.id.as_deref() == Some(id)).cloned()
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
}
