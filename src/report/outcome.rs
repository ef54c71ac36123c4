//! What one patient's calls gave, reduced to what the report counts: per card the rules it
//! stands for, its indicator and its lab-order suggestions; per call its data warnings.

use crate::cards::card_rules;
use crate::protocol::response::ActionType;
use crate::protocol::CdsResponse;
use std::collections::BTreeSet;

/// One patient (or, from the store, one response) and what it was given.
#[derive(Debug, Clone, Default)]
pub struct PatientOutcome {
    pub patient: String,
    pub calls: Vec<CallSummary>,
    /// Named facts that held in any of its calls (e.g. `LEG_CRAMP_PRESENT`).
    pub named_facts: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CallSummary {
    /// The hook (simulation) or the service (store).
    pub hook: String,
    pub cards: Vec<CardSummary>,
    /// The response's data warnings, as written.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardSummary {
    pub rules: Vec<String>,
    pub indicator: String,
    /// Recorded in silent mode (store reports).
    pub silent: bool,
    /// (`system|code`, display) of each lab order the card suggests.
    pub lab_orders: Vec<(String, String)>,
}

impl CallSummary {
    pub fn of(hook: &str, response: &CdsResponse, warnings_extension: &str) -> Self {
        let cards = response
            .cards
            .iter()
            .map(|card| CardSummary {
                rules: card_rules(card),
                indicator: card.indicator.as_str().to_string(),
                silent: false,
                lab_orders: card
                    .suggestions
                    .iter()
                    .flat_map(|s| &s.actions)
                    .filter(|a| a.kind == ActionType::Create)
                    .filter_map(|a| lab_order(a.resource.as_ref()?))
                    .collect(),
            })
            .collect();
        let warnings = response
            .extension
            .get(warnings_extension)
            .and_then(|w| w.as_array())
            .map(|w| w.iter().filter_map(|x| x.as_str()).map(str::to_string).collect())
            .unwrap_or_default();
        Self { hook: hook.to_string(), cards, warnings }
    }
}

/// `system|code` and display of a suggested ServiceRequest.
fn lab_order(resource: &serde_json::Value) -> Option<(String, String)> {
    if resource.get("resourceType")?.as_str()? != "ServiceRequest" {
        return None;
    }
    let coding = resource.pointer("/code/coding/0")?;
    let code = format!("{}|{}", coding.get("system")?.as_str()?, coding.get("code")?.as_str()?);
    let display = coding
        .get("display")
        .or_else(|| resource.pointer("/code/text"))
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_string();
    Some((code, display))
}

impl PatientOutcome {
    pub fn card_count(&self) -> u32 {
        self.calls.iter().map(|c| c.cards.len() as u32).sum()
    }

    /// The rule ids of its cards, each once, in the order the cards came.
    pub fn rules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.calls.iter().flat_map(|c| &c.cards).flat_map(|card| &card.rules) {
            if !out.contains(rule) {
                out.push(rule.clone());
            }
        }
        out
    }
}

/// The kind of a response warning, by the phrases the facts layer writes (see
/// `facts::PatientFacts::notes` and `fhir::resources`).
pub fn warning_kind(warning: &str) -> &'static str {
    if warning.starts_with("skipped element ") {
        "unreadable element dropped (resource still used)"
    } else if warning.starts_with("skipped ") {
        "skipped resource"
    } else if warning.contains(" not recognised (") {
        "unrecognised medication"
    } else if warning.contains(" not compared: ") {
        "unreadable result (value or unit)"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_is_reduced_to_rules_indicators_orders_and_warnings() {
        let response: CdsResponse = serde_json::from_value(json!({"cards": [
            {"summary": "s", "indicator": "warning", "source": {"label": "l", "topic": {"system": "u", "code": "medication-review"}},
             "extension": {"org.leg-cramp-cds.rules": ["medication-statin", "medication-laba"]},
             "suggestions": [{"label": "Order", "actions": [{"type": "create", "description": "d",
                "resource": {"resourceType": "ServiceRequest", "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9", "display": "Magnesium"}]}}}]}]},
            {"summary": "t", "indicator": "info", "source": {"label": "l", "topic": {"system": "u", "code": "lifestyle-self-care-baseline"}}}
        ], "extension": {"w": ["skipped prefetch.labs entry 1 (Observation/o1): bad", "MedicationRequest/m: RxNorm 1 not recognised (x); not used"]}}))
        .unwrap();
        let call = CallSummary::of("patient-view", &response, "w");
        assert_eq!(call.cards[0].rules, ["medication-statin", "medication-laba"]);
        assert_eq!(call.cards[0].lab_orders, [("http://loinc.org|19123-9".to_string(), "Magnesium".to_string())]);
        assert_eq!(call.cards[1].rules, ["lifestyle-self-care-baseline"]);
        assert!(call.cards[1].lab_orders.is_empty());
        let kinds: Vec<&str> = call.warnings.iter().map(|w| warning_kind(w)).collect();
        assert_eq!(kinds, ["skipped resource", "unrecognised medication"]);
        let patient = PatientOutcome { patient: "p".into(), calls: vec![call.clone(), call], ..Default::default() };
        assert_eq!(patient.card_count(), 4);
        assert_eq!(patient.rules(), ["medication-statin", "medication-laba", "lifestyle-self-care-baseline"]);
    }

    #[test]
    fn warning_kinds_follow_the_facts_phrases() {
        assert_eq!(
            warning_kind("skipped element note of Observation/k (prefetch.labs entry 2): x"),
            "unreadable element dropped (resource still used)"
        );
        assert_eq!(
            warning_kind("Observation/k: potassium result 4 mmol not compared: unit"),
            "unreadable result (value or unit)"
        );
        assert_eq!(warning_kind("pregnancy record incomplete"), "other");
    }
}
