//! The service-call request (`POST /cds-services/{id}`), parsed and checked in one place.
//!
//! Parse, don't validate: once you hold a [`CdsRequest`], its envelope matched
//! `schemas/request.schema.json`, its context matched the hook's definition, its hook is the
//! service's hook and the contract's cross-field invariants hold.

use super::schemas::{Document, SchemaError, SchemaSet};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a prefetch value is read from the request, chosen by the layer that reads its resources
/// (`fhir::prefetch::PrefetchValue` reads FHIR into typed models in the same pass as
/// the request; `serde_json::Value` keeps plain JSON). The protocol only needs what the request
/// schema checks of it.
pub trait PrefetchRead: for<'de> Deserialize<'de> {
    /// What the request schema needs to see of it.
    fn schema_stub(&self) -> Value;
    /// From an already parsed value (eval, tests).
    fn from_value(value: Value) -> Self;
}

/// Prefetch kept as plain JSON.
impl PrefetchRead for Value {
    fn schema_stub(&self) -> Value {
        self.clone()
    }

    fn from_value(value: Value) -> Self {
        value
    }
}

/// A service call, generic over how its prefetch values are read (see `PrefetchRead`); the
/// service uses `fhir::CdsRequest`, whose prefetch is read into typed FHIR as it is parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "P: Deserialize<'de>"))]
pub struct CdsRequest<P> {
    pub hook: String,
    pub hook_instance: String,
    #[serde(default)]
    pub fhir_server: Option<String>,
    #[serde(default)]
    pub fhir_authorization: Option<FhirAuthorization>,
    pub context: Context,
    /// Key -> FHIR resource, OperationOutcome, or `null` ("no data"), kept as raw JSON so
    /// that resources are parsed once, straight into typed structs. A key that is absent
    /// means the client did not supply it: the two cases are different (contract §1.5).
    #[serde(default)]
    pub prefetch: BTreeMap<String, P>,
    #[serde(default)]
    pub extension: Option<Map<String, Value>>,
}

/// `fhirAuthorization`. The token is transient: it is never logged or stored, and its
/// `Debug` output is redacted so that a stray `{:?}` cannot leak it.
#[derive(Clone, Deserialize)]
pub struct FhirAuthorization {
    pub access_token: String,
    pub token_type: String,
    /// Seconds. A JSON number as sent: the schema asks for an integer, which JSON also spells
    /// `300.0` or `1e3`; only the redacted Debug output shows it.
    pub expires_in: serde_json::Number,
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
#[derive(Debug, Clone, Default, Deserialize)]
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

impl<P: PrefetchRead> CdsRequest<P> {
    /// Parses and checks a request body for a service that answers `expected_hook`.
    ///
    /// The prefetch resources (most of the bytes) are not built into a JSON tree: the schema
    /// sees each prefetch value as a stub `{"resourceType": …}` (all the request schema
    /// checks of it), and the raw text is kept for typed parsing by the FHIR layer.
    pub fn parse(body: &[u8], schemas: &SchemaSet, expected_hook: &str) -> Result<Self, RequestError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(RequestError::Empty);
        }
        let text = std::str::from_utf8(body).map_err(|e| RequestError::Malformed(format!("not UTF-8: {e}")))?;
        // One pass splits the envelope from the raw prefetch values. Anything unusual (not an
        // object, prefetch not an object, bad JSON) takes the full parse for a precise error.
        // (A derived struct would also accept a JSON array positionally: objects only.)
        let is_object = text.trim_start().starts_with('{');
        let top: TopLevel<P> = match serde_json::from_str(text) {
            Ok(t) if is_object => t,
            _ => {
                let value: Value = serde_json::from_str(text).map_err(|e| RequestError::Malformed(e.to_string()))?;
                return Self::from_value(value, schemas, expected_hook);
            }
        };
        let mut envelope = Map::new();
        for (key, raw) in [
            ("hook", top.hook),
            ("hookInstance", top.hook_instance),
            ("fhirServer", top.fhir_server),
            ("fhirAuthorization", top.fhir_authorization),
            ("context", top.context),
            ("extension", top.extension),
        ] {
            if let Some(raw) = raw {
                let value = serde_json::from_str(raw.get()).map_err(|e| RequestError::Malformed(e.to_string()))?;
                envelope.insert(key.to_string(), value);
            }
        }
        match &top.prefetch {
            None => {}
            Some(None) => {
                envelope.insert("prefetch".into(), Value::Null);
            }
            Some(Some(map)) => {
                let stubs: Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), v.schema_stub())).collect();
                envelope.insert("prefetch".into(), Value::Object(stubs));
            }
        }
        let mut request = Self::check(Value::Object(envelope), schemas, expected_hook)?;
        request.prefetch = top.prefetch.flatten().unwrap_or_default();
        Ok(request)
    }

    /// The same checks on an already parsed request (used by `eval`, `check` and tests).
    pub fn from_value(value: Value, schemas: &SchemaSet, expected_hook: &str) -> Result<Self, RequestError> {
        let mut stubbed = value;
        let prefetch: Option<BTreeMap<String, P>> = match stubbed.get_mut("prefetch") {
            Some(Value::Object(map)) => {
                let values: BTreeMap<String, P> =
                    std::mem::take(map).into_iter().map(|(k, v)| (k, P::from_value(v))).collect();
                *map = values.iter().map(|(k, v)| (k.clone(), v.schema_stub())).collect();
                Some(values)
            }
            _ => None,
        };
        let mut request = Self::check(stubbed, schemas, expected_hook)?;
        request.prefetch = prefetch.unwrap_or_default();
        Ok(request)
    }

    fn check(mut value: Value, schemas: &SchemaSet, expected_hook: &str) -> Result<Self, RequestError> {
        schemas.validate(Document::Request, &value).map_err(RequestError::Invalid)?;
        // Prefetch values are kept raw by the callers; the stubs have served the schema.
        if let Some(map) = value.as_object_mut() {
            map.remove("prefetch");
        }
        let hook = value["hook"].as_str().unwrap_or_default();
        if hook != expected_hook {
            return Err(RequestError::HookMismatch { expected: expected_hook.into(), got: hook.into() });
        }
        schemas.validate_context(hook, &value["context"]).map_err(RequestError::Invalid)?;
        let request: CdsRequest<P> = serde_json::from_value(value)
            .map_err(|e| RequestError::Invalid(vec![SchemaError { pointer: String::new(), message: e.to_string() }]))?;
        request.check_invariants().map_err(RequestError::Invalid)?;
        Ok(request)
    }

    /// Invariants a schema cannot express.
    fn check_invariants(&self) -> Result<(), Vec<SchemaError>> {
        let mut errors = Vec::new();
        // order-select: every selection names an order inside draftOrders.
        if !self.context.selections.is_empty() {
            let drafts: std::collections::HashSet<String> =
                draft_order_references(self.context.draft_orders.as_ref()).into_iter().collect();
            for (i, selection) in self.context.selections.iter().enumerate() {
                if !drafts.contains(selection) {
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

/// The top level of a request, split in one pass: envelope members as raw JSON (parsed
/// next, they are small), prefetch values as raw JSON (parsed later, once, into typed FHIR).
/// Unknown members are skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "P: Deserialize<'de>"))]
struct TopLevel<'a, P> {
    #[serde(borrow, default)]
    hook: Option<&'a RawValue>,
    #[serde(borrow, default)]
    hook_instance: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fhir_server: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fhir_authorization: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    extension: Option<&'a RawValue>,
    /// Absent → None; `null` → Some(None) (the schema refuses it); an object → its members.
    #[serde(default, deserialize_with = "present")]
    prefetch: Option<Option<BTreeMap<String, P>>>,
}

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
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
    fn hook_must_match_service() {
        let e = CdsRequest::<Value>::from_value(pv(), &schemas(), "order-sign").unwrap_err();
        assert!(matches!(e, RequestError::HookMismatch { .. }));
    }

    #[test]
    fn fhir_authorization_requires_fhir_server() {
        let mut v = pv();
        v["fhirAuthorization"] =
            json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"});
        let e = CdsRequest::<Value>::from_value(v, &schemas(), "patient-view").unwrap_err();
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
        let e = CdsRequest::<Value>::from_value(v, &schemas(), "order-select").unwrap_err();
        assert!(e.to_string().contains("/context/selections/0"), "{e}");
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let a = FhirAuthorization {
            access_token: "very-secret".into(),
            token_type: "Bearer".into(),
            expires_in: 1.into(),
            scope: "s".into(),
            subject: "c".into(),
            patient: None,
        };
        assert!(!format!("{a:?}").contains("very-secret"));
    }
}
