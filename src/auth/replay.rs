//! A token is accepted once: its `jti` is claimed, until the token expires, first in this
//! process's memory and then in a [`ReplayLedger`] shared by every replica and kept across
//! restarts (the feedback store implements it). When the ledger cannot answer, the claim is
//! decided by this process's memory alone: hooks keep answering, a replay to this replica is
//! still refused, and the claims made meanwhile are written to the ledger once it answers
//! again. Only a replay to *another* replica during the outage gets through; the outage is
//! logged once and each such claim counted (`cds_jwt_replay_checked_locally_total`).

use sha2::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The most jti this process remembers at once; beyond, new tokens are refused rather than
/// old ones forgotten (with a 1 h lifetime bound that is 55 tokens a second, sustained).
const MAX_MEMORY_ENTRIES: usize = 200_000;

/// Why the shared ledger gave no answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerUnavailable(pub String);

pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, LedgerUnavailable>> + Send + 'a>>;

/// Used token ids shared by every replica and kept across restarts.
pub trait ReplayLedger: Send + Sync {
    /// Claims `key` (a digest of issuer and jti) until `until` (Unix seconds), atomically:
    /// `Ok(true)` the first time anywhere, `Ok(false)` when it is already claimed and not yet
    /// expired. Answers within a short deadline or fails.
    fn claim(&self, key: String, until: i64) -> ClaimFuture<'_>;
}

/// The ledger key of a token: SHA-256 of issuer and jti, so the store holds neither and every
/// key has the same small size whatever the client sent.
pub fn ledger_key(iss: &str, jti: &str) -> String {
    let mut digest = sha2::Sha256::new();
    digest.update(iss.as_bytes());
    digest.update([0u8]);
    digest.update(jti.as_bytes());
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a jti was refused (the log's reason).
pub const REPLAYED: &str = "jti replayed";
pub const REPLAYED_ELSEWHERE: &str = "jti replayed (claimed by another replica or before a restart)";
pub const MEMORY_FULL: &str = "jti memory full of unexpired tokens";

/// This process's memory (the default), and the shared ledger once given.
#[derive(Default)]
pub struct ReplayGuard {
    /// key → claimed until (Unix seconds).
    memory: Mutex<HashMap<String, i64>>,
    ledger: Option<Arc<dyn ReplayLedger>>,
    /// The ledger failed its last claim (logged once per outage).
    ledger_down: AtomicBool,
}

impl ReplayGuard {
    pub fn with_ledger(self, ledger: Arc<dyn ReplayLedger>) -> Self {
        Self { ledger: Some(ledger), ..self }
    }

    /// Claims the token's jti until `until`; `Err(reason)` when it was used before.
    pub async fn claim(&self, iss: &str, jti: &str, until: i64, now: i64) -> Result<(), &'static str> {
        let key = ledger_key(iss, jti);
        self.remember(&key, until, now)?;
        let Some(ledger) = &self.ledger else { return Ok(()) };
        match ledger.claim(key, until).await {
            Ok(fresh) => {
                if self.ledger_down.swap(false, Ordering::AcqRel) {
                    tracing::info!("JWT replay ledger answers again: jti are shared by every replica");
                }
                if fresh {
                    Ok(())
                } else {
                    Err(REPLAYED_ELSEWHERE)
                }
            }
            Err(e) => {
                if !self.ledger_down.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        reason = %super::report::for_log(&e.0),
                        "JWT REPLAY LEDGER UNAVAILABLE: jti are checked against this process's memory only until the \
                         feedback store answers (a token replayed to another replica meanwhile is not caught)"
                    );
                }
                metrics::counter!(crate::metrics::REPLAY_CHECKED_LOCALLY).increment(1);
                Ok(())
            }
        }
    }

    /// Records the key in this process's memory; refuses one already there.
    fn remember(&self, key: &str, until: i64, now: i64) -> Result<(), &'static str> {
        let mut seen = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get(key).is_some_and(|&kept| kept >= now) {
            return Err(REPLAYED);
        }
        if seen.len() >= MAX_MEMORY_ENTRIES {
            seen.retain(|_, kept| *kept >= now);
            if seen.len() >= MAX_MEMORY_ENTRIES {
                // Full of live tokens: refuse rather than forget (fail closed).
                return Err(MEMORY_FULL);
            }
        }
        seen.insert(key.to_string(), until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger that is down, or that has already seen every key.
    struct Fixed(Result<bool, ()>);

    impl ReplayLedger for Fixed {
        fn claim(&self, _key: String, _until: i64) -> ClaimFuture<'_> {
            let answer = self.0.map_err(|()| LedgerUnavailable("down".into()));
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn memory_refuses_a_replay_even_while_the_ledger_is_down() {
        let guard = ReplayGuard::default().with_ledger(Arc::new(Fixed(Err(()))));
        assert_eq!(guard.claim("iss", "j1", 200, 100).await, Ok(()));
        assert_eq!(guard.claim("iss", "j1", 200, 100).await, Err(REPLAYED));
        assert_eq!(guard.claim("iss", "j1", 200, 201).await, Ok(()), "expired claims are forgotten");
        assert_eq!(guard.claim("other-iss", "j2", 200, 100).await, Ok(()));
    }

    #[tokio::test]
    async fn the_ledger_refuses_what_another_replica_claimed() {
        let guard = ReplayGuard::default().with_ledger(Arc::new(Fixed(Ok(false))));
        assert_eq!(guard.claim("iss", "j1", 200, 100).await, Err(REPLAYED_ELSEWHERE));
    }

    #[test]
    fn keys_are_fixed_size_digests_of_issuer_and_jti() {
        let key = ledger_key("https://ehr.example", &"j".repeat(30_000));
        assert_eq!(key.len(), 64);
        assert_ne!(ledger_key("a", "bc"), ledger_key("ab", "c"));
    }
}
