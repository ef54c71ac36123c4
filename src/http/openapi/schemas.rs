//! Request bodies from the JSON Schemas the service validates with (`schemas/`), one source
//! of truth: OpenAPI 3.1 schemas are JSON Schema 2020-12, so a file becomes a component as
//! it is, its `$ref`s re-pointed into `#/components/schemas`.

use crate::protocol::schemas::SCHEMA_FILES;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Schema files that are request bodies, and their component names. Files they refer to
/// come along under their own stem (`common.schema.json` is `common`).
const REQUEST_BODIES: &[(&str, &str)] =
    &[("request.schema.json", "CdsRequest"), ("feedback.schema.json", "FeedbackRequest")];

const COMPONENTS: &str = "#/components/schemas/";

fn component_name(file: &str) -> String {
    match REQUEST_BODIES.iter().find(|(f, _)| *f == file) {
        Some((_, name)) => (*name).to_string(),
        None => file.trim_end_matches(".schema.json").to_string(),
    }
}

/// Adds the request schemas, and those they refer to, to `components.schemas`.
pub fn import_request_schemas(doc: &mut Value) {
    let mut pending: Vec<String> = REQUEST_BODIES.iter().map(|(file, _)| (*file).to_string()).collect();
    let mut done = BTreeSet::new();
    while let Some(file) = pending.pop() {
        if !done.insert(file.clone()) {
            continue;
        }
        // The files are embedded and compiled at start-up: a missing or broken one cannot
        // get this far (the unit tests of protocol::schemas compile them all).
        let Some((_, text)) = SCHEMA_FILES.iter().find(|(name, _)| *name == file) else { continue };
        let Ok(mut schema) = serde_json::from_str::<Value>(text) else { continue };
        if let Some(root) = schema.as_object_mut() {
            // `$id` would re-base the references; `$schema` belongs to a document's root.
            root.remove("$id");
            root.remove("$schema");
        }
        let own = component_name(&file);
        rewrite_refs(&mut schema, &own, &mut pending);
        doc["components"]["schemas"][own] = schema;
    }
}

/// `#/$defs/x` → `#/components/schemas/<own>/$defs/x`; `other.schema.json#/$defs/x` →
/// `#/components/schemas/other/$defs/x` (and `other.schema.json` is queued for import).
fn rewrite_refs(value: &mut Value, own: &str, referenced: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                let (file, fragment) = reference.split_once('#').unwrap_or((reference.as_str(), ""));
                let target = if file.is_empty() {
                    own.to_string()
                } else {
                    referenced.push(file.to_string());
                    component_name(file)
                };
                *reference = format!("{COMPONENTS}{target}{fragment}");
            }
            map.values_mut().for_each(|v| rewrite_refs(v, own, referenced));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, own, referenced)),
        _ => {}
    }
}

/// Every `$ref` string anywhere in `value`.
pub fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Removes the component schemas nothing reachable from the paths refers to (the Rust
/// types' own nested schemas that a JSON-Schema component replaced, for instance).
pub fn prune_unreferenced(doc: &mut Value) {
    let Some(components) = doc["components"]["schemas"].as_object().cloned() else { return };
    let mut reachable = BTreeSet::new();
    let mut queue = Vec::new();
    collect_refs(&doc["paths"], &mut queue);
    while let Some(reference) = queue.pop() {
        let Some(name) = reference.strip_prefix(COMPONENTS).map(|rest| rest.split('/').next().unwrap_or(rest)) else {
            continue;
        };
        if reachable.insert(name.to_string()) {
            if let Some(schema) = components.get(name) {
                collect_refs(schema, &mut queue);
            }
        }
    }
    let kept: Map<String, Value> = components.into_iter().filter(|(name, _)| reachable.contains(name)).collect();
    doc["components"]["schemas"] = Value::Object(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_schemas_come_from_the_schema_files_with_references_re_pointed() {
        let mut doc = serde_json::json!({"components": {"schemas": {}}});
        import_request_schemas(&mut doc);
        let request = &doc["components"]["schemas"]["CdsRequest"];
        assert!(request.get("$id").is_none());
        assert_eq!(request["properties"]["hookInstance"]["$ref"], "#/components/schemas/common/$defs/uuid");
        assert_eq!(
            request["properties"]["fhirAuthorization"]["$ref"],
            "#/components/schemas/CdsRequest/$defs/fhirAuthorization"
        );
        assert_eq!(doc["components"]["schemas"]["common"]["$defs"]["uuid"]["format"], "uuid");
        assert_eq!(doc["components"]["schemas"]["FeedbackRequest"]["properties"]["feedback"]["minItems"], 1);
    }
}
