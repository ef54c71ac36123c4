//! `GET /openapi.json`: the OpenAPI 3.1 description of what this deployment enforces.
//!
//! Three sources, so that it cannot drift from the code:
//! - the handlers' annotations and the Rust types they answer with (utoipa): paths,
//!   summaries, response bodies;
//! - the JSON Schemas of `schemas/` that the service validates requests with: request
//!   bodies ([`schemas`]), one per service with its hook and context ([`services`]);
//! - the running configuration: the services of the catalog, whether authentication is on
//!   (401 and the bearer scheme, or the `Host` rule's 421), the demo pages.
//!
//! [`operations`] then adds what every operation shares: HEAD beside GET, OPTIONS with its
//! `Allow`, the errors any request can meet, and OperationOutcome bodies as
//! `application/fhir+json`.

mod operations;
mod schemas;
mod services;

use super::{demo, feedback, routes, AppState};
use crate::protocol::ServiceDefinition;
use actix_web::{web, HttpResponse};
use serde_json::Value;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leg-cramp-cds",
        description = "CDS Hooks 2.0.1 service: known causes of leg cramps as advisory cards. \
                       Every error body is a FHIR OperationOutcome (`application/fhir+json`). \
                       A method a path does not list is 405 with `Allow`; an unknown path is 404. \
                       With trusted issuers configured, calls need `Authorization: Bearer <JWT>` \
                       whose `aud` is the URL called; without them, only requests addressed to a \
                       loopback name or the public URL's host are answered."
    ),
    paths(
        routes::discovery,
        routes::call_service,
        feedback::post_feedback,
        feedback::get_rule_analytics,
        openapi_json,
        routes::healthz,
        routes::readyz,
        routes::metrics_text,
        demo::index,
        demo::app_js,
        demo::app_css,
        demo::list_samples,
        demo::get_sample,
    ),
    tags((name = "CDS Hooks"), (name = "Feedback analytics"), (name = "Operations"), (name = "Demo"))
)]
struct ApiDoc;

/// What the description depends on besides the code.
pub struct Deployment<'a> {
    pub services: &'a [ServiceDefinition],
    /// Trusted issuers are configured: calls need a JWT.
    pub authenticated: bool,
    /// Discovery answers without a JWT (`--open-discovery`).
    pub open_discovery: bool,
    /// The demo pages are served (`--demo`).
    pub demo: bool,
}

#[utoipa::path(get, path = "/openapi.json", tag = "Operations",
    summary = "This description (OpenAPI 3.1) of what this deployment serves and enforces",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.load();
    let deployment = Deployment {
        services: &catalog.services,
        authenticated: state.auth.is_some(),
        open_discovery: state.open_discovery,
        demo: state.demo,
    };
    let body = serde_json::to_vec_pretty(&document(&deployment)).unwrap_or_default();
    HttpResponse::Ok().content_type("application/json").body(body)
}

/// The whole document for one deployment.
pub fn document(deployment: &Deployment) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if !deployment.demo {
        if let Some(paths) = doc["paths"].as_object_mut() {
            paths.retain(|_, item| !operations::tagged(item, "Demo"));
        }
    }
    schemas::import_request_schemas(&mut doc);
    services::expand(&mut doc, deployment.services);
    operations::complete(&mut doc, deployment);
    schemas::prune_unreferenced(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, hook: &str) -> ServiceDefinition {
        serde_json::from_value(serde_json::json!({"id": id, "hook": hook, "description": "d",
            "prefetch": {"patient": "Patient/{{context.patientId}}"}}))
        .unwrap()
    }

    fn deployment(services: &[ServiceDefinition], authenticated: bool) -> Deployment<'_> {
        Deployment { services, authenticated, open_discovery: false, demo: false }
    }

    /// Every `$ref` of the document points at something in it.
    #[test]
    fn every_reference_resolves() {
        let services = [service("a", "patient-view"), service("b", "order-sign")];
        for authenticated in [false, true] {
            let doc = document(&deployment(&services, authenticated));
            let mut refs = Vec::new();
            schemas::collect_refs(&doc, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external ref {r}"));
                assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
            }
        }
    }

    #[test]
    fn each_service_has_its_own_path_hook_and_context() {
        let services = [service("a", "patient-view")];
        let doc = document(&deployment(&services, false));
        let body = &doc["paths"]["/cds-services/a"]["post"]["requestBody"];
        assert_eq!(body["required"], true);
        let schema = &doc["components"]["schemas"]["CdsRequest.a"];
        assert_eq!(schema["properties"]["hook"]["const"], "patient-view");
        assert_eq!(
            schema["properties"]["context"]["$ref"],
            "#/components/schemas/CdsRequest/$defs/contexts/patient-view"
        );
        assert!(doc["paths"]["/cds-services/a/feedback"]["post"]["requestBody"].is_object());
        assert!(doc["paths"].get("/cds-services/{id}").is_none(), "an unknown id is an unknown path");
    }

    #[test]
    fn authentication_decides_401_and_the_host_rule() {
        let services = [service("a", "patient-view")];
        let open = document(&deployment(&services, false));
        let call = &open["paths"]["/cds-services/a"]["post"];
        assert!(call["responses"]["401"].is_null() && call["security"].is_null());
        assert!(call["responses"]["421"].is_object());
        let closed = document(&deployment(&services, true));
        let call = &closed["paths"]["/cds-services/a"]["post"];
        assert!(call["responses"]["401"].is_object() && call["security"].is_array());
        assert!(call["responses"]["421"].is_null());
        assert!(closed["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
