//! Prefetch values as read from the request in a single pass: `null` (no data), a Bundle
//! whose entries are kept as raw JSON (each parsed later, once, into its typed model, so a
//! bad resource costs only itself), a single resource kept raw, or an OperationOutcome
//! (the client's fetch failed). No JSON tree of the resources is ever built.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub enum PrefetchValue {
    Null,
    Bundle {
        entries: Vec<Option<Box<RawValue>>>,
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

impl PrefetchValue {
    /// What the request schema needs to see of it.
    pub fn schema_stub(&self) -> Value {
        match self {
            PrefetchValue::Null => Value::Null,
            PrefetchValue::Bundle { .. } => serde_json::json!({"resourceType": "Bundle"}),
            PrefetchValue::OperationOutcome => serde_json::json!({"resourceType": "OperationOutcome"}),
            PrefetchValue::Resource { resource_type, .. } => serde_json::json!({ "resourceType": resource_type }),
            PrefetchValue::Invalid(v) => v.clone(),
        }
    }

    /// From an already parsed value (eval, tests).
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Null => PrefetchValue::Null,
            Value::Object(mut map) => {
                let kind = map.get("resourceType").and_then(Value::as_str).map(str::to_string);
                match kind.as_deref() {
                    Some("Bundle") => {
                        let next = next_link(map.get("link"));
                        let entries = match map.remove("entry") {
                            Some(Value::Array(items)) => items
                                .into_iter()
                                .map(|mut e| {
                                    e.get_mut("resource")
                                        .map(Value::take)
                                        .and_then(|r| serde_json::value::to_raw_value(&r).ok())
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
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

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    resource: Option<Box<RawValue>>,
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
        let mut entries: Option<Vec<RawEntry>> = None;
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
                entries: entries.unwrap_or_default().into_iter().map(|e| e.resource).collect(),
            },
            Some("OperationOutcome") => PrefetchValue::OperationOutcome,
            Some(kind) if !kind.is_empty() => {
                if let Some(entries) = entries {
                    // Not FHIR for a non-Bundle, but keep it rather than lose data.
                    let items: Vec<Value> = entries
                        .into_iter()
                        .map(|e| serde_json::json!({ "resource": e.resource.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) }))
                        .collect();
                    members.insert("entry".into(), Value::Array(items));
                }
                let raw = serde_json::value::to_raw_value(&members).map_err(de::Error::custom)?;
                PrefetchValue::Resource { resource_type: kind.to_string(), raw }
            }
            _ => PrefetchValue::Invalid(Value::Object(members)),
        })
    }
}
