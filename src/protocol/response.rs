//! The service response: cards, suggestions, actions, links and systemActions (CDS Hooks 2.0.1).
//!
//! "Use of JSON": optional attributes without a value are omitted, never `null`, `""`, `[]`
//! or `{}`. Every optional field here is skipped when empty, and the schema tests check it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdsResponse {
    /// Always present; empty means "no guidance".
    pub cards: Vec<Card>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extension: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Indicator {
    Info,
    Warning,
    Critical,
}

impl Indicator {
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::Info => "info",
            Indicator::Warning => "warning",
            Indicator::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub indicator: Indicator,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_behavior: Option<SelectionBehavior>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_reasons: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extension: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionBehavior {
    AtMostOne,
    Any,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Coding>,
}

/// CDS Hooks' own Coding (system and code required, display conditional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_recommended: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: ActionType,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    /// Relative reference `Type/id`; 2.0 uses this (not `resource`) for delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkType {
    Absolute,
    Smart,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub label: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: LinkType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autolaunchable: Option<bool>,
}

fn is_empty_map(m: &Map<String, Value>) -> bool {
    m.is_empty()
}

/// Contract checks that the card schema cannot express (cds-resp-1, and summary length in
/// characters rather than bytes). Used by tests and by the engine's own self-check.
pub fn card_invariant_violations(card: &Card) -> Vec<String> {
    let mut problems = Vec::new();
    if card.summary.chars().count() >= 140 {
        problems.push(format!("summary has {} characters; must be < 140", card.summary.chars().count()));
    }
    if card.selection_behavior == Some(SelectionBehavior::AtMostOne)
        && card.suggestions.iter().filter(|s| s.is_recommended == Some(true)).count() > 1
    {
        problems.push("selectionBehavior at-most-one with more than one isRecommended suggestion".into());
    }
    if !card.suggestions.is_empty() && card.selection_behavior.is_none() {
        problems.push("suggestions without selectionBehavior".into());
    }
    problems
}

/// Paths of every `null`, `""`, `[]` or `{}` in a response body, except the `cards` array
/// itself (which may be empty). Used to enforce "Use of JSON" on everything we emit.
pub fn empty_value_paths(value: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(path.to_string()),
            Value::String(s) if s.is_empty() => out.push(path.to_string()),
            Value::Array(a) => {
                if a.is_empty() && path != "/cards" {
                    out.push(path.to_string());
                }
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}/{i}"), out);
                }
            }
            Value::Object(o) => {
                if o.is_empty() {
                    out.push(path.to_string());
                }
                for (k, x) in o {
                    walk(x, &format!("{path}/{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_response_serialises_without_optional_fields() {
        let body = serde_json::to_value(CdsResponse::default()).unwrap();
        assert_eq!(body, serde_json::json!({"cards": []}));
        assert!(empty_value_paths(&body).is_empty());
    }

    #[test]
    fn empty_value_paths_finds_nulls_and_empties() {
        let v = serde_json::json!({"cards": [{"a": null, "b": "", "c": [], "d": {}}]});
        assert_eq!(empty_value_paths(&v), vec!["/cards/0/a", "/cards/0/b", "/cards/0/c", "/cards/0/d"]);
    }
}
