//! One path per service of the catalog, with the request the service accepts: its own hook
//! and that hook's context schema, as the service validates them. They replace the templated
//! `/cds-services/{id}` and `/cds-services/{id}/feedback` of the annotations: an id no
//! service has is a path that does not exist (404), and a templated path would invite
//! clients and testers to send one service's request to another.

use crate::protocol::schemas::KNOWN_HOOKS;
use crate::protocol::ServiceDefinition;
use serde_json::{json, Map, Value};

const CALL: &str = "/cds-services/{id}";
const FEEDBACK: &str = "/cds-services/{id}/feedback";

pub fn expand(doc: &mut Value, services: &[ServiceDefinition]) {
    let call = doc["paths"][CALL]["post"].clone();
    let feedback = doc["paths"][FEEDBACK]["post"].clone();
    for service in services {
        let request = format!("CdsRequest.{}", service.id);
        doc["components"]["schemas"][&request] = request_schema(service);
        let mut op = concrete(&call, &service.id, "call");
        op["summary"] = json!(format!("{} ({})", service.title.as_deref().unwrap_or(&service.id), service.hook));
        op["description"] = json!(service.description);
        op["requestBody"] = body(&request);
        doc["paths"][format!("/cds-services/{}", service.id)] = json!({ "post": op });
        let mut op = concrete(&feedback, &service.id, "feedback");
        op["requestBody"] = body("FeedbackRequest");
        doc["paths"][format!("/cds-services/{}/feedback", service.id)] = json!({ "post": op });
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.remove(CALL);
        paths.remove(FEEDBACK);
    }
}

/// The templated operation for one service: no path parameter.
fn concrete(template: &Value, id: &str, kind: &str) -> Value {
    let mut op = template.clone();
    if let Some(op) = op.as_object_mut() {
        op.remove("parameters");
        op.insert("operationId".into(), json!(format!("{kind}_{id}")));
    }
    op
}

fn body(component: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{component}")}}}})
}

/// The request envelope of `request.schema.json`, with this service's hook, the context
/// schema of that hook, and the prefetch keys it asks for: all of them, or a `fhirServer`
/// to fetch the missing ones from.
fn request_schema(service: &ServiceDefinition) -> Value {
    let mut properties = Map::new();
    properties.insert("hook".into(), json!({"const": service.hook}));
    if KNOWN_HOOKS.contains(&service.hook.as_str()) {
        let context = format!("#/components/schemas/CdsRequest/$defs/contexts/{}", service.hook);
        properties.insert("context".into(), json!({ "$ref": context }));
    }
    let keys: Map<String, Value> = service
        .prefetch
        .iter()
        .map(|(key, template)| {
            let description = format!("Prefetch template `{}`", template.as_str());
            let value = json!({"description": description,
                "$ref": "#/components/schemas/CdsRequest/properties/prefetch/additionalProperties"});
            (key.clone(), value)
        })
        .collect();
    let mut schema = json!({
        "description": format!("A `{}` call of service `{}`", service.hook, service.id),
        "allOf": [{"$ref": "#/components/schemas/CdsRequest"}],
    });
    if !keys.is_empty() {
        // The data comes with the request, or from the FHIR server; without either the
        // answer is 412 (so is a key sent as an OperationOutcome that cannot be fetched).
        let names: Vec<&String> = keys.keys().collect();
        schema["anyOf"] = json!([
            {"required": ["prefetch"], "properties": {"prefetch": {"required": names}}},
            {"required": ["fhirServer"]},
        ]);
        properties.insert("prefetch".into(), json!({ "properties": keys }));
    }
    schema["properties"] = Value::Object(properties);
    schema
}
