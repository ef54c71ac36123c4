//! A resource's `resourceType` and `id`, read from its leading members without building the
//! rest: how raw resources are labelled before the tolerant reader reads them.

use serde::Deserialize;

/// `resourceType` and `id` of a resource from its leading members, without scanning the
/// rest: FHIR JSON conventionally starts with them. `None` when the text does not start
/// that way (the caller then reads it properly).
pub fn fast_head(text: &str) -> Option<(&str, Option<&str>)> {
    let b = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // A JSON string without escapes, starting at b[*i] == '"'.
    let string = |i: &mut usize| -> Option<&str> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        let start = *i + 1;
        let len = b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[start + len] != b'"' {
            return None;
        }
        *i = start + len + 1;
        text.get(start..start + len)
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let (mut kind, mut id) = (None, None);
    for _ in 0..4 {
        skip_ws(&mut i);
        let key = string(&mut i)?;
        skip_ws(&mut i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let value = string(&mut i)?;
        match key {
            "resourceType" => kind = Some(value),
            "id" => id = Some(value),
            _ => {}
        }
        if let (Some(k), Some(_)) = (kind, id) {
            return Some((k, id));
        }
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return kind.map(|k| (k, id)),
            _ => return None,
        }
    }
    None
}

/// The first two top-level members of a resource, read without building the rest.
#[derive(Deserialize)]
pub struct ResourceHead<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    pub resource_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<std::borrow::Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_head_reads_leading_members_or_declines() {
        assert_eq!(
            fast_head(r#"{"resourceType": "Observation", "id": "o1", "status": {"x": 1}}"#),
            Some(("Observation", Some("o1")))
        );
        assert_eq!(fast_head(r#" { "id":"p", "resourceType":"Patient"} "#), Some(("Patient", Some("p"))));
        assert_eq!(
            fast_head(r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#),
            None,
            "id not among leading strings"
        );
        assert_eq!(fast_head(r#"{"resourceType":"Bundle"}"#), Some(("Bundle", None)));
        assert_eq!(fast_head(r#"{"meta":{},"resourceType":"Patient"}"#), None);
        assert_eq!(fast_head(r#"{"resourceType":"Pat\u0069ent"}"#), None, "escapes decline");
        assert_eq!(fast_head("[1]"), None);
    }
}
