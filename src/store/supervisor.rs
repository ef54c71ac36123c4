//! Keeping the store's threads alive and saying whether the database answers: a panic on a
//! store thread is caught, logged and the thread's loop started again; the writer's view of
//! the database (up, or down since when and why) is what `/readyz` reports.

use chrono::{DateTime, Utc};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

/// Pause before a restart, so a loop that panics at once does not spin.
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// Longest reason kept (database messages are bounded anyway; this bounds the log and /readyz).
const REASON_CHARS: usize = 300;

/// Runs `body` until it returns; when it panics, calls `after_panic` and runs it again.
pub fn supervise(thread: &'static str, mut body: impl FnMut(), mut after_panic: impl FnMut()) {
    loop {
        match catch_unwind(AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text panic payload".into());
                let message: String = message.chars().take(REASON_CHARS).collect();
                tracing::error!(thread, panic = %message, "feedback store thread panicked; restarting it");
                metrics::counter!(crate::metrics::STORE_RESTARTS, "thread" => thread).increment(1);
                after_panic();
                std::thread::sleep(RESTART_PAUSE);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub since: DateTime<Utc>,
    pub reason: String,
}

/// Whether the database answered the writer's last attempt.
#[derive(Default)]
pub struct Health {
    outage: Mutex<Option<Outage>>,
}

impl Health {
    pub fn outage(&self) -> Option<Outage> {
        self.outage.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a failure; logs once when the store becomes unavailable (not every retry).
    pub fn down(&self, error: &dyn std::fmt::Display) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        let reason: String = error.to_string().chars().take(REASON_CHARS).collect();
        match outage.as_mut() {
            Some(o) => o.reason = reason,
            None => {
                tracing::error!(reason = %reason, "FEEDBACK STORE UNAVAILABLE: feedback answers 503, card records are kept and retried");
                *outage = Some(Outage { since: Utc::now(), reason });
                metrics::gauge!(crate::metrics::STORE_UP).set(0.0);
            }
        }
    }

    pub fn up(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = outage.take() {
            let seconds = (Utc::now() - o.since).num_milliseconds() as f64 / 1000.0;
            tracing::info!(down_for_s = seconds, "feedback store available again");
        }
        metrics::gauge!(crate::metrics::STORE_UP).set(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_panicking_body_is_restarted_and_the_hook_runs_per_panic() {
        let runs = AtomicUsize::new(0);
        let panics = AtomicUsize::new(0);
        supervise(
            "test",
            || {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("injected");
                }
            },
            || {
                panics.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(panics.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_outage_keeps_its_start_and_the_latest_reason() {
        let h = Health::default();
        assert_eq!(h.outage(), None);
        h.down(&"connection refused");
        let first = h.outage().unwrap();
        h.down(&"still refused");
        let second = h.outage().unwrap();
        assert_eq!((first.since, second.reason.as_str()), (second.since, "still refused"));
        h.up();
        assert_eq!(h.outage(), None);
    }
}
