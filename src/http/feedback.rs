//! Feedback (`POST /cds-services/{id}/feedback`) and analytics (`GET /analytics/rules`).

use super::error::ApiError;
use super::routes::{authenticate, read_json_body};
use super::AppState;
use crate::protocol::feedback::FeedbackRequest;
use crate::protocol::schemas::{Document, SchemaError};
use crate::protocol::OperationOutcome;
use crate::protocol::RequestError;
use crate::store::{FeedbackReceipt, FeedbackRow, RuleAnalytics, StoreError};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use std::collections::BTreeMap;

/// How far ahead of the service's clock an `outcomeTimestamp` may be (clock skew between the
/// EHR and the service); further is refused, not believed.
const FUTURE_SKEW_MINUTES: i64 = 5;

fn invalid(pointer: String, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(RequestError::Invalid(vec![SchemaError { pointer, message: message.into() }]))
}

#[utoipa::path(post, path = "/cds-services/{id}/feedback", tag = "CDS Hooks",
    summary = "Feedback on issued cards (stored durably before 200; items about unknown cards counted, not stored)",
    params(("id" = String, Path, description = "Service id")),
    responses(
        (status = 200, description = "Stored", body = FeedbackReceipt),
        (status = 400, description = "An invalid item (JSON pointer in the diagnostics): it breaks the schema, \
            names a suggestion its card did not offer, or its outcomeTimestamp is not an RFC 3339 instant or lies \
            more than 5 minutes in the future", body = OperationOutcome),
        (status = 401, description = "Missing or invalid JWT", body = OperationOutcome),
        (status = 404, description = "Unknown service", body = OperationOutcome),
        (status = 503, description = "Feedback store unavailable (down, locked, or its SQLite file deleted or replaced): nothing stored, send again", body = OperationOutcome)))]
pub async fn post_feedback(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state).await?;
    let id = path.into_inner();
    if state.catalog.load().service(&id).is_none() {
        return Err(ApiError::UnknownService(id));
    }
    req.extensions_mut().insert(super::middleware::ServiceTag(format!("{id}/feedback")));
    let body = read_json_body(&req, payload, &state).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(RequestError::Empty));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(RequestError::Malformed(e.to_string())))?;
    state.schemas.validate(Document::Feedback, &value).map_err(|e| ApiError::BadRequest(RequestError::Invalid(e)))?;
    let request: FeedbackRequest = serde_json::from_value(value).map_err(|e| invalid(String::new(), e.to_string()))?;
    let latest = state.fixed_now.unwrap_or_else(chrono::Utc::now) + chrono::Duration::minutes(FUTURE_SKEW_MINUTES);
    let mut rows = Vec::with_capacity(request.feedback.len());
    for (index, item) in request.feedback.into_iter().enumerate() {
        let outcome_timestamp = outcome_time(&item.outcome_timestamp, latest, index)?;
        let reason = item.override_reason.as_ref().and_then(|r| r.reason.as_ref());
        rows.push(FeedbackRow {
            index,
            card_uuid: item.card,
            outcome: item.outcome.as_str().to_string(),
            accepted_suggestions: item.accepted_suggestions.into_iter().map(|s| s.id).collect(),
            override_system: reason.map(|r| r.system.clone()),
            override_code: reason.map(|r| r.code.clone()),
            override_display: reason.and_then(|r| r.display.clone()),
            user_comment: item.override_reason.and_then(|r| r.user_comment),
            outcome_timestamp,
        });
    }
    let Some(store) = &state.store else { return Err(ApiError::Unavailable("the feedback store".into())) };
    let count = rows.len();
    let outcomes: Vec<&'static str> =
        rows.iter().map(|r| if r.outcome == "accepted" { "accepted" } else { "overridden" }).collect();
    match store.store_feedback(id.clone(), rows, state.suppress_days).await {
        Ok(receipt) => {
            tracing::info!(service = %id, items = count, stored = receipt.stored, duplicates = receipt.duplicates,
                unknown_cards = receipt.unknown_cards, "feedback stored");
            for outcome in outcomes {
                metrics::counter!(crate::metrics::FEEDBACK, "outcome" => outcome).increment(1);
            }
            metrics::counter!(crate::metrics::FEEDBACK_UNKNOWN).increment(receipt.unknown_cards as u64);
            Ok(HttpResponse::Ok().json(receipt))
        }
        Err(StoreError::Invalid { pointer, message }) => Err(invalid(pointer, message)),
        Err(e) => {
            if e.is_transient() {
                tracing::warn!(error = %e, service = %id, "feedback not stored (store unavailable); the client may retry");
            } else {
                tracing::error!(error = %e, service = %id, "feedback not stored");
            }
            Err(ApiError::Unavailable("the feedback store".into()))
        }
    }
}

/// The item's `outcomeTimestamp`: an RFC 3339 instant not after `latest`. It is stored as the
/// clinician's account of when; how long a snooze lasts runs from when the service received it.
fn outcome_time(
    text: &str,
    latest: chrono::DateTime<chrono::Utc>,
    index: usize,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let pointer = format!("/feedback/{index}/outcomeTimestamp");
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| invalid(pointer.clone(), format!("not an RFC 3339 instant: {e}")))?
        .to_utc();
    if at > latest {
        return Err(invalid(
            pointer,
            format!(
                "{} is in the future: more than {FUTURE_SKEW_MINUTES} minutes after the service's clock",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    Ok(at)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// Count only what happened since this RFC 3339 instant.
    #[param(value_type = String, format = DateTime, required = false)]
    since: Option<String>,
}

/// The analytics document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RuleAnalyticsResponse {
    pub rules: Vec<RuleAnalytics>,
}

#[utoipa::path(get, path = "/analytics/rules", tag = "Feedback analytics",
    summary = "Per-rule counts of issued, accepted, overridden and suppressed cards",
    params(AnalyticsQuery),
    responses(
        (status = 200, description = "One entry per rule", body = RuleAnalyticsResponse),
        (status = 400, description = "since is not an RFC 3339 instant, or the query string cannot be read", body = OperationOutcome),
        (status = 401, description = "Missing or invalid JWT", body = OperationOutcome),
        (status = 503, description = "Feedback store unavailable", body = OperationOutcome)))]
pub async fn get_rule_analytics(
    req: HttpRequest,
    query: web::Query<AnalyticsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state).await?;
    let since = match &query.since {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| invalid("?since".into(), format!("not an RFC 3339 instant: {e}")))?
                .to_utc(),
        ),
        None => None,
    };
    let Some(store) = &state.store else { return Err(ApiError::Unavailable("the feedback store".into())) };
    let stored = store.analytics(since).await.map_err(|e| {
        tracing::error!(error = %e, "analytics query failed");
        ApiError::Unavailable("the feedback store".into())
    })?;
    // Every rule of the current rule book appears, with zeros when nothing happened yet.
    let mut rules: BTreeMap<String, RuleAnalytics> =
        state.catalog.load().rules.rules.iter().map(|r| (r.id.clone(), RuleAnalytics::empty(&r.id))).collect();
    for a in stored {
        rules.insert(a.rule.clone(), a);
    }
    Ok(HttpResponse::Ok().json(RuleAnalyticsResponse { rules: rules.into_values().collect() }))
}
