//! What can make a service call fail once its request is parsed.

/// A prefetch key that could not be had, and why (no patient data: the reasons name servers,
/// statuses and paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    pub key: String,
    pub reason: String,
}

impl MissingKey {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Required data could not be had (contract §1.5); HTTP answers 412, one issue per key.
    #[error("required prefetch data is missing and could not be fetched: {}", list(.0))]
    PrefetchUnavailable(Vec<MissingKey>),
    /// The prefetched Patient is not `context.patientId` (JSON pointers to each such Patient's
    /// id): the request mixes two patients. HTTP answers 400 naming both pointers.
    #[error("/context/patientId: the prefetched Patient ({}) is another patient", .0.join(", "))]
    PatientMismatch(Vec<String>),
}

fn list(keys: &[MissingKey]) -> String {
    keys.iter().map(|k| format!("{}: {}", k.key, k.reason)).collect::<Vec<_>>().join("; ")
}

impl ServiceError {
    /// The keys that could not be had, as (key, reason) pairs.
    pub fn missing_keys(&self) -> Vec<(String, String)> {
        match self {
            ServiceError::PrefetchUnavailable(keys) => keys.iter().map(|k| (k.key.clone(), k.reason.clone())).collect(),
            ServiceError::PatientMismatch(_) => Vec::new(),
        }
    }
}
