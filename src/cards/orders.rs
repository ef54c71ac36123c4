//! Lab orders on cards (revision 2 C1, C2): a test is offered only when no recent usable result
//! exists, and then once per response, on the highest-ranked card that suggests it. When a
//! result exists the card states it instead; the text never claims there is none.

use super::evidence::date;
use crate::facts::PatientFacts;
use crate::knowledge::placeholder::shorten;
use crate::knowledge::valueset::ValueSetIndex;
use crate::protocol::response::{Action, ActionType, Suggestion};
use crate::rules::lab_orders::{LabOrderSpec, OrderDecision};
use serde_json::{json, Value};
use std::collections::HashSet;

/// Suggestions and "What to do" lines for a card's orders. `offered` holds the codes already
/// offered by higher-ranked cards of the same response and is updated.
pub fn render(
    index: &ValueSetIndex,
    specs: &[LabOrderSpec],
    decisions: &[(usize, OrderDecision)],
    facts: &PatientFacts,
    patient_id: &str,
    offered: &mut HashSet<String>,
) -> (Vec<Suggestion>, Vec<String>) {
    let mut suggestions = Vec::new();
    let mut lines = Vec::new();
    for (spec_index, decision) in decisions {
        let spec = &specs[*spec_index];
        match decision {
            OrderDecision::Offer if offered.contains(&spec.code) => {
                lines.push(format!("Check {}: its order is offered on the card above", spec.label));
            }
            OrderDecision::Offer => {
                offered.insert(spec.code.clone());
                lines.push(format!("Order {}: no usable result in the last {} days", spec.label, spec.within_days));
                suggestions.push(suggestion(spec, patient_id));
            }
            OrderDecision::HaveResults(results) => {
                let known: Vec<String> = results
                    .iter()
                    .map(|&i| {
                        let o = &facts.observations[i];
                        // The analyte's short name ("magnesium"), not the lab's long display.
                        let name = spec
                            .results
                            .iter()
                            .find(|vs| o.sets.contains(vs))
                            .and_then(|&vs| index.get(vs).label.as_deref())
                            .unwrap_or(&o.label);
                        format!("{name} {} on {}", o.shown_value(), date(o.effective))
                    })
                    .collect();
                lines.push(format!("{}: recent result, no new order needed ({})", spec.label, known.join("; ")));
            }
            OrderDecision::Withheld => {
                if let Some(instead) = &spec.instead {
                    lines.push(instead.clone());
                }
            }
        }
    }
    (suggestions, lines)
}

fn suggestion(spec: &LabOrderSpec, patient_id: &str) -> Suggestion {
    Suggestion {
        label: shorten(&format!("Order {}", spec.display), 100),
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        is_recommended: None,
        actions: vec![Action {
            kind: ActionType::Create,
            description: format!("Order {} (LOINC {})", spec.display, spec.code),
            resource: Some(service_request(&spec.code, &spec.display, patient_id)),
            resource_id: None,
        }],
    }
}

/// A draft lab order, valid FHIR R4 (status, intent and subject are required).
pub fn service_request(loinc: &str, display: &str, patient_id: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/{patient_id}")}
    })
}
