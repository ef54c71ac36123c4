//! Handlers, one per endpoint. Each does HTTP work only and hands the rest to the service
//! ([`crate::service::run_call`] for a CDS Hooks call).

use super::error::ApiError;
use super::middleware::{HookInstanceTag, ServiceTag};
use super::AppState;
use crate::catalog::Catalog;
use crate::fhir::CdsRequest;
use crate::protocol::{CdsResponse, DiscoveryResponse, OperationOutcome};
use crate::service::{run_call, CallContext, Feedback, ServiceCall, ServiceError};
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;

/// After the limit is passed, up to this much more is read and discarded so that the 413
/// reaches a client still sending; past it the connection is closed.
const DRAIN_LIMIT: usize = 64 << 20;

#[utoipa::path(get, path = "/cds-services", tag = "CDS Hooks",
    summary = "Discovery: the services this host offers",
    responses((status = 200, description = "The services", body = DiscoveryResponse),
              (status = 401, description = "Missing or invalid JWT", body = OperationOutcome)))]
pub async fn discovery(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.open_discovery {
        authenticate(&req, &state).await?;
    }
    let catalog = state.catalog.load();
    Ok(HttpResponse::Ok().json(DiscoveryResponse { services: catalog.services.clone() }))
}

/// Checks the caller's JWT when authentication is on. The audience is the exact URL called,
/// built from --public-url and the request path.
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(auth) = &state.auth else { return Ok(()) };
    let audience = format!("{}{}", state.public_url, req.path());
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth.verify(header, &audience).await {
        Ok(client) => {
            tracing::debug!(iss = %client.iss, tenant = ?client.tenant, "client authenticated");
            Ok(())
        }
        Err(r) => {
            tracing::warn!(iss = ?r.iss, kid = ?r.kid, jti = ?r.jti, reason = %r.reason, path = %req.path(), "JWT rejected");
            Err(ApiError::Unauthorized)
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "Operations", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(crate::metrics::handle().render())
}

#[utoipa::path(get, path = "/healthz", tag = "Operations", summary = "Liveness",
    responses((status = 200, description = "The process is up", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "Operations", summary = "Readiness: rules loaded, feedback store answering",
    responses((status = 200, description = "Counts of services, rules and value sets", body = Object),
              (status = 503, description = "The feedback store is unavailable (the reason in the diagnostics); hooks still answer", body = OperationOutcome)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = match &state.store {
        None => Err("the feedback store (not open; see the start-up log)".to_string()),
        Some(store) => match store.outage() {
            Some(o) => Err(format!("the feedback store (since {}: {})", o.since.to_rfc3339(), o.reason)),
            None => Ok(store.backend_name),
        },
    };
    match store {
        Ok(backend) => {
            let catalog = state.catalog.load();
            HttpResponse::Ok().json(serde_json::json!({
                "status": "ready",
                "services": catalog.services.len(),
                "rules": catalog.rules.rules.len(),
                "valueSets": catalog.rules.index.len(),
                "feedbackStore": backend,
            }))
        }
        Err(what) => ApiError::Unavailable(what).error_response(),
    }
}

#[utoipa::path(post, path = "/cds-services/{id}", tag = "CDS Hooks",
    summary = "Call a service (patient-view, order-select or order-sign)",
    params(("id" = String, Path, description = "Service id from discovery")),
    request_body(content = CdsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Cards (possibly none)", body = CdsResponse),
        (status = 400, description = "Malformed JSON, schema violation or wrong hook", body = OperationOutcome),
        (status = 401, description = "Missing or invalid JWT", body = OperationOutcome),
        (status = 404, description = "Unknown service", body = OperationOutcome),
        (status = 405, description = "Method not allowed", body = OperationOutcome),
        (status = 408, description = "Body not received in time", body = OperationOutcome),
        (status = 412, description = "Required prefetch missing and not fetchable", body = OperationOutcome),
        (status = 413, description = "Body over the limit", body = OperationOutcome),
        (status = 415, description = "Not JSON", body = OperationOutcome),
        (status = 500, description = "Internal error", body = OperationOutcome),
        (status = 503, description = "Too many request bodies in flight; retry after the Retry-After seconds", body = OperationOutcome)))]
pub async fn call_service(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let catalog = state.catalog.load_full();
    authenticate(&req, &state).await?;
    catalog.service(&id).ok_or_else(|| ApiError::UnknownService(id.clone()))?;
    req.extensions_mut().insert(ServiceTag(id.clone()));
    let body = read_json_body(&req, payload, &state).await?;
    // A large request is evaluated on the evaluation threads, holding its place in flight
    // until it is done; a small one here, without the hand-over.
    let (hook_instance, answer) = if state.eval_pool.takes(body.len()) {
        let permit = req.extensions_mut().remove::<super::limits::BodyPermit>();
        let pool_state = state.clone();
        state
            .eval_pool
            .run(async move {
                let answer = answer_call(&pool_state, &catalog, &id, body).await;
                drop(permit);
                answer
            })
            .await
    } else {
        answer_call(&state, &catalog, &id, body).await
    };
    if let Some(hook_instance) = hook_instance {
        req.extensions_mut().insert(HookInstanceTag(hook_instance));
    }
    Ok(HttpResponse::Ok().content_type("application/json").body(answer?))
}

/// A call once its body is read: parse, evaluate, serialise. The hook instance, once known,
/// is returned for the access log whatever the outcome.
async fn answer_call(
    state: &AppState,
    catalog: &Catalog,
    id: &str,
    body: Bytes,
) -> (Option<String>, Result<Vec<u8>, ApiError>) {
    let Some(service) = catalog.service(id) else {
        return (None, Err(ApiError::UnknownService(id.to_string())));
    };
    let now = state.fixed_now.unwrap_or_else(chrono::Utc::now);
    let request = match parse_call(state, &body, &service.hook, now) {
        Ok(r) => r,
        Err(e) => return (None, Err(e)),
    };
    drop(body);
    let hook_instance = Some(request.hook_instance.clone());
    let context = CallContext {
        fhir: Some(&state.fhir),
        terminology: state.terminology.as_ref(),
        feedback: state.store.as_deref().map(|store| Feedback { store, record_cards: state.record_cards }),
    };
    let answer = match run_call(ServiceCall { request, service, catalog, now }, &context).await {
        Ok(outcome) => {
            serde_json::to_vec(&outcome.response).map_err(|e| ApiError::Internal(format!("serialising response: {e}")))
        }
        Err(e) => Err(e.into()),
    };
    (hook_instance, answer)
}

fn parse_call(
    state: &AppState,
    body: &[u8],
    hook: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<CdsRequest, ApiError> {
    let mut request = CdsRequest::parse(body, &state.schemas, hook)?;
    if state.demo && request.extension.as_ref().is_some_and(|e| e.contains_key(crate::samples::SAMPLE_EXTENSION)) {
        // Demo only: a sample from samples/ (its dates are relative) is moved to now, as `eval`
        // does. A production service never changes a patient's dates.
        let mut value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(crate::protocol::RequestError::Malformed(e.to_string())))?;
        crate::samples::resolve(&mut value, now);
        request = CdsRequest::from_value(value, &state.schemas, hook)?;
    }
    Ok(request)
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::PrefetchUnavailable(_) => ApiError::PreconditionFailed(e.missing_keys()),
        }
    }
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(req.path().to_string()).error_response()
}

pub fn method_not_allowed(allowed: &'static str) -> impl Fn() -> futures_util::future::Ready<HttpResponse> + Clone {
    move || futures_util::future::ready(ApiError::MethodNotAllowed { allowed }.error_response())
}

/// A JSON body within the size limit and the request timeout.
pub(super) async fn read_json_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    require_json(req)?;
    tokio::time::timeout(state.request_timeout, read_body(req, payload, state.max_body))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

/// CDS clients send `application/json`; `+json` types and a missing header are accepted.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.chars().take(100).collect()))
    }
}

/// Reads the body up to `limit` bytes; a larger body is a 413 (announced by Content-Length
/// or discovered while reading).
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_LIMIT)) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut overflow = false;
    let mut discarded = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(crate::protocol::RequestError::Malformed(format!("could not read body: {e}")))
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
