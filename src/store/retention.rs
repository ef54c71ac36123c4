//! Retention (`--retain-days`): issued-card records with their rule rows, withheld-card
//! records and feedback older than the retention are deleted, and snoozes once they have
//! ended, so the database does not grow for ever. The writer runs a pass at start-up and then
//! hourly, one small transaction at a time between its other work, so a pass over years of
//! rows never holds up card records or a clinician's feedback.

use super::migrations::ts;
use super::sql::{Backend, Kind, Tx, V};
use super::StoreError;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// Rows deleted from each table per transaction, at most.
pub const BATCH: usize = 1000;
/// Time between passes.
const EVERY: Duration = Duration::from_secs(3600);

/// The tables pruned, in the order of [`Pruned`]'s counts.
pub const TABLES: [&str; 5] = ["issued_cards", "issued_card_rules", "suppressed_cards", "feedback", "suppressions"];

/// Rows one transaction deleted, per table (see [`TABLES`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned(pub [u64; 5]);

impl Pruned {
    /// Whether a table still had a full batch to delete, so the pass goes on.
    fn full(&self, limit: usize) -> bool {
        let limit = limit as u64;
        let [cards, _rules, withheld, feedback, ended] = self.0;
        [cards, withheld, feedback, ended].iter().any(|n| *n >= limit)
    }
}

/// Deletes, in one transaction, at most `limit` issued cards (with their rule rows), withheld
/// cards and feedback items from before `cutoff`, and `limit` snoozes ended by `now`.
pub fn prune_batch(
    b: &mut dyn Backend,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    b.transaction(Tx::Write { durable: false }, &mut |tx| {
        let old = [V::Text(ts(cutoff)), V::Int(limit as i64)];
        let cards: Vec<V> = tx
            .query(
                "SELECT card_uuid FROM issued_cards WHERE issued_at < ? ORDER BY issued_at LIMIT ?",
                &old,
                &[Kind::Text],
            )?
            .iter()
            .map(|r| r.text(0).map(|uuid| V::Text(uuid.to_string())))
            .collect::<Result<_, _>>()?;
        let (mut issued, mut rules) = (0, 0);
        if !cards.is_empty() {
            // Only placeholders are formatted into the statement; the uuids are parameters.
            let list = vec!["?"; cards.len()].join(", ");
            rules = tx.exec(&format!("DELETE FROM issued_card_rules WHERE card_uuid IN ({list})"), &cards)?;
            issued = tx.exec(&format!("DELETE FROM issued_cards WHERE card_uuid IN ({list})"), &cards)?;
        }
        let withheld = tx.exec(
            "DELETE FROM suppressed_cards WHERE id IN (SELECT id FROM suppressed_cards WHERE at < ? ORDER BY at LIMIT ?)",
            &old,
        )?;
        let feedback = tx.exec(
            "DELETE FROM feedback WHERE fingerprint IN
                (SELECT fingerprint FROM feedback WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            &old,
        )?;
        let ended = tx.exec(
            "DELETE FROM suppressions WHERE (patient_key, rule) IN
                (SELECT patient_key, rule FROM suppressions WHERE until_at <= ? LIMIT ?)",
            &[V::Text(ts(now)), V::Int(limit as i64)],
        )?;
        pruned = Pruned([issued, rules, withheld, feedback, ended]);
        Ok(())
    })?;
    Ok(pruned)
}

/// When the next pass is due, and the totals of the pass under way.
pub struct Retention {
    keep: chrono::Duration,
    next: Instant,
    totals: Pruned,
    batches: u64,
}

impl Retention {
    /// The first pass is due at once (a service restarted after a long pause catches up).
    pub fn new(days: u32) -> Self {
        Self {
            keep: chrono::Duration::days(i64::from(days)),
            next: Instant::now(),
            totals: Pruned::default(),
            batches: 0,
        }
    }

    pub fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// One batch of the pass; ends the pass (logged with its totals) once nothing old is left.
    pub fn step(&mut self, b: &mut dyn Backend, now: DateTime<Utc>) -> Result<(), StoreError> {
        let cutoff = now - self.keep;
        let pruned = prune_batch(b, cutoff, now, BATCH)?;
        for ((table, n), total) in TABLES.iter().zip(pruned.0).zip(self.totals.0.iter_mut()) {
            metrics::counter!(crate::metrics::STORE_PRUNED, "table" => *table).increment(n);
            *total += n;
        }
        self.batches += 1;
        if !pruned.full(BATCH) {
            let [cards, rules, withheld, feedback, ended] = self.totals.0;
            tracing::info!(
                cutoff = %ts(cutoff), issued_cards = cards, issued_card_rules = rules, suppressed_cards = withheld,
                feedback, ended_suppressions = ended, batches = self.batches,
                "retention pass: rows older than the retention (and ended snoozes) deleted"
            );
            self.postpone();
        }
        Ok(())
    }

    /// No more batches until the next pass (after a pass, or a batch the database refused).
    pub fn postpone(&mut self) {
        self.next = Instant::now() + EVERY;
        self.totals = Pruned::default();
        self.batches = 0;
    }
}
