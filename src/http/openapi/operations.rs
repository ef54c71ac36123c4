//! What every operation shares, added to each so that the description says it where it
//! applies: HEAD beside GET, OPTIONS on every path, authentication (401 and the bearer
//! scheme) or the `Host` rule (421), the errors of reading a body, 500, and the
//! OperationOutcome body of every error as `application/fhir+json`.

use super::Deployment;
use crate::http::routes::{POST_ONLY, READ_ONLY};
use serde_json::{json, Map, Value};

const OUTCOME: &str = "#/components/schemas/OperationOutcome";

/// Whether an operation of this path item carries `tag`.
pub fn tagged(item: &Value, tag: &str) -> bool {
    item.as_object().is_some_and(|ops| {
        ops.values().any(|op| op["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == tag)))
    })
}

pub fn complete(doc: &mut Value, deployment: &Deployment) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            authentication(path, op, deployment);
        }
        if let Some(get) = item.get("get") {
            let head = head_of(get);
            item.insert("head".into(), head);
        }
        let options = options_of(path, item);
        item.insert("options".into(), options);
        for (method, op) in item.iter_mut() {
            shared_errors(method, op, deployment.authenticated);
            outcome_bodies(op);
        }
    }
    if deployment.authenticated {
        doc["components"]["securitySchemes"]["bearerAuth"] = json!({
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A JWT signed by a trusted issuer (CDS Hooks 2.0.1 §Trusting CDS Clients): `aud` is the URL called, `jti` is used once."
        });
    }
}

/// An operation that documents 401 checks the caller's JWT: with authentication on it
/// declares the bearer scheme; with it off (or discovery left open) 401 cannot happen.
fn authentication(path: &str, op: &mut Value, deployment: &Deployment) {
    let Some(op) = op.as_object_mut() else { return };
    let checks_jwt = op.get("responses").is_some_and(|r| r.get("401").is_some());
    let open = !deployment.authenticated || (path == "/cds-services" && deployment.open_discovery);
    if checks_jwt && open {
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            responses.remove("401");
        }
    } else if checks_jwt {
        op.insert("security".into(), json!([{"bearerAuth": []}]));
    }
}

/// HEAD answers as GET does, headers only.
fn head_of(get: &Value) -> Value {
    let mut head = get.clone();
    if let Some(id) = get["operationId"].as_str() {
        head["operationId"] = json!(format!("{id}_head"));
    }
    head["summary"] = json!(format!("Headers of GET: {}", get["summary"].as_str().unwrap_or_default()));
    if let Some(responses) = head["responses"].as_object_mut() {
        for response in responses.values_mut() {
            if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                // The media type is sent as Content-Type; there is no body to describe.
                content.values_mut().for_each(|media| *media = json!({}));
            }
        }
    }
    head
}

/// OPTIONS: 200 with the resource's methods in `Allow` (the same list a 405 carries), and
/// for a CORS preflight the `Access-Control-Allow-*` headers.
fn options_of(path: &str, item: &Map<String, Value>) -> Value {
    let allow = if item.contains_key("post") { POST_ONLY } else { READ_ONLY };
    let first = item.values().next().cloned().unwrap_or_default();
    let id: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut op = json!({
        "operationId": format!("options{id}"),
        "summary": "The methods of this resource; CORS preflight",
        "responses": {"200": {
            "description": "`Allow` lists the methods. A CORS preflight (with `Access-Control-Request-Method`) also gets `Access-Control-Allow-Methods` (the same list), `-Headers` and `-Max-Age`; `Access-Control-Allow-Origin` when the origin is allowed.",
            "headers": {
                "Allow": {"required": true, "schema": {"type": "string", "const": allow}},
                "Access-Control-Allow-Methods": {"schema": {"type": "string", "const": allow}},
                "Access-Control-Allow-Headers": {"schema": {"type": "string"}},
                "Access-Control-Max-Age": {"schema": {"type": "string"}},
            }
        }}
    });
    add_response(&mut op, "403", "a CORS preflight from an origin that --cors-origin does not allow");
    if let Some(tags) = first.get("tags") {
        op["tags"] = tags.clone();
    }
    // The resource answers OPTIONS for any value of its path parameters (an unknown service
    // id too); the query string does not matter.
    let path_parameters: Vec<Value> = first["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path")
        .map(|p| json!({"name": p["name"], "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if !path_parameters.is_empty() {
        op["parameters"] = Value::Array(path_parameters);
    }
    op
}

/// Adds `status` with `description`, or appends the description to an existing one.
fn add_response(op: &mut Value, status: &str, description: &str) {
    let response = &mut op["responses"][status];
    match response["description"].as_str() {
        Some(existing) if !existing.contains(description) => {
            response["description"] = json!(format!("{existing}; or {description}"));
        }
        Some(_) => {}
        None => *response = json!({ "description": description }),
    }
}

fn shared_errors(method: &str, op: &mut Value, authenticated: bool) {
    if !authenticated {
        add_response(op, "400", "a missing, repeated or malformed Host header");
        add_response(
            op,
            "421",
            "authentication is off and the Host header names neither a loopback name (localhost, 127.0.0.0/8, [::1]) nor the host of --public-url (DNS-rebinding protection)",
        );
    }
    if method == "post" {
        if op.get("requestBody").is_some() {
            add_response(op, "400", "an empty body or one that is not JSON");
            add_response(op, "408", "the body did not arrive within --request-timeout");
            add_response(op, "413", "the body exceeds --max-body");
            add_response(op, "415", "Content-Type is neither application/json nor another +json type");
        }
        add_response(op, "503", "too many request bodies are in flight: retry after `Retry-After` seconds");
        op["responses"]["503"]["headers"]["Retry-After"] = json!({
            "description": "Seconds to wait before retrying (when the bound of bodies in flight was reached)",
            "schema": {"type": "integer", "minimum": 0}
        });
    }
    add_response(op, "500", "an internal error; the request was not processed");
}

/// Every error answer is an OperationOutcome sent as `application/fhir+json`.
fn outcome_bodies(op: &mut Value) {
    let head = op["operationId"].as_str().is_some_and(|id| id.ends_with("_head"));
    let Some(responses) = op["responses"].as_object_mut() else { return };
    for (status, response) in responses.iter_mut() {
        if status.parse::<u16>().is_ok_and(|s| s >= 400) {
            response["content"] = if head {
                json!({"application/fhir+json": {}})
            } else {
                json!({"application/fhir+json": {"schema": {"$ref": OUTCOME}}})
            };
        }
    }
}
