//! Reading one FHIR resource tolerantly: the careful path taken only when a resource does
//! not parse straight into its model.
//!
//! Each attempt parses the resource with `serde_path_to_error`; the failing element is
//! looked up in [`super::elements`]: a decision element skips the resource (naming it), an
//! Observation's unreadable `valueQuantity` is dropped and recorded as the result's
//! `value_problem`, anything else is dropped alone. At most [`MAX_REPAIRS`] elements are
//! dropped per resource, so a resource with thousands of bad elements costs a bounded
//! number of parses, then is skipped.
//!
//! What goes back to the client is bounded: element paths are built from the models' own
//! field names, and what was found is described in at most [`FOUND_CHARS`] characters.

use super::elements::{disposition, Disposition};
use super::model::Resource;
use serde_json::Value;
use serde_path_to_error::{Segment, Track};

/// Elements dropped per resource before it is skipped instead.
pub const MAX_REPAIRS: usize = 8;
/// Characters of an unreadable string echoed back in a warning.
pub const FOUND_CHARS: usize = 20;
/// Longest `Observation::value_problem`.
pub const VALUE_PROBLEM_CHARS: usize = 40;
/// Longest parser message (it can quote the input) echoed back.
const MESSAGE_CHARS: usize = 120;

/// Why a resource cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no resourceType")]
    NoResourceType,
    #[error("{kind} does not parse: element {element} could not be read (found {found})")]
    Unreadable { kind: String, element: String, found: String },
    #[error("{kind} does not parse: more than {MAX_REPAIRS} elements could not be read")]
    TooManyProblems { kind: String },
    #[error("{kind} does not parse: {message}")]
    Malformed { kind: String, message: String },
}

/// An element dropped so that the rest of its resource could be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredElement {
    /// Where, in FHIR JSON names: `note[0].text`.
    pub element: String,
    /// A short description of what was there: `"abc"`, `{…}`, `5`.
    pub found: String,
    /// It was the result's value: the resource is kept without a value.
    pub value_lost: bool,
}

impl IgnoredElement {
    /// The warning's reason, after its location.
    pub fn reason(&self) -> String {
        if self.value_lost {
            format!("could not be read (found {}); the result is kept without a value", self.found)
        } else {
            format!("could not be read (found {}) and was ignored; the rest of the resource is used", self.found)
        }
    }
}

/// A resource read, with the elements that had to be dropped.
#[derive(Debug, Clone)]
pub struct Read {
    pub resource: Resource,
    pub ignored: Vec<IgnoredElement>,
}

impl Read {
    fn clean(resource: Resource) -> Self {
        Self { resource, ignored: Vec::new() }
    }
}

/// Reads a resource of a known type from JSON text: straight into the model when it
/// parses, else tolerantly.
pub fn read_json(kind: &str, text: &str) -> Result<Read, ReadError> {
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(resource) = Resource::deserialize_kind(kind, &mut de).and_then(|r| de.end().map(|()| r)) {
        return Ok(Read::clean(resource));
    }
    let value = serde_json::from_str(text).map_err(|e| ReadError::Malformed {
        kind: bounded(kind, 40),
        message: bounded(&e.to_string(), MESSAGE_CHARS),
    })?;
    repair(kind, value)
}

/// Reads a resource from a JSON value, by its `resourceType`.
pub fn read_value(value: Value) -> Result<Read, ReadError> {
    let kind = match value.get("resourceType").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => kind.to_string(),
        _ => return Err(ReadError::NoResourceType),
    };
    read_kind(&kind, value)
}

/// Reads a resource of a known type from a JSON value.
pub fn read_kind(kind: &str, value: Value) -> Result<Read, ReadError> {
    match Resource::deserialize_kind(kind, &value) {
        Ok(resource) => Ok(Read::clean(resource)),
        Err(_) => repair(kind, value),
    }
}

/// The repair loop: parse, find the failing element, drop it or give up.
fn repair(kind: &str, mut value: Value) -> Result<Read, ReadError> {
    let mut ignored = Vec::new();
    let mut value_problem = None;
    for _ in 0..=MAX_REPAIRS {
        let mut track = Track::new();
        let error = match Resource::deserialize_kind(kind, serde_path_to_error::Deserializer::new(&value, &mut track)) {
            Ok(mut resource) => {
                if let (Resource::Observation(o), Some(problem)) = (&mut resource, value_problem) {
                    o.value_problem = Some(problem);
                }
                return Ok(Read { resource, ignored });
            }
            Err(e) => e,
        };
        let path: Vec<Segment> = track.path().iter().cloned().collect();
        if path.is_empty() {
            return Err(ReadError::Malformed {
                kind: kind.to_string(),
                message: bounded(&error.to_string(), MESSAGE_CHARS),
            });
        }
        let found = lookup(&value, &path).map_or_else(|| "?".to_string(), describe);
        match disposition(kind, &path) {
            Disposition::Skip => {
                return Err(ReadError::Unreadable { kind: kind.to_string(), element: render(&path), found })
            }
            Disposition::DropValue => {
                // The whole value element goes: a half-read quantity (a value without its
                // unit) must not be compared.
                let inner = &path[1..];
                let problem = if inner.is_empty() { found.clone() } else { format!("{} {found}", render(inner)) };
                value_problem.get_or_insert(bounded(&problem, VALUE_PROBLEM_CHARS));
                if !remove(&mut value, &path[..1]) {
                    return Err(ReadError::Unreadable { kind: kind.to_string(), element: render(&path), found });
                }
                ignored.push(IgnoredElement { element: render(&path[..1]), found, value_lost: true });
            }
            Disposition::Drop => {
                if !remove(&mut value, &path) {
                    return Err(ReadError::Unreadable { kind: kind.to_string(), element: render(&path), found });
                }
                ignored.push(IgnoredElement { element: render(&path), found, value_lost: false });
            }
        }
    }
    Err(ReadError::TooManyProblems { kind: kind.to_string() })
}

/// The value at a path.
fn lookup<'v>(value: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, segment| match (segment, v) {
        (Segment::Map { key }, Value::Object(map)) => map.get(key),
        (Segment::Seq { index }, Value::Array(items)) => items.get(*index),
        _ => None,
    })
}

/// Removes the value at a path; `false` when the path does not lead anywhere.
fn remove(value: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let parent = parents.iter().try_fold(value, |v, segment| match (segment, v) {
        (Segment::Map { key }, Value::Object(map)) => map.get_mut(key),
        (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
        _ => None,
    });
    match (last, parent) {
        (Segment::Map { key }, Some(Value::Object(map))) => map.remove(key).is_some(),
        (Segment::Seq { index }, Some(Value::Array(items))) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// `note[0].text`. Keys are the models' field names (only known fields are parsed, so
/// only they can fail); anything else is shown as `?` so no input text gets through.
fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let plain = key.len() <= 40 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                out.push_str(if plain { key } else { "?" });
            }
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Enum { .. } | Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A short description of an unreadable value, bounded whatever was sent.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\"", bounded(s, FOUND_CHARS)),
        Value::Number(n) => bounded(&n.to_string(), FOUND_CHARS),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Array(_) => "[…]".into(),
        Value::Object(_) => "{…}".into(),
    }
}

/// At most `max` characters of `text`, control characters blanked, `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(max).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observation(extra: Value) -> Value {
        let mut o = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "effectiveDateTime": "2026-06-10T08:00:00Z"});
        o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        o
    }

    fn read_observation(extra: Value) -> (super::super::model::Observation, Vec<IgnoredElement>) {
        match read_value(observation(extra)) {
            Ok(Read { resource: Resource::Observation(o), ignored }) => (o, ignored),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_readable_resource_has_nothing_ignored() {
        let (o, ignored) = read_observation(json!({"valueQuantity": {"value": 2.4, "unit": "mmol/L"}}));
        assert_eq!(o.value_quantity.and_then(|q| q.value), Some(2.4));
        assert!(ignored.is_empty() && o.value_problem.is_none());
    }

    #[test]
    fn elements_no_decision_needs_are_dropped_alone() {
        let (o, ignored) = read_observation(json!({"note": [{"text": 5}, {"text": "ok"}], "interpretation": "H",
            "code": {"coding": {"system": "http://loinc.org", "code": "2823-3", "display": 7}},
            "valueQuantity": {"value": 2.4}}));
        let elements: Vec<&str> = ignored.iter().map(|i| i.element.as_str()).collect();
        assert_eq!(elements, ["code.coding.display", "interpretation", "note[0].text"]);
        assert_eq!(o.note.len(), 2, "the note itself stays, without its unreadable text");
        assert_eq!(o.note[1].text.as_deref(), Some("ok"));
        assert_eq!(o.code.unwrap().first_code(), Some("2823-3"));
        assert_eq!(ignored[1].found, "\"H\"");
        assert!(ignored[1].reason().contains("was ignored"), "{}", ignored[1].reason());
    }

    #[test]
    fn an_unreadable_value_keeps_the_result_without_a_value() {
        for (value, problem) in [
            (json!({"value": "abc", "unit": "mmol/L"}), "value \"abc\""),
            (json!({"value": {}, "unit": "mmol/L"}), "value {…}"),
            (json!({"value": 2.4, "unit": {"text": "mmol/L"}}), "unit {…}"),
            (json!("2.4 mmol/L"), "\"2.4 mmol/L\""),
        ] {
            let (o, ignored) = read_observation(json!({"valueQuantity": value}));
            assert!(o.value_quantity.is_none(), "{value}");
            assert_eq!(o.value_problem.as_deref(), Some(problem));
            assert_eq!(ignored.len(), 1);
            assert!(ignored[0].value_lost && ignored[0].element == "valueQuantity");
            assert!(ignored[0].reason().contains("kept without a value"));
        }
        let long = "x".repeat(10_000);
        let (o, _) = read_observation(json!({"valueQuantity": {"value": long}}));
        let problem = o.value_problem.unwrap();
        assert!(problem.chars().count() <= VALUE_PROBLEM_CHARS, "{problem}");
    }

    #[test]
    fn an_unreadable_decision_element_skips_the_resource_and_names_it() {
        let err = read_value(observation(json!({"status": 5}))).unwrap_err();
        assert_eq!(
            err,
            ReadError::Unreadable { kind: "Observation".into(), element: "status".into(), found: "5".into() }
        );
        let err = read_value(observation(json!({"code": {"coding": [{"code": ["x"]}]}}))).unwrap_err();
        assert!(err.to_string().contains("element code.coding[0].code could not be read (found […])"), "{err}");
        let secret = format!("Jane Doe {}", "y".repeat(500));
        let err = read_value(observation(json!({"effectiveDateTime": {"text": secret.clone()}, "status": secret})));
        let text = err.unwrap_err().to_string();
        assert!(text.len() < 200 && !text.contains("yyyyyyyyyyyyyyyyyyyyyyy"), "{text}");
    }

    #[test]
    fn repairs_are_bounded() {
        let many: Vec<Value> = (0..5000).map(|_| json!(5)).collect();
        let started = std::time::Instant::now();
        let err = read_value(observation(json!({"note": many}))).unwrap_err();
        assert_eq!(err, ReadError::TooManyProblems { kind: "Observation".into() });
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        let few: Vec<Value> = (0..MAX_REPAIRS).map(|_| json!(5)).collect();
        assert!(read_value(observation(json!({"note": few}))).is_ok(), "up to the cap is repaired");
    }

    #[test]
    fn json_text_is_read_straight_or_tolerantly() {
        let text = r#"{"resourceType":"Observation","id":"o","note":"free text","status":"final"}"#;
        let read = read_json("Observation", text).unwrap();
        assert_eq!(read.ignored[0].element, "note");
        assert!(read_json("Observation", r#"{"resourceType":"Observation","status":"final"}"#)
            .unwrap()
            .ignored
            .is_empty());
        assert_eq!(read_value(json!({"id": "x"})).unwrap_err(), ReadError::NoResourceType);
        assert!(matches!(
            read_value(json!({"resourceType": "Encounter", "status": 5})),
            Ok(Read { resource: Resource::Other(_), .. })
        ));
    }

    #[test]
    fn bounded_text() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 5), "abcd…");
        assert_eq!(bounded("a\nb", 5), "a b");
        assert_eq!(bounded("ééééééé", 3).chars().count(), 3);
    }
}
