//! The writer thread: card records and feedback, in queue order, on one connection.
//! Records that fail for a passing reason go back to the head of the queue and are retried
//! with backoff; feedback is answered at once (503 while the database is down); the
//! connection reopens itself; a panic restarts the loop with the queue intact. Between work
//! items it runs the retention passes, one small batch at a time.

use super::queries;
use super::queue::{FeedbackJob, Queue, Record, Work};
use super::retention::Retention;
use super::sql::{Backend, Link, Target};
use super::supervisor::{supervise, Health};
use super::{suppress, Clock, StoreError, SuppressionMap, TEST_HOOK_PANIC};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// With nothing to do for this long, the writer checks that the database still answers,
/// so readiness notices an outage without traffic.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Shared {
    pub queue: Arc<Queue>,
    pub target: Target,
    pub mirror: Arc<RwLock<SuppressionMap>>,
    pub health: Arc<Health>,
    pub clock: Clock,
    pub test_hooks: bool,
    /// `--retain-days`; `None`: nothing is pruned (the report command).
    pub retain_days: Option<u32>,
}

/// Starts the supervised writer thread; `first` is the connection opened at start-up, if any.
pub fn spawn(shared: Shared, first: Option<Box<dyn Backend>>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("feedback-store".into())
        .spawn(move || {
            let mut first = first;
            supervise(
                "writer",
                || {
                    let link = match first.take() {
                        Some(conn) => Link::with_connection(shared.target.clone(), true, conn),
                        None => Link::new(shared.target.clone(), true),
                    };
                    let retention = shared.retain_days.map(Retention::new);
                    Writer { shared: &shared, link, failures: 0, retry_at: None, retention }.run();
                },
                || {
                    let lost = shared.queue.abandon_in_flight();
                    if lost > 0 {
                        metrics::counter!(crate::metrics::STORE_FAILED, "reason" => "writer_panic")
                            .increment(lost as u64);
                        tracing::error!(
                            records = lost,
                            "card records being written when the writer panicked are given up"
                        );
                    }
                },
            );
        })
        .map(|_| ())
        .map_err(|e| StoreError::Thread("writer", e))
}

struct Writer<'a> {
    shared: &'a Shared,
    link: Link,
    failures: u32,
    retry_at: Option<Instant>,
    retention: Option<Retention>,
}

impl Writer<'_> {
    fn run(&mut self) {
        loop {
            // A retention batch runs after each work item while a pass is due (not while
            // the database is failing: the backoff holds).
            let pruning = self.retry_at.is_none() && self.retention.as_ref().is_some_and(Retention::due);
            let idle = if pruning { Duration::ZERO } else { PROBE_INTERVAL };
            match self.shared.queue.take(self.retry_at, idle) {
                Work::Closed => return,
                Work::Idle if pruning => {}
                Work::Idle => self.probe(),
                Work::Records(batch) => self.write_records(batch),
                Work::Feedback(job) => self.feedback(job),
                Work::Flush(done) => {
                    let _ = done.send(());
                }
            }
            if pruning && self.retry_at.is_none() {
                self.prune();
            }
        }
    }

    fn prune(&mut self) {
        let Some(retention) = self.retention.as_mut() else { return };
        let now = self.shared.clock.now();
        match self.link.run(|b| retention.step(b, now)) {
            Ok(()) => self.succeeded(),
            Err(e) if e.is_transient() => self.failed(&e),
            Err(e) => {
                tracing::error!(error = %e, "retention pass failed; trying again in an hour");
                retention.postpone();
            }
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
        self.shared.health.up();
    }

    fn failed(&mut self, e: &StoreError) {
        self.failures = self.failures.saturating_add(1);
        let backoff = BACKOFF_FIRST.saturating_mul(1 << self.failures.min(8).saturating_sub(1)).min(BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + backoff);
        self.shared.health.down(e);
    }

    fn probe(&mut self) {
        match self.link.run(|b| b.ping()) {
            Ok(()) => self.succeeded(),
            Err(e) => self.failed(&e),
        }
    }

    fn write_records(&mut self, batch: Vec<Record>) {
        let queue = &self.shared.queue;
        match self.link.run(|b| queries::record(b, &batch)) {
            Ok(()) => {
                queue.settle(batch.len());
                self.succeeded();
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, records = batch.len(), "card records not written yet; retrying with backoff");
                queue.requeue(batch);
                self.failed(&e);
                queue.refuse_feedback(&e.to_string());
            }
            // Not a passing fault: write one by one so one bad record cannot hold up the rest.
            Err(_) => {
                let mut rest = batch.into_iter();
                while let Some(record) = rest.next() {
                    match self.link.run(|b| queries::record(b, std::slice::from_ref(&record))) {
                        Ok(()) => queue.settle(1),
                        Err(e) if e.is_transient() => {
                            queue.requeue(std::iter::once(record).chain(rest).collect());
                            self.failed(&e);
                            queue.refuse_feedback(&e.to_string());
                            return;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a card record was refused by the database and is dropped");
                            metrics::counter!(crate::metrics::STORE_FAILED, "reason" => "rejected").increment(1);
                            queue.settle(1);
                        }
                    }
                }
            }
        }
    }

    fn feedback(&mut self, job: FeedbackJob) {
        // The caller gave up (its deadline passed and it answered 503): do not store behind
        // its back what it reported as not stored.
        if job.reply.is_closed() {
            return;
        }
        if self.shared.test_hooks && job.rows.iter().any(|r| r.user_comment.as_deref() == Some(TEST_HOOK_PANIC)) {
            panic!("test hook: writer panic requested by feedback (--test-hooks)");
        }
        let now = self.shared.clock.now();
        let result = self.link.run(|b| queries::store_feedback(b, &job.service, &job.rows, job.suppress_days, now));
        match &result {
            Ok((_, created)) => {
                self.succeeded();
                let mut map = self.shared.mirror.write().unwrap_or_else(|e| e.into_inner());
                for s in created {
                    suppress(&mut map, &s.patient_key, &s.rule, s.until);
                }
            }
            Err(e) if e.is_transient() => self.failed(e),
            Err(_) => {}
        }
        let _ = job.reply.send(result.map(|(receipt, _)| receipt));
    }
}
