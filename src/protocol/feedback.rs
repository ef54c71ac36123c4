//! Feedback (`POST /cds-services/{id}/feedback`), CDS Hooks 2.0.1 "Feedback".

use super::response::Coding;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize)]
pub struct FeedbackRequest {
    pub feedback: Vec<FeedbackItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    Overridden,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Overridden => "overridden",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackItem {
    pub card: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub accepted_suggestions: Vec<AcceptedSuggestion>,
    #[serde(default)]
    pub override_reason: Option<OverrideReason>,
    pub outcome_timestamp: String,
    #[serde(default)]
    pub extension: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AcceptedSuggestion {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideReason {
    #[serde(default)]
    pub reason: Option<Coding>,
    #[serde(default)]
    pub user_comment: Option<String>,
}
