//! The writer's queue: card records (bounded, shed and counted when full) and feedback and
//! flush jobs (never shed), in one FIFO so a card is always written before feedback about
//! it. Records stay counted against the bound until they are committed, so the bound holds
//! while the database is down and the writer keeps retrying them.

use super::{FeedbackReceipt, FeedbackRow, IssuedCard, StoreError, SuppressedCard};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most records written in one transaction.
const BATCH: usize = 4096;
/// How long the writer waits for more records before writing a batch: a busy service
/// writes one transaction per 10 ms, not one per request. Feedback ends the wait at once.
const LINGER: Duration = Duration::from_millis(10);
/// At most one "records shed" log line per this interval (the metric counts every one).
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One card record: a card issued, or a card withheld by a suppression.
#[derive(Debug, Clone)]
pub enum Record {
    Issued(IssuedCard),
    /// `id` is fixed when queued, so a batch written twice (commit acknowledged late) is
    /// not counted twice.
    Suppressed {
        id: String,
        card: SuppressedCard,
    },
}

impl Record {
    fn kind(&self) -> &'static str {
        match self {
            Record::Issued(_) => "issued",
            Record::Suppressed { .. } => "suppressed",
        }
    }
}

pub struct FeedbackJob {
    pub service: String,
    pub rows: Vec<FeedbackRow>,
    pub suppress_days: i64,
    pub reply: oneshot::Sender<Result<FeedbackReceipt, StoreError>>,
}

enum Job {
    Record(Record),
    Feedback(FeedbackJob),
    Flush(std::sync::mpsc::Sender<()>),
}

/// What the writer does next.
pub enum Work {
    Records(Vec<Record>),
    Feedback(FeedbackJob),
    /// Everything queued before it is committed.
    Flush(std::sync::mpsc::Sender<()>),
    /// Nothing to do for a while.
    Idle,
    /// The store was dropped and the queue is empty.
    Closed,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Card records queued or being written: the bound applies to these.
    records: usize,
    /// Records handed to the writer and not yet committed, put back or given up.
    in_flight: usize,
    /// Feedback jobs queued: they end a linger or a backoff wait at once (a flush does not:
    /// during an outage it would turn the backoff into a busy retry loop).
    urgent: usize,
    closed: bool,
    /// Records ever accepted, and ever settled (committed or given up). Records settle in
    /// queue order, so `settled >= n` means the first `n` accepted are all written.
    accepted: u64,
    settled: u64,
}

pub struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when records settle (for readers catching up, see `wait_settled`).
    progress: Condvar,
    capacity: usize,
    shed_log: Mutex<(Option<Instant>, u64)>,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            progress: Condvar::new(),
            capacity: capacity.max(1),
            shed_log: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic (every change is a single step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues card records; those beyond the bound are shed and counted. Never blocks.
    pub fn push_records(&self, records: impl IntoIterator<Item = Record>) {
        let mut shed: Vec<&'static str> = Vec::new();
        let queued = {
            let mut s = self.lock();
            for r in records {
                if s.records < self.capacity && !s.closed {
                    s.records += 1;
                    s.accepted += 1;
                    s.jobs.push_back(Job::Record(r));
                } else {
                    shed.push(r.kind());
                }
            }
            s.records
        };
        self.wake.notify_one();
        metrics::gauge!(crate::metrics::STORE_QUEUE).set(queued as f64);
        if !shed.is_empty() {
            self.count_shed(&shed);
        }
    }

    fn count_shed(&self, kinds: &[&'static str]) {
        for kind in kinds {
            metrics::counter!(crate::metrics::STORE_SHED, "kind" => *kind).increment(1);
        }
        let mut log = self.shed_log.lock().unwrap_or_else(|e| e.into_inner());
        log.1 += kinds.len() as u64;
        if log.0.is_none_or(|last| last.elapsed() >= SHED_LOG_INTERVAL) {
            tracing::warn!(
                shed = log.1,
                capacity = self.capacity,
                "feedback store queue full: card records shed (not recorded); see cds_store_records_shed_total"
            );
            *log = (Some(Instant::now()), 0);
        }
    }

    pub fn push_feedback(&self, job: FeedbackJob) -> Result<(), StoreError> {
        self.push_job(Job::Feedback(job))
    }

    pub fn push_flush(&self, done: std::sync::mpsc::Sender<()>) -> Result<(), StoreError> {
        self.push_job(Job::Flush(done))
    }

    fn push_job(&self, job: Job) -> Result<(), StoreError> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(StoreError::Closed);
            }
            if matches!(job, Job::Feedback(_)) {
                s.urgent += 1;
            }
            s.jobs.push_back(job);
        }
        self.wake.notify_one();
        Ok(())
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Waits for work. Records at the head wait until `retry_at` (backoff after a failure)
    /// unless feedback is queued behind them; with nothing to do, returns `Idle` after `idle`.
    pub fn take(&self, retry_at: Option<Instant>, idle: Duration) -> Work {
        let start = Instant::now();
        let deadline = retry_at.filter(|t| *t > start).unwrap_or(start + idle);
        let mut s = self.lock();
        loop {
            let now = Instant::now();
            let backing_off = retry_at.is_some_and(|t| now < t);
            if s.urgent > 0 || (!s.jobs.is_empty() && !backing_off) {
                break;
            }
            if s.closed && s.jobs.is_empty() {
                return Work::Closed;
            }
            if now >= deadline {
                return Work::Idle;
            }
            s = self.wake.wait_timeout(s, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        if matches!(s.jobs.front(), Some(Job::Record(_))) {
            if s.urgent == 0 && !s.closed && s.jobs.len() < BATCH {
                s = self
                    .wake
                    .wait_timeout_while(s, LINGER, |s| s.urgent == 0 && !s.closed && s.jobs.len() < BATCH)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let mut batch = Vec::new();
            while batch.len() < BATCH && matches!(s.jobs.front(), Some(Job::Record(_))) {
                if let Some(Job::Record(r)) = s.jobs.pop_front() {
                    batch.push(r);
                }
            }
            s.in_flight = batch.len();
            return Work::Records(batch);
        }
        match s.jobs.pop_front() {
            Some(Job::Feedback(job)) => {
                s.urgent = s.urgent.saturating_sub(1);
                Work::Feedback(job)
            }
            Some(Job::Flush(done)) => Work::Flush(done),
            Some(Job::Record(_)) | None => Work::Idle,
        }
    }

    /// `n` records of the batch in hand are done with (committed, or given up).
    pub fn settle(&self, n: usize) {
        let queued = {
            let mut s = self.lock();
            s.records = s.records.saturating_sub(n);
            s.in_flight = s.in_flight.saturating_sub(n);
            s.settled += n as u64;
            s.records
        };
        self.progress.notify_all();
        metrics::gauge!(crate::metrics::STORE_QUEUE).set(queued as f64);
    }

    /// How many records have been accepted so far: pass it to `wait_settled`.
    pub fn mark(&self) -> u64 {
        self.lock().accepted
    }

    /// Waits (up to `timeout`) until every record accepted before `mark` is settled, so a
    /// read sees the cards issued before it was asked; `false` if the writer is behind.
    pub fn wait_settled(&self, mark: u64, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) =
            self.progress.wait_timeout_while(s, timeout, |s| s.settled < mark).unwrap_or_else(|e| e.into_inner());
        s.settled >= mark
    }

    /// Puts records that could not be written back at the head, in their order.
    pub fn requeue(&self, batch: Vec<Record>) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(batch.len());
        for r in batch.into_iter().rev() {
            s.jobs.push_front(Job::Record(r));
        }
    }

    /// The batch in hand when the writer panicked: it is the work that panicked, so it is
    /// given up (and counted) rather than retried into the same panic. Returns how many.
    pub fn abandon_in_flight(&self) -> usize {
        let n = self.lock().in_flight;
        self.settle(n);
        n
    }

    /// Answers every queued feedback at once with `reason`: the database just failed and
    /// the records ahead of them must be written first. Feedback is idempotent; the EHR
    /// sends it again.
    pub fn refuse_feedback(&self, reason: &str) {
        let refused: Vec<FeedbackJob> = {
            let mut s = self.lock();
            let (feedback, rest): (VecDeque<Job>, VecDeque<Job>) =
                std::mem::take(&mut s.jobs).into_iter().partition(|j| matches!(j, Job::Feedback(_)));
            s.jobs = rest;
            s.urgent = s.urgent.saturating_sub(feedback.len());
            feedback.into_iter().filter_map(|j| if let Job::Feedback(f) = j { Some(f) } else { None }).collect()
        };
        for job in refused {
            let _ = job.reply.send(Err(StoreError::Unavailable(reason.to_string())));
        }
    }

    #[cfg(test)]
    pub fn queued_records(&self) -> usize {
        self.lock().records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(n: usize) -> Record {
        Record::Issued(IssuedCard {
            card_uuid: format!("c{n}"),
            suggestion_uuids: vec![],
            service: "s".into(),
            topic: "r".into(),
            rules: vec!["r".into()],
            indicator: "info".into(),
            silent: false,
            hook_instance: "h".into(),
            patient_key: "k".into(),
            issued_at: chrono::Utc::now(),
        })
    }

    fn uuids(work: Work) -> Vec<String> {
        match work {
            Work::Records(b) => {
                b.into_iter().map(|r| if let Record::Issued(c) = r { c.card_uuid } else { String::new() }).collect()
            }
            _ => panic!("expected records"),
        }
    }

    #[test]
    fn records_beyond_the_bound_are_shed_and_in_flight_ones_still_count() {
        let q = Queue::new(3);
        q.push_records((0..5).map(card));
        assert_eq!(q.queued_records(), 3);
        let batch = uuids(q.take(None, Duration::from_millis(1)));
        assert_eq!(batch, ["c0", "c1", "c2"]);
        q.push_records([card(9)]);
        assert_eq!(q.queued_records(), 3, "records being written still hold their place");
        q.settle(3);
        q.push_records([card(10)]);
        assert_eq!(q.queued_records(), 1);
    }

    #[test]
    fn feedback_is_never_shed_and_keeps_its_place_behind_records() {
        let q = Queue::new(1);
        q.push_records([card(0)]);
        let (reply, _rx) = oneshot::channel();
        q.push_feedback(FeedbackJob { service: "s".into(), rows: vec![], suppress_days: 1, reply }).unwrap();
        q.push_records([card(1)]);
        assert_eq!(uuids(q.take(None, Duration::from_millis(1))), ["c0"]);
        assert!(matches!(q.take(None, Duration::from_millis(1)), Work::Feedback(_)));
    }

    #[test]
    fn a_failed_batch_goes_back_first_and_waits_for_its_retry_unless_feedback_comes() {
        let q = Queue::new(10);
        q.push_records([card(0), card(1)]);
        let Work::Records(batch) = q.take(None, Duration::from_millis(1)) else { panic!("records") };
        q.push_records([card(2)]);
        q.requeue(batch);
        let started = Instant::now();
        let retry = started + Duration::from_millis(80);
        let Work::Records(batch) = q.take(Some(retry), Duration::from_secs(60)) else { panic!("records") };
        assert!(started.elapsed() >= Duration::from_millis(80), "records wait for their retry time");
        q.requeue(batch);
        let (reply, mut rx) = oneshot::channel();
        q.push_feedback(FeedbackJob { service: "s".into(), rows: vec![], suppress_days: 1, reply }).unwrap();
        let started = Instant::now();
        let later = started + Duration::from_secs(60);
        assert_eq!(uuids(q.take(Some(later), Duration::from_secs(60))), ["c0", "c1", "c2"], "order kept");
        assert!(started.elapsed() < Duration::from_secs(5), "feedback ends the backoff wait");
        q.refuse_feedback("down");
        assert!(matches!(rx.try_recv(), Ok(Err(StoreError::Unavailable(_)))));
        assert_eq!(q.queued_records(), 3, "the records in hand still count until settled");
    }

    #[test]
    fn a_flush_waits_behind_records_in_backoff_instead_of_forcing_a_retry() {
        let q = Queue::new(10);
        q.push_records([card(0)]);
        let Work::Records(batch) = q.take(None, Duration::from_millis(1)) else { panic!("records") };
        q.requeue(batch);
        let (done, _rx) = std::sync::mpsc::channel();
        q.push_flush(done).unwrap();
        let started = Instant::now();
        let retry = started + Duration::from_millis(80);
        assert_eq!(uuids(q.take(Some(retry), Duration::from_secs(60))), ["c0"]);
        assert!(started.elapsed() >= Duration::from_millis(80), "the backoff is kept");
        q.settle(1);
        assert!(matches!(q.take(None, Duration::from_millis(1)), Work::Flush(_)));
    }

    #[test]
    fn abandoning_the_batch_in_hand_frees_its_places() {
        let q = Queue::new(2);
        q.push_records([card(0), card(1)]);
        let _ = q.take(None, Duration::from_millis(1));
        assert_eq!(q.abandon_in_flight(), 2);
        assert_eq!(q.queued_records(), 0);
        q.close();
        assert!(matches!(q.take(None, Duration::from_millis(1)), Work::Closed));
        let (reply, _rx) = oneshot::channel();
        assert!(q.push_feedback(FeedbackJob { service: "s".into(), rows: vec![], suppress_days: 1, reply }).is_err());
    }
}
