//! Cross-cutting request handling: the access log line, the panic guard, and the rule that
//! every error answer carries an OperationOutcome (even those produced inside actix itself).

use super::error::{outcome_response, OutcomeBody};
use crate::knowledge::placeholder::shorten;
use crate::protocol::{IssueCode, OperationOutcome};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Set as soon as a handler knows which (existing) service is called: the metrics label
/// and the access log's `service`.
#[derive(Clone, Debug)]
pub struct ServiceTag(pub String);

/// Set once the request is parsed, so the access log can name the call.
#[derive(Clone, Debug)]
pub struct HookInstanceTag(pub String);

/// A bounded label for metrics: the service id when known, else the endpoint family.
fn endpoint_label(req: &actix_web::HttpRequest) -> String {
    if let Some(ServiceTag(s)) = req.extensions().get::<ServiceTag>() {
        return s.clone();
    }
    let path = req.path();
    let family = match path {
        "/cds-services" | "/cds-services/" => "discovery",
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        "/openapi.json" => "openapi",
        "/analytics/rules" => "analytics",
        p if p.starts_with("/cds-services/") => "unknown-service",
        "/" => "demo",
        p if p.starts_with("/samples") || p.starts_with("/static") => "demo",
        _ => "other",
    };
    family.to_string()
}

fn observe_metrics(req: &actix_web::HttpRequest, status: u16, seconds: f64) {
    let endpoint = endpoint_label(req);
    metrics::counter!(crate::metrics::REQUESTS, "service" => endpoint.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(crate::metrics::LATENCY, "service" => endpoint).record(seconds);
}

/// Logs one line per request (method, path, status, latency, hookInstance, service), turns a
/// handler panic into a 500 OperationOutcome, and gives error answers an OperationOutcome body.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: query strings may carry identifiers.
    let path = req.path().to_string();

    // No clone of the HttpRequest may be held across the call: actix needs it unshared.
    let result = AssertUnwindSafe(next.call(req)).catch_unwind().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(res)) => {
            let res = normalise_error_body(res.map_into_boxed_body());
            let status = res.status().as_u16();
            observe_metrics(res.request(), status, latency_ms / 1000.0);
            let extensions = res.request().extensions();
            let service = extensions.get::<ServiceTag>().map(|t| t.0.as_str());
            let hook_instance = extensions.get::<HookInstanceTag>().map(|t| t.0.as_str());
            tracing::info!(%method, %path, status, latency_ms, hook_instance, service, "request");
            drop(extensions);
            Ok(res)
        }
        Ok(Err(err)) => {
            let status = err.as_response_error().status_code();
            tracing::info!(%method, %path, status = status.as_u16(), latency_ms, "request");
            Err(OutcomeError { status, message: err.to_string() }.into())
        }
        Err(_) => {
            tracing::error!(%method, %path, latency_ms, "handler panicked; answered 500");
            Err(OutcomeError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "internal error; the request was not processed".into(),
            }
            .into())
        }
    }
}

/// An error raised outside our handlers (e.g. a CORS refusal), re-shaped as an OperationOutcome.
#[derive(Debug)]
struct OutcomeError {
    status: StatusCode,
    message: String,
}

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl actix_web::ResponseError for OutcomeError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let diagnostics = if self.status.is_server_error() {
            "internal error; the request was not processed".to_string()
        } else {
            self.message.clone()
        };
        outcome_response(
            HttpResponse::build(self.status),
            &OperationOutcome::error(issue_code(self.status), diagnostics),
        )
    }
}

fn issue_code(status: StatusCode) -> IssueCode {
    match status.as_u16() {
        401 | 403 => IssueCode::Security,
        404 => IssueCode::NotFound,
        405 | 415 => IssueCode::NotSupported,
        408 => IssueCode::Timeout,
        413 => IssueCode::TooCostly,
        400..=499 => IssueCode::Invalid,
        _ => IssueCode::Exception,
    }
}

/// Errors raised by actix or its middleware (CORS refusals, query and path extractor errors)
/// come with a plain text body; replace it with an OperationOutcome so clients see one error
/// shape. The diagnostics keep actix's reason, shortened (a 5xx says nothing more).
fn normalise_error_body(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.response().extensions().get::<OutcomeBody>().is_some()
    {
        return res;
    }
    let generic = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error"));
    let diagnostics = match res.response().error() {
        Some(error) if status.is_client_error() => format!("{generic}: {}", shorten(&error.to_string(), 200)),
        _ => generic,
    };
    let code = issue_code(status);
    let (req, old) = res.into_parts();
    let mut builder = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != actix_web::http::header::CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    ServiceResponse::new(req, outcome_response(builder, &OperationOutcome::error(code, diagnostics)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{middleware::from_fn, test, web, App};

    #[actix_web::test]
    async fn a_panicking_handler_gets_a_500_outcome_and_the_worker_keeps_serving() {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(observe))
                .route("/boom", web::get().to(|| async { panic!("handler bug") as HttpResponse }))
                .route("/ok", web::get().to(|| async { HttpResponse::Ok().finish() })),
        )
        .await;
        // The error travels up to actix's dispatcher, which renders it with error_response().
        let err = test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
            .await
            .expect_err("a panic becomes an error");
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert!(!body.to_string().contains("handler bug"), "panic message leaked: {body}");
        let res = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}
