//! Feedback that is kept and used: every issued card, clinicians' feedback on it, the
//! suppressions that feedback creates, and the analytics read from them. SQLite by default,
//! PostgreSQL for several replicas; the same versioned migrations and SQL on both.
//!
//! Writes run on one supervised writer thread fed by a bounded queue, so recording issued
//! cards never blocks a request, and a clean shutdown drains the queue. Feedback waits for
//! its commit (200 only once durably stored) and is never shed; card records beyond the
//! bound are shed and counted. Records that fail for a passing reason are retried with
//! backoff; the connection reopens itself after a database restart. Analytics run on a
//! reader thread with its own connection. Active suppressions are mirrored in memory so the
//! request path never touches the database; with PostgreSQL the mirror is refreshed from the
//! shared store every few seconds, so replicas converge.

mod burden;
mod error;
mod migrations;
mod patient_key;
mod postgres;
mod queries;
mod queue;
mod reader;
mod replay;
mod retention;
mod sql;
mod sqlite;
mod supervisor;
mod writer;

pub use burden::{recorded_cards, RecordedCard};
pub use error::StoreError;
pub use patient_key::PatientKeyer;
pub use replay::JtiLedger;
pub use supervisor::Outage;

use chrono::{DateTime, Utc};
use queue::{FeedbackJob, Queue, Record};
use serde::Serialize;
use sql::Target;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use supervisor::Health;
use tokio::sync::oneshot;

/// The override reason that suppresses a rule's card for a patient.
pub const ALREADY_ADDRESSED: (&str, &str) = ("urn:leg-cramp-cds:override-reason", "already-addressed");

/// A feedback item whose `userComment` is exactly this panics the writer, when the server
/// runs with the hidden `--test-hooks` flag (loopback only): the supervision test uses it.
pub const TEST_HOOK_PANIC: &str = "leg-cramp-cds test hook: panic the store writer";

/// Default bound of the card-record queue (records waiting to be written; a few hundred
/// bytes each): minutes of a busy service's cards while the database is away.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;

#[derive(Debug, Clone)]
pub struct IssuedCard {
    pub card_uuid: String,
    pub suggestion_uuids: Vec<String>,
    pub service: String,
    /// The card's `source.topic.code` (`medication-review` for a merged card).
    pub topic: String,
    /// The rules the card stands for: its topic for an ordinary card, each rule listed in
    /// `extension["org.leg-cramp-cds.rules"]` for a merged one. Feedback on the card counts
    /// for each, and "already addressed" withholds each.
    pub rules: Vec<String>,
    pub indicator: String,
    /// Issued in silent mode: recorded, never shown.
    pub silent: bool,
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
    /// Items stored (about cards this service issued).
    pub stored: usize,
    /// Items identical to one already stored: acknowledged, not stored twice.
    pub duplicates: usize,
    /// Items about cards this service never issued, or issued longer ago than its retention:
    /// counted (here and in `cds_feedback_unknown_cards_total`), not stored.
    pub unknown_cards: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleAnalytics {
    pub rule: String,
    /// Cards shown to clinicians.
    pub issued: u64,
    /// Cards evaluated and recorded in silent mode, not shown.
    pub silent: u64,
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
            silent: 0,
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

/// Folds a fresh read of the shared store into the mirror and drops what has expired.
/// Suppressions are only ever created or extended, so merging (not replacing) never loses
/// one the writer added while the read was under way.
fn merge_suppressions(map: &mut SuppressionMap, fresh: SuppressionMap, now: DateTime<Utc>) {
    for (patient, rules) in fresh {
        for (rule, until) in rules {
            suppress(map, &patient, &rule, until);
        }
    }
    map.retain(|_, rules| {
        rules.retain(|_, until| *until > now);
        !rules.is_empty()
    });
}

/// The evaluation clock: `--now` when fixed (tests, demos), the system clock otherwise.
#[derive(Debug, Clone, Copy)]
struct Clock(Option<DateTime<Utc>>);

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        self.0.unwrap_or_else(Utc::now)
    }
}

/// How the store runs, beyond where it is.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Replaces the clock (the server's `--now`).
    pub fixed_now: Option<DateTime<Utc>>,
    /// Card records that may wait to be written; more are shed and counted.
    pub queue_capacity: usize,
    /// Honour [`TEST_HOOK_PANIC`]. Only the hidden, loopback-only `--test-hooks` sets it.
    pub test_hooks: bool,
    /// Days rows are kept (`--retain-days`); `None` prunes nothing.
    pub retain_days: Option<u32>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { fixed_now: None, queue_capacity: DEFAULT_QUEUE_CAPACITY, test_hooks: false, retain_days: None }
    }
}

/// Longest a feedback request waits for its commit before answering 503 (it is then not
/// stored: the writer skips a request whose caller has gone).
const FEEDBACK_DEADLINE: Duration = Duration::from_secs(10);
const ANALYTICS_DEADLINE: Duration = Duration::from_secs(30);
/// Analytics queries that may wait for the reader; more answer 503 at once.
const ANALYTICS_QUEUE: usize = 8;
/// How often replicas sharing PostgreSQL reload each other's suppressions.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Handle to the store; cheap to share. Dropping it closes the queue (the writer finishes
/// what is queued and stops).
pub struct FeedbackStore {
    queue: Arc<Queue>,
    analytics: mpsc::SyncSender<reader::AnalyticsJob>,
    suppressions: Arc<RwLock<SuppressionMap>>,
    health: Arc<Health>,
    /// Where the database is, for the connections opened later (the JWT replay ledger).
    target: Target,
    pub keyer: PatientKeyer,
    pub backend_name: &'static str,
}

impl FeedbackStore {
    /// Opens (and migrates) the store: a `postgres://` URL, or a SQLite file path.
    /// `fixed_now` replaces the clock (the server's `--now`, for tests and demos).
    pub fn open(database: &str, secret: Option<&str>, fixed_now: Option<DateTime<Utc>>) -> Result<Self, StoreError> {
        Self::open_with(database, secret, StoreOptions { fixed_now, ..StoreOptions::default() })
    }

    /// As [`open`](Self::open), with the queue bound and test hooks. A configuration error
    /// (bad path or URL, missing secret, refused credentials, failed migration) fails; an
    /// unreachable PostgreSQL does not: the store starts unavailable and the writer keeps
    /// connecting with backoff.
    pub fn open_with(database: &str, secret: Option<&str>, options: StoreOptions) -> Result<Self, StoreError> {
        let target = Target::parse(database)?;
        let keyer = keyer_for(&target, secret)?;
        let clock = Clock(options.fixed_now);
        let health = Arc::new(Health::default());
        let (first, mirror) = match connect_and_load(&target, clock) {
            Ok((conn, map)) => (Some(conn), map),
            Err(e) if e.is_transient() && matches!(target, Target::Postgres(_)) => {
                health.down(&e);
                (None, SuppressionMap::new())
            }
            Err(e) => return Err(e),
        };
        if first.is_some() {
            health.up();
        }
        let backend_name = target.name();
        let suppressions = Arc::new(RwLock::new(mirror));
        let queue = Arc::new(Queue::new(options.queue_capacity));
        let refresh = matches!(target, Target::Postgres(_)).then_some(REFRESH_EVERY);
        let (analytics, jobs) = mpsc::sync_channel(ANALYTICS_QUEUE);
        reader::spawn(
            reader::Shared {
                target: target.clone(),
                queue: queue.clone(),
                mirror: suppressions.clone(),
                clock,
                refresh,
            },
            jobs,
        )?;
        writer::spawn(
            writer::Shared {
                queue: queue.clone(),
                target: target.clone(),
                mirror: suppressions.clone(),
                health: health.clone(),
                clock,
                test_hooks: options.test_hooks,
                retain_days: options.retain_days,
            },
            first,
        )?;
        Ok(Self { queue, analytics, suppressions, health, target, keyer, backend_name })
    }

    /// The JWT replay ledger on this store's database: a thread and connection of its own.
    pub fn replay_ledger(&self) -> Result<JtiLedger, StoreError> {
        JtiLedger::spawn(self.target.clone())
    }

    /// Rules suppressed for this patient at `now` (info/warning cards of these rules are
    /// not issued). Reads the in-memory mirror only.
    pub fn suppressed_rules(&self, patient_key: &str, now: DateTime<Utc>) -> HashSet<String> {
        let map = self.suppressions.read().unwrap_or_else(|e| e.into_inner());
        map.get(patient_key)
            .map(|rules| rules.iter().filter(|(_, until)| **until > now).map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Queues issued cards for recording (off the request path); never blocks. Beyond the
    /// queue bound they are shed and counted (`cds_store_records_shed_total`).
    pub fn record_issued(&self, cards: Vec<IssuedCard>) {
        self.queue.push_records(cards.into_iter().map(Record::Issued));
    }

    pub fn record_suppressed(&self, cards: Vec<SuppressedCard>) {
        self.queue.push_records(
            cards.into_iter().map(|card| Record::Suppressed { id: uuid::Uuid::now_v7().to_string(), card }),
        );
    }

    /// Stores one request's feedback atomically; resolves once committed. While the
    /// database is down this fails at once with a transient error (the EHR sends it again).
    pub async fn store_feedback(
        &self,
        service: String,
        rows: Vec<FeedbackRow>,
        suppress_days: i64,
    ) -> Result<FeedbackReceipt, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queue.push_feedback(FeedbackJob { service, rows, suppress_days, reply })?;
        answer(rx, FEEDBACK_DEADLINE).await
    }

    /// Per-rule analytics, read on the reader's own connection once the cards issued before
    /// this call are written (waiting at most a couple of seconds for the writer).
    pub async fn analytics(&self, since: Option<DateTime<Utc>>) -> Result<Vec<RuleAnalytics>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let mark = self.queue.mark();
        self.analytics.try_send(reader::AnalyticsJob { since, mark, reply }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        answer(rx, ANALYTICS_DEADLINE).await
    }

    /// `Some` while the database does not answer the writer: since when, and why.
    pub fn outage(&self) -> Option<Outage> {
        self.health.outage()
    }

    /// Blocks until everything queued so far is written (or 30 s have passed).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.queue.push_flush(tx).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }
}

impl Drop for FeedbackStore {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Waits for a store thread's answer: a dropped reply means the thread panicked on it.
async fn answer<T>(rx: oneshot::Receiver<Result<T, StoreError>>, deadline: Duration) -> Result<T, StoreError> {
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Interrupted),
        Err(_) => Err(StoreError::Timeout(deadline)),
    }
}

/// The pseudonymous-key secret: given, or (SQLite only) generated once beside the file.
fn keyer_for(target: &Target, secret: Option<&str>) -> Result<PatientKeyer, StoreError> {
    match (secret, target) {
        (Some(s), _) => Ok(PatientKeyer::new(s.as_bytes())),
        (None, Target::Postgres(_)) => Err(StoreError::Config(
            "with PostgreSQL, --patient-key-secret is required (every replica must derive the same pseudonymous patient keys)".into(),
        )),
        (None, Target::Sqlite(file)) => {
            let path = &file.path;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("leg-cramp-cds.sqlite");
            PatientKeyer::load_or_create(&path.with_file_name(format!("{name}.key")))
        }
    }
}

/// The start-up connection: opened, migrated, and the active suppressions read.
fn connect_and_load(target: &Target, clock: Clock) -> Result<(Box<dyn sql::Backend>, SuppressionMap), StoreError> {
    let mut conn = target.connect()?;
    conn.migrate()?;
    let map = queries::active_suppressions(conn.as_mut(), clock.now())?;
    Ok((conn, map))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_retention;
