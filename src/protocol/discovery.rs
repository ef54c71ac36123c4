//! Discovery (`GET /cds-services`): the list of services this host offers.

use super::template::PrefetchTemplate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DiscoveryResponse {
    pub services: Vec<ServiceDefinition>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDefinition {
    pub hook: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub description: String,
    pub id: String,
    /// Key -> prefetch template. BTreeMap keeps discovery output stable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub prefetch: BTreeMap<String, PrefetchTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_requirements: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Map<String, Value>>,
    /// `cards/services.json` only, never sent in discovery: evaluate and record every card as
    /// issued silently, and answer `{"cards": []}` (a rule set's first weeks in production).
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub silent: bool,
}

/// Prefetch tokens allowed by CDS Hooks 2.0.1: root-level primitive context fields marked
/// "Prefetch Token: Yes" in the hook library, plus the four user tokens derived from userId.
pub fn allowed_prefetch_tokens(hook: &str) -> &'static [&'static str] {
    const USER: [&str; 4] = ["userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"];
    match hook {
        "patient-view"
        | "order-select"
        | "order-sign"
        | "encounter-start"
        | "encounter-discharge"
        | "appointment-book" => {
            &["context.userId", "context.patientId", "context.encounterId", USER[0], USER[1], USER[2], USER[3]]
        }
        _ => &[],
    }
}

impl ServiceDefinition {
    /// Checks that every prefetch template uses only 2.0 tokens for this service's hook.
    pub fn check_prefetch_tokens(&self) -> Result<(), String> {
        let allowed = allowed_prefetch_tokens(&self.hook);
        for (key, template) in &self.prefetch {
            if let Some(e) = template.problem() {
                return Err(format!("prefetch {key}: {e}"));
            }
            for token in template.tokens() {
                if !allowed.contains(&token) {
                    return Err(format!(
                        "prefetch {key}: token {{{{{token}}}}} is not a CDS Hooks 2.0 prefetch token for hook {}",
                        self.hook
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_extracted_and_checked() {
        let template = PrefetchTemplate::parse("Observation?patient={{context.patientId}}&x={{ userPractitionerId }}");
        assert_eq!(template.unwrap().tokens().collect::<Vec<_>>(), vec!["context.patientId", "userPractitionerId"]);
        assert!(PrefetchTemplate::parse("Patient/{{context.patientId").is_err());
        let mut svc = ServiceDefinition {
            hook: "patient-view".into(),
            title: None,
            description: "d".into(),
            id: "x".into(),
            prefetch: BTreeMap::from([("p".to_string(), "Patient/{{context.patientId}}".into())]),
            usage_requirements: None,
            extension: None,
            silent: false,
        };
        assert!(svc.check_prefetch_tokens().is_ok());
        svc.prefetch.insert("m".into(), "MedicationRequest/{{context.medication.id}}".into());
        let err = svc.check_prefetch_tokens().unwrap_err();
        assert!(err.contains("context.medication.id"), "{err}");
    }
}
