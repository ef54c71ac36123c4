//! `GET /openapi.json`: the OpenAPI 3.1 description, generated from the handlers' annotations
//! and the Rust types they exchange (utoipa), so it cannot drift from the code.

use super::{feedback, routes};
use actix_web::HttpResponse;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leg-cramp-cds",
        description = "CDS Hooks 2.0.1 service: known causes of leg cramps as advisory cards. \
                       Errors are FHIR OperationOutcomes. With trusted issuers configured, calls need \
                       `Authorization: Bearer <JWT>` whose `aud` is the URL called."
    ),
    paths(
        routes::discovery,
        routes::call_service,
        feedback::post_feedback,
        feedback::get_rule_analytics,
        routes::healthz,
        routes::readyz,
        routes::metrics_text,
    ),
    tags((name = "CDS Hooks"), (name = "Feedback analytics"), (name = "Operations"))
)]
pub struct ApiDoc;

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}
