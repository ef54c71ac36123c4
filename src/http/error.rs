//! One error type for the HTTP edge, mapped once to a status and a FHIR OperationOutcome.

use crate::protocol::outcome::Issue;
use crate::protocol::{IssueCode, OperationOutcome, RequestError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug)]
pub enum ApiError {
    BadRequest(RequestError),
    UnsupportedMediaType(String),
    UnknownService(String),
    NotFound(String),
    MethodNotAllowed {
        allowed: &'static str,
    },
    PayloadTooLarge {
        limit: usize,
    },
    /// Required data could not be had (contract §1.5): one issue per prefetch key.
    PreconditionFailed(Vec<(String, String)>),
    /// A missing or invalid JWT. The reason is logged, never sent (best practices: no detail).
    Unauthorized,
    /// The body did not arrive within the request timeout.
    RequestTimeout,
    /// A part of the service (the feedback store) is down; the rest keeps working.
    Unavailable(String),
    /// Anything unexpected. The message is logged, never sent.
    Internal(String),
    /// Authentication is off and `Host` names neither a loopback name nor the public host.
    MisdirectedRequest,
    /// A missing, repeated or malformed `Host` header.
    InvalidHost(&'static str),
    /// A CORS preflight from an origin `--cors-origin` does not list.
    OriginNotAllowed,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(e) => write!(f, "{e}"),
            ApiError::UnsupportedMediaType(t) => {
                write!(f, "Content-Type '{t}' is not supported; send application/json")
            }
            ApiError::UnknownService(id) => {
                write!(f, "no CDS service with id '{id}'; see GET /cds-services")
            }
            ApiError::NotFound(path) => write!(f, "no resource at '{path}'"),
            ApiError::MethodNotAllowed { allowed } => {
                write!(f, "method not allowed here; allowed: {allowed}")
            }
            ApiError::PayloadTooLarge { limit } => {
                write!(f, "request body exceeds the limit of {limit} bytes")
            }
            ApiError::PreconditionFailed(keys) => {
                let list: Vec<String> = keys.iter().map(|(k, why)| format!("{k}: {why}")).collect();
                write!(f, "required prefetch data is missing and could not be fetched: {}", list.join("; "))
            }
            ApiError::Internal(_) => write!(f, "internal error; the request was not processed"),
            ApiError::Unauthorized => write!(f, "authentication failed"),
            ApiError::RequestTimeout => write!(f, "the request body did not arrive in time"),
            ApiError::Unavailable(what) => write!(f, "{what} is unavailable; try again later"),
            ApiError::MisdirectedRequest => write!(
                f,
                "authentication is off, so this service answers only requests addressed to localhost, \
                 127.0.0.1, [::1] or the host of its --public-url"
            ),
            ApiError::InvalidHost(why) => f.write_str(why),
            ApiError::OriginNotAllowed => write!(f, "this origin may not call the service (see --cors-origin)"),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::BadRequest(e)
    }
}

impl ApiError {
    pub fn outcome(&self) -> OperationOutcome {
        match self {
            ApiError::BadRequest(RequestError::Invalid(errors)) => OperationOutcome::new(
                errors
                    .iter()
                    .map(|e| {
                        let code = if e.message == "required field is missing" {
                            IssueCode::Required
                        } else {
                            IssueCode::Invalid
                        };
                        Issue::error(code, e.to_string()).at(e.pointer.clone())
                    })
                    .collect(),
            ),
            ApiError::BadRequest(e @ RequestError::HookMismatch { .. }) => {
                OperationOutcome::new(vec![Issue::error(IssueCode::Value, e.to_string()).at("/hook")])
            }
            ApiError::BadRequest(e) => OperationOutcome::error(IssueCode::Structure, e.to_string()),
            ApiError::UnsupportedMediaType(_) | ApiError::MethodNotAllowed { .. } => {
                OperationOutcome::error(IssueCode::NotSupported, self.to_string())
            }
            ApiError::UnknownService(_) | ApiError::NotFound(_) => {
                OperationOutcome::error(IssueCode::NotFound, self.to_string())
            }
            ApiError::PayloadTooLarge { .. } => OperationOutcome::error(IssueCode::TooCostly, self.to_string()),
            ApiError::PreconditionFailed(keys) => OperationOutcome::new(
                keys.iter()
                    .map(|(key, why)| {
                        Issue::error(IssueCode::Processing, format!("prefetch key '{key}': {why}"))
                            .at(format!("/prefetch/{key}"))
                    })
                    .collect(),
            ),
            ApiError::Internal(_) => OperationOutcome::error(IssueCode::Exception, self.to_string()),
            ApiError::Unauthorized => OperationOutcome::error(IssueCode::Login, self.to_string()),
            ApiError::RequestTimeout => OperationOutcome::error(IssueCode::Timeout, self.to_string()),
            ApiError::Unavailable(_) => OperationOutcome::error(IssueCode::Transient, self.to_string()),
            ApiError::MisdirectedRequest => OperationOutcome::error(IssueCode::Security, self.to_string()),
            ApiError::InvalidHost(_) => OperationOutcome::error(IssueCode::Invalid, self.to_string()),
            ApiError::OriginNotAllowed => OperationOutcome::error(IssueCode::Security, self.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UnknownService(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            ApiError::InvalidHost(_) => StatusCode::BAD_REQUEST,
            ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed { allowed } = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self, ApiError::PayloadTooLarge { .. } | ApiError::RequestTimeout) {
            // The rest of an oversized body is not read; the connection cannot be reused.
            response.insert_header((header::CONNECTION, "close"));
        }
        outcome_response(response, &self.outcome())
    }
}

/// Marks a response whose body is already an OperationOutcome, so the error normaliser
/// in [`super::middleware`] leaves it alone.
#[derive(Clone, Copy)]
pub struct OutcomeBody;

pub fn outcome_response(mut builder: actix_web::HttpResponseBuilder, outcome: &OperationOutcome) -> HttpResponse {
    let body = serde_json::to_vec(outcome).unwrap_or_else(|_| b"{\"resourceType\":\"OperationOutcome\"}".to_vec());
    let mut response = builder.content_type("application/fhir+json").body(body);
    response.extensions_mut().insert(OutcomeBody);
    response
}
