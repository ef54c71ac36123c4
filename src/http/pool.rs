//! The evaluation threads: a multi-threaded runtime of its own, so that a large request's CPU
//! work (parsing, facts, rules, cards) never runs on an HTTP worker, which keeps answering
//! `/healthz` and small requests meanwhile. The async steps of such an evaluation (FHIR
//! fetches, terminology) run there too. Its queue is bounded by the bodies-in-flight bound
//! ([`super::limits`]).
//!
//! Memory: mimalloc gives freed memory back to the OS lazily, when a thread next allocates, so
//! after a burst of large requests an idle service would keep the burst's memory (measured:
//! +60 MB after twenty 10 MB bodies; 100 MB more after two). Giving it back after every
//! request costs a third of the throughput on large requests (the pages are faulted in again
//! by the next one), so the pool gives it back once the burst is over: when no large request
//! has run or finished for [`QUIET_BEFORE_TRIM`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the pool must be quiet before the memory of a burst is given back.
pub const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(1);

pub struct EvalPool {
    runtime: Option<tokio::runtime::Runtime>,
    /// Bodies of at least this many bytes are evaluated here.
    pub offload_above: usize,
    activity: Arc<Activity>,
}

/// What the trimmer needs to know: evaluations running, and how many have finished.
#[derive(Default)]
struct Activity {
    running: AtomicUsize,
    finished: AtomicU64,
}

impl EvalPool {
    pub fn new(threads: usize, offload_above: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("eval")
            .enable_all()
            .build()?;
        let activity = Arc::new(Activity::default());
        runtime.spawn(trim_when_quiet(activity.clone()));
        Ok(Self { runtime: Some(runtime), offload_above, activity })
    }

    /// Whether a body of `len` bytes is evaluated on the pool.
    pub fn takes(&self, len: usize) -> bool {
        len >= self.offload_above
    }

    /// Runs `work` on the pool and waits for it without blocking the caller's thread. A panic
    /// in `work` is resumed here (the panic guard answers 500); if the caller goes away the
    /// work is cancelled at its next await.
    pub async fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        let runtime = self.runtime.as_ref().expect("the pool lives as long as the service");
        let running = Running::start(self.activity.clone());
        let mut task = AbortOnDrop(runtime.spawn(async move {
            let value = work.await;
            drop(running);
            value
        }));
        match task.join().await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("evaluation task ended without an answer: {e}"),
        }
    }
}

impl Drop for EvalPool {
    fn drop(&mut self) {
        // Dropping a runtime may not block inside another runtime (tests, shutdown).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One evaluation counted as running until dropped (finished, panicked or cancelled).
struct Running(Arc<Activity>);

impl Running {
    fn start(activity: Arc<Activity>) -> Self {
        activity.running.fetch_add(1, Ordering::AcqRel);
        Running(activity)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives memory back once evaluations have stopped: after work, when a whole quiet period
/// has passed with none running and none finishing.
async fn trim_when_quiet(activity: Arc<Activity>) {
    let mut trimmed_at = 0;
    let mut seen = 0;
    loop {
        tokio::time::sleep(QUIET_BEFORE_TRIM).await;
        let finished = activity.finished.load(Ordering::Acquire);
        let quiet = finished == seen && activity.running.load(Ordering::Acquire) == 0;
        if quiet && finished != trimmed_at {
            give_memory_back();
            trimmed_at = finished;
        }
        seen = finished;
    }
}

/// Returns freed memory to the OS now, from every thread's pages that are free and from
/// mimalloc's shared arenas.
fn give_memory_back() {
    // SAFETY: mi_collect only walks mimalloc's own bookkeeping; it is safe from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// A task handle that cancels the task when the waiting request is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
