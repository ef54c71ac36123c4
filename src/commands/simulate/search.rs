//! Answering a service's prefetch templates from one patient's record, as the EHR's FHIR
//! server would: `Patient/{id}` is the Patient; `Type?params` is a searchset Bundle of the
//! record's resources of that type that match. The parameters the services' templates use are
//! supported (`patient`/`subject`, `status`, `category`, `code`, `_sort=date|-date`, `_count`);
//! a template with any other parameter is refused when the simulation starts, never guessed.

use super::record::{PatientRecord, Resource};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// `Patient/{id}`: a read of the patient.
    ReadPatient,
    Query {
        kind: String,
        filters: Vec<Filter>,
        sort: Option<SortDate>,
        count: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Status(Vec<String>),
    Category(Vec<Token>),
    Code(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SortDate {
    Ascending,
    Descending,
}

/// A token search value: `system|code`, `|code` (no system) or `code` (any system).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    system: Option<String>,
    code: String,
}

impl Token {
    fn parse(text: &str) -> Token {
        match text.split_once('|') {
            Some((system, code)) => Token { system: Some(system.to_string()), code: code.to_string() },
            None => Token { system: None, code: text.to_string() },
        }
    }

    fn matches(&self, coding: &Value) -> bool {
        let code = coding.get("code").and_then(Value::as_str);
        let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
        code == Some(self.code.as_str()) && self.system.as_deref().is_none_or(|s| s == system)
    }
}

/// Parses a rendered template (`Observation?patient=p1&category=laboratory&_sort=-date`).
pub fn parse(query: &str) -> Result<Search, String> {
    let (path, params) = query.split_once('?').unwrap_or((query, ""));
    if let Some(("Patient", _)) = path.split_once('/') {
        return Ok(Search::ReadPatient);
    }
    if path.is_empty() || path.contains('/') {
        return Err(format!("'{path}' is not a resource type or a Patient read"));
    }
    let mut filters = Vec::new();
    let (mut sort, mut count) = (None, None);
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("parameter '{pair}' has no value"))?;
        let value = url::form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let list = || value.split(',').map(str::to_string).collect::<Vec<_>>();
        let tokens = || value.split(',').map(Token::parse).collect::<Vec<_>>();
        match name {
            // Every resource of a record already belongs to its patient (grouped by subject,
            // or one patient per Bundle, whose references may be urn:uuid ones).
            "patient" | "subject" => {}
            "status" => filters.push(Filter::Status(list())),
            "category" => filters.push(Filter::Category(tokens())),
            "code" => filters.push(Filter::Code(tokens())),
            "_sort" if value == "date" => sort = Some(SortDate::Ascending),
            "_sort" if value == "-date" => sort = Some(SortDate::Descending),
            "_count" => count = Some(value.parse().map_err(|_| format!("_count '{value}' is not a number"))?),
            other => return Err(format!("parameter '{other}={value}' is not one the simulation answers")),
        }
    }
    Ok(Search::Query { kind: path.to_string(), filters, sort, count })
}

fn codings(concept: Option<&Value>) -> impl Iterator<Item = &Value> {
    // `category` is an array of CodeableConcepts, `code` a CodeableConcept; a lone object
    // where an array belongs is read as one element, as the service reads it.
    let concepts: Vec<&Value> = match concept {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    concepts.into_iter().flat_map(|c| match c.get("coding") {
        Some(Value::Array(codings)) => codings.iter().collect::<Vec<_>>(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    })
}

impl Filter {
    fn matches(&self, r: &Resource<'_>) -> bool {
        match self {
            Filter::Status(allowed) => r.head.status().is_some_and(|s| allowed.iter().any(|a| a == s)),
            Filter::Category(tokens) => codings(r.head.category.as_ref()).any(|c| tokens.iter().any(|t| t.matches(c))),
            Filter::Code(tokens) => codings(r.head.code.as_ref()).any(|c| tokens.iter().any(|t| t.matches(c))),
        }
    }
}

impl Search {
    /// The prefetch value: the Patient's text, a searchset Bundle's text, or `null` when the
    /// record has no Patient.
    pub fn answer(&self, record: &PatientRecord<'_>) -> String {
        match self {
            Search::ReadPatient => record.patient().map_or_else(|| "null".to_string(), |p| p.text.to_string()),
            Search::Query { kind, filters, sort, count } => {
                let mut hits: Vec<&Resource<'_>> = record
                    .resources
                    .iter()
                    .filter(|r| r.head.resource_type == *kind && filters.iter().all(|f| f.matches(r)))
                    .collect();
                if let Some(order) = sort {
                    // Undated resources last, as a server sorting on a missing value does.
                    hits.sort_by(|a, b| match (a.head.date(), b.head.date(), order) {
                        (Some(x), Some(y), SortDate::Ascending) => x.cmp(y),
                        (Some(x), Some(y), SortDate::Descending) => y.cmp(x),
                        (x, y, _) => y.is_some().cmp(&x.is_some()),
                    });
                }
                if let Some(n) = count {
                    hits.truncate(*n);
                }
                searchset(&hits)
            }
        }
    }
}

/// A searchset Bundle around the resources' own text.
pub fn searchset(resources: &[&Resource<'_>]) -> String {
    bundle("searchset", resources)
}

pub fn bundle(kind: &str, resources: &[&Resource<'_>]) -> String {
    let size: usize = resources.iter().map(|r| r.text.len() + 16).sum();
    let mut out = String::with_capacity(size + 96);
    out.push_str(&format!("{{\"resourceType\":\"Bundle\",\"type\":\"{kind}\""));
    if kind == "searchset" {
        out.push_str(&format!(",\"total\":{}", resources.len()));
    }
    out.push_str(",\"entry\":[");
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":");
        out.push_str(&r.text);
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PatientRecord<'static> {
        let r = |t: &'static str| Resource::parse(t).unwrap();
        PatientRecord {
            id: "p".into(),
            resources: vec![
                r(r#"{"resourceType":"Patient","id":"p"}"#),
                r(
                    r#"{"resourceType":"Observation","id":"old","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},"effectiveDateTime":"2026-01-01"}"#,
                ),
                r(
                    r#"{"resourceType":"Observation","id":"new","status":"final","category":{"coding":{"code":"laboratory"}},"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2026-03-01"}"#,
                ),
                r(
                    r#"{"resourceType":"Observation","id":"vital","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}"#,
                ),
                r(r#"{"resourceType":"MedicationRequest","id":"d","status":"draft"}"#),
                r(r#"{"resourceType":"MedicationRequest","id":"a","status":"active"}"#),
            ],
        }
    }

    fn ids(bundle: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(bundle).unwrap();
        v["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn the_services_templates_are_answered_like_a_fhir_server() {
        let rec = record();
        let labs = parse("Observation?patient=p&category=laboratory&_sort=-date&_count=200").unwrap();
        assert_eq!(ids(&labs.answer(&rec)), ["new", "old"]);
        let latest_hr = parse("Observation?patient=p&code=http://loinc.org|8867-4&_sort=-date&_count=1").unwrap();
        assert_eq!(ids(&latest_hr.answer(&rec)), ["new"], "dated before undated");
        let any_system = parse("Observation?code=8867-4,2823-3&_sort=date").unwrap();
        assert_eq!(ids(&any_system.answer(&rec)), ["old", "new", "vital"]);
        let active = parse("MedicationRequest?patient=p&status=active").unwrap();
        assert_eq!(ids(&active.answer(&rec)), ["a"]);
        let answer: Value = serde_json::from_str(&active.answer(&rec)).unwrap();
        assert_eq!((answer["type"].as_str(), answer["total"].as_u64()), (Some("searchset"), Some(1)));
        assert_eq!(parse("Patient/p").unwrap().answer(&rec), r#"{"resourceType":"Patient","id":"p"}"#);
        assert_eq!(ids(&parse("Condition?patient=p").unwrap().answer(&rec)), Vec::<String>::new());
    }

    #[test]
    fn parameters_it_cannot_answer_are_refused() {
        assert!(parse("Observation?patient=p&date=ge2026").unwrap_err().contains("date=ge2026"));
        assert!(parse("Observation?_count=lots").is_err());
        assert!(parse("Practitioner/1/x").is_err());
    }
}
