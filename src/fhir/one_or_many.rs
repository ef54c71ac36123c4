//! `#[serde(deserialize_with = "one_or_many")]` for the `Vec` fields of the FHIR models.
//!
//! Real clients send a single object where FHIR wants an array (the CDS Hooks Sandbox sends
//! `reasonCode` as one CodeableConcept; EHRs send `coding` as one Coding). Such a value is
//! read as a one-element array, and `null` as an empty one. The value is read in place, from
//! whatever deserializer is running: no intermediate `serde_json::Value` is built, so the
//! request's single-pass fast path stays single-pass.

use serde::de::value::{BoolDeserializer, F64Deserializer, I64Deserializer, MapAccessDeserializer, StrDeserializer};
use serde::de::value::{SeqAccessDeserializer, U64Deserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// An array as is; any other single value as a one-element array; `null` as empty.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(OneOrMany(PhantomData))
}

struct OneOrMany<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array, or a single element")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|one| vec![one])
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
        T::deserialize(StrDeserializer::<E>::new(v)).map(|one| vec![one])
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<T>, E> {
        T::deserialize(BoolDeserializer::<E>::new(v)).map(|one| vec![one])
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
        T::deserialize(I64Deserializer::<E>::new(v)).map(|one| vec![one])
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
        T::deserialize(U64Deserializer::<E>::new(v)).map(|one| vec![one])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<T>, E> {
        T::deserialize(F64Deserializer::<E>::new(v)).map(|one| vec![one])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Item {
        code: String,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Holder {
        #[serde(default, deserialize_with = "one_or_many")]
        items: Vec<Item>,
        #[serde(default, deserialize_with = "one_or_many")]
        words: Vec<String>,
        #[serde(default, deserialize_with = "one_or_many")]
        anything: Vec<Value>,
    }

    fn read(text: &str) -> Result<Holder, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn arrays_single_values_null_and_absence() {
        let many = read(r#"{"items": [{"code": "a"}, {"code": "b"}], "words": ["x", "y"]}"#).unwrap();
        assert_eq!(many.items.len(), 2);
        assert_eq!(many.words, ["x", "y"]);
        let one = read(r#"{"items": {"code": "a"}, "words": "x", "anything": 5}"#).unwrap();
        assert_eq!(one.items, [Item { code: "a".into() }]);
        assert_eq!(one.words, ["x"]);
        assert_eq!(one.anything, [json!(5)]);
        let none = read(r#"{"items": null, "words": null}"#).unwrap();
        assert!(none.items.is_empty() && none.words.is_empty());
        assert!(read("{}").unwrap().items.is_empty());
        let from_value: Holder = serde_json::from_value(json!({"items": {"code": "z"}, "anything": {"k": 1}})).unwrap();
        assert_eq!(from_value.items[0].code, "z");
        assert_eq!(from_value.anything, [json!({"k": 1})]);
    }

    #[test]
    fn a_bad_element_is_still_an_error_with_its_path() {
        assert!(read(r#"{"items": "not an item"}"#).is_err());
        assert!(read(r#"{"items": [{"code": 5}]}"#).is_err());
        let text = r#"{"items": {"code": 5}}"#;
        let err = serde_path_to_error::deserialize::<_, Holder>(&mut serde_json::Deserializer::from_str(text));
        assert_eq!(err.unwrap_err().path().to_string(), "items.code");
        let text = r#"{"items": [{"code": "a"}, {"code": 5}]}"#;
        let err = serde_path_to_error::deserialize::<_, Holder>(&mut serde_json::Deserializer::from_str(text));
        assert_eq!(err.unwrap_err().path().to_string(), "items[1].code");
    }
}
