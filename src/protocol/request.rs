//! The service-call request (`POST /cds-services/{id}`), parsed and checked in one place.
//!
//! Parse, don't validate: once you hold a [`CdsRequest`], its envelope matched
//! `schemas/request.schema.json`, its context matched the hook's definition, its hook is the
//! service's hook and the contract's cross-field invariants hold.

use super::schemas::{Document, SchemaError, SchemaSet};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdsRequest {
    pub hook: String,
    pub hook_instance: String,
    #[serde(default)]
    pub fhir_server: Option<String>,
    #[serde(default)]
    pub fhir_authorization: Option<FhirAuthorization>,
    pub context: Context,
    /// Key -> FHIR resource, OperationOutcome, or `null` ("no data"). A key that is absent
    /// means the client did not supply it: the two cases are different (contract §1.5).
    #[serde(default)]
    pub prefetch: Map<String, Value>,
    #[serde(default)]
    pub extension: Option<Map<String, Value>>,
}

/// `fhirAuthorization`. The token is transient: it is never logged or stored, and its
/// `Debug` output is redacted so that a stray `{:?}` cannot leak it.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct FhirAuthorization {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
    pub subject: String,
    #[serde(default)]
    pub patient: Option<String>,
}

impl std::fmt::Debug for FhirAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirAuthorization")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("subject", &self.subject)
            .finish()
    }
}

/// The context fields of the hooks this service answers (patient-view, order-select,
/// order-sign). Fields of other hooks are ignored.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub patient_id: Option<String>,
    #[serde(default)]
    pub encounter_id: Option<String>,
    #[serde(default)]
    pub selections: Vec<String>,
    /// Bundle of draft orders (order-select, order-sign).
    #[serde(default)]
    pub draft_orders: Option<Value>,
}

impl Context {
    /// The value of a root-level context field usable as a prefetch token.
    pub fn token(&self, name: &str) -> Option<&str> {
        match name {
            "userId" => self.user_id.as_deref(),
            "patientId" => self.patient_id.as_deref(),
            "encounterId" => self.encounter_id.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    Empty,
    /// Not JSON at all (or nested deeper than the parser allows).
    Malformed(String),
    /// Valid JSON that breaks the schema or an invariant.
    Invalid(Vec<SchemaError>),
    HookMismatch {
        expected: String,
        got: String,
    },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Empty => write!(f, "request body is empty; expected a CDS Hooks request JSON object"),
            RequestError::Malformed(m) => write!(f, "request body is not valid JSON: {m}"),
            RequestError::Invalid(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "request does not conform to CDS Hooks 2.0.1: {}", list.join("; "))
            }
            RequestError::HookMismatch { expected, got } => {
                write!(f, "/hook: this service answers hook '{expected}', the request is for '{got}'")
            }
        }
    }
}

impl CdsRequest {
    /// Parses and checks a request body for a service that answers `expected_hook`.
    pub fn parse(body: &[u8], schemas: &SchemaSet, expected_hook: &str) -> Result<Self, RequestError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(RequestError::Empty);
        }
        // serde_json keeps its recursion limit (128) on, so deep nesting is an error, not a stack overflow.
        let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        Self::from_value(value, schemas, expected_hook)
    }

    pub fn from_value(value: Value, schemas: &SchemaSet, expected_hook: &str) -> Result<Self, RequestError> {
        schemas.validate(Document::Request, &value).map_err(RequestError::Invalid)?;
        let hook = value["hook"].as_str().unwrap_or_default();
        if hook != expected_hook {
            return Err(RequestError::HookMismatch { expected: expected_hook.into(), got: hook.into() });
        }
        schemas.validate_context(hook, &value["context"]).map_err(RequestError::Invalid)?;
        let request: CdsRequest = serde_json::from_value(value)
            .map_err(|e| RequestError::Invalid(vec![SchemaError { pointer: String::new(), message: e.to_string() }]))?;
        request.check_invariants().map_err(RequestError::Invalid)?;
        Ok(request)
    }

    /// Invariants a schema cannot express.
    fn check_invariants(&self) -> Result<(), Vec<SchemaError>> {
        let mut errors = Vec::new();
        // order-select: every selection names an order inside draftOrders.
        if !self.context.selections.is_empty() {
            let drafts = draft_order_references(self.context.draft_orders.as_ref());
            for (i, selection) in self.context.selections.iter().enumerate() {
                if !drafts.iter().any(|d| d == selection) {
                    errors.push(SchemaError {
                        pointer: format!("/context/selections/{i}"),
                        message: "selection does not match any resource in context.draftOrders".into(),
                    });
                }
            }
        }
        if let Some(auth) = &self.fhir_authorization {
            // cds-r-2 is a warning in the spec; we only need patient to agree when both are present.
            if let (Some(p), Some(ctx)) = (&auth.patient, &self.context.patient_id) {
                if p != ctx {
                    errors.push(SchemaError {
                        pointer: "/fhirAuthorization/patient".into(),
                        message: "fhirAuthorization.patient differs from context.patientId".into(),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// `Type/id` of each resource in a draft-orders Bundle.
pub fn draft_order_references(bundle: Option<&Value>) -> Vec<String> {
    let Some(entries) = bundle.and_then(|b| b.get("entry")).and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let r = e.get("resource")?;
            Some(format!("{}/{}", r.get("resourceType")?.as_str()?, r.get("id")?.as_str()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> SchemaSet {
        SchemaSet::compile().unwrap()
    }

    fn pv() -> Value {
        json!({
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": null}
        })
    }

    #[test]
    fn null_prefetch_is_kept_distinct_from_absent() {
        let r = CdsRequest::from_value(pv(), &schemas(), "patient-view").unwrap();
        assert_eq!(r.prefetch.get("patient"), Some(&Value::Null));
        assert!(!r.prefetch.contains_key("conditions"));
    }

    #[test]
    fn hook_must_match_service() {
        let e = CdsRequest::from_value(pv(), &schemas(), "order-sign").unwrap_err();
        assert!(matches!(e, RequestError::HookMismatch { .. }));
    }

    #[test]
    fn fhir_authorization_requires_fhir_server() {
        let mut v = pv();
        v["fhirAuthorization"] =
            json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"});
        let e = CdsRequest::from_value(v, &schemas(), "patient-view").unwrap_err();
        assert!(e.to_string().contains("fhirServer"), "{e}");
    }

    #[test]
    fn selections_must_name_draft_orders() {
        let v = json!({
            "hook": "order-select",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1",
                "selections": ["MedicationRequest/m2"],
                "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [
                    {"resource": {"resourceType": "MedicationRequest", "id": "m1"}}]}}
        });
        let e = CdsRequest::from_value(v, &schemas(), "order-select").unwrap_err();
        assert!(e.to_string().contains("/context/selections/0"), "{e}");
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let a = FhirAuthorization {
            access_token: "very-secret".into(),
            token_type: "Bearer".into(),
            expires_in: 1,
            scope: "s".into(),
            subject: "c".into(),
            patient: None,
        };
        assert!(!format!("{a:?}").contains("very-secret"));
    }
}
