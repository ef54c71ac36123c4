//! FHIR R4 OperationOutcome: the body of every non-2xx answer from a service endpoint
//! (CDS Hooks 3.0 "Returning OperationOutcome", accepted early as it is cheap and helpful).

use serde::Serialize;

/// The subset of the FHIR `issue-type` code system this service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IssueCode {
    Structure,
    Required,
    Value,
    Invalid,
    Security,
    Login,
    NotFound,
    NotSupported,
    TooCostly,
    Processing,
    Timeout,
    Transient,
    /// Load management: too much in flight; retry later.
    Throttled,
    Exception,
    Incomplete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    pub diagnostics: String,
    /// FHIRPath-ish locations; we put the JSON pointer of the offending element here too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperationOutcome {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    pub issue: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issue: Vec<Issue>) -> Self {
        debug_assert!(!issue.is_empty(), "an OperationOutcome needs at least one issue");
        Self { resource_type: "OperationOutcome", issue }
    }

    pub fn error(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Self::new(vec![Issue::error(code, diagnostics)])
    }
}

impl Issue {
    pub fn error(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        let pointer = pointer.into();
        if !pointer.is_empty() {
            self.expression.push(pointer);
        }
        self
    }
}
