//! Handlers, one per endpoint. Each does HTTP work only and hands the rest to the pipeline.

use super::error::ApiError;
use super::middleware::CallTag;
use super::AppState;
use crate::protocol::{CdsRequest, DiscoveryResponse};
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;

/// After the limit is passed, up to this much more is read and discarded so that the 413
/// reaches a client still sending; past it the connection is closed.
const DRAIN_LIMIT: usize = 64 << 20;

pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.load();
    HttpResponse::Ok().json(DiscoveryResponse {
        services: catalog.services.clone(),
    })
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.load();
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "services": catalog.services.len(),
    }))
}

pub async fn call_service(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let catalog = state.catalog.load_full();
    let service = catalog
        .service(&id)
        .ok_or_else(|| ApiError::UnknownService(id.clone()))?;
    require_json(&req)?;
    let body = read_body(&req, payload, state.max_body).await?;
    let request = CdsRequest::parse(&body, &state.schemas, &service.hook)?;
    req.extensions_mut().insert(CallTag {
        hook_instance: request.hook_instance.clone(),
        service: id.clone(),
    });
    let response = crate::pipeline::evaluate(&request, service);
    let body = serde_json::to_vec(&response)
        .map_err(|e| ApiError::Internal(format!("serialising response: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(req.path().to_string()).error_response()
}

pub fn method_not_allowed(
    allowed: &'static str,
) -> impl Fn() -> futures_util::future::Ready<HttpResponse> + Clone {
    move || futures_util::future::ready(ApiError::MethodNotAllowed { allowed }.error_response())
}

/// CDS clients send `application/json`; `+json` types and a missing header are accepted.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            text.chars().take(100).collect(),
        ))
    }
}

/// Reads the body up to `limit` bytes; a larger body is a 413 (announced by Content-Length
/// or discovered while reading).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_LIMIT)) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut overflow = false;
    let mut discarded = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(crate::protocol::RequestError::Malformed(format!(
                "could not read body: {e}"
            )))
        })?;
        if overflow {
            discarded += chunk.len();
            if discarded > DRAIN_LIMIT {
                break;
            }
        } else if body.len() + chunk.len() > limit {
            overflow = true;
            body = BytesMut::new();
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    if overflow {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(body.freeze())
}
