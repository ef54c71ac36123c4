//! The reader thread: analytics, and (with PostgreSQL) the periodic refresh of the
//! suppression mirror, on a connection of its own, so a slow analytics query never delays a
//! clinician's feedback commit on the writer.

use super::queries;
use super::queue::Queue;
use super::sql::{Link, Target};
use super::supervisor::supervise;
use super::{merge_suppressions, Clock, RuleAnalytics, StoreError, SuppressionMap};
use chrono::{DateTime, Utc};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long analytics wait for the writer to commit the cards issued before the query.
const CATCH_UP: Duration = Duration::from_secs(2);

pub struct AnalyticsJob {
    pub since: Option<DateTime<Utc>>,
    /// The record queue's mark when the query was asked (see `Queue::wait_settled`).
    pub mark: u64,
    pub reply: oneshot::Sender<Result<Vec<RuleAnalytics>, StoreError>>,
}

pub struct Shared {
    pub target: Target,
    pub queue: Arc<Queue>,
    pub mirror: Arc<RwLock<SuppressionMap>>,
    pub clock: Clock,
    /// How often to reload suppressions other replicas created (PostgreSQL), if at all.
    pub refresh: Option<Duration>,
}

pub fn spawn(shared: Shared, jobs: Receiver<AnalyticsJob>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("feedback-store-reader".into())
        .spawn(move || {
            // The reply of a job that panicked is dropped: its caller gets an error, not a hang.
            supervise("reader", || run(&shared, &jobs, Link::new(shared.target.clone(), false)), || {});
        })
        .map(|_| ())
        .map_err(|e| StoreError::Thread("reader", e))
}

fn run(shared: &Shared, jobs: &Receiver<AnalyticsJob>, mut link: Link) {
    let mut next_refresh = shared.refresh.map(|every| Instant::now() + every);
    loop {
        let job = match next_refresh {
            Some(at) => jobs.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match job {
            Ok(job) => {
                if !job.reply.is_closed() {
                    if !shared.queue.wait_settled(job.mark, CATCH_UP) {
                        tracing::warn!(
                            "analytics answered while the writer is behind: the latest cards are not counted yet"
                        );
                    }
                    let _ = job.reply.send(link.run(|b| queries::analytics(b, job.since)));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = shared.clock.now();
                match link.run(|b| queries::active_suppressions(b, now)) {
                    Ok(fresh) => {
                        let mut map = shared.mirror.write().unwrap_or_else(|e| e.into_inner());
                        merge_suppressions(&mut map, fresh, now);
                    }
                    Err(e) => tracing::warn!(error = %e, "suppression refresh failed; keeping the last copy"),
                }
                next_refresh = shared.refresh.map(|every| Instant::now() + every);
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
