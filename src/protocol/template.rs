//! Prefetch templates (`Observation?patient={{context.patientId}}`): parsed once into text and
//! tokens, checked against the hook's allowed tokens at load, rendered against a request's
//! context when the service fetches what the client did not send.

use super::request::Context;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{{{' in template {0:?}")]
    Unclosed(String),
    #[error("unmatched '}}}}' in template {0:?}")]
    Unmatched(String),
    #[error("token {{{{{0}}}}} has no value in this request")]
    NoValue(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A `{{token}}`, trimmed.
    Token(String),
}

/// A prefetch template, parsed once when read (from `services.json` or a test). It is written
/// back as the text it was read from; a malformed one is kept with its problem, which the
/// catalogue's load check reports ([`PrefetchTemplate::problem`]).
#[derive(Debug, Clone)]
pub struct PrefetchTemplate {
    source: String,
    parsed: Result<Vec<Part>, TemplateError>,
}

impl PrefetchTemplate {
    /// Parses a template; `Err` names the first malformed token.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let read = Self::from(template);
        match read.parsed {
            Ok(_) => Ok(read),
            Err(e) => Err(e),
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Why the template is malformed, if it is.
    pub fn problem(&self) -> Option<&TemplateError> {
        self.parsed.as_ref().err()
    }

    fn split(template: &str) -> Result<Vec<Part>, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
            parts.push(Part::Text(rest[..start].to_string()));
            parts.push(Part::Token(after[..end].trim().to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(TemplateError::Unmatched(template.to_string()));
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(parts)
    }

    /// Every `{{token}}`, in order (none for a malformed template).
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.parsed.as_deref().unwrap_or_default().iter().filter_map(|p| match p {
            Part::Token(t) => Some(t.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The query with each token replaced by its value in `context`, percent-encoded.
    pub fn render(&self, context: &Context) -> Result<String, TemplateError> {
        let parts = self.parsed.as_ref().map_err(Clone::clone)?;
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Token(token) => {
                    let value = token_value(token, context).ok_or_else(|| TemplateError::NoValue(token.clone()))?;
                    out.push_str(&percent_encode(&value));
                }
            }
        }
        Ok(out)
    }
}

impl From<&str> for PrefetchTemplate {
    fn from(template: &str) -> Self {
        Self { source: template.to_string(), parsed: Self::split(template) }
    }
}

impl PartialEq for PrefetchTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for PrefetchTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for PrefetchTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self::from(s.as_str()))
    }
}

/// A CDS Hooks 2.0 token's value: a root-level context field, or the id of the user when the
/// user is of the token's kind (`userPractitionerId` of `Practitioner/…`).
fn token_value(token: &str, context: &Context) -> Option<String> {
    if let Some(field) = token.strip_prefix("context.") {
        return context.token(field).map(str::to_string);
    }
    let user = context.user_id.as_deref()?;
    let (kind, id) = user.split_once('/')?;
    let wanted = match token {
        "userPractitionerId" => "Practitioner",
        "userPractitionerRoleId" => "PractitionerRole",
        "userPatientId" => "Patient",
        "userRelatedPersonId" => "RelatedPerson",
        _ => return None,
    };
    (kind == wanted).then(|| id.to_string())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_once_and_render_with_encoded_tokens() {
        let t = PrefetchTemplate::parse("Condition?patient={{ context.patientId }}&u={{userPractitionerId}}").unwrap();
        assert_eq!(t.tokens().collect::<Vec<_>>(), ["context.patientId", "userPractitionerId"]);
        let ctx = Context {
            user_id: Some("Practitioner/dr1".into()),
            patient_id: Some("p 1&x=y".into()),
            ..Default::default()
        };
        assert_eq!(t.render(&ctx).unwrap(), "Condition?patient=p%201%26x%3Dy&u=dr1");
        let none = PrefetchTemplate::parse("Encounter/{{context.encounterId}}").unwrap().render(&ctx).unwrap_err();
        assert_eq!(none.to_string(), "token {{context.encounterId}} has no value in this request");
        let unclosed = PrefetchTemplate::parse("Patient/{{context.patientId").unwrap_err();
        assert_eq!(unclosed.to_string(), "unclosed '{{' in template \"Patient/{{context.patientId\"");
        assert!(matches!(PrefetchTemplate::parse("Patient/x}}"), Err(TemplateError::Unmatched(_))));
        let kept: PrefetchTemplate = serde_json::from_str(r#""Patient/{{x""#).unwrap();
        assert_eq!((kept.as_str(), kept.problem().is_some()), ("Patient/{{x", true));
        assert_eq!(serde_json::to_string(&kept).unwrap(), r#""Patient/{{x""#);
    }

    fn render_template(template: &str, context: &Context) -> Result<String, TemplateError> {
        PrefetchTemplate::parse(template)?.render(context)
    }

    #[test]
    fn templates_render_with_encoded_tokens() {
        let ctx = Context {
            user_id: Some("Practitioner/dr1".into()),
            patient_id: Some("p 1&x=y".into()),
            ..Default::default()
        };
        assert_eq!(
            render_template("Condition?patient={{context.patientId}}", &ctx).unwrap(),
            "Condition?patient=p%201%26x%3Dy"
        );
        assert_eq!(render_template("Practitioner/{{userPractitionerId}}", &ctx).unwrap(), "Practitioner/dr1");
        assert!(render_template("Patient/{{userPatientId}}", &ctx).is_err());
        assert!(render_template("Encounter/{{context.encounterId}}", &ctx).is_err());
    }
}
