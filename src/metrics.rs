//! Prometheus metrics (`GET /metrics`): requests by service and status, latency, cards by
//! rule and indicator, suppressed cards, FHIR fallback calls and failures, feedback outcomes,
//! the feedback store's queue, shed records, thread restarts and availability, and refused JWTs.
//! Labels are bounded sets (service ids, rule ids, statuses): no patient data, no free text.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const REQUESTS: &str = "cds_requests_total";
pub const LATENCY: &str = "cds_request_duration_seconds";
pub const CARDS: &str = "cds_cards_total";
pub const SUPPRESSED: &str = "cds_cards_suppressed_total";
pub const SILENT: &str = "cds_cards_silent_total";
pub const FHIR_CALLS: &str = "cds_fhir_fallback_requests_total";
pub const FHIR_FAILURES: &str = "cds_fhir_fallback_failures_total";
pub const FEEDBACK: &str = "cds_feedback_items_total";
pub const FEEDBACK_UNKNOWN: &str = "cds_feedback_unknown_cards_total";
pub const STORE_SHED: &str = "cds_store_records_shed_total";
pub const STORE_FAILED: &str = "cds_store_records_failed_total";
pub const STORE_QUEUE: &str = "cds_store_queue_records";
pub const STORE_RESTARTS: &str = "cds_store_thread_restarts_total";
pub const STORE_UP: &str = "cds_store_up";
pub const STORE_PRUNED: &str = "cds_store_pruned_rows_total";
pub const AUTH_REJECTIONS: &str = "cds_auth_rejections_total";
pub const REPLAY_CHECKED_LOCALLY: &str = "cds_jwt_replay_checked_locally_total";
pub const BODIES_REFUSED: &str = "cds_requests_refused_busy_total";

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_string()), &buckets)
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        metrics::describe_counter!(REQUESTS, "HTTP requests by service (or endpoint) and status");
        metrics::describe_histogram!(LATENCY, metrics::Unit::Seconds, "Request latency by service (or endpoint)");
        metrics::describe_counter!(CARDS, "Cards issued by rule and indicator");
        metrics::describe_counter!(
            SILENT,
            "Cards evaluated and recorded in silent mode (not shown), by rule and indicator"
        );
        metrics::describe_counter!(SUPPRESSED, "Cards withheld by already-addressed feedback, by rule");
        metrics::describe_counter!(FHIR_CALLS, "Prefetch keys fetched from the EHR's FHIR server");
        metrics::describe_counter!(FHIR_FAILURES, "Prefetch keys that could not be fetched");
        metrics::describe_counter!(FEEDBACK, "Feedback items acknowledged, by outcome");
        metrics::describe_counter!(
            FEEDBACK_UNKNOWN,
            "Feedback items about cards this service did not issue (or no longer keeps): counted, not stored"
        );
        metrics::describe_counter!(STORE_SHED, "Card records not recorded because the store queue was full, by kind");
        metrics::describe_counter!(
            STORE_FAILED,
            "Card records given up for another reason: refused by the database, or in hand when the writer panicked"
        );
        metrics::describe_gauge!(STORE_QUEUE, "Card records waiting to be written to the feedback store");
        metrics::describe_counter!(STORE_RESTARTS, "Feedback store threads restarted after a panic, by thread");
        metrics::describe_counter!(
            BODIES_REFUSED,
            "Requests answered 503 because request bodies in flight were at their bound"
        );
        metrics::describe_gauge!(STORE_UP, "1 when the feedback store's database answers the writer, 0 when not");
        metrics::describe_counter!(STORE_PRUNED, "Rows deleted by the --retain-days retention, by table");
        metrics::describe_counter!(AUTH_REJECTIONS, "JWTs refused, by reason (every one, logged or not)");
        metrics::describe_counter!(
            REPLAY_CHECKED_LOCALLY,
            "jti checked against this process's memory only, because the shared replay ledger did not answer"
        );
        handle
    })
}
