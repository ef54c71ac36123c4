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
use actix_web::{guard, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;

/// After the limit is passed, up to this much more is read and discarded so that the 413
/// reaches a client still sending; past it the connection is closed.
const DRAIN_LIMIT: usize = 64 << 20;

#[utoipa::path(get, path = "/cds-services", tag = "CDS Hooks",
    summary = "Discovery: the services this host offers",
    description = "Also served at `/cds-services/` (a discovery URL written with a trailing slash); a client \
                   that builds service URLs from that one calls `/cds-services//{id}`, which is served too, as \
                   is `/cds-services/{id}/`.",
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
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth.verify(header, &state.public_url, req.path()).await {
        Ok(client) => {
            tracing::debug!(iss = %client.iss, tenant = ?client.tenant, "client authenticated");
            Ok(())
        }
        Err(rejection) => {
            auth.log_rejection(&rejection, req.path());
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
    responses(
        (status = 200, description = "Cards (possibly none)", body = CdsResponse),
        (status = 400, description = "The request breaks its schema (JSON pointers in the diagnostics) or a rule of \
            CDS Hooks the schema cannot state: a hook other than the service's, a context.patientId other than \
            the prefetched Patient's", body = OperationOutcome),
        (status = 401, description = "Missing or invalid JWT", body = OperationOutcome),
        (status = 412, description = "A prefetch key the service needs is missing (or an OperationOutcome) and \
            could not be fetched from fhirServer (none given, not allowed, or failing); one issue per key", body = OperationOutcome)))]
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
        silent: state.silent,
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
            ServiceError::PatientMismatch(pointers) => ApiError::BadRequest(patient_mismatch(&pointers)),
        }
    }
}

/// 400 naming `/context/patientId` and the id of each prefetched Patient that differs from it
/// (never the ids themselves).
fn patient_mismatch(pointers: &[String]) -> crate::protocol::RequestError {
    use crate::protocol::schemas::SchemaError;
    let mut errors = vec![SchemaError {
        pointer: "/context/patientId".into(),
        message: format!("is not the id of the prefetched Patient ({})", pointers.join(", ")),
    }];
    errors.extend(pointers.iter().map(|p| SchemaError {
        pointer: p.clone(),
        message: "this prefetched Patient is not context.patientId: the request would mix two patients".into(),
    }));
    crate::protocol::RequestError::Invalid(errors)
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(req.path().to_string()).error_response()
}

/// `Allow` of a resource answered with GET (and so HEAD).
pub const READ_ONLY: &str = "GET, HEAD, OPTIONS";
/// `Allow` of a resource answered with POST.
pub const POST_ONLY: &str = "POST, OPTIONS";
/// Request headers a browser may send cross-origin (CORS preflight answer).
const CORS_REQUEST_HEADERS: &str = "authorization, content-type, accept";
/// Seconds a browser may cache a preflight answer.
const CORS_MAX_AGE: &str = "600";

/// The methods a resource answers.
#[derive(Debug, Clone, Copy)]
pub enum Methods {
    /// GET, and HEAD by the same handler (actix sends the headers of the GET answer, body
    /// omitted: load balancers probe with HEAD).
    ReadOnly,
    Post,
}

impl Methods {
    /// The `Allow` list of such a resource.
    pub fn allow(self) -> &'static str {
        match self {
            Methods::ReadOnly => READ_ONLY,
            Methods::Post => POST_ONLY,
        }
    }
}

/// A resource answering `methods` with `handler`; OPTIONS lists the methods, and any other
/// method is 405 with the same list in `Allow`.
pub fn resource<F, Args>(patterns: &[&str], methods: Methods, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let route = match methods {
        Methods::ReadOnly => web::route().guard(guard::Any(guard::Get()).or(guard::Head())),
        Methods::Post => web::post(),
    };
    web::resource(patterns.to_vec())
        .route(route.to(handler))
        .route(web::route().guard(guard::Options()).to(options(methods.allow())))
        .default_service(web::to(method_not_allowed(methods.allow())))
}

/// `OPTIONS`: 200 with the resource's methods in `Allow`. A CORS preflight (it names
/// `Access-Control-Request-Method`) also gets the same methods, the headers a browser may
/// send and how long it may cache the answer; the CORS middleware adds
/// `Access-Control-Allow-Origin`. A preflight from an origin the policy does not allow is
/// 403, so that a misconfigured `--cors-origin` shows in the browser's network log.
pub fn options(allow: &'static str) -> impl Fn(HttpRequest) -> futures_util::future::Ready<HttpResponse> + Clone {
    move |req| {
        let mut res = HttpResponse::Ok();
        res.insert_header((header::ALLOW, allow));
        if req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("");
            let policy = req.app_data::<web::Data<super::CorsPolicy>>();
            if !origin.is_empty() && policy.is_some_and(|p| !p.allows(origin)) {
                return futures_util::future::ready(ApiError::OriginNotAllowed.error_response());
            }
            res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, allow))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_REQUEST_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE));
        }
        futures_util::future::ready(res.finish())
    }
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
