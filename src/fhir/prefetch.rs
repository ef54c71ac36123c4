//! Prefetch values as read from the request in a single pass: `null` (no data), a Bundle
//! whose entries are parsed straight into their typed models as the request is read, a
//! single resource kept raw, or an OperationOutcome (the client's fetch failed). No JSON
//! tree of the resources is built.
//!
//! Fast path: FHIR JSON puts `resourceType` first, so each entry is dispatched on it and
//! read into its struct in the same pass (arrays sent as a single element are read as
//! one-element arrays there too). If any resource does not parse that way, reading the
//! request fails and the caller re-reads it the slow, careful way
//! ([`PrefetchValue::from_value`]): every resource kept raw and read on its own by the
//! tolerant reader ([`super::tolerant`]), so a bad element or resource costs only
//! itself.
//!
//! [`CdsRequest`] is the protocol's request with its prefetch read this way.

use super::model::Resource;
use super::one_or_many::one_or_many;
use crate::protocol::request::PrefetchRead;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One Bundle entry's resource.
// Typed is by far the common variant; boxing it would cost an allocation per resource on
// the request path for no benefit (entries live in one Vec, briefly).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Entry {
    /// Read into its typed model while the request was read.
    Typed(Resource),
    /// Kept as raw JSON, read later on its own by the tolerant reader (the careful path).
    Raw(Box<RawValue>),
    /// Could not be read: kind/id if known, and why.
    Invalid { label: String, reason: String },
}

#[derive(Debug, Clone)]
pub enum PrefetchValue {
    Null,
    Bundle {
        entries: Vec<Option<Entry>>,
        next: Option<String>,
    },
    OperationOutcome,
    Resource {
        resource_type: String,
        raw: Box<RawValue>,
    },
    /// Not a resource at all (a string, an array, an object without resourceType): kept so
    /// the schema can say precisely what is wrong.
    Invalid(Value),
}

/// The service call as the service reads it: prefetch resources typed in the same pass.
pub type CdsRequest = crate::protocol::CdsRequest<PrefetchValue>;

impl PrefetchRead for PrefetchValue {
    /// What the request schema needs to see of it.
    fn schema_stub(&self) -> Value {
        match self {
            PrefetchValue::Null => Value::Null,
            PrefetchValue::Bundle { .. } => serde_json::json!({"resourceType": "Bundle"}),
            PrefetchValue::OperationOutcome => serde_json::json!({"resourceType": "OperationOutcome"}),
            PrefetchValue::Resource { resource_type, .. } => serde_json::json!({ "resourceType": resource_type }),
            PrefetchValue::Invalid(v) => v.clone(),
        }
    }

    /// From an already parsed value (eval, tests).
    fn from_value(value: Value) -> Self {
        match value {
            Value::Null => PrefetchValue::Null,
            Value::Object(mut map) => {
                let kind = map.get("resourceType").and_then(Value::as_str).map(str::to_string);
                match kind.as_deref() {
                    Some("Bundle") => {
                        let next = next_link(map.get("link"));
                        let items = match map.remove("entry") {
                            Some(Value::Array(items)) => items,
                            Some(entry @ Value::Object(_)) => vec![entry],
                            _ => Vec::new(),
                        };
                        let entries = items
                            .into_iter()
                            .map(|mut e| {
                                e.get_mut("resource")
                                    .map(Value::take)
                                    .and_then(|r| serde_json::value::to_raw_value(&r).ok())
                                    .map(Entry::Raw)
                            })
                            .collect();
                        PrefetchValue::Bundle { entries, next }
                    }
                    Some("OperationOutcome") => PrefetchValue::OperationOutcome,
                    Some(kind) if !kind.is_empty() => match serde_json::value::to_raw_value(&map) {
                        Ok(raw) => PrefetchValue::Resource { resource_type: kind.to_string(), raw },
                        Err(_) => PrefetchValue::Invalid(Value::Object(map)),
                    },
                    _ => PrefetchValue::Invalid(Value::Object(map)),
                }
            }
            other => PrefetchValue::Invalid(other),
        }
    }
}

fn next_link(links: Option<&Value>) -> Option<String> {
    links?
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))?
        .get("url")?
        .as_str()
        .map(str::to_string)
}

/// A Bundle's `entry`: an array, or a single entry sent in its place.
struct TypedEntries(Vec<TypedEntry>);

impl<'de> Deserialize<'de> for TypedEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_or_many(d).map(TypedEntries)
    }
}

/// A Bundle entry: only `resource` is read.
struct TypedEntry(Option<Entry>);

impl<'de> Deserialize<'de> for TypedEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TypedEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Bundle entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypedEntry, A::Error> {
                let mut resource = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "resource" {
                        resource = Some(map.next_value_seed(ResourceSeed)?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(TypedEntry(resource))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads a resource in place: dispatch on a leading `resourceType`, then let the typed
/// struct read the rest of the same object. A resource that does not lead with its type is
/// buffered and converted; if that fails it is kept raw for the tolerant reader (isolated:
/// its failure does not fail the request).
struct ResourceSeed;

impl<'de> de::DeserializeSeed<'de> for ResourceSeed {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed {
    type Value = Entry;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a FHIR resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        use serde::de::value::MapAccessDeserializer;
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Entry::Invalid { label: "?".into(), reason: "empty resource".into() });
        };
        if first == "resourceType" {
            let kind: String = map.next_value()?;
            let resource = Resource::deserialize_kind(&kind, MapAccessDeserializer::new(map))?;
            return Ok(Entry::Typed(resource));
        }
        let mut members = Map::new();
        members.insert(first, map.next_value()?);
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            members.insert(k, v);
        }
        let value = Value::Object(members);
        let Some(kind) = value.get("resourceType").and_then(Value::as_str).filter(|k| !k.is_empty()) else {
            return Ok(Entry::Invalid { label: "?".into(), reason: "no resourceType".into() });
        };
        if let Ok(resource) = Resource::deserialize_kind(kind, &value) {
            return Ok(Entry::Typed(resource));
        }
        Ok(match serde_json::value::to_raw_value(&value) {
            Ok(raw) => Entry::Raw(raw),
            Err(_) => Entry::Invalid { label: "?".into(), reason: "not a FHIR resource".into() },
        })
    }
}

impl<'de> Deserialize<'de> for PrefetchValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PrefetchVisitor)
    }
}

struct PrefetchVisitor;

impl<'de> Visitor<'de> for PrefetchVisitor {
    type Value = PrefetchValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a FHIR resource or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Invalid(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Invalid(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Invalid(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Invalid(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PrefetchValue, E> {
        Ok(PrefetchValue::Invalid(Value::String(v.to_string())))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PrefetchValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PrefetchValue::Invalid(Value::Array(Vec::new())))
    }

    /// One pass: Bundle entries are captured raw; the other members (small) become values.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PrefetchValue, A::Error> {
        let mut members = Map::new();
        let mut entries: Option<TypedEntries> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entry" {
                entries = Some(map.next_value()?);
            } else {
                let value: Value = map.next_value()?;
                members.insert(key, value);
            }
        }
        let kind = members.get("resourceType").and_then(Value::as_str).map(str::to_string);
        Ok(match kind.as_deref() {
            Some("Bundle") => PrefetchValue::Bundle {
                next: next_link(members.get("link")),
                entries: entries.map(|e| e.0).unwrap_or_default().into_iter().map(|e| e.0).collect(),
            },
            Some("OperationOutcome") => PrefetchValue::OperationOutcome,
            Some(kind) if !kind.is_empty() => {
                // (An `entry` member on a non-Bundle is not FHIR; it is dropped.)
                let _ = entries;
                let raw = serde_json::value::to_raw_value(&members).map_err(de::Error::custom)?;
                PrefetchValue::Resource { resource_type: kind.to_string(), raw }
            }
            _ => PrefetchValue::Invalid(Value::Object(members)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries(value: PrefetchValue) -> Vec<Option<Entry>> {
        match value {
            PrefetchValue::Bundle { entries, .. } => entries,
            other => panic!("not a Bundle: {other:?}"),
        }
    }

    #[test]
    fn a_single_entry_object_is_one_entry_on_both_paths() {
        let text = r#"{"resourceType":"Bundle","entry":{"resource":{"resourceType":"Observation","id":"o","status":"final"}}}"#;
        let fast = entries(serde_json::from_str(text).unwrap());
        assert!(matches!(fast.as_slice(), [Some(Entry::Typed(Resource::Observation(_)))]), "{fast:?}");
        let slow = entries(PrefetchValue::from_value(serde_json::from_str(text).unwrap()));
        assert!(matches!(slow.as_slice(), [Some(Entry::Raw(_))]), "{slow:?}");
    }

    #[test]
    fn a_resource_not_led_by_its_type_is_typed_or_kept_raw_for_the_tolerant_reader() {
        let bundle = |resource: Value| json!({"resourceType": "Bundle", "entry": [{"resource": resource}]}).to_string();
        let ok = entries(serde_json::from_str(&bundle(json!({"id": "o", "resourceType": "Observation"}))).unwrap());
        assert!(matches!(ok.as_slice(), [Some(Entry::Typed(Resource::Observation(_)))]), "{ok:?}");
        let bad = json!({"id": "o", "note": 5, "resourceType": "Observation"});
        let raw = entries(serde_json::from_str(&bundle(bad)).unwrap());
        assert!(matches!(raw.as_slice(), [Some(Entry::Raw(_))]), "{raw:?}");
        let none = entries(serde_json::from_str(&bundle(json!({"id": "o"}))).unwrap());
        assert!(matches!(none.as_slice(), [Some(Entry::Invalid { .. })]), "{none:?}");
    }

    #[test]
    fn a_resource_led_by_its_type_that_does_not_parse_fails_the_fast_path() {
        // The caller then re-reads the request the careful way (see the module comment).
        let text = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","status":5}}]}"#;
        assert!(serde_json::from_str::<PrefetchValue>(text).is_err());
    }

    #[test]
    fn null_prefetch_is_kept_distinct_from_absent() {
        let pv = json!({
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": null}
        });
        let r = CdsRequest::from_value(pv, &crate::protocol::SchemaSet::compile().unwrap(), "patient-view").unwrap();
        assert!(matches!(r.prefetch.get("patient"), Some(PrefetchValue::Null)));
        assert!(!r.prefetch.contains_key("conditions"));
    }
}
