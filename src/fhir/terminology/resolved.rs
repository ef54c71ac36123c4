//! What an optional terminology service said about the RxNorm codes of one request: the
//! ingredient names of each code it resolved, or why a code was not resolved. Filled by
//! [`super::TerminologyClient`] in a live call; empty offline (`check`, `eval`, tests), where
//! every code reads as "no terminology service is configured".

use std::collections::HashMap;

/// The RxNorm code system.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// Why an RxNorm code could not be turned into ingredients. The text goes into the
/// response's warnings after the medication's reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub enum LookupFailure {
    #[default]
    #[error("no terminology service is configured")]
    NotConfigured,
    #[error("terminology service did not answer in time")]
    Timeout,
    #[error("terminology service unreachable")]
    Unreachable,
    #[error("terminology service answered HTTP {0}")]
    Status(u16),
    #[error("terminology service answer is not readable")]
    Unreadable,
    #[error("terminology service knows no ingredient for it")]
    NoIngredients,
    #[error("not a valid RxNorm code")]
    InvalidCode,
    #[error("too many unrecognised medications in one request")]
    TooMany,
}

/// RxNorm code → ingredient names (lower case), or why not.
#[derive(Debug, Clone, Default)]
pub struct ResolvedCodes {
    answers: HashMap<String, Result<Vec<String>, LookupFailure>>,
    /// Why a code without an answer was not resolved.
    unanswered: LookupFailure,
}

impl ResolvedCodes {
    /// No service configured: every code is unanswered for that reason.
    pub fn none() -> Self {
        Self::default()
    }

    /// A service is configured; codes it was not asked about read as `unanswered`.
    pub fn with_unanswered(unanswered: LookupFailure) -> Self {
        Self { answers: HashMap::new(), unanswered }
    }

    pub fn insert(&mut self, code: &str, answer: Result<Vec<String>, LookupFailure>) {
        self.answers.insert(code.trim().to_string(), answer);
    }

    /// The ingredient names of a resolved code.
    pub fn names(&self, code: &str) -> Option<&[String]> {
        match self.answers.get(code.trim()) {
            Some(Ok(names)) => Some(names),
            _ => None,
        }
    }

    /// Why a code was not resolved.
    pub fn failure(&self, code: &str) -> LookupFailure {
        match self.answers.get(code.trim()) {
            Some(Err(why)) => why.clone(),
            Some(Ok(_)) => LookupFailure::NoIngredients,
            None => self.unanswered.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// Whether a code can be an RxNorm concept id (RXCUI): digits only. Nothing else is ever sent
/// to a terminology service, so request data cannot shape its URL.
pub fn is_rxcui(code: &str) -> bool {
    (1..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_failures_and_the_default_reason() {
        let mut r = ResolvedCodes::with_unanswered(LookupFailure::Timeout);
        r.insert("617310", Ok(vec!["atorvastatin".into()]));
        r.insert("1", Err(LookupFailure::Status(503)));
        assert_eq!(r.names(" 617310 "), Some(&["atorvastatin".to_string()][..]));
        assert_eq!(r.failure("1").to_string(), "terminology service answered HTTP 503");
        assert_eq!(r.failure("2"), LookupFailure::Timeout);
        assert_eq!(ResolvedCodes::none().failure("2").to_string(), "no terminology service is configured");
        assert!(is_rxcui("617310") && !is_rxcui("61/73") && !is_rxcui("") && !is_rxcui("12345678901"));
    }
}
