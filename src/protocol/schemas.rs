//! The JSON Schemas of `schemas/`, embedded in the binary and compiled once at start-up.
//!
//! Draft 2020-12, cross-file `$ref`s resolved through an offline registry: nothing is fetched.

use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;
use std::collections::HashMap;

const BASE: &str = "https://leg-cramp-cds.local/schemas/";

/// (file name, contents) of every schema, embedded at build time so the binary needs no files.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    ("common.schema.json", include_str!("../../schemas/common.schema.json")),
    ("card.schema.json", include_str!("../../schemas/card.schema.json")),
    ("request.schema.json", include_str!("../../schemas/request.schema.json")),
    ("response.schema.json", include_str!("../../schemas/response.schema.json")),
    ("discovery.schema.json", include_str!("../../schemas/discovery.schema.json")),
    ("feedback.schema.json", include_str!("../../schemas/feedback.schema.json")),
    ("rule.schema.json", include_str!("../../schemas/rule.schema.json")),
    ("valueset.schema.json", include_str!("../../schemas/valueset.schema.json")),
    ("lab-orders.schema.json", include_str!("../../schemas/lab-orders.schema.json")),
    ("merged-cards.schema.json", include_str!("../../schemas/merged-cards.schema.json")),
    ("units.schema.json", include_str!("../../schemas/units.schema.json")),
    ("brands.schema.json", include_str!("../../schemas/brands.schema.json")),
    ("medication-forms.schema.json", include_str!("../../schemas/medication-forms.schema.json")),
];

/// Hooks whose context has a schema in request.schema.json `$defs/contexts`.
pub const KNOWN_HOOKS: &[&str] =
    &["patient-view", "order-select", "order-sign", "encounter-start", "encounter-discharge", "appointment-book"];

/// One violation: where (a JSON pointer into the instance) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{at}: {}", self.message)
    }
}

/// Which document a value claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    Request,
    Response,
    Discovery,
    Feedback,
    Rule,
    ValueSet,
    LabOrders,
    MergedCards,
    Units,
    Brands,
    MedicationForms,
}

pub struct SchemaSet {
    documents: HashMap<Document, Validator>,
    contexts: HashMap<&'static str, Validator>,
}

impl SchemaSet {
    /// Compiles every schema. Fails only if the embedded schemas themselves are broken,
    /// which the unit tests below rule out.
    pub fn compile() -> Result<Self, String> {
        let parsed: Vec<(String, Value)> = SCHEMA_FILES
            .iter()
            .map(|(name, text)| {
                serde_json::from_str(text)
                    .map(|v| (format!("{BASE}{name}"), v))
                    .map_err(|e| format!("schemas/{name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut builder = Registry::new().draft(Draft::Draft202012);
        for (uri, schema) in &parsed {
            builder = builder.add(uri, schema.clone()).map_err(|e| format!("{uri}: {e}"))?;
        }
        let registry = builder.prepare().map_err(|e| format!("schema registry: {e}"))?;
        let build = |reference: String| -> Result<Validator, String> {
            jsonschema::options()
                .with_draft(Draft::Draft202012)
                .should_validate_formats(true)
                .with_registry(&registry)
                .build(&serde_json::json!({ "$ref": reference }))
                .map_err(|e| format!("{reference}: {e}"))
        };
        let mut documents = HashMap::new();
        for (doc, file) in [
            (Document::Request, "request.schema.json"),
            (Document::Response, "response.schema.json"),
            (Document::Discovery, "discovery.schema.json"),
            (Document::Feedback, "feedback.schema.json"),
            (Document::Rule, "rule.schema.json"),
            (Document::ValueSet, "valueset.schema.json"),
            (Document::LabOrders, "lab-orders.schema.json"),
            (Document::MergedCards, "merged-cards.schema.json"),
            (Document::Units, "units.schema.json"),
            (Document::Brands, "brands.schema.json"),
            (Document::MedicationForms, "medication-forms.schema.json"),
        ] {
            documents.insert(doc, build(format!("{BASE}{file}"))?);
        }
        let mut contexts = HashMap::new();
        for hook in KNOWN_HOOKS {
            contexts.insert(*hook, build(format!("{BASE}request.schema.json#/$defs/contexts/{hook}"))?);
        }
        Ok(Self { documents, contexts })
    }

    pub fn validate(&self, document: Document, instance: &Value) -> Result<(), Vec<SchemaError>> {
        collect(&self.documents[&document], instance, "")
    }

    /// Validates a hook's `context` object; pointers are prefixed with `/context`.
    /// Hooks without a known context definition pass (their contexts are opaque to us).
    pub fn validate_context(&self, hook: &str, context: &Value) -> Result<(), Vec<SchemaError>> {
        match self.contexts.get(hook) {
            Some(v) => collect(v, context, "/context"),
            None => Ok(()),
        }
    }
}

/// At most this many violations are reported for one document: enough to fix a request,
/// bounded so a hostile body cannot make the error response huge.
const MAX_REPORTED: usize = 10;

fn collect(validator: &Validator, instance: &Value, prefix: &str) -> Result<(), Vec<SchemaError>> {
    if validator.is_valid(instance) {
        return Ok(());
    }
    let errors: Vec<SchemaError> = validator
        .iter_errors(instance)
        .take(MAX_REPORTED)
        .map(|e| {
            let mut pointer = format!("{prefix}{}", e.instance_path().as_str());
            // A missing field is reported on its parent; point at the field itself.
            if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                if let Some(name) = property.as_str() {
                    pointer = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
                    return SchemaError { pointer, message: "required field is missing".into() };
                }
            }
            // masked(): never echo instance values (they may be patient data) in messages.
            SchemaError { pointer, message: e.masked().to_string() }
        })
        .collect();
    Err(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_schemas_compile() {
        SchemaSet::compile().expect("embedded schemas compile");
    }

    #[test]
    fn missing_field_points_at_the_field() {
        let s = SchemaSet::compile().unwrap();
        let errs = s.validate(Document::Request, &json!({"hook": "patient-view", "context": {}})).unwrap_err();
        assert_eq!(errs[0].pointer, "/hookInstance");
        let errs = s.validate_context("patient-view", &json!({"userId": "Practitioner/1"})).unwrap_err();
        assert_eq!(errs[0].pointer, "/context/patientId");
    }

    #[test]
    fn messages_do_not_echo_values() {
        let s = SchemaSet::compile().unwrap();
        let errs = s
            .validate(Document::Request, &json!({"hook": "patient-view", "hookInstance": "SECRET-NAME", "context": {}}))
            .unwrap_err();
        assert!(!errs[0].message.contains("SECRET-NAME"), "{}", errs[0].message);
    }
}
