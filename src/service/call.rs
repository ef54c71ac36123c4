//! One service call, whoever makes it: the HTTP route, `eval`, `check` and the rule-case
//! harness all run [`run_call`]. It plans the prefetch, fetches what is missing, resolves
//! product codes, looks up snoozed rules, evaluates, renders cards, records what was issued
//! and withheld, and counts metrics. Collaborators a caller does not have are `None`.

use super::error::ServiceError;
use super::evaluate::{evaluate_with_snoozes, plan_prefetch, Evaluation};
use super::prefetch::complete_prefetch;
use crate::catalog::Catalog;
use crate::facts::medication::resolve_medications;
use crate::fhir::client::FhirClient;
use crate::fhir::terminology::TerminologyClient;
use crate::fhir::CdsRequest;
use crate::protocol::{CdsResponse, ServiceDefinition};
use crate::store::FeedbackStore;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Time given to the terminology service when no FHIR client sets the call's deadline.
const DEFAULT_BUDGET: Duration = Duration::from_secs(3);

/// What is asked: a parsed request to one service, under one catalog, at one instant.
pub struct ServiceCall<'a> {
    pub request: CdsRequest,
    pub service: &'a ServiceDefinition,
    pub catalog: &'a Catalog,
    pub now: DateTime<Utc>,
}

/// The feedback store as a call uses it: snoozed rules are read from it, and issued and
/// withheld cards are written to it when `record_cards`.
pub struct Feedback<'a> {
    pub store: &'a FeedbackStore,
    /// Record issued cards (off with `--no-recording`); withheld cards are always recorded.
    pub record_cards: bool,
}

/// The optional collaborators of a call. The default has none: everything must be in the
/// request's prefetch, codes are not looked up, nothing is snoozed or recorded.
#[derive(Default)]
pub struct CallContext<'a> {
    /// Fetches missing prefetch from the request's `fhirServer`; its timeout is the deadline
    /// for FHIR and terminology together.
    pub fhir: Option<&'a FhirClient>,
    pub terminology: Option<&'a TerminologyClient>,
    pub feedback: Option<Feedback<'a>>,
    /// Silent mode for every service (`serve --silent`); a service can also be silent by itself.
    pub silent: bool,
}

/// The answer, with what the access log and the caller want to know.
pub struct CallOutcome {
    pub response: CdsResponse,
    /// Rules whose cards were issued.
    pub rule_ids: Vec<String>,
    /// Rules whose cards were withheld (already addressed).
    pub snoozed: Vec<String>,
    /// The conventions' named facts that held for the patient (e.g. `LEG_CRAMP_PRESENT`).
    pub named_facts: Vec<String>,
}

/// Runs one call. Spans carry the hook instance and the service id, never patient data.
#[tracing::instrument(skip_all, fields(hook_instance = %call.request.hook_instance, service = %call.service.id))]
pub async fn run_call(call: ServiceCall<'_>, ctx: &CallContext<'_>) -> Result<CallOutcome, ServiceError> {
    let ServiceCall { mut request, service, catalog, now } = call;
    let started = Instant::now();
    let plan = plan_prefetch(&mut request, service);
    let resources = complete_prefetch(ctx.fhir, &request, plan).await?;
    // Product codes nothing else recognised: named by the terminology service, in what is left
    // of the FHIR deadline.
    let deadline = started + ctx.fhir.map_or(DEFAULT_BUDGET, |f| f.config.timeout);
    let resolved =
        resolve_medications(ctx.terminology, &catalog.rules.conventions, &catalog.rules.index, &resources, deadline)
            .await;
    let patient_key =
        ctx.feedback.as_ref().map(|f| f.store.keyer.key(request.context.patient_id.as_deref().unwrap_or("")));
    let snoozed: HashSet<String> = match (&ctx.feedback, &patient_key) {
        (Some(feedback), Some(key)) => feedback.store.suppressed_rules(key, now),
        _ => HashSet::new(),
    };
    let evaluation = evaluate_with_snoozes(&catalog.rules, &request, &resources, &resolved, now, &snoozed);
    tracing::debug!(rules = ?evaluation.rule_ids, snoozed = ?evaluation.snoozed, "evaluated");
    let silent = ctx.silent || service.silent;
    count(&evaluation, silent);
    if let (Some(feedback), Some(key)) = (&ctx.feedback, patient_key) {
        let call = super::recording::Recorded { service: &service.id, hook_instance: &request.hook_instance, silent };
        super::recording::record(feedback.store, feedback.record_cards, &call, &key, now, &evaluation);
    }
    let Evaluation { mut response, rule_ids, snoozed, named_facts } = evaluation;
    if silent {
        // Evaluated and recorded; the clinician sees nothing, not even the warnings.
        response = CdsResponse::default();
    }
    Ok(CallOutcome { response, rule_ids, snoozed, named_facts })
}

/// Cards issued (or, in silent mode, evaluated silently) by rule and indicator, and cards
/// withheld by rule.
fn count(evaluation: &Evaluation, silent: bool) {
    let name = if silent { crate::metrics::SILENT } else { crate::metrics::CARDS };
    for card in &evaluation.response.cards {
        if let Some(topic) = &card.source.topic {
            metrics::counter!(name, "rule" => topic.code.clone(), "indicator" => card.indicator.as_str()).increment(1);
        }
    }
    for rule in &evaluation.snoozed {
        metrics::counter!(crate::metrics::SUPPRESSED, "rule" => rule.clone()).increment(1);
    }
}
