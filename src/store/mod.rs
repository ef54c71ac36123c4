//! Feedback that is kept and used: every issued card, clinicians' feedback on it, the
//! suppressions that feedback creates, and the analytics read from them. SQLite by default,
//! PostgreSQL for several replicas; the same versioned migrations and SQL on both.
//!
//! All database work runs on one writer thread fed by a channel, so recording issued cards
//! never blocks a request and a clean shutdown drains the queue. Feedback waits for its
//! commit (200 only once durably stored). Active suppressions are mirrored in memory so the
//! request path never touches the database; with PostgreSQL the mirror is refreshed from the
//! shared store every few seconds, so replicas converge.

mod backend;
mod migrations;
mod patient_key;

pub use backend::StoreError;
pub use patient_key::PatientKeyer;

use backend::Backend;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The override reason that suppresses a rule's card for a patient.
pub const ALREADY_ADDRESSED: (&str, &str) = ("urn:leg-cramp-cds:override-reason", "already-addressed");

#[derive(Debug, Clone)]
pub struct IssuedCard {
    pub card_uuid: String,
    pub suggestion_uuids: Vec<String>,
    pub service: String,
    pub rule: String,
    pub indicator: String,
    pub hook_instance: String,
    pub patient_key: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SuppressedCard {
    pub service: String,
    pub rule: String,
    pub patient_key: String,
    pub hook_instance: String,
    pub at: DateTime<Utc>,
}

/// One feedback item, validated against the schema, ready to store.
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    /// Index in the request's `feedback` array (for error pointers).
    pub index: usize,
    pub card_uuid: String,
    pub outcome: String,
    pub accepted_suggestions: Vec<String>,
    pub override_system: Option<String>,
    pub override_code: Option<String>,
    pub override_display: Option<String>,
    pub user_comment: Option<String>,
    pub outcome_timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackReceipt {
    pub stored: usize,
    pub duplicates: usize,
    /// Items about cards this service never issued: stored, flagged, not counted.
    pub unknown_cards: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleAnalytics {
    pub rule: String,
    pub issued: u64,
    pub accepted: u64,
    pub overridden: u64,
    pub suppressed: u64,
    /// overridden / (accepted + overridden): the share of acted-on cards that were overridden.
    pub override_rate: f64,
    pub top_override_reasons: Vec<ReasonCount>,
}

impl RuleAnalytics {
    /// A rule with nothing recorded yet.
    pub fn empty(rule: &str) -> Self {
        Self {
            rule: rule.to_string(),
            issued: 0,
            accepted: 0,
            overridden: 0,
            suppressed: 0,
            override_rate: 0.0,
            top_override_reasons: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReasonCount {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub count: u64,
}

enum Command {
    RecordIssued(Vec<IssuedCard>),
    RecordSuppressed(Vec<SuppressedCard>),
    StoreFeedback {
        service: String,
        rows: Vec<FeedbackRow>,
        suppress_days: i64,
        reply: oneshot::Sender<Result<FeedbackReceipt, StoreError>>,
    },
    Analytics {
        since: Option<DateTime<Utc>>,
        reply: oneshot::Sender<Result<Vec<RuleAnalytics>, StoreError>>,
    },
    Refresh,
    Flush(std::sync::mpsc::Sender<()>),
}

/// patient key → rule → suppressed until. Keyed by patient first: a request looks up one
/// patient, whatever the number of suppressions stored.
type SuppressionMap = HashMap<String, HashMap<String, DateTime<Utc>>>;

/// Records a suppression, keeping the later end when one already exists (as the SQL does).
fn suppress(map: &mut SuppressionMap, patient: &str, rule: &str, until: DateTime<Utc>) {
    let slot = map.entry(patient.to_string()).or_default().entry(rule.to_string()).or_insert(until);
    if *slot < until {
        *slot = until;
    }
}

/// Handle to the store; cheap to share.
pub struct FeedbackStore {
    tx: mpsc::Sender<Command>,
    suppressions: Arc<RwLock<SuppressionMap>>,
    pub keyer: PatientKeyer,
    pub backend_name: &'static str,
}

impl FeedbackStore {
    /// Opens (and migrates) the store: a `postgres://` URL, or a SQLite file path.
    /// `fixed_now` replaces the clock (the server's `--now`, for tests and demos).
    pub fn open(database: &str, secret: Option<&str>, fixed_now: Option<DateTime<Utc>>) -> Result<Self, StoreError> {
        let clock = move || fixed_now.unwrap_or_else(Utc::now);
        let (backend, keyer): (Box<dyn Backend>, PatientKeyer) = if database.starts_with("postgres://")
            || database.starts_with("postgresql://")
        {
            let secret = secret.ok_or_else(|| {
                    StoreError::Config(
                        "with PostgreSQL, --patient-key-secret is required (every replica must derive the same pseudonymous patient keys)".into(),
                    )
                })?;
            (Box::new(backend::Postgres::connect(database)?), PatientKeyer::new(secret.as_bytes()))
        } else {
            let path = Path::new(database);
            let keyer = match secret {
                Some(s) => PatientKeyer::new(s.as_bytes()),
                None => PatientKeyer::load_or_create(&path.with_extension("sqlite.key").with_file_name(format!(
                    "{}.key",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("leg-cramp-cds.sqlite")
                )))?,
            };
            (Box::new(backend::Sqlite::open(path)?), keyer)
        };
        let backend_name = backend.name();
        let mut backend = backend;
        backend.migrate()?;
        let suppressions = Arc::new(RwLock::new(backend.active_suppressions(clock())?));
        let (tx, rx) = mpsc::channel();
        let mirror = suppressions.clone();
        std::thread::Builder::new()
            .name("feedback-store".into())
            .spawn(move || writer_loop(backend, rx, mirror, clock))
            .map_err(|e| StoreError::Config(e.to_string()))?;
        if backend_name == "postgres" {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("suppression-refresh".into())
                .spawn(move || {
                    while tx.send(Command::Refresh).is_ok() {
                        std::thread::sleep(Duration::from_secs(5));
                    }
                })
                .map_err(|e| StoreError::Config(e.to_string()))?;
        }
        Ok(Self { tx, suppressions, keyer, backend_name })
    }

    /// Rules suppressed for this patient at `now` (info/warning cards of these rules are
    /// not issued). Reads the in-memory mirror only.
    pub fn suppressed_rules(&self, patient_key: &str, now: DateTime<Utc>) -> HashSet<String> {
        let map = self.suppressions.read().unwrap_or_else(|e| e.into_inner());
        map.get(patient_key)
            .map(|rules| rules.iter().filter(|(_, until)| **until > now).map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Queues issued cards for recording (off the request path).
    pub fn record_issued(&self, cards: Vec<IssuedCard>) {
        if !cards.is_empty() && self.tx.send(Command::RecordIssued(cards)).is_err() {
            tracing::error!("feedback store is closed; issued cards not recorded");
        }
    }

    pub fn record_suppressed(&self, cards: Vec<SuppressedCard>) {
        if !cards.is_empty() && self.tx.send(Command::RecordSuppressed(cards)).is_err() {
            tracing::error!("feedback store is closed; suppressed cards not recorded");
        }
    }

    /// Stores one request's feedback atomically; resolves once committed.
    pub async fn store_feedback(
        &self,
        service: String,
        rows: Vec<FeedbackRow>,
        suppress_days: i64,
    ) -> Result<FeedbackReceipt, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::StoreFeedback { service, rows, suppress_days, reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn analytics(&self, since: Option<DateTime<Utc>>) -> Result<Vec<RuleAnalytics>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Analytics { since, reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Blocks until everything queued so far is written.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }
}

fn writer_loop(
    mut backend: Box<dyn Backend>,
    rx: mpsc::Receiver<Command>,
    mirror: Arc<RwLock<SuppressionMap>>,
    clock: impl Fn() -> DateTime<Utc>,
) {
    while let Ok(first) = rx.recv() {
        // Batch whatever else is already queued, and for card records linger briefly so a
        // busy service writes one transaction per 10 ms, not one per request.
        if matches!(first, Command::RecordIssued(_) | Command::RecordSuppressed(_)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut issued = Vec::new();
        let mut suppressed = Vec::new();
        let flush_records =
            |backend: &mut Box<dyn Backend>, issued: &mut Vec<IssuedCard>, suppressed: &mut Vec<SuppressedCard>| {
                if issued.is_empty() && suppressed.is_empty() {
                    return;
                }
                if let Err(e) = backend.record(issued, suppressed) {
                    tracing::error!(error = %e, cards = issued.len(), "recording issued cards failed");
                }
                issued.clear();
                suppressed.clear();
            };
        for command in batch {
            match command {
                Command::RecordIssued(c) => issued.extend(c),
                Command::RecordSuppressed(c) => suppressed.extend(c),
                other => {
                    // Keep order: records queued before this command are written first.
                    flush_records(&mut backend, &mut issued, &mut suppressed);
                    match other {
                        Command::StoreFeedback { service, rows, suppress_days, reply } => {
                            let result = backend.store_feedback(&service, &rows, suppress_days, clock());
                            if let Ok((_, new)) = &result {
                                let mut map = mirror.write().unwrap_or_else(|e| e.into_inner());
                                for (patient, rule, until) in new {
                                    suppress(&mut map, patient, rule, *until);
                                }
                            }
                            let _ = reply.send(result.map(|(receipt, _)| receipt));
                        }
                        Command::Analytics { since, reply } => {
                            let _ = reply.send(backend.analytics(since));
                        }
                        Command::Refresh => match backend.active_suppressions(clock()) {
                            Ok(fresh) => *mirror.write().unwrap_or_else(|e| e.into_inner()) = fresh,
                            Err(e) => tracing::warn!(error = %e, "suppression refresh failed; keeping the last copy"),
                        },
                        Command::Flush(done) => {
                            let _ = done.send(());
                        }
                        Command::RecordIssued(_) | Command::RecordSuppressed(_) => unreachable!("handled above"),
                    }
                }
            }
        }
        flush_records(&mut backend, &mut issued, &mut suppressed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suppression_keeps_its_later_end_and_is_looked_up_per_patient() {
        let t = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
        let mut map = SuppressionMap::new();
        suppress(&mut map, "p1", "rule-a", t("2026-07-15T00:00:00Z"));
        suppress(&mut map, "p1", "rule-a", t("2026-07-01T00:00:00Z"));
        assert_eq!(map["p1"]["rule-a"], t("2026-07-15T00:00:00Z"), "an earlier end never shortens it");
        suppress(&mut map, "p1", "rule-a", t("2026-08-01T00:00:00Z"));
        assert_eq!(map["p1"]["rule-a"], t("2026-08-01T00:00:00Z"));
        suppress(&mut map, "p2", "rule-b", t("2026-08-01T00:00:00Z"));
        assert_eq!(map.len(), 2);
        assert!(!map["p1"].contains_key("rule-b"));
    }
}
